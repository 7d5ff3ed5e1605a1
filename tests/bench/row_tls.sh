# tests/bench/row_tls.sh - accepting with STARTTLS and delivering over TLS
# (sourced by run.sh; see "Row files" there).
#
# smtp-source has no TLS and smtp-sink no STARTTLS, so this row file builds
# two small tools: tests/bench/tls_source.c (the accept row's load: 10
# sessions, one 4 KB message a connection, no pipelining; STARTTLS on every
# connection, optionally offering the TLS session of the thread's previous
# connection) and tests/bench/tls_sink.c (a primary offering STARTTLS that
# discards what it gets and counts, as smtp-sink -c).  One RSA-2048
# certificate, made at setup, serves backmx, Postfix and the sink.
# backmx: tls_cert/tls_key (OpenSSL's defaults: TLS 1.3, stateless session
# tickets); Postfix 3.7: smtpd_tls_security_level = may with the same
# certificate, its default ticket and session cache settings (tlsmgr).
# Each round, primary down:
#   ceiling_tls_s10          tls_source -T against tls_sink (msg/s, in the
#                            backmx column): nothing here accepts faster
#                            with a full handshake per connection
#   accept_tls_s10           a full handshake per connection (msg/s)
#   accept_tls_resume_s10    each thread offers its previous session
#                            (msg/s; the summary notes how many resumed)
#   pct_of_tls_ceiling_s10   accept_tls_s10 as % of ceiling_tls_s10
# then delivery over TLS to the primary:
#   flush_tls                NMSG queued with the primary down, then the
#                            TLS sink started and the queue flushed
#                            (backmxctl flush / postqueue -f) until the
#                            sink has counted NMSG and the queue is empty
#                            (msg/s); backmx "tls encrypt" for the domain,
#                            Postfix smtp_tls_security_level = encrypt;
#                            both at their defaults otherwise (neither
#                            resumes client sessions; backmx hands a
#                            connection on to the next message, Postfix
#                            does not reuse TLS connections by default)
# A round where a server queued or the sink counted fewer messages than
# were sent, or a delivery was not over TLS, is noted.
TLS_DIR=$B/tls
TLS_CEIL_PORT=2628

bench_row_setup() {
	mkdir -p "$TLS_DIR"
	for t in tls_source tls_sink; do
		gcc -std=gnu11 -O2 -Wall -Wextra -o "$TLS_DIR/$t" \
			"$ROOT/tests/bench/$t.c" -lssl -lcrypto -pthread
	done
	openssl req -x509 -newkey rsa:2048 -nodes -days 30 \
		-subj "/CN=mx2.$DOMAIN" -keyout "$TLS_DIR/key.pem" \
		-out "$TLS_DIR/cert.pem" 2>/dev/null
	chmod 0600 "$TLS_DIR/key.pem"
	chmod 0644 "$TLS_DIR/cert.pem"
	{ echo "tls_cert $TLS_DIR/cert.pem"; echo "tls_key $TLS_DIR/key.pem"
	  sed "s|^\( *\)route \(.*\)$|\1route \2\n\1tls encrypt|" "$B/backmx.conf.orig"; } >"$BX/tls.conf"
	grep -q 'tls encrypt' "$BX/tls.conf" ||
		{ echo "row_tls: no route line to add tls to" >&2; return 1; }
	postconf -c "$PF/etc" -e "smtpd_tls_cert_file = $TLS_DIR/cert.pem" \
		"smtpd_tls_key_file = $TLS_DIR/key.pem" \
		"smtpd_tls_security_level = may" \
		"smtpd_tls_session_cache_database = btree:$PF/data/smtpd_scache" \
		"smtp_tls_security_level = encrypt" \
		"smtp_tls_loglevel = 1"
}

# tls_sink_start - the TLS primary on SINK_PORT (sink_stop ends it)
tls_sink_start() {
	"$TLS_DIR/tls_sink" -c "$TLS_DIR/cert.pem" -k "$TLS_DIR/key.pem" \
		127.0.0.1:$SINK_PORT >"$B/sink.out" 2>&1 &
	echo $! >"$B/sink.pid"
	wait_port $SINK_PORT
}

# tls_load PORT [-R] - the accept load with STARTTLS; prints the msg/s
# figure and keeps the client's line in $TLS_DIR/last
tls_load() {
	local port=$1
	shift
	"$TLS_DIR/tls_source" -T "$@" -s 10 -m "$NMSG" -l 4096 \
		-f bench@sender.example -t user@$DOMAIN -M client.example \
		"127.0.0.1:$port" >"$TLS_DIR/last" || true
	sed -n 's/.* rate \([0-9.]*\) .*/\1/p' "$TLS_DIR/last"
}

# tls_check SYS ROW ROUND - note failed or unresumed handshakes
tls_check() {
	local f h r
	f=$(sed -n 's/.* failed \([0-9]*\).*/\1/p' "$TLS_DIR/last")
	h=$(sed -n 's/.* handshakes \([0-9]*\).*/\1/p' "$TLS_DIR/last")
	r=$(sed -n 's/.* resumed \([0-9]*\).*/\1/p' "$TLS_DIR/last")
	[ "${f:-1}" -eq 0 ] || note "row_tls round $3: $1 $2: ${f:-?} transactions failed"
	[ "$2" != accept_tls_resume_s10 ] || [ "$3" -ne 1 ] ||
		note "row_tls: $1 resumed $r of $h handshakes (accept_tls_resume_s10, round 1)"
	[ "$2" != accept_tls_s10 ] || [ "${r:-0}" -eq 0 ] ||
		note "row_tls round $3: $1 resumed $r handshakes in the full-handshake row"
}

tls_queued() {
	local q
	if [ "$1" = postfix ]; then sleep 1; q=$(pf_queue_count); else q=$(bx_queue_count); fi
	[ "$q" -ge "$NMSG" ] || note "row_tls round $2: $1 queued $q of $NMSG ($3)"
}

bench_row() {
	local pid sink v sys port
	"$TLS_DIR/tls_sink" -c "$TLS_DIR/cert.pem" -k "$TLS_DIR/key.pem" \
		127.0.0.1:$TLS_CEIL_PORT >"$TLS_DIR/ceil.out" 2>&1 &
	pid=$!
	wait_port $TLS_CEIL_PORT
	sink=$(tls_load $TLS_CEIL_PORT)
	kill $pid; wait $pid 2>/dev/null || true
	record ceiling_tls_s10 backmx "$sink"

	for sys in backmx postfix; do
		if [ $sys = backmx ]; then bx_clean; bx_start "$BX/tls.conf"; port=$BX_PORT
		else pf_clean; pf_start; port=$PF_PORT; fi
		v=$(tls_load $port)
		record accept_tls_s10 $sys "$v"
		tls_check $sys accept_tls_s10 "$1"
		[ -n "$v" ] && [ -n "$sink" ] &&
			record pct_of_tls_ceiling_s10 $sys "$(echo "100 * $v / $sink" | bc -l)"
		tls_queued $sys "$1" accept_tls_s10
		if [ $sys = backmx ]; then bx_clean; bx_start "$BX/tls.conf"
		else pf_clean; pf_start; fi
		record accept_tls_resume_s10 $sys "$(tls_load $port -R)"
		tls_check $sys accept_tls_resume_s10 "$1"
		tls_queued $sys "$1" accept_tls_resume_s10
		if [ $sys = backmx ]; then bx_stop; else pf_stop; fi
	done

	for sys in backmx postfix; do tls_flush $sys "$1"; done
}

# tls_flush SYS ROUND - queue NMSG (plain), flush them to the TLS sink
tls_flush() {
	local sys=$1 t0 t1 n
	sink_stop
	if [ "$sys" = postfix ]; then pf_clean; pf_start
		smtp-source -s 10 -m "$NMSG" -l 4096 -f bench@sender.example -t user@$DOMAIN -M client.example 127.0.0.1:$PF_PORT
		sleep 2; tls_sink_start; t0=$(now); postqueue -c "$PF/etc" -f
		wait_sink "$NMSG"; until pf_queue_empty; do sleep 0.01; done
	else bx_clean; bx_start "$BX/tls.conf"
		smtp-source -s 10 -m "$NMSG" -l 4096 -f bench@sender.example -t user@$DOMAIN -M client.example 127.0.0.1:$BX_PORT
		sleep 2; tls_sink_start; t0=$(now); "$BUILD/backmxctl" -s "$BX/control.sock" flush >/dev/null
		wait_sink "$NMSG"; until [ "$(bx_queue_count)" -eq 0 ]; do sleep 0.01; done
	fi
	t1=$(now)
	record flush_tls "$sys" "$(echo "$NMSG / ($t1 - $t0)" | bc -l)"
	n=$(tail -1 "$B/sink.out" | sed -n 's/.* tls=\([0-9]*\).*/\1/p')
	[ "${n:-0}" -ge "$NMSG" ] || note "row_tls round $2: $sys flush_tls: ${n:-0} of $NMSG delivered over TLS"
	sink_stop
	if [ "$sys" = postfix ]; then pf_stop; else bx_stop; fi
}
