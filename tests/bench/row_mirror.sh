# tests/bench/row_mirror.sh - accepting on a mirrored pair (issue 18)
# (sourced by run.sh; see "Row files" there).
#
# Two backmxd nodes over loopback, each replicating its spool to the
# other through the mutual-TLS peer link (certificates from
# tests/integration/certs.sh, as the integration tests make them: node A
# peera.test.example, node B peerb.test.example, one test CA).  Node A
# is run.sh's backmx (127.0.0.1:$BX_PORT, spool $BX/spool); node B
# listens on 127.0.0.1:$MIRROR_B_PORT with its own spool.  Each round,
# primary down, NMSG x 4 KB messages, 10 sessions, one message a
# connection (smtp-source), always sent to node A; every system starts
# on an empty spool:
#   mirror_single_s10        node A alone, no peer configured (msg/s)
#   mirror_peer_s10          A and B, `peer_ack peer`: every 250 waited
#                            for B's acknowledgement of the commit (msg/s)
#   mirror_local_s10         A and B, `peer_ack local`: 250 on the local
#                            commit, the mirror follows (msg/s)
#   pct_mirror_peer_of_single  mirror_peer_s10 as % of mirror_single_s10
#                            in the same round (goal >= 50)
#   pct_mirror_local_of_single mirror_local_s10 as % of the same
#   mirror_local_maxlag_msgs `peer_ack local`: the most commits B had
#                            not acknowledged (backmxctl peer lag_messages
#                            on A, sampled every 0.1 s during the load)
#   mirror_local_maxlag_ms   ... the largest age of the oldest of them
#                            (lag_seconds, 0.1 s resolution)
#   mirror_local_catchup_ms  from the end of the load until B had
#                            acknowledged everything (lag 0 on A)
# The Postfix column of the three accept rows is Postfix as a single
# backup MX (it has nothing like a mirror), the same load, same round.
# A round where a node queued fewer than NMSG, a gated reply timed out
# (451) or the links did not come up is noted.
MIRROR_B_PORT=2645
MIRROR_PEER_A=2655
MIRROR_PEER_B=2656
MIRROR_DIR=$B/mirror
MB=$MIRROR_DIR/b

bench_row_setup() {
	mkdir -p "$MIRROR_DIR" "$MB"
	sh "$ROOT/tests/integration/certs.sh" "$MIRROR_DIR/certs" >/dev/null
}

# mirror_conf NODE ACK - write $MIRROR_DIR/NODE-ACK.conf
mirror_conf() {
	local node=$1 ack=$2 c=$MIRROR_DIR/certs out=$MIRROR_DIR/$1-$2.conf
	if [ "$node" = a ]; then
		{ cat "$B/backmx.conf.orig"
		  echo "peer peerb.test.example 127.0.0.1:$MIRROR_PEER_B"
		  echo "peer_listen 127.0.0.1:$MIRROR_PEER_A"
		  echo "peer_cert $c/peera.pem"; echo "peer_key $c/peera.key"; } >"$out"
	else
		sed -e "s|^hostname .*|hostname mx2b.$DOMAIN|" \
		    -e "s|^listen .*|listen 127.0.0.1:$MIRROR_B_PORT|" \
		    -e "s|^spool .*|spool $MB/spool|" \
		    -e "s|^control .*|control $MB/control.sock|" \
		    -e "s|^pidfile .*|pidfile $MB/bx.pid|" "$B/backmx.conf.orig" >"$out"
		{ echo "peer peera.test.example 127.0.0.1:$MIRROR_PEER_A"
		  echo "peer_listen 127.0.0.1:$MIRROR_PEER_B"
		  echo "peer_cert $c/peerb.pem"; echo "peer_key $c/peerb.key"; } >>"$out"
	fi
	{ echo "peer_ca $c/ca.pem"; echo "peer_ack $ack"; echo "takeover_after 1h"; } >>"$out"
	[ "$node" = a ] || grep -q "^spool $MB/spool" "$out" ||
		{ echo "row_mirror: node B's config did not take its own spool" >&2; return 1; }
}

mirror_b_stop() {
	local pid
	[ -s "$MB/bx.pid" ] || return 0
	pid=$(cat "$MB/bx.pid")
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	rm -f "$MB/bx.pid"
}

bench_row_teardown() { mirror_sampler_stop; mirror_b_stop; }

# mirror_peer_json NODE_SOCK - backmxctl peer --json
mirror_peer_json() { "$BUILD/backmxctl" -s "$1" peer --json 2>/dev/null || true; }
# mirror_json_field JSON FIELD - a number or true/false from it
mirror_json_field() { echo "$1" | sed -n "s/.*\"$2\": \([a-z0-9.]*\).*/\1/p"; }

# mirror_start ACK ROUND - both nodes on empty spools, until A's own
# spool link is up and B's replica of it is in sync
mirror_start() {
	local ack=$1 j i
	bx_clean; mirror_b_stop; rm -rf "$MB/spool"
	mirror_conf a "$ack"; mirror_conf b "$ack"
	bx_start "$MIRROR_DIR/a-$ack.conf"
	"$BUILD/backmxd" -f -c "$MIRROR_DIR/b-$ack.conf" 2>>"$MB/log" &
	wait_port $MIRROR_B_PORT
	for i in $(seq 1 300); do
		j=$(mirror_peer_json "$BX/control.sock")
		[ "$(mirror_json_field "$j" connected)" = true ] &&
			[ "$(mirror_json_field "$(mirror_peer_json "$MB/control.sock")" replica_in_sync)" = true ] && return 0
		sleep 0.1
	done
	note "row_mirror round $2: peer_ack $ack: the links did not come up in 30 s"
	return 1
}

# mirror_load PORT - NMSG messages, 10 sessions; prints msg/s
mirror_load() {
	local t0 t1
	t0=$(now)
	smtp-source -s 10 -m "$NMSG" -l 4096 -f bench@sender.example \
		-t user@$DOMAIN -M client.example 127.0.0.1:$1 >"$MIRROR_DIR/last" 2>&1 || true
	t1=$(now)
	echo "$NMSG / ($t1 - $t0)" | bc -l
}

mirror_queued() {
	local q
	q=$(bx_queue_count)
	[ "$q" -ge "$NMSG" ] || note "row_mirror round $1: $2: node A queued $q of $NMSG"
}

# mirror_sampler_start / _stop - node A's lag (messages, seconds) every
# 0.1 s into $MIRROR_DIR/lag while the load runs
mirror_sampler_start() {
	: >"$MIRROR_DIR/lag"
	( while :; do
		mirror_peer_json "$BX/control.sock" |
			sed -n 's/.*"lag_messages": \([0-9]*\), "lag_seconds": \([0-9.]*\).*/\1 \2/p'
		sleep 0.1
	  done ) >>"$MIRROR_DIR/lag" &
	echo $! >"$MIRROR_DIR/sampler.pid"
}
mirror_sampler_stop() {
	[ -s "$MIRROR_DIR/sampler.pid" ] || return 0
	kill "$(cat "$MIRROR_DIR/sampler.pid")" 2>/dev/null || true
	wait "$(cat "$MIRROR_DIR/sampler.pid")" 2>/dev/null || true
	rm -f "$MIRROR_DIR/sampler.pid"
	[ -s "$MIRROR_DIR/lag" ] || echo "0 0" >"$MIRROR_DIR/lag"
}

bench_row() {
	local single v j t0 lag i to ack
	# node A alone
	bx_clean; bx_start
	single=$(mirror_load $BX_PORT)
	record mirror_single_s10 backmx "$single"
	mirror_queued "$1" single
	bx_stop

	for ack in peer local; do
		mirror_start $ack "$1" || continue
		[ $ack = peer ] || mirror_sampler_start
		v=$(mirror_load $BX_PORT)
		t0=$(now)
		if [ $ack = local ]; then
			mirror_sampler_stop
			for i in $(seq 1 6000); do
				[ "$(mirror_json_field "$(mirror_peer_json "$BX/control.sock")" lag_messages)" = 0 ] && break
				sleep 0.01
			done
			record mirror_local_catchup_ms backmx "$(echo "($(now) - $t0) * 1000" | bc -l)"
			record mirror_local_maxlag_msgs backmx "$(sort -n -k1 "$MIRROR_DIR/lag" | tail -1 | cut -d' ' -f1)"
			record mirror_local_maxlag_ms backmx "$(sort -g -k2 "$MIRROR_DIR/lag" | tail -1 | awk '{print $2 * 1000}')"
		fi
		j=$(mirror_peer_json "$BX/control.sock")
		record "mirror_${ack}_s10" backmx "$v"
		record "pct_mirror_${ack}_of_single" backmx "$(echo "100 * $v / $single" | bc -l)"
		mirror_queued "$1" "peer_ack $ack"
		if [ $ack = peer ]; then
			to=$(mirror_json_field "$j" gated_timeouts)
			[ "${to:-1}" -eq 0 ] || note "row_mirror round $1: peer_ack peer: ${to:-?} replies timed out (451)"
			[ "$1" -ne 1 ] || note "row_mirror: peer_ack peer round 1: $(mirror_json_field "$j" gated) replies gated, $(mirror_json_field "$j" gated_acked) acked in time"
		fi
		bx_stop; mirror_b_stop
	done

	# Postfix, the same load
	pf_clean; pf_start
	v=$(mirror_load $PF_PORT)
	for r in mirror_single_s10 mirror_peer_s10 mirror_local_s10; do record $r postfix "$v"; done
	pf_stop
}
