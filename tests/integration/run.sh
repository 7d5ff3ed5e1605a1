#!/bin/sh
# run.sh BUILD [-k PATTERN] [test_file.py ...] - the integration tests.
#
# Builds the test world in a private network namespace backmx-test-PID:
# lo up (127.0.0.0/8), /etc/netns/NS/resolv.conf -> 127.0.0.1, nsd on
# 127.0.0.1:53 and [::1]:53 serving every tests/integration/zones/NAME.zone, then runs
# runner.py inside it.  Always cleans up: nsd and every process left in the
# namespace are killed, the namespace and /etc/netns/NS removed.  The work
# directory (daemon logs, spools, sink files) of a failed run is kept in
# BUILD/integration-work.
build=${1:?usage: run.sh BUILD [-k PATTERN] [test_file.py ...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root" || exit 1
mkdir -p "$build"
build=$(cd "$build" && pwd)
results=$build/results
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
	--results "$results" --workdir "$tmp/work" "$@"
rc=$?
if [ $rc -ne 0 ] && [ -d "$tmp/work" ]; then
	rm -rf "$build/integration-work"
	cp -a "$tmp/work" "$build/integration-work" 2>/dev/null;
		echo "integration: logs, spools and sink files kept in $build/integration-work"
fi
exit $rc
