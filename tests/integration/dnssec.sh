#!/bin/sh
# dnssec.sh DIR CERTS - DNSSEC-signed zones for the DANE tests.
#
# The test world has no signed root, so each signed zone is its own trust
# anchor.  Writes into DIR (made if missing):
#   dane.example.zone    signed (NSEC, ECDSAP256SHA256, valid -1h..+30d):
#       dane.example        MX 10 mx1.dane.example, MX 20 mx2.test.example
#       mx1.dane.example    A 127.0.0.2 (the "primary" sink)
#       _25._tcp.mx1        TLSA 3 1 1 <CERTS/mx1.tlsa311>      (matches)
#       bad.dane.example    MX 10 mxbad.dane.example, MX 20 mx2.test.example
#       mxbad.dane.example  A 127.0.0.2 (the same sink, same mx1 cert)
#       _25._tcp.mxbad      TLSA 3 1 1 <CERTS/wrong.tlsa311>    (no match)
#       notlsa.dane.example MX 10 mxnotlsa.dane.example, 20 mx2.test.example
#       mxnotlsa.dane.example A 127.0.0.2, no TLSA (secure NXDOMAIN)
#       pkix.dane.example   MX 10 mxpkix.dane.example, 20 mx2.test.example
#       mxpkix.dane.example A 127.0.0.2, TLSA 1 1 1 (unusable usage only)
#       mta-sts.dane.example A 127.0.0.7, _mta-sts TXT v=STSv1 (for STS+DANE)
#   bogus.example.zone   signed with signatures that expired in 2020:
#       bogus.example       MX 10 mx1.bogus.example, MX 20 mx2.test.example
#       mx1.bogus.example   A 127.0.0.2, TLSA 3 1 1 <mx1>; all of it BOGUS
#   trust-anchors        the DS records of both zones' KSKs, the format
#                        ub_ctx_add_ta_file() and unbound's trust-anchor-file
#                        read ("dane.example. 3600 IN DS ...")
#   dane.example.tlsa    the TLSA data used, for tests to compare
# CERTS is certs.sh's directory (mx1.tlsa311, wrong.tlsa311).  Keys are
# made fresh each run; nothing here is secret.  Exit 0 or 1 with a message.
set -eu
dir=${1:?usage: dnssec.sh DIR CERTS}
certs=${2:?usage: dnssec.sh DIR CERTS}
for t in ldns-keygen ldns-signzone ldns-key2ds; do
	command -v $t >/dev/null 2>&1 || {
		echo "dnssec.sh: $t not found (apt-get install ldnsutils)" >&2
		exit 1
	}
done
[ -s "$certs/mx1.tlsa311" ] && [ -s "$certs/wrong.tlsa311" ] || {
	echo "dnssec.sh: $certs lacks mx1.tlsa311/wrong.tlsa311 (run certs.sh)" >&2
	exit 1
}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
work=$dir/dnssec-work
rm -rf "$work"
mkdir -p "$work"
cd "$work"
good=$(cat "$certs/mx1.tlsa311")
bad=$(cat "$certs/wrong.tlsa311")

cat > dane.example.zone <<EOF
\$ORIGIN dane.example.
\$TTL 60
@	IN SOA	ns.test.example. hostmaster.test.example. 1 3600 600 86400 60
	IN NS	ns.test.example.
	IN MX	10 mx1.dane.example.
	IN MX	20 mx2.test.example.
mx1	IN A	127.0.0.2
_25._tcp.mx1	IN TLSA	3 1 1 $good
bad	IN MX	10 mxbad.dane.example.
bad	IN MX	20 mx2.test.example.
mxbad	IN A	127.0.0.2
_25._tcp.mxbad	IN TLSA	3 1 1 $bad
notlsa	IN MX	10 mxnotlsa.dane.example.
notlsa	IN MX	20 mx2.test.example.
mxnotlsa	IN A	127.0.0.2
pkix	IN MX	10 mxpkix.dane.example.
pkix	IN MX	20 mx2.test.example.
mxpkix	IN A	127.0.0.2
_25._tcp.mxpkix	IN TLSA	1 1 1 $good
mta-sts	IN A	127.0.0.7
_mta-sts	IN TXT	"v=STSv1; id=dane1;"
EOF

cat > bogus.example.zone <<EOF
\$ORIGIN bogus.example.
\$TTL 60
@	IN SOA	ns.test.example. hostmaster.test.example. 1 3600 600 86400 60
	IN NS	ns.test.example.
	IN MX	10 mx1.bogus.example.
	IN MX	20 mx2.test.example.
mx1	IN A	127.0.0.2
_25._tcp.mx1	IN TLSA	3 1 1 $good
EOF

now=$(date -u +%s)
: > "$dir/trust-anchors"
for z in dane.example bogus.example; do
	ksk=$(ldns-keygen -a ECDSAP256SHA256 -k "$z")
	zsk=$(ldns-keygen -a ECDSAP256SHA256 "$z")
	if [ "$z" = bogus.example ]; then
		# expired: validators must call every answer bogus
		ldns-signzone -i 20200101000000 -e 20200201000000 \
			-f "$z.zone.signed" "$z.zone" "$zsk" "$ksk"
	else
		inc=$(date -u -d "@$((now - 3600))" +%Y%m%d%H%M%S)
		exp=$(date -u -d "@$((now + 30 * 86400))" +%Y%m%d%H%M%S)
		ldns-signzone -i "$inc" -e "$exp" \
			-f "$z.zone.signed" "$z.zone" "$zsk" "$ksk"
	fi
	# ldns-keygen -k writes the KSK's DS as $ksk.ds (SHA-256)
	cat "$ksk.ds" >> "$dir/trust-anchors"
	cp "$z.zone.signed" "$dir/$z.zone"
done
printf '3 1 1 %s\n' "$good" > "$dir/dane.example.tlsa"
cd "$dir"
rm -rf "$work"
