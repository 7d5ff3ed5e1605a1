# tests/bench/row_ceiling.sh - the client-bound ceiling (sourced by run.sh).
#
# smtp-source against smtp-sink with the load of the accept row (10
# sessions, one 4 KB message a connection): smtp-sink stores nothing, so
# nothing on this machine can accept faster from this client.  Each round
# runs sink, backmx, Postfix one after the other and records each
# server's accept rate as a percentage of the sink's rate in that round:
#   ceiling_sink_s10     smtp-sink's rate (msg/s), in the backmx column
#   pct_of_ceiling_s10   backmx / sink and Postfix / sink, in percent
CEIL_PORT=2627

ceil_source() {
	smtp-source -s 10 -m "$NMSG" -l 4096 -f bench@sender.example \
		-t user@$DOMAIN -M client.example "127.0.0.1:$1"
}

bench_row() {
	local t0 t1 sink bx pf pid
	smtp-sink -u postfix -c 127.0.0.1:$CEIL_PORT 1000 >"$B/ceil.out" 2>&1 &
	pid=$!
	wait_port $CEIL_PORT
	t0=$(now); ceil_source $CEIL_PORT; t1=$(now)
	kill $pid; wait $pid 2>/dev/null || true
	sink=$(echo "$NMSG / ($t1 - $t0)" | bc -l)

	bx_clean; bx_start
	t0=$(now); ceil_source $BX_PORT; t1=$(now)
	bx=$(echo "$NMSG / ($t1 - $t0)" | bc -l)
	bx_stop

	pf_clean; pf_start
	t0=$(now); ceil_source $PF_PORT; t1=$(now)
	pf=$(echo "$NMSG / ($t1 - $t0)" | bc -l)
	pf_stop

	record ceiling_sink_s10 backmx "$sink"
	record pct_of_ceiling_s10 backmx "$(echo "100 * $bx / $sink" | bc -l)"
	record pct_of_ceiling_s10 postfix "$(echo "100 * $pf / $sink" | bc -l)"
}
