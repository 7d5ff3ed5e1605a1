#!/bin/sh
# certs.sh DIR - a throwaway test CA and certificates for the TLS tests:
#   ca.pem/ca.key            the test CA
#   mx1.pem/mx1.key          mx1.test.example (the primary), signed by the CA
#   mx2.pem/mx2.key          mx2.test.example (backmx itself), signed by the CA
#   wrong.pem/wrong.key      wrong.test.example, signed by the CA
#   mx1.tlsa311              hex SHA-256 of mx1's SubjectPublicKeyInfo (TLSA 3 1 1)
#   mta-sts.pem/mta-sts.key  the MTA-STS policy host (https_server.py), signed by
#                            the CA: mta-sts.sts.example, mta-sts.backup.example,
#                            mta-sts.dane.example
#   wrong.tlsa311            hex SHA-256 of wrong's SPKI (a TLSA that does not match mx1)
#   peera/peerb/peerx.pem/.key  mirror nodes peer{a,b,x}.test.example (server and
#                            client auth), signed by the CA; peerx is a wrong name
#   rogue.pem/rogue.key      peerb.test.example, self-signed (not from the CA)
#   ldap.pem/ldap.key        the test slapd (ldap_server.py): IP 127.0.0.10,
#                            ldap.test.example, signed by the CA
set -eu
d=$1
mkdir -p "$d"
cd "$d"
[ -f mx1.tlsa311 ] && exit 0
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
	-subj "/CN=backmx test CA" -addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
for n in mx1 mx2 wrong; do
	openssl req -newkey rsa:2048 -nodes -keyout $n.key -out $n.csr \
		-subj "/CN=$n.test.example" 2>/dev/null
	printf 'subjectAltName=DNS:%s.test.example\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' $n > $n.ext
	openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
		-out $n.pem -days 30 -extfile $n.ext 2>/dev/null
done
openssl req -newkey rsa:2048 -nodes -keyout mta-sts.key -out mta-sts.csr \
	-subj "/CN=mta-sts.sts.example" 2>/dev/null
printf 'subjectAltName=DNS:mta-sts.sts.example,DNS:mta-sts.backup.example,DNS:mta-sts.dane.example\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > mta-sts.ext
openssl x509 -req -in mta-sts.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
	-out mta-sts.pem -days 30 -extfile mta-sts.ext 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout ldap.key -out ldap.csr \
	-subj "/CN=ldap.test.example" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.10,DNS:ldap.test.example\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ldap.ext
openssl x509 -req -in ldap.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
	-out ldap.pem -days 30 -extfile ldap.ext 2>/dev/null
openssl x509 -in wrong.pem -noout -pubkey | openssl pkey -pubin -outform DER |
	openssl dgst -sha256 -hex | sed 's/^.*= //' > wrong.tlsa311
for n in peera peerb peerx; do
	openssl req -newkey rsa:2048 -nodes -keyout $n.key -out $n.csr \
		-subj "/CN=$n.test.example" 2>/dev/null
	printf 'subjectAltName=DNS:%s.test.example\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n' $n > $n.ext
	openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
		-out $n.pem -days 30 -extfile $n.ext 2>/dev/null
done
openssl req -x509 -newkey rsa:2048 -nodes -keyout rogue.key -out rogue.pem -days 30 \
	-subj "/CN=peerb.test.example" -addext "subjectAltName=DNS:peerb.test.example" 2>/dev/null
# last: its presence means the directory is complete
chmod 600 *.key
openssl x509 -in mx1.pem -noout -pubkey | openssl pkey -pubin -outform DER |
	openssl dgst -sha256 -hex | sed 's/^.*= //' > mx1.tlsa311
