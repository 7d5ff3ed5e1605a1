#!/usr/bin/env bash
# tests/bench/scale.sh - the scale runs of `make bench BENCH_ARGS=--scale`
# (run.sh BUILD --scale execs this; no Postfix needed, only its smtp-sink).
#
# usage: tests/bench/scale.sh BUILD
#
#  1. SESSIONS (10 000) idle SMTP sessions (banner + EHLO) held against
#     backmxd: its PSS before and after, per session, and the latency of
#     20 fresh sessions (connect, banner, EHLO, QUIT) while they are held.
#  2. A spool of MSGS (1 000 000) queued, not due messages written by
#     bulk_load (the real spool code), then: backmxd restart time, with
#     the spool files evicted from the page cache (cold) and again (warm),
#     until the SMTP banner and a control command (`show ID`; backmxctl
#     has no status command) answer; the time of `backmxctl queue --json
#     | wc -l` and of `backmxctl stats`; the flush rate over the first
#     FLUSH (20 000) deliveries to an smtp-sink primary, from the flush
#     command and from the first delivery, against the same flush of a
#     spool of SMALL (20 000) messages; the latency of fresh sessions
#     during each flush; the reply time of an ETRN with MSGS queued.
#
# Every measurement runs ROUNDS (3) times (a fresh spool each round) and
# the summary shows median [min-max].  Sizes from the environment:
# SCALE_SESSIONS, SCALE_MSGS, SCALE_SMALL, SCALE_FLUSH, SCALE_ROUNDS,
# SCALE_DIR (default /var/tmp/backmx-scale, removed at the end unless
# KEEP_SCALE_DIR is set), SCALE_PARTS ("sessions spool": both).  A
# benchmark: nothing passes or fails on timing; targets are printed beside.
set -euo pipefail

BUILD=${1:?usage: scale.sh BUILD}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "$ROOT" && cd "$BUILD" && pwd)
PY=/usr/bin/python3
S=${SCALE_DIR:-/var/tmp/backmx-scale}
NSESS=${SCALE_SESSIONS:-10000}
NMSG=${SCALE_MSGS:-1000000}
NSMALL=${SCALE_SMALL:-20000}
NFLUSH=${SCALE_FLUSH:-20000}
ROUNDS=${SCALE_ROUNDS:-3}
PARTS=${SCALE_PARTS:-sessions spool}
NPROBE=20
MSGSIZE=1024
PORT=2645 SINK_PORT=2646
DOMAIN=bench.example
CTL=("$BUILD/backmxctl" -s "$S/control.sock")

[ -x /usr/sbin/smtp-sink ] || { echo "smtp-sink not installed (package postfix; run contrib/install-deps)" >&2; exit 1; }

# descriptors: the holder and backmxd (which raises its soft limit to the
# hard one, relay/main.c) each need one per session; as root `ulimit -n`
# raises the hard limit too
want=$((NSESS + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ]; then
	ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ]; then
	echo "scale: RLIMIT_NOFILE is $(ulimit -n), $want needed for $NSESS sessions and the hard limit is $(ulimit -Hn) (raise it: root with CAP_SYS_RESOURCE, or LimitNOFILE)" >&2
	exit 1
fi

rm -rf "$S"; mkdir -p "$S"
BXPID="" HOLDPID="" SINKPID=""
cleanup() {
	set +e
	[ -n "$HOLDPID" ] && kill "$HOLDPID" 2>/dev/null && wait "$HOLDPID" 2>/dev/null
	[ -n "$SINKPID" ] && kill "$SINKPID" 2>/dev/null && wait "$SINKPID" 2>/dev/null
	[ -n "$BXPID" ] && kill "$BXPID" 2>/dev/null && wait "$BXPID" 2>/dev/null
	[ -n "${KEEP_SCALE_DIR:-}" ] || rm -rf "$S"
}
trap cleanup EXIT

now() { date +%s.%N; }
calc() { $PY -c "import sys; print(('%.' + sys.argv[1] + 'f') % eval(sys.argv[2]))" "$@"; }
say() { echo "scale: $*" >&2; }
# rec ROW VALUE UNIT - one measurement; the summary takes medians by ROW
ROWS=()
declare -A VAL UNIT
rec() {
	[ -n "${VAL[$1]+x}" ] || ROWS+=("$1")
	VAL[$1]="${VAL[$1]:-} $2"
	UNIT[$1]=$3
	say "$1: $2 $3"
}
NOTES=()
note() { NOTES+=("$*"); say "$*"; }

pss_kib() { $PY - "$1" <<'EOF'
import sys
for l in open('/proc/%s/smaps_rollup' % sys.argv[1]):
    if l.startswith('Pss:'):
        print(l.split()[1])
EOF
}

# wait_banner PORT T0 TIMEOUT - seconds from T0 (epoch) until a 220 banner
# is read on PORT (a connect alone is not enough: backmxd listens before
# it has loaded the spool, and accepts only once its loop runs)
wait_banner() { $PY - "$@" <<'EOF'
import socket, sys, time
port, t0, tmo = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
while time.time() - t0 < tmo:
    try:
        s = socket.create_connection(('127.0.0.1', port), timeout=tmo)
    except OSError:
        time.sleep(0.02)
        continue
    try:
        b = s.recv(512)
    except OSError:
        b = b''
    s.close()
    if b.startswith(b'220'):
        print('%.3f' % (time.time() - t0))
        sys.exit(0)
    time.sleep(0.02)
print('timeout')
sys.exit(1)
EOF
}

# etrn PORT DOMAIN - seconds from sending ETRN to its reply, and the reply
etrn() { $PY - "$@" <<'EOF'
import socket, sys, time
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=120)
f = s.makefile('rb')
def reply():
    while True:
        l = f.readline()
        if not l or l[3:4] == b' ':
            return l.decode(errors='replace').strip()
reply()
s.sendall(b'EHLO etrn.example\r\n'); reply()
t0 = time.time()
s.sendall(b'ETRN ' + sys.argv[2].encode() + b'\r\n')
r = reply()
print('%.3f %s' % (time.time() - t0, r))
s.sendall(b'QUIT\r\n'); reply()
EOF
}

# recipients (the same 100 000 users as run.sh) and the configuration
$PY - "$S/rcpts" <<'EOF'
import sys
with open(sys.argv[1], 'w') as r:
    r.write('user\n')
    for i in range(100000):
        r.write('%duser\n' % i)
EOF
cat > "$S/backmx.conf" <<EOF
hostname mx2.$DOMAIN
listen 127.0.0.1:$PORT
spool $S/spool
control $S/control.sock
pidfile $S/bx.pid
max_clients $((NSESS + 2000))
max_clients_per_ip $((NSESS + 2000))
etrn_allow 127.0.0.0/8
retry 1h
domain $DOMAIN {
    recipients $S/rcpts
    route [127.0.0.1]:$SINK_PORT
}
EOF
"$BUILD/backmxd" -t -c "$S/backmx.conf"

bx_start() { rm -f "$S/bx.pid"; "$BUILD/backmxd" -f -c "$S/backmx.conf" 2>>"$S/bx.log" & BXPID=$!; }
bx_ready() { wait_banner $PORT "$(now)" 600 >/dev/null; }
bx_stop() {
	[ -n "$BXPID" ] || return 0
	kill "$BXPID" 2>/dev/null || true
	wait "$BXPID" 2>/dev/null || true
	BXPID=""
}
sink_start() {
	/usr/sbin/smtp-sink -u postfix 127.0.0.1:$SINK_PORT 1000 >"$S/sink.out" 2>&1 & SINKPID=$!
	wait_banner $SINK_PORT "$(now)" 30 >/dev/null
}
sink_stop() {
	if [ -n "$SINKPID" ]; then kill "$SINKPID" 2>/dev/null || true; wait "$SINKPID" 2>/dev/null || true; fi
	SINKPID=""
}

# evict FILES... from the page cache (only these files), for a cold start
evict() { $PY - "$@" <<'EOF'
import os, sys
for p in sys.argv[1:]:
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError:
        continue
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
EOF
}

# load N: bulk_load N messages into a fresh spool; sets FIRST_ID, LOAD_S
load() {
	local n=$1 line t0 t1
	rm -rf "$S/spool"
	t0=$(now)
	line=$("$BUILD/bulk_load" "$S/spool" "$n" $MSGSIZE $DOMAIN 86400)
	t1=$(now)
	say "$line"
	FIRST_ID=${line##* }
	LOAD_S=$(calc 2 "$t1 - $t0")
}

# restart TAG: start backmxd on the loaded spool; time the pidfile (it is
# written after spool_open), the SMTP banner and a control command
restart() {
	local tag=$1 t0 tb tc tp
	t0=$(now)
	bx_start
	tb=$(wait_banner $PORT "$t0" 600) || { echo "scale: backmxd did not answer" >&2; tail -5 "$S/bx.log" >&2; exit 1; }
	tc=""
	until "${CTL[@]}" show "$FIRST_ID" >/dev/null 2>&1; do
		kill -0 "$BXPID" 2>/dev/null || { echo "scale: backmxd died at start" >&2; tail -5 "$S/bx.log" >&2; exit 1; }
		sleep 0.05
	done
	tc=$(calc 3 "$(now) - $t0")
	tp=$(calc 3 "$(stat -c %.9Y "$S/bx.pid") - $t0")
	rec "restart, $tag: pidfile (after spool_open)" "$tp" s
	rec "restart, $tag: SMTP banner (target < 30 s)" "$tb" s
	rec "restart, $tag: backmxctl show answers" "$tc" s
}

# flush_rate N TAG: with backmxd running on a loaded spool, start the
# primary, flush, time the first N deliveries and NPROBE fresh sessions
# made meanwhile; sets RATE_CMD and RATE_STEADY
flush_rate() {
	local n=$1 tag=$2 t0 tf out first nth seen follower prober probe
	sink_start
	rm -f "$S/follow.ready"
	$PY "$ROOT/tests/bench/count_sent.py" "$S/bx.log" "$n" "$S/follow.ready" 900 >"$S/follow.out" &
	follower=$!
	for _ in $(seq 1 100); do [ -f "$S/follow.ready" ] && break; sleep 0.05; done
	t0=$(now)
	$PY "$ROOT/tests/bench/session_latency.py" 127.0.0.1 $PORT $NPROBE >"$S/probe.out" 2>&1 &
	prober=$!
	"${CTL[@]}" flush >"$S/flush.out"
	tf=$(now)
	wait "$follower"
	wait "$prober" || true
	out=$(cat "$S/follow.out")
	first=$(echo "$out" | sed 's/.*first=\([0-9.]*\).*/\1/')
	nth=$(echo "$out" | sed 's/.*nth=\([0-9.]*\).*/\1/')
	seen=$(echo "$out" | sed 's/.*seen=\([0-9]*\).*/\1/')
	probe=$(head -1 "$S/probe.out")
	rec "$tag: backmxctl flush answers" "$(calc 3 "$tf - $t0")" s
	rec "$tag: fresh sessions during the flush, max" "$(echo "$probe" | sed -n 's/.*max_ms=\([0-9.a-z]*\).*/\1/p')" ms
	[[ "$probe" == ok=$NPROBE* ]] || note "$tag: fresh sessions during the flush: $probe $(tail -1 "$S/probe.out")"
	if [ "$seen" -eq 0 ]; then
		note "$tag: no delivery within the time limit"
		RATE_CMD=0 RATE_STEADY=0
		sink_stop
		return
	fi
	[ "$seen" -ge "$n" ] || note "$tag: only $seen of $n delivered"
	RATE_CMD=$(calc 0 "$seen / ($nth - $t0)")
	RATE_STEADY=$(calc 0 "($seen - 1) / max($nth - $first, 0.001)")
	rec "$tag: flush command to first delivery" "$(calc 3 "$first - $t0")" s
	rec "$tag: first $n deliveries, rate from the flush command" "$RATE_CMD" msg/s
	rec "$tag: first $n deliveries, rate from the first delivery" "$RATE_STEADY" msg/s
	sink_stop
}

echo "backmx scale runs: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, spool fs: $(df -h "$S" | awk 'NR==2 {print $1" "$2}'), RLIMIT_NOFILE $(ulimit -n), $ROUNDS rounds"
T_ALL=$(now)

if [[ " $PARTS " == *" spool "* ]]; then
	say "building bulk_load ..."
	gcc -std=gnu11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Wno-unused-parameter \
		-I"$ROOT/spool" -o "$BUILD/bulk_load" "$ROOT/tests/bench/bulk_load.c" \
		$(ls "$ROOT"/spool/*.c) -ldb-5.3
fi

for round in $(seq 1 "$ROUNDS"); do
	say "round $round/$ROUNDS"

	# -------------------------------------------------- 1. sessions
	if [[ " $PARTS " == *" sessions "* ]]; then
		say "$NSESS idle sessions ..."
		rm -rf "$S/spool" "$S/held" "$S/held.dropped"
		bx_start; bx_ready
		sleep 0.5
		before=$(pss_kib "$BXPID")
		$PY "$ROOT/tests/bench/hold_sessions.py" 127.0.0.1 $PORT "$NSESS" "$S/held" & HOLDPID=$!
		while [ ! -f "$S/held" ] && kill -0 "$HOLDPID" 2>/dev/null; do sleep 0.2; done
		[ -f "$S/held" ] || { echo "scale: hold_sessions.py failed" >&2; exit 1; }
		read -r held failed ramp <"$S/held"
		sleep 2
		after=$(pss_kib "$BXPID")
		fds=$(ls "/proc/$BXPID/fd" | wc -l)
		probe=$($PY "$ROOT/tests/bench/session_latency.py" 127.0.0.1 $PORT $NPROBE 2>&1 | head -1) || true
		dropped=$(cat "$S/held.dropped" 2>/dev/null || echo 0)
		kill "$HOLDPID"; wait "$HOLDPID" 2>/dev/null || true; HOLDPID=""
		rec "sessions held (banner + EHLO)" "$held" ""
		rec "sessions that failed to open" "$failed" ""
		rec "time to open them all" "$ramp" s
		rec "held sessions the server closed meanwhile" "$dropped" ""
		rec "backmxd descriptors while held" "$fds" ""
		rec "backmxd PSS, no session" "$before" KiB
		rec "backmxd PSS, sessions held" "$after" KiB
		rec "backmxd PSS per held session" "$(calc 2 "($after - $before) / max($held, 1)")" KiB
		rec "$NPROBE fresh sessions while held: median" "$(echo "$probe" | sed -n 's/.*median_ms=\([0-9.a-z]*\).*/\1/p')" ms
		rec "$NPROBE fresh sessions while held: max (target 100)" "$(echo "$probe" | sed -n 's/.*max_ms=\([0-9.a-z]*\).*/\1/p')" ms
		[[ "$probe" == ok=$NPROBE* ]] || note "fresh sessions while held: $probe"
		bx_stop
	fi

	# -------------------------------------------------- 2. spool
	if [[ " $PARTS " == *" spool "* ]]; then
		say "flush of $NSMALL queued ..."
		load "$NSMALL"
		bx_start; bx_ready
		flush_rate "$NFLUSH" "small spool"
		SMALL_CMD=$RATE_CMD SMALL_STEADY=$RATE_STEADY
		bx_stop

		say "loading $NMSG ..."
		load "$NMSG"
		rec "bulk_load of $NMSG x $MSGSIZE B" "$LOAD_S" s
		[ "$round" -eq 1 ] && note "spool of $NMSG messages on disk: $(du -sh "$S/spool" | cut -f1)"

		evict "$S"/spool/*
		restart "cold"
		if [ "$round" -eq 1 ]; then
			rec "backmxd PSS with $NMSG queued" "$(pss_kib "$BXPID")" KiB
		fi
		t0=$(now)
		n=$("${CTL[@]}" queue --json | wc -l)
		rec "backmxctl queue --json | wc -l" "$(calc 2 "$(now) - $t0")" s
		[ "$n" -eq "$NMSG" ] || note "queue --json listed $n lines, not $NMSG"
		t0=$(now)
		"${CTL[@]}" stats >/dev/null
		rec "backmxctl stats" "$(calc 2 "$(now) - $t0")" s
		t0=$(now)
		bx_stop
		rec "backmxd stop (SIGTERM to exit), nothing in flight" "$(calc 2 "$(now) - $t0")" s
		restart "warm"

		say "flush with $NMSG queued ..."
		flush_rate "$NFLUSH" "large spool"
		rec "flush rate large/small, from the flush command (target 80)" "$(calc 0 "100.0 * $RATE_CMD / max($SMALL_CMD, 1)")" %
		rec "flush rate large/small, from the first delivery" "$(calc 0 "100.0 * $RATE_STEADY / max($SMALL_STEADY, 1)")" %
		sink_start
		read -r et ereply < <(etrn $PORT $DOMAIN)
		rec "ETRN $DOMAIN reply time (spool still ~$NMSG)" "$et" s
		[[ "$ereply" == 250* ]] || note "ETRN reply: $ereply"
		[ "$round" -eq 1 ] && note "round 1 ETRN: $(grep 'ETRN .*flush n=' "$S/bx.log" | tail -1 | sed 's/.*\(flush n=[0-9]*\).*/\1/') pending messages made due"
		t0=$(now)
		bx_stop
		sink_stop
		rec "backmxd stop during deliveries" "$(calc 2 "$(now) - $t0")" s
	fi
	# the machine's other load: these figures are CPU-bound on 2 cores
	rec "load average (1 min) at the end of the round" "$(cut -d' ' -f1 /proc/loadavg)" ""
done
if [[ " $PARTS " == *" spool "* ]]; then
	grep "started" "$S/bx.log" | tail -1 | sed 's/^/scale: log: /' >&2
fi

echo
echo "scale results, $ROUNDS rounds, median [min-max] (total $(calc 0 "$(now) - $T_ALL") s):"
for row in "${ROWS[@]}"; do
	$PY - "$row" "${UNIT[$row]}" ${VAL[$row]} <<'EOF'
import statistics, sys
row, unit, vals = sys.argv[1], sys.argv[2], sys.argv[3:]
try:
    v = [float(x) for x in vals]
    m = statistics.median(v)
    digits = 0 if all(x == int(x) for x in v) and m == int(m) else (1 if m >= 100 else 3 if m < 10 else 2)
    f = lambda x: ('%.' + str(digits) + 'f') % x
    text = f(m) if len(v) == 1 or min(v) == max(v) else '%s [%s-%s]' % (f(m), f(min(v)), f(max(v)))
except ValueError:
    text = ' '.join(vals)
print('  %-64s %s %s' % (row, text, unit))
EOF
done
for n in "${NOTES[@]+"${NOTES[@]}"}"; do echo "  note: $n"; done
