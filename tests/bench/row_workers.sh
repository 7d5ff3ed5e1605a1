# tests/bench/row_workers.sh - accept and end to end with an explicit
# `workers` count (sourced by run.sh), each beside Postfix in the same round:
#   accept_s10_workers_1, end_to_end_workers_1       one process does everything
#   accept_s10_workers_auto, end_to_end_workers_auto one accept worker a core,
#                                                    the main process forwards
# The core rows (accept_s10, end_to_end) run the daemon's default; these
# name the count, whatever the default is.  Same load as the core rows:
# 10 sessions, one 4 KB message a connection, $NMSG messages.

workers_conf() {
	sed '/^workers[[:space:]]/d' "$B/backmx.conf.orig" >"$BX/workers-$1.conf"
	echo "workers $1" >>"$BX/workers-$1.conf"
}

bench_row_setup() {
	workers_conf 1
	workers_conf auto
}

bench_row() {
	local w sys
	for w in 1 auto; do
		for sys in backmx postfix; do
			BX_CONF=$BX/workers-$w.conf run_accept "accept_s10_workers_$w" $sys 10 1 "$NMSG"
		done
	done
	for w in 1 auto; do
		for sys in backmx postfix; do
			BX_CONF=$BX/workers-$w.conf run_e2e $sys "$NMSG" "end_to_end_workers_$w"
		done
	done
}
