#!/bin/sh
# run.sh BUILD BIN... - run each cmocka unit-test binary; one line per
# binary, "PASS test_x" or "FAIL test_x: reason" followed by the tail of
# its output, printed and appended to BUILD/results.
build=${1:?usage: run.sh BUILD BIN...}
shift
mkdir -p "$build/unit"
results=$build/results
rc=0
for bin in "$@"; do
	name=$(basename "$bin")
	out=$build/unit/$name.out
	if [ ! -x "$bin" ]; then
		line="FAIL $name: not built ($bin missing)"
		echo "$line"
		echo "$line" >> "$results"
		rc=1
		continue
	fi
	# cmocka prints its own [ RUN ]/[ OK ] lines; keep them in a file
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
		timeout 600 "$bin" > "$out" 2>&1
	st=$?
	if [ "$st" -eq 0 ]; then
		n=$(grep -c '^\[       OK \]' "$out")
		line="PASS $name ($n tests)"
		echo "$line"
		echo "$line" >> "$results"
	else
		failed=$(grep '^\[  FAILED  \] [^0-9]' "$out" | sed 's/^\[  FAILED  \] //' |
			sort -u | tr '\n' ' ' | sed 's/ $//')
		if [ "$st" -eq 124 ]; then
			why="timed out after 600s"
		elif grep -q 'ERROR: AddressSanitizer\|runtime error:' "$out"; then
			why="sanitizer: $(grep -m1 'ERROR: AddressSanitizer\|runtime error:' "$out")"
		elif [ -n "$failed" ]; then
			why="failed: $failed"
		else
			why="exit status $st"
		fi
		line="FAIL $name: $why"
		echo "$line"
		echo "$line" >> "$results"
		tail -n 25 "$out" | sed 's/^/    /'
		rc=1
	fi
done
exit $rc
