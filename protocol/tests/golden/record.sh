#!/usr/bin/env bash
# Re-record every golden file in this directory: start a 3-node cluster of
# Debian's ctdbd 4.17 on 127.0.99.1-3 (scripts/local-cluster), run the stock
# ctdb CLI against node 0 through recorder.py, and write one <name>.txt per
# command. See README.md for the file format.
#
# Needs: /usr/sbin/ctdbd, /usr/bin/ctdb, /usr/bin/python3.
# Environment: CTDBD, CTDB (daemon and CLI to record), GOLDEN_NET (127.0.99).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "${here}/../../.." && pwd)"
cluster="${repo}/scripts/local-cluster"
cli="${CTDB:-/usr/bin/ctdb}"

CTDB_LOCAL_DIR="$(mktemp -d "${TMPDIR:-/tmp}/ctdb-golden.XXXXXX")"
export CTDB_LOCAL_DIR
export CTDB_LOCAL_NET="${GOLDEN_NET:-127.0.99}"
export CTDB_LOCAL_WAIT=60

capture_pid=""
cleanup() {
	"$cluster" stop >/dev/null 2>&1 || true
	if [ -n "$capture_pid" ]; then
		kill -TERM "$capture_pid" 2>/dev/null || true
		wait "$capture_pid" || true
	fi
	rm -rf "$CTDB_LOCAL_DIR"
}
trap cleanup EXIT

# Node-to-node TCP traffic of the whole session (needs root for AF_PACKET):
# started before the daemons so that every connection is seen from its SYN.
mkdir -p "${here}/nodes"
rm -f "${here}/nodes/"*.txt
/usr/bin/python3 "${here}/capture_nodes.py" --net "$CTDB_LOCAL_NET" \
	--out "${here}/nodes/session.txt" --ready "${CTDB_LOCAL_DIR}/capture.ready" &
capture_pid=$!
for i in $(seq 100); do
	[ -e "${CTDB_LOCAL_DIR}/capture.ready" ] && break
	kill -0 "$capture_pid" 2>/dev/null || { echo "record.sh: capture failed" >&2; exit 1; }
	sleep 0.1
done

"$cluster" start 3

eval "$("$cluster" env 0)"
upstream="${CTDB_SOCKET}"

rec() {
	# rec NAME [--stdin FILE] ARGS...: record `ctdb ARGS...` into NAME.txt
	local name="$1"
	shift
	local extra=()
	if [ "${1:-}" = "--stdin" ]; then
		extra=(--stdin "$2")
		shift 2
	fi
	/usr/bin/python3 "${here}/recorder.py" --upstream "$upstream" \
		--out "${here}/${name}.txt" "${extra[@]}" -- "$cli" "$@"
}

wait_ok() {
	local i
	for i in $(seq 240); do
		if "$cluster" ctdb nodestatus all >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.25
	done
	echo "record.sh: cluster did not return to all OK" >&2
	exit 1
}

rm -f "${here}"/*.txt

# Node and cluster information
rec version version
rec status status
rec status-X -X status
rec listnodes listnodes
rec pnn pnn
rec leader leader
rec ping ping
rec ping-node1 -n 1 ping
rec getpid-node2 -n 2 getpid
rec uptime uptime
rec getpid getpid
rec runstate runstate
rec nodestatus nodestatus
rec nodestatus-all nodestatus all
rec getcapabilities getcapabilities
rec getreclock getreclock
rec statistics statistics
rec statisticsreset statisticsreset
rec process-exists process-exists 1
rec ip ip
rec ip-all ip all
rec ifaces ifaces
rec scriptstatus scriptstatus

# Tunables and debug level
rec getvar getvar RecoverTimeout
rec setvar setvar RecoverTimeout 31
rec getvar-after-setvar getvar RecoverTimeout
rec getvar-unknown getvar NoSuchTunable
rec listvars listvars
rec getdebug getdebug
rec setdebug setdebug NOTICE
rec setdebug-back setdebug INFO

# Databases
rec getdbmap-empty getdbmap
rec attach-volatile attach golden_volatile.tdb
rec attach-persistent attach golden_persistent.tdb persistent
rec attach-replicated attach golden_replicated.tdb replicated
rec getdbmap getdbmap
rec getdbmap-X -X getdbmap
rec getdbstatus getdbstatus golden_persistent.tdb
rec dbstatistics dbstatistics golden_volatile.tdb
rec getdbseqnum-before getdbseqnum golden_persistent.tdb
rec pstore pstore golden_persistent.tdb key1 value1
rec pfetch pfetch golden_persistent.tdb key1
rec pfetch-missing pfetch golden_persistent.tdb nosuchkey
ptrans_in="$(mktemp)"
printf '"key2" "value2"\n"key3" "value3"\n' >"$ptrans_in"
rec ptrans --stdin "$ptrans_in" ptrans golden_persistent.tdb
rm -f "$ptrans_in"
rec getdbseqnum getdbseqnum golden_persistent.tdb
rec pdelete pdelete golden_persistent.tdb key3
rec catdb-persistent catdb golden_persistent.tdb
rec writekey writekey golden_volatile.tdb vkey vvalue
rec readkey readkey golden_volatile.tdb vkey
rec readkey-missing readkey golden_volatile.tdb nokey
rec deletekey deletekey golden_volatile.tdb vkey
rec writekey-again writekey golden_volatile.tdb vkey2 vvalue2
rec catdb-volatile catdb golden_volatile.tdb
rec setdbsticky setdbsticky golden_volatile.tdb
rec setdbreadonly setdbreadonly golden_volatile.tdb
rec wipedb wipedb golden_replicated.tdb
rec attach-detachable attach golden_detach.tdb
rec detach-refused detach golden_detach.tdb
rec setvar-noattach setvar AllowClientDBAttach 0
for n in 1 2; do CTDB_NODE=$n "$cluster" ctdb setvar AllowClientDBAttach 0; done
rec detach detach golden_detach.tdb
for n in 0 1 2; do CTDB_NODE=$n "$cluster" ctdb setvar AllowClientDBAttach 1; done

# Node state changes (each followed by a return to all OK)
rec disable disable
rec status-disabled status
rec enable enable
wait_ok
rec ban ban 30
rec status-banned status
rec unban unban
wait_ok
rec ipreallocate ipreallocate
rec recover recover
wait_ok
rec status-final status

# Cross-node record traffic: write through node 0, read back through nodes
# 1 and 2 (record migrations: REQ_CALL, REQ_DMASTER, REPLY_DMASTER, ...).
for n in 1 2; do
	CTDB_NODE=$n "$cluster" ctdb writekey golden_volatile.tdb "node${n}key" "from${n}" >/dev/null
	CTDB_NODE=0 "$cluster" ctdb readkey golden_volatile.tdb "node${n}key" >/dev/null
	CTDB_NODE=$n "$cluster" ctdb readkey golden_volatile.tdb "node${n}key" >/dev/null
done
CTDB_NODE=2 "$cluster" ctdb pstore golden_persistent.tdb key4 value4 >/dev/null
CTDB_NODE=1 "$cluster" ctdb catdb golden_volatile.tdb >/dev/null

"$cluster" stop >/dev/null
kill -TERM "$capture_pid"
wait "$capture_pid"
capture_pid=""

echo "recorded $(ls "${here}"/*.txt | wc -l) commands into ${here}"
