#!/usr/bin/env bash
# tests/bench/run.sh - backmx side by side with Postfix as a backup MX.
#
# usage: tests/bench/run.sh BUILD [--quick|--full] [--rounds N] [--only NAME,...]
#        tests/bench/run.sh BUILD --versus OLD_BUILD [--quick|--full] [--rounds N]
#        tests/bench/run.sh BUILD --scale
#
# --only NAME,... runs only those rows: "core" (the built-in rows below)
# and/or the NAME of row files tests/bench/row_NAME.sh (see "Row files").
#
# --versus OLD_BUILD compares two builds of backmx instead of backmx and
# Postfix: the accept (10 sessions), flush and end-to-end rows only, the
# builds alternately (BUILD, OLD_BUILD, BUILD, ...) in each round, with
# the ratio BUILD/OLD_BUILD ("backmx" and "old" columns); no row files.
# OLD_BUILD is the build directory of another checkout (e.g. a scratch
# git worktree of an older commit); its backmxd and backmxctl are used.
#
# --scale runs only the scale runs (tests/bench/scale.sh, no Postfix rows):
# 10 000 idle sessions held (memory, latency of fresh sessions) and a spool
# of 1 000 000 queued messages (restart time, queue listing, flush rate
# against a small spool); 3 rounds (SCALE_ROUNDS) take 3-4 minutes and
# ~1.5 GB under /var/tmp; RLIMIT_NOFILE must be raisable to 11 024.
#
# Sets up, on loopback, a private Postfix 3.7 instance configured as a
# backup MX (relay_domains, relay_recipient_maps of 100 000 users,
# transport_maps to a local smtp-sink primary, no chroot, stock fsync
# behaviour) and backmx with the same domain, recipients and primary, both
# spooling on the same filesystem.  Each row runs alternately A B A B for
# N rounds and prints medians, min-max and the backmx/Postfix ratio.
# This is a benchmark: nothing here passes or fails on timing.
#
# Row files: every tests/bench/row_NAME.sh adds rows.  After the built-in
# rows, run.sh runs each file in its own subshell, after sourcing it, as
#     bench_row_setup            (optional, once)
#     bench_row ROUND ROUNDS     (once per round, ROUND = 1..ROUNDS)
#     bench_row_teardown         (optional, once, also on failure)
# Everything of run.sh is visible to it: $BUILD $ROOT $B $PF $BX $MODE $NMSG
# $PF_PORT $BX_PORT $SINK_PORT $DOMAIN, pf_start/pf_stop/pf_clean,
# bx_start [CONF]/bx_stop/bx_clean, sink_start/sink_stop/wait_sink/sink_count,
# wait_port, now, cpu_of, pf_pids, pss_kib, run_accept.  A figure is kept with
#     record ROW SYS VALUE      (SYS: backmx or postfix; one call per round)
# and shows in the summary under ROW, in the order rows were first
# recorded, with the backmx/Postfix ratio.  Rows whose name starts with
# idle, cpu, fsync, restart or lat, or ends in _ms, _s or _kib are "lower
# is better" (the ratio is then postfix/backmx).  A row file may also
#     note "TEXT"               (printed under the summary)
# Files it changes are put back after it: $PF/etc/main.cf, master.cf and
# $BX/backmx.conf are restored, Postfix and backmx stopped.  Write your own
# backmx config (e.g. "$BX/NAME.conf" from backmx.conf plus lines) and
# start it with bx_start "$BX/NAME.conf"; change Postfix with
# postconf -c "$PF/etc" -e 'x = y' (then pf_stop; pf_start).  A failing
# row file prints a warning and the other rows go on.
set -euo pipefail

BUILD=${1:-build}
shift || true
MODE=quick
ROUNDS=3
ONLY=""
OLD=""
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) MODE=quick ;;
	--full) MODE=full ;;
	--scale) MODE=scale ;;
	--rounds) ROUNDS=$2; shift ;;
	--only) ONLY=",$2,"; shift ;;
	--versus) OLD=$(cd "$2" && pwd); shift ;;
	*) echo "usage: $0 BUILD [--quick|--full] [--rounds N] [--only NAME,...] [--versus OLD_BUILD] | --scale" >&2; exit 2 ;;
	esac
	shift
done

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "$ROOT" && cd "$BUILD" && pwd)
[ "$MODE" = scale ] && exec bash "$ROOT/tests/bench/scale.sh" "$BUILD"
PY=/usr/bin/python3
B=${BENCH_DIR:-/var/tmp/backmx-bench}
if [ "$MODE" = full ]; then
	NMSG=5000; SESSIONS="1 10 50"; NFLUSH=5000; NIDLE=200
else
	NMSG=1000; SESSIONS="10"; NFLUSH=1000; NIDLE=200
fi
PF_PORT=2625 BX_PORT=2635 SINK_PORT=2626
DOMAIN=bench.example

command -v smtp-source >/dev/null || PATH=$PATH:/usr/sbin
[ -x /usr/sbin/postfix ] || { echo "postfix not installed (make bench installs it: contrib/install-deps bench)" >&2; exit 1; }

rm -rf "$B"; mkdir -p "$B"
cleanup() {
	set +e
	/usr/sbin/postfix -c "$B/pf/etc" stop >/dev/null 2>&1
	[ -f "$B/bx.pid" ] && kill "$(cat "$B/bx.pid")" 2>/dev/null
	# only processes this run started (their pids kept in $B/*.pid)
	for f in "$B"/sink.pid "$B"/holder.pid "$B"/strace.pid; do
		[ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null
	done
	sleep 0.5
}
trap cleanup EXIT

# ------------------------------------------------------------ recipients
$PY - "$B" "$DOMAIN" <<'EOF'
import sys
d, dom = sys.argv[1], sys.argv[2]
with open(d + '/rcpts', 'w') as r, open(d + '/relay_recipients', 'w') as p:
    r.write('user\n'); p.write('user@%s OK\n' % dom)
    for i in range(100000):
        r.write('%duser\n' % i); p.write('%duser@%s OK\n' % (i, dom))
EOF

# ------------------------------------------------------------ Postfix
PF=$B/pf
mkdir -p "$PF/etc" "$PF/queue" "$PF/data"
cp /etc/postfix/master.cf "$PF/etc/master.cf" 2>/dev/null || cp /usr/share/postfix/master.cf.dist "$PF/etc/master.cf"
# no chroot, our own port
$PY - "$PF/etc/master.cf" "$PF_PORT" <<'EOF'
import sys, re
path, port = sys.argv[1], sys.argv[2]
out = []
for line in open(path):
    f = line.split()
    if line[0:1] not in ('#', ' ', '\t', '\n') and len(f) >= 8:
        if f[0] == 'smtp' and f[1] == 'inet':
            f[0] = '127.0.0.1:' + port
        f[4] = 'n'
        line = '%-10s %-5s %-7s %-7s %-7s %-7s %-7s %s\n' % (f[0], f[1], f[2], f[3], f[4], f[5], f[6], ' '.join(f[7:]))
    out.append(line)
open(path, 'w').write(''.join(out))
EOF
cat > "$PF/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/queue
data_directory = $PF/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx2.$DOMAIN
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = $DOMAIN
relay_recipient_maps = hash:$PF/etc/relay_recipients
transport_maps = hash:$PF/etc/transport
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions =
maillog_file = $PF/maillog
default_process_limit = 250
smtp_destination_concurrency_limit = 20
smtp_skip_5xx_greeting = no
local_recipient_maps =
alias_maps =
alias_database =
biff = no
EOF
echo "$DOMAIN smtp:[127.0.0.1]:$SINK_PORT" > "$PF/etc/transport"
mv "$B/relay_recipients" "$PF/etc/relay_recipients"
chown -R postfix "$PF/data"
postmap -c "$PF/etc" "$PF/etc/transport" "$PF/etc/relay_recipients"
postfix -c "$PF/etc" set-permissions >/dev/null 2>&1 || true
postfix -c "$PF/etc" check >/dev/null 2>&1 || true

# ------------------------------------------------------------ backmx
BX=$B/bx
mkdir -p "$BX"
cat > "$BX/backmx.conf" <<EOF
hostname mx2.$DOMAIN
listen 127.0.0.1:$BX_PORT
spool $BX/spool
control $BX/control.sock
pidfile $B/bx.pid
max_clients 2000
max_clients_per_ip 2000
retry 1h
${BX_WORKERS:+workers $BX_WORKERS}
domain $DOMAIN {
    recipients $B/rcpts
    route [127.0.0.1]:$SINK_PORT
}
EOF

pf_start() { /usr/sbin/postfix -c "$PF/etc" start >/dev/null 2>&1; wait_port $PF_PORT; }
pf_stop() { /usr/sbin/postfix -c "$PF/etc" stop >/dev/null 2>&1 || true; sleep 1; }
pf_clean() { pf_stop; /usr/sbin/postsuper -c "$PF/etc" -d ALL >/dev/null 2>&1 || true; }
pf_queue_empty() { [ -z "$(find "$PF/queue/incoming" "$PF/queue/active" "$PF/queue/deferred" "$PF/queue/maildrop" -type f 2>/dev/null | head -1)" ]; }
pf_queue_count() { find "$PF/queue/incoming" "$PF/queue/active" "$PF/queue/deferred" "$PF/queue/maildrop" -type f 2>/dev/null | wc -l; }
# BXB: the build whose backmxd/backmxctl the bx_* functions run ($BUILD;
# with --versus, $OLD while the "old" system runs)
BXB=$BUILD
bx_start() { local conf=${1:-${BX_CONF:-$BX/backmx.conf}}; "$BXB/backmxd" -f -c "$conf" 2>>"$BX/log" & wait_port $BX_PORT; for _ in $(seq 1 100); do [ -s "$B/bx.pid" ] && break; sleep 0.1; done; bx_wait_workers "$conf"; }
# bx_pids - the daemon's processes: the main one and its accept workers
# (`workers N`: their CPU and memory count, they are not reaped while it runs)
bx_pids() { local m; m=$(cat "$B/bx.pid" 2>/dev/null) || return 0; echo "$m $(pgrep -P "$m" | tr '\n' ' ')"; }
# bx_wait_workers CONF - until the accept workers are forked (the main
# process listens before it forks them): as many as CONF's `workers` asks
# for, and without that line (the default) the same count for 0.3 s
bx_wait_workers() {
	local m want n last=-1 same=0
	m=$(cat "$B/bx.pid" 2>/dev/null) || return 0
	want=$(sed -n 's/^workers[[:space:]]*//p' "$1" | tail -1)
	[ "$want" = auto ] && want=$(nproc)
	for _ in $(seq 1 100); do
		n=$(pgrep -P "$m" | wc -l) || true
		if [ -n "$want" ]; then [ "$want" -le 1 ] || [ "$n" -ge "$want" ] && return 0
		else [ "$n" -eq "$last" ] && same=$((same + 1)) || same=0; [ $same -ge 3 ] && return 0; fi
		last=$n; sleep 0.1
	done
}
bx_stop() { [ -f "$B/bx.pid" ] && kill "$(cat "$B/bx.pid")" 2>/dev/null; sleep 0.3; while [ -f "$B/bx.pid" ] && kill -0 "$(cat "$B/bx.pid")" 2>/dev/null; do sleep 0.1; done; rm -f "$B/bx.pid"; }
bx_clean() { bx_stop; rm -rf "$BX/spool"; }
bx_queue_count() { "$BXB/backmxctl" -s "$BX/control.sock" queue --json 2>/dev/null | wc -l; }
# sink_start / sink_stop - the primary (smtp-sink; a row file may start
# its own sink instead: it writes the pid to $B/sink.pid, the counter to
# $B/sink.out, and sink_stop ends it)
sink_start() { smtp-sink -u postfix -c 127.0.0.1:$SINK_PORT 1000 >"$B/sink.out" 2>&1 & echo $! >"$B/sink.pid"; wait_port $SINK_PORT; }
# sink_count - messages the sink received so far (its -c counters)
sink_count() { local v; v=$(tail -c 80 "$B/sink.out" 2>/dev/null | tr '\r' '\n' | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1); echo "${v:-0}"; }
# wait_sink N - until the sink has N messages (polled every 10 ms, cheap
# for both systems: no queue listing that would load the server)
wait_sink() { local n=$1 i=0; until [ "$(sink_count)" -ge "$n" ]; do sleep 0.01; i=$((i + 1)); [ $i -lt 60000 ] || { echo "sink got $(sink_count) of $n" >&2; return 1; }; done; }
sink_stop() {
	local pid
	[ -s "$B/sink.pid" ] || return 0
	pid=$(cat "$B/sink.pid"); rm -f "$B/sink.pid"
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
}
wait_port() {
	for _ in $(seq 1 100); do
		(exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0
		sleep 0.1
	done
	echo "port $1 did not open" >&2; return 1
}
now() { date +%s.%N; }
# cpu_of PID... - user+sys seconds of processes and their reaped children
cpu_of() { $PY - "$@" <<'EOF'
import os, sys
hz = os.sysconf('SC_CLK_TCK'); t = 0
for pid in sys.argv[1:]:
    try:
        f = open('/proc/%s/stat' % pid).read().rsplit(')', 1)[1].split()
        t += sum(int(x) for x in f[11:15])
    except OSError:
        pass
print('%.3f' % (t / hz))
EOF
}
pf_pids() { pgrep -f "$PF/etc" | tr '\n' ' '; local m; m=$(head -1 "$PF/queue/pid/master.pid" 2>/dev/null | tr -d ' '); [ -n "$m" ] && pgrep -P "$m" | tr '\n' ' '; echo "$m"; }

# every recorded figure, one "ROW SYS VALUE" line (row files run in
# subshells, so the summary is built from this file)
RESULTS=$B/results
: >"$RESULTS"
: >"$B/notes"
record() { echo "$1 $2 $3" >>"$RESULTS"; }
note() { echo "$*" >>"$B/notes"; }
wants() { [ -z "$ONLY" ] || [[ "$ONLY" == *",$1,"* ]]; }

# accept ROW SYS SESSIONS RCPTS N: smtp-source, primary down
run_accept() {
	local row=$1 sys=$2 s=$3 r=$4 n=$5 port t0 t1 c0 c1 pids
	if [ "$sys" = postfix ]; then pf_clean; pf_start; port=$PF_PORT; pids=$(pf_pids)
	else bx_clean; bx_start; port=$BX_PORT; pids=$(bx_pids); fi
	[ "$sys" = postfix ] && c0=$(cpu_of $(pf_pids)) || c0=$(cpu_of $pids)
	t0=$(now)
	smtp-source -s "$s" -m "$n" -l 4096 -r "$r" -f bench@sender.example \
		-t user@$DOMAIN -M client.example 127.0.0.1:$port
	t1=$(now)
	[ "$sys" = postfix ] && c1=$(cpu_of $(pf_pids)) || c1=$(cpu_of $pids)
	record "$row" "$sys" "$(echo "$n / ($t1 - $t0)" | bc -l)"
	local cpurow=cpu_ms_per_msg
	[ "$row" = accept_s10 ] || cpurow=cpu_ms_per_msg_${row#accept_}
	record "$cpurow" "$sys" "$(echo "($c1 - $c0) * 1000 / $n" | bc -l)"
	local q; if [ "$sys" = postfix ]; then q=$(pf_queue_count); else q=$(bx_queue_count); fi
	[ "$q" -ge "$n" ] || echo "warning: $sys queued $q of $n" >&2
}

# flush: queue N with primary down, then flush with primary up until empty
run_flush() {
	local sys=$1 n=$2 t0 t1 c0 c1
	sink_stop
	if [ "$sys" = postfix ]; then pf_clean; pf_start
		smtp-source -s 10 -m "$n" -l 4096 -f bench@sender.example -t user@$DOMAIN -M client.example 127.0.0.1:$PF_PORT
		sleep 2; sink_start; c0=$(cpu_of $(pf_pids)); t0=$(now); postqueue -c "$PF/etc" -f
		wait_sink "$n"; until pf_queue_empty; do sleep 0.01; done
		t1=$(now); c1=$(cpu_of $(pf_pids))
	else bx_clean; bx_start
		smtp-source -s 10 -m "$n" -l 4096 -f bench@sender.example -t user@$DOMAIN -M client.example 127.0.0.1:$BX_PORT
		sleep 2; sink_start; c0=$(cpu_of $(bx_pids)); t0=$(now); "$BXB/backmxctl" -s "$BX/control.sock" flush >/dev/null
		wait_sink "$n"; until [ "$(bx_queue_count)" -eq 0 ]; do sleep 0.01; done
		t1=$(now); c1=$(cpu_of $(bx_pids))
	fi
	record "flush" "$sys" "$(echo "$n / ($t1 - $t0)" | bc -l)"
	record "cpu_ms_per_msg_flush" "$sys" "$(echo "($c1 - $c0) * 1000 / $n" | bc -l)"
	sink_stop
}

# end to end: primary up, 10 sessions, until the queue is empty
# run_e2e SYS N [ROW]: ROW (default end_to_end) names the figure
run_e2e() {
	local sys=$1 n=$2 row=${3:-end_to_end} t0 t1 c0 c1
	sink_start
	if [ "$sys" = postfix ]; then pf_clean; pf_start; c0=$(cpu_of $(pf_pids)); t0=$(now)
		smtp-source -s 10 -m "$n" -l 4096 -f bench@sender.example -t user@$DOMAIN -M client.example 127.0.0.1:$PF_PORT
		wait_sink "$n"; until pf_queue_empty; do sleep 0.01; done
		t1=$(now); c1=$(cpu_of $(pf_pids))
	else bx_clean; bx_start; c0=$(cpu_of $(bx_pids)); t0=$(now)
		smtp-source -s 10 -m "$n" -l 4096 -f bench@sender.example -t user@$DOMAIN -M client.example 127.0.0.1:$BX_PORT
		wait_sink "$n"; until [ "$(bx_queue_count)" -eq 0 ]; do sleep 0.01; done
		t1=$(now); c1=$(cpu_of $(bx_pids))
	fi
	record "$row" "$sys" "$(echo "$n / ($t1 - $t0)" | bc -l)"
	record "cpu_ms_per_msg_${row/end_to_end/e2e}" "$sys" "$(echo "($c1 - $c0) * 1000 / $n" | bc -l)"
	sink_stop
}

pss_kib() { $PY - "$@" <<'EOF'
import sys
t = 0
for pid in sys.argv[1:]:
    try:
        for l in open('/proc/%s/smaps_rollup' % pid):
            if l.startswith('Pss:'):
                t += int(l.split()[1])
    except OSError:
        pass
print(t)
EOF
}

# idle: N sessions held after banner + EHLO; PSS growth per session
run_idle() {
	local sys=$1 n=$2 port before after holder
	if [ "$sys" = postfix ]; then pf_clean; pf_start; port=$PF_PORT; sleep 0.5; before=$(pss_kib $(pf_pids))
	else bx_clean; bx_start; port=$BX_PORT; sleep 0.5; before=$(pss_kib $(bx_pids)); fi
	$PY "$ROOT/tests/bench/hold_sessions.py" 127.0.0.1 "$port" "$n" "$B/held" &
	holder=$!; echo $holder >"$B/holder.pid"
	for _ in $(seq 1 300); do [ -f "$B/held" ] && break; sleep 0.1; done
	sleep 1
	if [ "$sys" = postfix ]; then after=$(pss_kib $(pf_pids)); else after=$(pss_kib $(bx_pids)); fi
	kill $holder 2>/dev/null || true; wait $holder 2>/dev/null || true; rm -f "$B/held" "$B/holder.pid"
	record "idle_kib_per_session" "$sys" "$(echo "($after - $before) / $n" | bc -l)"
}

# fsyncs per message on a small run (strace counts)
run_fsync() {
	local sys=$1 n=200 out=$B/strace.$sys
	if [ "$sys" = postfix ]; then pf_clean; pf_start
		strace -f -qq -c -e trace=fsync,fdatasync,sync_file_range -o "$out" -p "$(head -1 "$PF/queue/pid/master.pid" | tr -d ' ')" &
		echo $! >"$B/strace.pid"; sleep 1
		smtp-source -s 10 -m $n -l 4096 -f bench@sender.example -t user@$DOMAIN -M client.example 127.0.0.1:$PF_PORT
	else bx_clean; bx_start
		strace -f -qq -c -e trace=fsync,fdatasync,sync_file_range -o "$out" $(for p in $(bx_pids); do echo "-p $p"; done) &
		echo $! >"$B/strace.pid"; sleep 1
		smtp-source -s 10 -m $n -l 4096 -f bench@sender.example -t user@$DOMAIN -M client.example 127.0.0.1:$BX_PORT
	fi
	sleep 1; kill -INT "$(cat "$B/strace.pid")" 2>/dev/null || true; rm -f "$B/strace.pid"; sleep 1
	local calls; calls=$(awk '/total/ {print $3}' "$out" 2>/dev/null); [ -n "$calls" ] || calls=0
	record "fsyncs_per_msg" "$sys" "$(echo "$calls / $n" | bc -l)"
}

echo "backmx bench ($MODE, $ROUNDS rounds, $(nproc) cores, spool fs: $(df -h "$B" | awk 'NR==2 {print $1" "$2}'))"
echo "raw durable writes on $B:"
$PY "$ROOT/tests/bench/fsync_rate.py" "$B" | sed 's/^/  /'

# --versus: the two builds of backmx, alternately, three rows
if [ -n "$OLD" ]; then
	echo "versus: new $BUILD ($(git -C "$BUILD/.." log -1 --format=%h 2>/dev/null || echo '?')), old $OLD ($(git -C "$OLD/.." log -1 --format=%h 2>/dev/null || echo '?'))"
	for round in $(seq 1 "$ROUNDS"); do
		echo "round $round/$ROUNDS ..." >&2
		sink_stop
		for sys in backmx old; do
			if [ $sys = old ]; then BXB=$OLD; else BXB=$BUILD; fi
			run_accept accept_s10 $sys 10 1 $NMSG
		done
		for sys in backmx old; do
			if [ $sys = old ]; then BXB=$OLD; else BXB=$BUILD; fi
			run_flush $sys $NFLUSH
		done
		for sys in backmx old; do
			if [ $sys = old ]; then BXB=$OLD; else BXB=$BUILD; fi
			run_e2e $sys $NMSG
		done
		BXB=$BUILD
	done
	bx_stop; pf_stop
	ONLY=",versus-only,"
fi

wants core && for round in $(seq 1 "$ROUNDS"); do
	echo "round $round/$ROUNDS ..." >&2
	sink_stop
	for s in $SESSIONS; do
		for sys in backmx postfix; do run_accept "accept_s$s" $sys "$s" 1 $NMSG; done
	done
	for sys in backmx postfix; do run_accept "accept_10rcpt" $sys 10 10 $((NMSG / 2)); done
	for sys in backmx postfix; do run_flush $sys $NFLUSH; done
	for sys in backmx postfix; do run_e2e $sys $NMSG; done
	for sys in backmx postfix; do run_idle $sys $NIDLE; done
done
wants core && for sys in backmx postfix; do run_fsync $sys; done
bx_stop; pf_stop

# ------------------------------------------------------------ row files
cp "$PF/etc/main.cf" "$B/main.cf.orig"; cp "$PF/etc/master.cf" "$B/master.cf.orig"
cp "$BX/backmx.conf" "$B/backmx.conf.orig"
for f in "$ROOT"/tests/bench/row_*.sh; do
	[ -e "$f" ] || continue
	name=$(basename "$f" .sh); name=${name#row_}
	wants "$name" || continue
	echo "rows of $name ..." >&2
	rc=0
	(
		set -euo pipefail
		# shellcheck source=/dev/null
		. "$f"
		if declare -F bench_row_teardown >/dev/null; then trap 'bench_row_teardown; cleanup' EXIT; fi
		if declare -F bench_row_setup >/dev/null; then bench_row_setup; fi
		for round in $(seq 1 "$ROUNDS"); do
			echo "  $name round $round/$ROUNDS ..." >&2
			bench_row "$round" "$ROUNDS"
		done
	) || rc=$?
	[ "$rc" -eq 0 ] || echo "warning: tests/bench/row_$name.sh failed (exit $rc); its rows may be missing" >&2
	bx_stop; pf_stop; sink_stop
	cp "$B/main.cf.orig" "$PF/etc/main.cf"; cp "$B/master.cf.orig" "$PF/etc/master.cf"
	cp "$B/backmx.conf.orig" "$BX/backmx.conf"
done

$PY - "$RESULTS" "$B/notes" "${OLD:+old}" <<'EOF'
import sys, statistics
other = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else 'postfix'
rows, order = {}, []
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) != 3:
        continue
    if f[0] not in rows:
        rows[f[0]] = {}
        order.append(f[0])
    try:
        rows[f[0]].setdefault(f[1], []).append(float(f[2]))
    except ValueError:
        pass
def fmt(v):
    if not v:
        return 'n/a'
    f = '%.3f [%.3f-%.3f]' if statistics.median(v) < 10 else '%.1f [%.1f-%.1f]'
    return f % (statistics.median(v), min(v), max(v))
def lower_better(row):
    return row.startswith(('idle', 'cpu', 'fsync', 'restart', 'lat')) or row.endswith(('_ms', '_s', '_kib'))
w = max([24] + [len(r) for r in order])
print('\n%-*s %22s %22s %8s' % (w, 'row (msg/s unless noted)', 'backmx median [min-max]', other + ' median [min-max]', 'ratio'))
for row in order:
    a, b = rows[row].get('backmx', []), rows[row].get(other, [])
    ratio = 'n/a'
    if a and b:
        ma, mb = statistics.median(a), statistics.median(b)
        if mb > 0 and ma > 0:
            ratio = '%.2fx' % ((mb / ma) if lower_better(row) else (ma / mb))
    print('%-*s %22s %22s %8s' % (w, row, fmt(a), fmt(b), ratio))
print('(ratio: how many times better backmx is%s; for idle/cpu/fsync/restart/latency rows lower is better)' % ('' if other == 'postfix' else ' than the old build'))
for line in open(sys.argv[2]):
    print(line.rstrip())
EOF
echo "load: $(uptime)"
