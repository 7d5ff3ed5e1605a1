# tests/bench/row_milter.sh - accepting through the real rspamd milter
# (sourced by run.sh; see "Row files" there).
#
# One rspamd (Debian's stock config with tests/integration/rspamd/ as
# local.d: the proxy worker in milter mode on 127.0.0.7:11332, self_scan,
# no redis) serves both servers.  Each round: backmx with
# "milter inet:127.0.0.7:11332", then Postfix with smtpd_milters set to
# the same socket, each taking the accept row's load (10 sessions, one
# 4 KB message a connection, primary down), so the rate is what a
# milter-checked backup accepts:
#   accept_milter_s10   msg/s through rspamd, backmx vs Postfix (ratio)
# A run where a server queued fewer messages than were sent (rspamd
# tempfailed or rejected some) is noted under the summary.
MILTER_ADDR=127.0.0.7
MILTER_PORT=11332
RSPAMD_DIR=$B/rspamd

milter_wait() {
	for _ in $(seq 1 2400); do
		(exec 3<>"/dev/tcp/$MILTER_ADDR/$MILTER_PORT") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "rspamd did not open $MILTER_ADDR:$MILTER_PORT" >&2
	return 1
}

bench_row_setup() {
	command -v rspamd >/dev/null || { echo "rspamd not installed (contrib/install-deps test)" >&2; return 1; }
	rm -rf "$RSPAMD_DIR"; mkdir -p "$RSPAMD_DIR/local.d" "$RSPAMD_DIR/db"
	for f in "$ROOT"/tests/integration/rspamd/*; do
		[ "$(basename "$f")" = README ] || cp "$f" "$RSPAMD_DIR/local.d/"
	done
	(cd "$RSPAMD_DIR" && exec setsid rspamd -f -u root -g root -i \
		-c /etc/rspamd/rspamd.conf --var=LOCAL_CONFDIR="$RSPAMD_DIR" \
		--var=DBDIR="$RSPAMD_DIR/db" --var=RUNDIR="$RSPAMD_DIR" \
		--var=LOGDIR="$RSPAMD_DIR" >/dev/null 2>&1) &
	echo $! >"$RSPAMD_DIR/bench.pid"
	milter_wait
	{ cat "$B/backmx.conf.orig"; echo "milter inet:$MILTER_ADDR:$MILTER_PORT"
	  echo "milter_timeout 30s"; } >"$BX/milter.conf"
	postconf -c "$PF/etc" -e "smtpd_milters = inet:$MILTER_ADDR:$MILTER_PORT" \
		"milter_default_action = tempfail" "milter_protocol = 6"
}

bench_row_teardown() {
	local pid
	pid=$(cat "$RSPAMD_DIR/bench.pid" 2>/dev/null) || return 0
	# setsid made the rspamd master a group leader: it and its workers
	kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
	rm -f "$RSPAMD_DIR/bench.pid"
}

milter_source() {
	smtp-source -s 10 -m "$NMSG" -l 4096 -f bench@sender.example \
		-t user@$DOMAIN -M client.example "127.0.0.1:$1"
}

bench_row() {
	local t0 t1 q
	bx_clean; bx_start "$BX/milter.conf"
	t0=$(now); milter_source $BX_PORT; t1=$(now)
	record accept_milter_s10 backmx "$(echo "$NMSG / ($t1 - $t0)" | bc -l)"
	q=$(bx_queue_count)
	[ "$q" -ge "$NMSG" ] || note "row_milter round $1: backmx queued $q of $NMSG"
	bx_stop

	pf_clean; pf_start
	t0=$(now); milter_source $PF_PORT; t1=$(now)
	record accept_milter_s10 postfix "$(echo "$NMSG / ($t1 - $t0)" | bc -l)"
	sleep 1
	q=$(pf_queue_count)
	[ "$q" -ge "$NMSG" ] || note "row_milter round $1: postfix queued $q of $NMSG"
	pf_stop
}
