#!/bin/sh
# lint.sh BUILD - `make lint`: every C file of the tree (policy/ spool/
# relay/ tests/) formatted as .clang-format says (clang-format --dry-run -Werror), and cppcheck with
# no finding over every C file of the tree (policy/ spool/ relay/ tests/).
# A finding that is wrong is suppressed where it is, with the reason:
#   /* why this is not a bug */
#   /* cppcheck-suppress ID */
# One line "PASS lint (...)" or "FAIL lint: reason", printed and appended
# to BUILD/results; the findings themselves before it.
build=${1:?usage: lint.sh BUILD}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root" || exit 1
mkdir -p "$build"
results=$build/results
out=$build/lint.out

result() {
	echo "$1"
	echo "$1" >> "$results"
	case $1 in PASS*) exit 0 ;; esac
	exit 1
}

for tool in clang-format cppcheck; do
	command -v $tool >/dev/null 2>&1 ||
		result "FAIL lint: $tool not found (apt-get install $tool)"
done

files=$(find policy spool relay tests -name '*.[ch]' | sort)
# shellcheck disable=SC2086
if ! clang-format --dry-run -Werror $files > "$out" 2>&1; then
	bad=$(sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: error: code should be clang-formatted.*/\1/p' "$out" | sort -u | tr '\n' ' ')
	head -n 40 "$out"
	result "FAIL lint: not clang-formatted (clang-format -i): ${bad% }"
fi
nfmt=$(echo "$files" | wc -w)

# the system's sys/queue.h: cppcheck reads no system header by itself,
# and LIST_HEAD(...) is a declaration it must understand
queue=$(echo '#include <sys/queue.h>' | cpp -H -o /dev/null 2>&1 | sed -n 's/^\. //p' | head -n 1)
csrc=$(find policy spool relay tests -name '*.c' | sort)
# shellcheck disable=SC2086
cppcheck -q -j 2 --enable=warning,portability,performance --std=c11 \
	-D_GNU_SOURCE -Ipolicy -Ispool -Irelay ${queue:+--include=$queue} \
	--inline-suppr --error-exitcode=1 $csrc > "$out" 2>&1
st=$?
if [ $st -ne 0 ] || [ -s "$out" ]; then
	cat "$out"
	n=$(grep -c '^[^ ].*: \(error\|warning\|style\|portability\|performance\):' "$out")
	result "FAIL lint: cppcheck: $n finding(s), first: $(grep -m1 '^[^ ].*: \(error\|warning\|portability\|performance\):' "$out")"
fi
result "PASS lint ($nfmt files formatted, cppcheck clean over $(echo "$csrc" | wc -w) files)"
