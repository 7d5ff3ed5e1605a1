#!/usr/bin/env python3
"""ldap_seeds.py DIR - write fuzz_ldap's seeds: what a directory sends
for searches 1 and 2 (BER, RFC 4511), each behind the target's first
octet (bit 0: search 2 abandoned; the rest: where the input is cut)."""
import os
import sys


def tlv(tag, body):
    n = len(body)
    if n < 0x80:
        ln = bytes([n])
    else:
        b = n.to_bytes((n.bit_length() + 7) // 8, "big")
        ln = bytes([0x80 | len(b)]) + b
    return bytes([tag]) + ln + body


def integer(v, tag=0x02):
    return tlv(tag, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big",
                               signed=True))


def octets(s, tag=0x04):
    return tlv(tag, s.encode() if isinstance(s, str) else s)


def msg(msgid, op, controls=b""):
    return tlv(0x30, integer(msgid) + op + controls)


def entry(dn, attrs=()):
    pa = b"".join(tlv(0x30, octets(a) + tlv(0x31, b"".join(octets(v) for v in vs)))
                  for a, vs in attrs)
    return tlv(0x64, octets(dn) + tlv(0x30, pa))


def done(code, matched="", diag="", referral=None, tag=0x65):
    body = integer(code, 0x0a) + octets(matched) + octets(diag)
    if referral is not None:
        body += tlv(0xa3, b"".join(octets(u) for u in referral))
    return tlv(tag, body)


def reference(*uris):
    return tlv(0x73, b"".join(octets(u) for u in uris))


E1 = entry("uid=alice,ou=people,dc=example,dc=org")
E2 = entry("uid=bob,ou=people,dc=example,dc=org",
           [("mail", ["bob@example.org", "b@example.org"])])
seeds = {
    "found-both": msg(1, E1) + msg(1, done(0)) + msg(2, E2) + msg(2, done(0)),
    "none": msg(1, done(0)) + msg(2, done(32, "dc=example,dc=org")),
    "interleaved": msg(2, E2) + msg(1, E1) + msg(2, done(0)) + msg(1, done(0)),
    "busy": msg(1, done(51, "", "busy")) + msg(2, done(52, "", "unavailable")),
    "sizelimit": msg(1, E1) + msg(1, E1) + msg(1, done(4)) + msg(2, done(3)),
    "reference": msg(1, reference("ldap://other.example/dc=example,dc=org"))
    + msg(1, done(0)) + msg(2, done(10, "", "", ["ldap://x.example/"])),
    "unknown-msgid": msg(7, E1) + msg(7, done(0)) + msg(1, done(0)),
    "disconnect": msg(0, tlv(0x78, integer(52, 0x0a) + octets("") + octets("bye")
                             + octets("1.3.6.1.4.1.1466.20036", 0x8a))),
    "intermediate": msg(1, tlv(0x79, octets("1.2.3", 0x80) + octets("x", 0x81)))
    + msg(1, done(0)),
    "controls": msg(1, done(0), tlv(0xa0, tlv(0x30, octets("1.2.840.113556.1.4.319")
                                              + octets(b"\x30\x05\x02\x01\x00\x04\x00")))),
    "wrong-op": msg(1, tlv(0x61, integer(0, 0x0a) + octets("") + octets("")))
    + msg(2, done(0)),
    "long-length": b"\x30\x84\x7f\xff\xff\xff\x02\x01\x01",
    "over-1mb": b"\x30\x83\x10\x00\x01\x02\x01\x01\x65",
    "truncated": (msg(1, E1) + msg(1, done(0)))[:-3],
    "empty-result": msg(1, tlv(0x65, b"")) + msg(2, done(0)),
    # unsolicited (id 0) responses that are no Notice of Disconnection:
    # libldap leaks each one's diagnosticMessage unless we hang up
    "unsolicited-stream": msg(0, tlv(0x78, integer(0, 0x0a) + octets("")
                                     + octets("x" * 1000)
                                     + octets("1.2.3.4", 0x8a))) * 10
    + msg(1, done(0)),
}
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    for first in (0x00, 0x81, 0xfe):
        with open(os.path.join(out, "%s-%02x" % (name, first)), "wb") as f:
            f.write(bytes([first]) + data)
