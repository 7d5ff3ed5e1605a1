#!/bin/sh
# run.sh BUILD [-k PATTERN] [test_file.py ...] - the integration tests.
#
# Builds the test world in a private network namespace backmx-test-PID:
# lo up (127.0.0.0/8), /etc/netns/NS/resolv.conf -> 127.0.0.1, nsd on
# 127.0.0.1:53 and [::1]:53 serving every tests/integration/zones/NAME.zone, then runs
# runner.py inside it.  Always cleans up: nsd and every process left in the
# namespace are killed, the namespace and /etc/netns/NS removed.  The work
# directory (daemon logs, spools, sink files) of a failed run is kept in
# BUILD/integration-work (a passed test's own directories are removed as
# soon as it passes; BACKMX_IT_KEEP_PASSED=1 keeps them).
#
# Shards: without -k, and with no file or more than one file named, the
# files are split into INTEGRATION_SHARDS (default 3) shards balanced by
# duration (runner.py --plan; tests/integration/durations.txt, then
# BUILD/integration-durations measured by the last run).  Each shard is this
# script again with its own namespace, nsd, sinks and work directory (the
# 127.0.0.x addresses are per namespace, so shards do not collide); their
# results are merged into BUILD/results in shard order, and a failed
# shard's work directory is kept in BUILD/integration-work/shard-N.
# Output lines other than PASS/FAIL carry the shard's tag "[itN]".
# INTEGRATION_SHARDS=1 runs everything in one namespace, as before.
build=${1:?usage: run.sh BUILD [-k PATTERN] [test_file.py ...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root" || exit 1
mkdir -p "$build"
build=$(cd "$build" && pwd)
results=${BACKMX_IT_RESULTS:-$build/results}
keep=${BACKMX_IT_KEEP:-$build/integration-work}
python=/usr/bin/python3

fail() {
	echo "FAIL integration: $*"
	echo "FAIL integration: $*" >> "$results"
	exit 1
}

[ -x "$python" ] || fail "$python not found (apt-get install python3 python3-aiosmtpd)"
command -v ip >/dev/null 2>&1 || fail "ip not found (apt-get install iproute2)"
command -v nsd >/dev/null 2>&1 || [ -x /usr/sbin/nsd ] ||
	fail "nsd not found (apt-get install nsd)"
PATH=$PATH:/usr/sbin:/sbin
export PATH

# ---------------------------------------------------------------- shards
nshards=${INTEGRATION_SHARDS:-3}
pattern=""
nfiles=0
opts=""
for a in "$@"; do
	case $a in
	-k) pattern=1 ;;
	*.py) nfiles=$((nfiles + 1)) ;;
	esac
done
if [ -z "$BACKMX_IT_SHARD" ] && [ "$nshards" -gt 1 ] && [ -z "$pattern" ] &&
	[ "$nfiles" -ne 1 ]; then
	sdir=$build/integration-shards
	rm -rf "$sdir" "$build/integration-work"
	mkdir -p "$sdir"
	# the options (not *.py) go to every shard, the files are planned
	files=""
	for a in "$@"; do
		case $a in
		*.py) files="$files $a" ;;
		*) opts="$opts $a" ;;
		esac
	done
	# shellcheck disable=SC2086
	"$python" "$here/runner.py" --plan "$nshards" --table "$here/durations.txt" \
		--table "$build/integration-durations" $files > "$sdir/plan" ||
		fail "runner.py --plan failed"
	stop_shards() {
		for pf in "$sdir"/*.pid; do
			[ -f "$pf" ] && kill -TERM "-$(cat "$pf")" 2>/dev/null
		done
	}
	trap 'stop_shards; wait; exit 130' INT TERM HUP
	i=0
	while read -r shard_files; do
		i=$((i + 1))
		echo "integration shard $i:$(for f in $shard_files; do printf ' %s' "$(basename "$f")"; done)"
		# setsid: each shard is a process group the trap above can stop
		# shellcheck disable=SC2086
		( BACKMX_IT_SHARD=$i BACKMX_IT_PIDFILE=$sdir/$i.pid \
		  BACKMX_IT_RESULTS=$sdir/$i.results \
		  BACKMX_IT_KEEP=$build/integration-work/shard-$i \
		  BACKMX_IT_DURATIONS=$sdir/$i.durations \
			setsid sh "$0" "$build" $opts $shard_files
		  echo $? > "$sdir/$i.rc" ) 2>&1 |
			sed -u "/^\(PASS\|FAIL\) /!s/^/[it$i] /" &
	done < "$sdir/plan"
	wait
	trap - INT TERM HUP
	rc=0
	j=1
	while [ $j -le $i ]; do
		cat "$sdir/$j.results" >> "$results" 2>/dev/null
		st=$(cat "$sdir/$j.rc" 2>/dev/null)
		if [ "$st" != 0 ]; then
			rc=1
			if [ ! -s "$sdir/$j.results" ] || ! grep -q '^FAIL' "$sdir/$j.results"; then
				echo "FAIL integration-shard-$j: exit status ${st:-none} without a FAIL line"
				echo "FAIL integration-shard-$j: exit status ${st:-none} without a FAIL line" >> "$results"
			fi
		fi
		j=$((j + 1))
	done
	"$python" "$here/runner.py" --merge-durations "$build/integration-durations" \
		"$sdir"/*.durations 2>/dev/null
	exit $rc
fi
[ -n "$BACKMX_IT_PIDFILE" ] && echo $$ > "$BACKMX_IT_PIDFILE"

ns=backmx-test-$$
tmp=$(mktemp -d /tmp/backmx-world.XXXXXX) || fail "mktemp failed"
nsd_pid=""
cleanup() {
	if [ -n "$nsd_pid" ]; then
		kill "$nsd_pid" 2>/dev/null
	fi
	if ip netns list 2>/dev/null | grep -q "^$ns\\b"; then
		for i in 1 2 3 4 5; do
			pids=$(ip netns pids "$ns" 2>/dev/null)
			[ -z "$pids" ] && break
			# shellcheck disable=SC2086
			kill -9 $pids 2>/dev/null
			sleep 0.2
		done
		ip netns del "$ns" 2>/dev/null
	fi
	rm -rf "/etc/netns/$ns"
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

if ! err=$(ip netns add "$ns" 2>&1); then
	fail "cannot create network namespace ($err); run as root (make check as root)"
fi
ip -n "$ns" link set lo up || fail "cannot bring lo up in $ns"
mkdir -p "/etc/netns/$ns" || fail "cannot write /etc/netns/$ns"
echo "nameserver 127.0.0.1" > "/etc/netns/$ns/resolv.conf"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' > "/etc/netns/$ns/hosts"

# certificates (world.certs reuses this directory) and the DNSSEC-signed
# zones whose TLSA records carry this run's key digests (see TLS.md)
mkdir -p "$tmp/work"
sh "$here/certs.sh" "$tmp/work/certs" > "$tmp/certs.out" 2>&1 ||
	fail "certs.sh: $(tail -n 3 "$tmp/certs.out")"
sh "$here/dnssec.sh" "$tmp/dnssec" "$tmp/work/certs" > "$tmp/dnssec.out" 2>&1 ||
	fail "dnssec.sh: $(tail -n 3 "$tmp/dnssec.out")"
cp "$tmp/dnssec/trust-anchors" "$tmp/work/trust-anchors"

# nsd: authoritative for every zone file in zones/ and the signed zones
conf=$tmp/nsd.conf
cat > "$conf" <<EOF
server:
	ip-address: 127.0.0.1@53
	ip-address: ::1@53
	username: ""
	chroot: ""
	zonesdir: "$here/zones"
	database: ""
	pidfile: "$tmp/nsd.pid"
	zonelistfile: "$tmp/zone.list"
	xfrdfile: "$tmp/xfrd.state"
	xfrdir: "$tmp"
	logfile: "$tmp/nsd.log"
	server-count: 1
	verbosity: 1
	hide-version: yes
	reuseport: no
remote-control:
	control-enable: no
EOF
for z in "$here"/zones/*.zone "$tmp"/dnssec/*.zone; do
	name=$(basename "$z" .zone)
	printf 'zone:\n\tname: "%s"\n\tzonefile: "%s"\n' "$name" "$z" >> "$conf"
done
nsd-checkconf "$conf" > "$tmp/nsd-checkconf.out" 2>&1 ||
	fail "bad nsd.conf: $(cat "$tmp/nsd-checkconf.out")"

ip netns exec "$ns" nsd -d -c "$conf" > "$tmp/nsd.out" 2>&1 &
nsd_pid=$!

i=0
while :; do
	ans=$(ip netns exec "$ns" dig +short +time=1 +tries=1 @127.0.0.1 MX backup.example 2>/dev/null)
	[ -n "$ans" ] && break
	i=$((i + 1))
	if [ $i -ge 50 ] || ! kill -0 "$nsd_pid" 2>/dev/null; then
		fail "nsd did not answer MX backup.example: $(cat "$tmp/nsd.out" "$tmp/nsd.log" 2>/dev/null | tail -n 5 | tr '\n' ' ')"
	fi
	sleep 0.2
done

ip netns exec "$ns" "$python" "$here/runner.py" --build "$build" \
	--results "$results" --workdir "$tmp/work" \
	--durations "${BACKMX_IT_DURATIONS:-$tmp/durations}" "$@"
rc=$?
if [ $rc -ne 0 ] && [ -d "$tmp/work" ]; then
	rm -rf "$keep"
	mkdir -p "$(dirname "$keep")"
	cp -a "$tmp/work" "$keep" 2>/dev/null;
		echo "integration: logs, spools and sink files kept in $keep"
fi
exit $rc
