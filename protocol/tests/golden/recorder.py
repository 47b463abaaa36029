#!/usr/bin/python3
"""Record the CTDB packets one CLI run exchanges with ctdbd.

Usage:
    recorder.py --upstream SOCKET --out FILE [--stdin FILE] -- CLI ARGS...

Listens on a fresh Unix socket, runs CLI ARGS with CTDB_SOCKET pointing at
it, and relays every connection to the real daemon socket SOCKET, both
directions, byte for byte. Each direction's byte stream is split into
packets by the leading u32 (little-endian) length field; a client may send
one packet in several writes, so bytes are reassembled before splitting.
The result (command, exit code, stdout, stderr, packets) is written to FILE
in the format described in README.md next to this file.
"""

import argparse
import os
import shlex
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time


class Log:
    """Packets in the order the relay saw them, from all connections."""

    def __init__(self):
        self.lock = threading.Lock()
        self.lines = []

    def packet(self, conn, direction, data):
        with self.lock:
            self.lines.append("%s %d %s" % (direction, conn, data.hex()))

    def note(self, text):
        with self.lock:
            self.lines.append("# " + text)


def pump(conn_no, direction, src, dst, log, done):
    """Copy src to dst, logging every complete packet."""
    buf = b""
    try:
        while True:
            chunk = src.recv(65536)
            if not chunk:
                break
            # Log complete packets before forwarding, so that a request is
            # always logged before the reply it provokes.
            buf += chunk
            while len(buf) >= 4:
                (length,) = struct.unpack_from("<I", buf, 0)
                if length < 4:
                    log.note("conn %d %s: bad length %d, rest not split"
                             % (conn_no, direction, length))
                    log.packet(conn_no, direction, buf)
                    buf = b""
                    break
                if len(buf) < length:
                    break
                log.packet(conn_no, direction, buf[:length])
                buf = buf[length:]
            dst.sendall(chunk)
    except OSError as e:
        log.note("conn %d %s: %s" % (conn_no, direction, e))
    finally:
        if buf:
            log.note("conn %d %s: %d trailing bytes (incomplete packet)"
                     % (conn_no, direction, len(buf)))
            log.packet(conn_no, direction, buf)
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        done.set()


def serve(listener, upstream, log, threads, stop):
    conn_no = 0
    while not stop.is_set():
        try:
            client, _ = listener.accept()
        except socket.timeout:
            continue
        except OSError:
            break
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.connect(upstream)
        except OSError as e:
            log.note("conn %d: cannot connect to %s: %s" % (conn_no, upstream, e))
            client.close()
            continue
        for direction, src, dst in ((">", client, server), ("<", server, client)):
            done = threading.Event()
            t = threading.Thread(target=pump,
                                 args=(conn_no, direction, src, dst, log, done),
                                 daemon=True)
            t.start()
            threads.append((t, src, dst))
        conn_no += 1


def text_lines(prefix, data):
    text = data.decode("utf-8", "backslashreplace")
    if not text:
        return []
    out = [prefix + "|" + line for line in text.split("\n")]
    if text.endswith("\n"):
        out.pop()
    elif text:
        out.append("noeol: " + prefix)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stdin")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        ap.error("no command given")

    tmp = tempfile.mkdtemp(prefix="ctdb-relay-")
    path = os.path.join(tmp, "relay.socket")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    listener.settimeout(0.1)

    log = Log()
    threads = []
    stop = threading.Event()
    acceptor = threading.Thread(target=serve,
                                args=(listener, a.upstream, log, threads, stop),
                                daemon=True)
    acceptor.start()

    env = dict(os.environ)
    env["CTDB_SOCKET"] = path
    stdin_data = b""
    if a.stdin:
        with open(a.stdin, "rb") as f:
            stdin_data = f.read()
    proc = subprocess.run(cmd, input=stdin_data, capture_output=True, env=env,
                          timeout=a.timeout)

    # The CLI has exited, so its ends are closed; let the relays drain.
    deadline = time.time() + 5
    for t, _, _ in list(threads):
        t.join(max(0.0, deadline - time.time()))
    stop.set()
    acceptor.join(1)
    for t, src, dst in threads:
        if t.is_alive():
            log.note("relay thread still running at end; closing")
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass
    listener.close()
    os.unlink(path)
    os.rmdir(tmp)

    display = ["ctdb"] + cmd[1:]
    lines = ["# CTDB golden recording, format: see README.md",
             "cmd: " + shlex.join(display),
             "exit: %d" % proc.returncode]
    if a.stdin:
        lines += text_lines("in", stdin_data)
    lines += text_lines("out", proc.stdout)
    lines += text_lines("err", proc.stderr)
    with log.lock:
        lines += log.lines
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    sys.stdout.write("%-40s exit %d, %d packets\n"
                     % (" ".join(display), proc.returncode,
                        sum(1 for l in log.lines if not l.startswith("#"))))


if __name__ == "__main__":
    main()
