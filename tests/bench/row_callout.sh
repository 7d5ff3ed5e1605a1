# tests/bench/row_callout.sh - accepting with recipient verification
# against the primary, cache warm (sourced by run.sh; see "Row files").
#
# backmx: "recipients callout" (the answer kept in verify.db); Postfix:
# smtpd_recipient_restrictions = reject_unverified_recipient with its
# address_verify_map (btree).  Each round warms both caches first: the
# sink (a catch-all primary) is started, one RCPT per server is repeated
# until it gets 250 (Postfix answers 450 while its verify probe runs),
# then the sink is stopped, so the measured load (the accept row's: 10
# sessions, one 4 KB message a connection) is answered from the caches
# alone and only queued:
#   accept_callout_warm_s10   msg/s, backmx vs Postfix (ratio)
# A round where a server queued fewer messages than were sent is noted.

# callout_rcpt PORT ADDR - the code the server gives RCPT TO:<ADDR>
callout_rcpt() {
	$PY - "$1" "$2" <<'PYEOF'
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=30)
s.ehlo('client.example')
s.mail('bench@sender.example')
print(s.rcpt(sys.argv[2])[0])
s.quit()
PYEOF
}

# callout_warm PORT - until user@$DOMAIN is accepted (at most 30 s)
callout_warm() {
	for _ in $(seq 1 60); do
		[ "$(callout_rcpt "$1" "user@$DOMAIN")" = 250 ] && return 0
		sleep 0.5
	done
	echo "row_callout: user@$DOMAIN never verified on port $1" >&2
	return 1
}

bench_row_setup() {
	sed "s|recipients $B/rcpts|recipients callout|" "$B/backmx.conf.orig" \
		>"$BX/callout.conf"
	grep -q 'recipients callout' "$BX/callout.conf" ||
		{ echo "row_callout: no recipients line to change" >&2; return 1; }
	postconf -c "$PF/etc" -e "relay_recipient_maps =" \
		"smtpd_recipient_restrictions = reject_unverified_recipient" \
		"address_verify_map = btree:$PF/data/verify_cache"
}

callout_source() {
	smtp-source -s 10 -m "$NMSG" -l 4096 -f bench@sender.example \
		-t user@$DOMAIN -M client.example "127.0.0.1:$1"
}

bench_row() {
	local t0 t1 q
	bx_clean; bx_start "$BX/callout.conf"
	sink_start; callout_warm $BX_PORT; sink_stop
	t0=$(now); callout_source $BX_PORT; t1=$(now)
	record accept_callout_warm_s10 backmx "$(echo "$NMSG / ($t1 - $t0)" | bc -l)"
	q=$(bx_queue_count)
	[ "$q" -ge "$NMSG" ] || note "row_callout round $1: backmx queued $q of $NMSG"
	bx_stop

	pf_clean; pf_start
	sink_start; callout_warm $PF_PORT; sink_stop
	t0=$(now); callout_source $PF_PORT; t1=$(now)
	record accept_callout_warm_s10 postfix "$(echo "$NMSG / ($t1 - $t0)" | bc -l)"
	sleep 1
	q=$(pf_queue_count)
	[ "$q" -ge "$NMSG" ] || note "row_callout round $1: postfix queued $q of $NMSG"
	pf_stop
}
