#!/bin/sh
# run.sh BUILD SECONDS BIN... - run each libFuzzer target fuzz_X for
# SECONDS on a copy of its seed corpus tests/fuzz/corpus/X/ (the seeds in
# the repository are never written to).  Crashes, leaks and timeouts land
# in BUILD/fuzz-artifacts/.  One line per target, "PASS fuzz_X (N execs)"
# or "FAIL fuzz_X: reason", printed and appended to BUILD/results.
# FUZZ_NICE (e.g. "nice -n 19") prefixes each run (make fuzz-long);
# FUZZ_RUNS=N also stops a target after N executions (-runs=N), whichever
# comes first; FUZZ_DICT=1 (make fuzz-long) passes the target's dictionary
# of keywords: tests/fuzz/X.dict, else the shared one its name picks below.
build=${1:?usage: run.sh BUILD SECONDS BIN...}
secs=${2:?usage: run.sh BUILD SECONDS BIN...}
shift 2
[ $# -eq 0 ] && exit 0
here=$(cd "$(dirname "$0")" && pwd)
results=$build/results
arts=$build/fuzz-artifacts
mkdir -p "$arts" "$build/fuzz-work"
rc=0
for bin in "$@"; do
	name=$(basename "$bin")
	target=${name#fuzz_}
	seeds=$here/corpus/$target
	work=$build/fuzz-work/$target
	log=$build/fuzz-work/$name.log
	mkdir -p "$seeds"
	rm -rf "$work"
	mkdir -p "$work"
	cp -R "$seeds/." "$work/" 2>/dev/null
	if [ ! -x "$bin" ]; then
		line="FAIL $name: not built ($bin missing)"
		echo "$line"; echo "$line" >> "$results"
		rc=1
		continue
	fi
	extra=
	[ -n "$FUZZ_RUNS" ] && extra="-runs=$FUZZ_RUNS"
	dict=$here/$target.dict
	case $target in
	smtp_cmd | smtp_sock | esmtp | dsn | data) [ -f "$dict" ] || dict=$here/smtp.dict ;;
	esac
	[ -n "$FUZZ_DICT" ] && [ -f "$dict" ] && extra="$extra -dict=$dict"
	# shellcheck disable=SC2086
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
		$FUZZ_NICE timeout $((secs + 120)) "$bin" -max_total_time="$secs" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 $extra \
		-artifact_prefix="$arts/$name-" "$work" > "$log" 2>&1
	st=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	[ -n "$execs" ] || execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
	cov=$(sed -n 's/.*DONE *\(cov: [0-9]* ft: [0-9]*\).*/\1/p' "$log" | tail -n 1)
	if [ "$st" -eq 0 ] && [ -n "$execs" ] && [ "$execs" -gt 0 ]; then
		line="PASS $name ($execs execs in ${secs}s${cov:+, $cov})"
		echo "$line"; echo "$line" >> "$results"
	else
		art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
		why=$(grep -m1 -E '^==[0-9]+==ERROR|^SUMMARY:|runtime error:|ERROR: libFuzzer' "$log")
		[ -n "$why" ] || why="exit status $st"
		[ "$st" -eq 124 ] && why="hung: no exit after $((secs + 120))s"
		line="FAIL $name: $why${art:+ (input: $art)}"
		echo "$line"; echo "$line" >> "$results"
		tail -n 30 "$log" | sed 's/^/    /'
		rc=1
	fi
done
exit $rc
