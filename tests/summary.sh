#!/bin/sh
# summary.sh FILE - the end of `make check`: count the PASS/FAIL lines the
# runners appended to FILE, repeat the failures, and print one last line
# "N passed, M failed".  Exit 1 when anything failed or nothing ran.
f=${1:-build/results}
if [ -f "$f" ]; then
	npass=$(grep -c '^PASS' "$f")
	nfail=$(grep -c '^FAIL' "$f")
else
	npass=0
	nfail=0
fi
if [ "$nfail" -gt 0 ]; then
	echo
	echo "failures:"
	grep '^FAIL' "$f"
fi
[ "$npass" -eq 0 ] && [ "$nfail" -eq 0 ] && echo "no test results in $f"
echo "$npass passed, $nfail failed"
[ "$nfail" -eq 0 ] && [ "$npass" -gt 0 ]
