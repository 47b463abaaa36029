#!/usr/bin/python3
"""Capture the CTDB packets ctdbd nodes exchange over TCP on loopback.

Usage:
    capture_nodes.py --net 127.0.99 --out FILE [--port 4379] [--ready FILE]

Needs root (an AF_PACKET socket on "lo"). Captures every TCP segment between
addresses <net>.* to or from the CTDB port, reassembles each connection's
two byte streams by sequence number, splits them into CTDB packets by the
leading u32 length, and on SIGTERM/SIGINT writes them to FILE in the format
of README.md ("> C HEX" = connecting node to listening node on connection C,
"< C HEX" the other way) with a comment per connection naming its ends.
Creates --ready once the socket is open, so a caller knows when to start the
cluster (every connection must be seen from its SYN to be reassembled).
"""

import argparse
import signal
import socket
import struct
import sys

PACKET_HOST = 0  # lo shows each segment twice: OUTGOING and HOST; keep one
ETH_P_ALL = 3


class Stream:
    """One direction of one TCP connection."""

    def __init__(self, isn):
        self.next = (isn + 1) & 0xFFFFFFFF
        self.pending = {}  # seq -> payload, segments beyond `next`
        self.buf = b""

    def add(self, seq, data):
        """Returns the bytes that became contiguous."""
        out = b""
        self.pending[seq] = data
        progressed = True
        while progressed:
            progressed = False
            for s in list(self.pending):
                d = self.pending[s]
                off = (self.next - s) & 0xFFFFFFFF
                if off < 0x80000000:  # s <= next: starts at or before next
                    del self.pending[s]
                    if off < len(d):
                        new = d[off:]
                        out += new
                        self.next = (self.next + len(new)) & 0xFFFFFFFF
                    progressed = True
        return out


class Capture:
    def __init__(self, net, port):
        self.prefix = socket.inet_aton(net + ".0")[:3]
        self.port = port
        self.conns = {}  # (client ip, client port, server ip) -> index
        self.names = []
        self.streams = {}  # (src, sport, dst, dport) -> Stream
        self.lines = []
        self.notes = []

    def conn_of(self, src, sport, dst, dport):
        if dport == self.port:
            key, direction = (src, sport, dst), ">"
        else:
            key, direction = (dst, dport, src), "<"
        return key, direction

    def segment(self, frame):
        if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00":
            return
        ip = frame[14:]
        if ip[9] != 6:
            return
        ihl = (ip[0] & 15) * 4
        total = struct.unpack_from("!H", ip, 2)[0]
        src, dst = ip[12:16], ip[16:20]
        if src[:3] != self.prefix or dst[:3] != self.prefix:
            return
        tcp = ip[ihl:total]
        sport, dport, seq = struct.unpack_from("!HHI", tcp, 0)
        if self.port not in (sport, dport):
            return
        doff = (tcp[12] >> 4) * 4
        flags = tcp[13]
        payload = tcp[doff:]
        key, direction = self.conn_of(src, sport, dst, dport)
        skey = (src, sport, dst, dport)
        if flags & 0x02:  # SYN (or SYN-ACK)
            if direction == ">" and key in self.conns and skey in self.streams:
                return  # retransmitted SYN
            if key not in self.conns:
                self.conns[key] = len(self.names)
                self.names.append("%s:%d -> %s:%d" % (
                    socket.inet_ntoa(key[0]), key[1],
                    socket.inet_ntoa(key[2]), self.port))
            self.streams[skey] = Stream(seq)
            return
        if not payload:
            return
        stream = self.streams.get(skey)
        if stream is None:
            self.notes.append("segment of a connection seen without its SYN: "
                              "%s:%d -> %s:%d (ignored)" % (
                                  socket.inet_ntoa(src), sport,
                                  socket.inet_ntoa(dst), dport))
            self.streams[skey] = None
            return
        conn = self.conns[key]
        stream.buf += stream.add(seq, payload)
        while len(stream.buf) >= 4:
            (length,) = struct.unpack_from("<I", stream.buf, 0)
            if length < 4:
                self.notes.append("conn %d %s: bad length %d, stream dropped"
                                  % (conn, direction, length))
                stream.buf = b""
                self.streams[skey] = None
                break
            if len(stream.buf) < length:
                break
            self.lines.append("%s %d %s" % (direction, conn,
                                            stream.buf[:length].hex()))
            stream.buf = stream.buf[length:]

    def finish(self):
        out = ["# CTDB golden recording of node-to-node TCP traffic, "
               "format: see README.md"]
        out += ["# note: " + n for n in sorted(set(self.notes))]
        for i, name in enumerate(self.names):
            out.append("# conn %d: %s" % (i, name))
        for skey, st in self.streams.items():
            if st is not None and (st.buf or st.pending):
                out.append("# note: %s:%d -> %s:%d ended with %d bytes "
                           "unframed, %d segments out of order" % (
                               socket.inet_ntoa(skey[0]), skey[1],
                               socket.inet_ntoa(skey[2]), skey[3],
                               len(st.buf), len(st.pending)))
        return out + self.lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", required=True)
    ap.add_argument("--port", type=int, default=4379)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ready")
    a = ap.parse_args()

    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    s.bind(("lo", 0))
    s.settimeout(0.2)
    cap = Capture(a.net, a.port)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    if a.ready:
        open(a.ready, "w").close()
    while not stop:
        try:
            frame, addr = s.recvfrom(1 << 18)
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        if addr[2] != PACKET_HOST:
            continue
        cap.segment(frame)
    lines = cap.finish()
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    sys.stdout.write("node traffic: %d connections, %d packets\n"
                     % (len(cap.names), sum(1 for l in lines if l[0] in "<>")))


if __name__ == "__main__":
    main()
