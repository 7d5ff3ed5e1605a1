#!/usr/bin/env bash
# tests/bench/profile_accept.sh - where backmxd spends the accept row's time.
#
# usage: tests/bench/profile_accept.sh BUILD [MESSAGES]
#
# Starts backmxd (the bench's config: 100 000 recipients, primary down:
# nothing listens on its route) under perf record, sends MESSAGES (default
# 20 000) x 4 KB with smtp-source -s 10 (the accept row's load), and
# prints the flat profile of the daemon (self time by symbol) and a call
# graph summary (perf's dwarf unwinding: the build has no frame pointers),
# then the daemon's fsyncs per message (strace -c on a second, shorter run).
# Work directory: $PROFILE_DIR (default /var/tmp/backmx-profile), removed
# at the start of the next run.  Needs perf (linux-perf) and smtp-source.
set -euo pipefail
BUILD=$(cd "${1:?usage: profile_accept.sh BUILD [MESSAGES]}" && pwd)
N=${2:-20000}
D=${PROFILE_DIR:-/var/tmp/backmx-profile}
PORT=2645 ROUTE=2646
command -v smtp-source >/dev/null || PATH=$PATH:/usr/sbin
rm -rf "$D"; mkdir -p "$D"
python3 - "$D" <<'EOF'
import sys
with open(sys.argv[1] + '/rcpts', 'w') as r:
    r.write('user\n')
    for i in range(100000):
        r.write('%duser\n' % i)
EOF
cat >"$D/backmx.conf" <<EOF
hostname mx2.bench.example
listen 127.0.0.1:$PORT
spool $D/spool
control $D/control.sock
pidfile $D/bx.pid
max_clients 2000
max_clients_per_ip 2000
retry 1h
domain bench.example {
    recipients $D/rcpts
    route [127.0.0.1]:$ROUTE
}
EOF
pid=""
stop() {
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	pid=""
}
trap stop EXIT
start() {
	rm -rf "$D/spool" "$D/bx.pid"
	"$BUILD/backmxd" -f -c "$D/backmx.conf" 2>>"$D/log" &
	pid=$!
	for _ in $(seq 1 100); do
		(exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && return 0
		sleep 0.1
	done
	echo "backmxd did not listen" >&2
	return 1
}
load() {
	smtp-source -s 10 -m "$1" -l 4096 -f bench@sender.example \
		-t user@bench.example -M client.example 127.0.0.1:$PORT
}

start
load 200 # warm up: the destination is suspended after the first refusal
perf record -q -F 1999 --call-graph dwarf,16384 -o "$D/perf.data" -p "$pid" 2>/dev/null &
perfpid=$!
sleep 1
t0=$(date +%s.%N)
load "$N"
t1=$(date +%s.%N)
kill -INT $perfpid; wait $perfpid 2>/dev/null || true
echo "accept: $N messages in $(echo "$t1 - $t0" | bc -l | cut -c1-6) s ($(echo "$N / ($t1 - $t0)" | bc -l | cut -d. -f1) msg/s) under perf; load $(cut -d' ' -f1-3 /proc/loadavg)"
stop
echo "--- self time by symbol (top 40)"
perf report -q -i "$D/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
	grep -v '^$' | head -40 || true
echo "--- time including callees (top 40)"
perf report -q -i "$D/perf.data" --children --sort symbol --stdio -g none 2>/dev/null |
	grep -v '^$' | head -40 || true

start
load 200
strace -f -qq -c -e trace=fsync,fdatasync,write,sendto,writev,pwrite64,read,recvfrom -o "$D/strace" -p "$pid" &
stpid=$!
sleep 1
load 2000
sleep 0.5
kill -INT $stpid; wait $stpid 2>/dev/null || true
stop
echo "--- system calls for 2000 messages (strace -c)"
cat "$D/strace"
