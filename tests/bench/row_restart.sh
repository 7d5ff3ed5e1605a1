# tests/bench/row_restart.sh - restart with a big queue (sourced by run.sh).
#
# A spool of RESTART_MSGS (default 1 000 000) queued messages, not due
# (bulk_load: 1 KB bodies, one pending recipient, next attempt in 24 h),
# plus RESTART_DUE (10) due ones added before every start.  Each round:
#   warm page cache: start backmxd, time the first 220 banner and the
#     first due delivery (smtp-sink primary), then the daemon's own
#     "queue loaded ... in S s" (the schedule from next.db, after the
#     banner); then SIGTERM
#   cold: the spool's files evicted from the page cache
#     (POSIX_FADV_DONTNEED), start, the banner again
# Rows (seconds, lower is better), backmx only: Postfix's master answers
# without reading its queue, and a Postfix queue of a million files is a
# different benchmark (noted).
#   restart_banner_warm_s, restart_first_due_warm_s,
#   restart_schedule_loaded_s, restart_banner_cold_s, restart_banner_empty_s
#   (the same start on an empty spool), and the daemon's CPU seconds
#   (user+sys) to the banner and to the end of the load, which the
#   machine's other load does not inflate as it does wall-clock figures
# The spool is built once (bulk_load, ~15-60 s for 1 M on 2 cores,
# ~1.4 GB under $B) and removed at the end.
RS=$B/restart
RS_MSGS=${RESTART_MSGS:-1000000}
RS_DUE=${RESTART_DUE:-10}

# rs_banner T0 - seconds from T0 (epoch) to a 220 read on BX_PORT
rs_banner() {
	$PY - "$BX_PORT" "$1" <<'EOF'
import socket, sys, time
port, t0 = int(sys.argv[1]), float(sys.argv[2])
while time.time() - t0 < 300:
    try:
        s = socket.create_connection(('127.0.0.1', port), timeout=60)
    except OSError:
        time.sleep(0.01)
        continue
    try:
        b = s.recv(512)
    except OSError:
        b = b''
    s.close()
    if b.startswith(b'220'):
        print('%.3f' % (time.time() - t0))
        sys.exit(0)
    time.sleep(0.01)
print('timeout')
sys.exit(1)
EOF
}

rs_evict() {
	$PY - "$RS"/spool/* <<'EOF'
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

# rs_start - backmxd on the big spool, in the background; sets RS_T0
rs_start() {
	rm -f "$B/bx.pid"
	RS_T0=$(now)
	"$BUILD/backmxd" -f -c "${1:-$BX/restart.conf}" 2>>"$RS/log" &
	RS_PID=$!
}

# rs_wait_pid - the pidfile of the daemon just started (after rs_banner)
rs_wait_pid() { for _ in $(seq 1 300); do [ -s "$B/bx.pid" ] && return 0; sleep 0.1; done; return 1; }

bench_row_setup() {
	mkdir -p "$RS"
	echo "  restart: building bulk_load, loading $RS_MSGS messages ..." >&2
	gcc -std=gnu11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Wno-unused-parameter \
		-I"$ROOT/spool" -o "$BUILD/bulk_load" "$ROOT/tests/bench/bulk_load.c" \
		$(ls "$ROOT"/spool/*.c) -ldb-5.3
	rm -rf "$RS/spool"
	local t0
	t0=$(now)
	"$BUILD/bulk_load" "$RS/spool" "$RS_MSGS" 1024 "$DOMAIN" 86400 >"$RS/load.out"
	note "restart: bulk_load of $RS_MSGS x 1 KB: $(echo "$(now) - $t0" | bc -l | cut -c1-6) s, $(du -sh "$RS/spool" | cut -f1) on disk, load $(cut -d' ' -f1-3 /proc/loadavg)"
	sed -e "s|^spool .*|spool $RS/spool|" "$BX/backmx.conf" >"$BX/restart.conf"
}

bench_row() {
	local tb td tl c0 line
	# RS_DUE due messages (next attempt a minute ago), then a warm start
	"$BUILD/bulk_load" "$RS/spool" "$RS_DUE" 1024 "$DOMAIN" -60 >/dev/null 2>&1
	cat "$RS"/spool/*.db >/dev/null
	sink_stop; sink_start
	c0=$(sink_count)
	: >"$RS/log"
	rs_start
	tb=$(rs_banner "$RS_T0")
	record restart_cpu_to_banner_s backmx "$(cpu_of "$RS_PID")"
	until [ "$(sink_count)" -gt "$c0" ]; do sleep 0.005; done
	td=$(echo "$(now) - $RS_T0" | bc -l)
	rs_wait_pid
	for _ in $(seq 1 600); do grep -q 'queue loaded' "$RS/log" && break; sleep 0.1; done
	line=$(grep 'queue loaded' "$RS/log" | tail -1)
	tl=$(echo "$line" | sed -n 's/.* in \([0-9.]*\) s .*/\1/p')
	record restart_cpu_to_loaded_s backmx "$(cpu_of "$RS_PID")"
	record restart_banner_warm_s backmx "$tb"
	record restart_first_due_warm_s backmx "$td"
	[ -n "$tl" ] && record restart_schedule_loaded_s backmx "$tl"
	[ "$1" -eq 1 ] && note "restart: $(echo "$line" | sed 's/.*: queue loaded/queue loaded/'); $(grep -o 'started: .*' "$RS/log" | tail -1)"
	wait_sink "$((c0 + RS_DUE))" || true
	bx_stop
	sink_stop

	# cold: the spool's files out of the page cache
	rs_evict
	rs_start
	tb=$(rs_banner "$RS_T0")
	record restart_banner_cold_s backmx "$tb"
	rs_wait_pid
	for _ in $(seq 1 600); do grep -q 'queue loaded' "$RS/log" && break; sleep 0.1; done
	bx_stop

	# the same start with an empty spool: what the queue adds
	rm -rf "$RS/empty"
	sed -e "s|^spool .*|spool $RS/empty|" "$BX/restart.conf" >"$BX/restart-empty.conf"
	rs_start "$BX/restart-empty.conf"
	record restart_banner_empty_s backmx "$(rs_banner "$RS_T0")"
	record restart_cpu_to_banner_empty_s backmx "$(cpu_of "$RS_PID")"
	bx_stop
	note "restart round $1: load $(cut -d' ' -f1-3 /proc/loadavg)"
}

bench_row_teardown() {
	bx_stop
	[ -n "${KEEP_RESTART_SPOOL:-}" ] || rm -rf "$RS/spool"
	note "restart: no Postfix counterpart (its master greets without reading the queue; a million queue files is another benchmark)"
}
