"""relay/dns.c (dns.h) against the test world's nsd, through the
tests/integration/dnsq driver: MX/A/TXT/TLSA answers, NODATA, NXDOMAIN,
null MX, resolv.conf and forwarder modes, the per-query timeout, and
DNSSEC (secure, bogus, insecure) with the run's trust anchors.

dnsq prints one line per TYPE: "TYPE STATUS secure=N [records] [why=...]",
MX records as PREF:HOST ("." for a null MX), TLSA as U:S:M:HEX.
"""
import os
import subprocess
import time

_built = {}


def _dnsq_path(world):
    """Build BUILD/dnsq once per run."""
    if 'path' in _built:
        return _built['path']
    out = os.path.join(world.build, 'dnsq')
    root = world.root
    cmd = ('cc -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter '
           '-Ipolicy -Ispool -Irelay -o %s tests/integration/dnsq.c '
           'relay/dns.c relay/ub_ev.c relay/dns_packet.c relay/log.c '
           'policy/*.c -lunbound -lev -lssl -lcrypto -lsystemd' % out)
    p = subprocess.run(cmd, shell=True, cwd=root, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, 'building dnsq failed:\n%s%s' % (p.stdout, p.stderr)
    _built['path'] = out
    return out


def _dnsq(world, name, *types, server=None, anchor=None, timeout=5):
    cmd = [_dnsq_path(world), '-t', str(timeout)]
    if server:
        cmd += ['-s', server]
    if anchor:
        cmd += ['-a', anchor]
    cmd += [name] + list(types)
    start = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30)
    took = time.monotonic() - start
    assert p.returncode == 0, '%s: rc %d\n%s%s' % (' '.join(cmd), p.returncode,
                                                   p.stdout, p.stderr)
    lines = p.stdout.splitlines()
    assert len(lines) == len(types), '%s: %r' % (' '.join(cmd), p.stdout)
    res = []
    for line in lines:
        head, _, why = line.partition(' why=')
        f = head.split()
        res.append({'type': f[0], 'status': f[1],
                    'secure': int(f[2].split('=')[1]),
                    'records': [x for x in f[3:] if not x.startswith('canon=')],
                    'why': why, 'line': line})
    return res if len(res) > 1 else res[0], took


def _anchor(world):
    path = os.path.join(world.workdir, 'trust-anchors')
    assert os.path.exists(path), 'no trust anchors at %s' % path
    return path


BACKUP_MX = ['10:mx1.test.example', '20:mx2.test.example', '30:mx3.test.example']
MODES = (None, '127.0.0.1', '127.0.0.1:53')


def test_dns_mx(world):
    for server in MODES:
        r, _ = _dnsq(world, 'backup.example', 'MX', server=server)
        assert r['status'] == 'ok', 'server %s: %s' % (server, r['line'])
        assert sorted(r['records']) == BACKUP_MX, 'server %s: %s' % (server, r['line'])
        assert r['secure'] == 0, r['line']
        # names come back lowercased whatever case was asked
        r, _ = _dnsq(world, 'BACKUP.Example', 'MX', server=server)
        assert sorted(r['records']) == BACKUP_MX, r['line']


def test_dns_null_mx(world):
    for server in MODES:
        r, _ = _dnsq(world, 'nullmx.example', 'MX', server=server)
        assert r['status'] == 'ok' and r['records'] == ['0:.'], r['line']


def test_dns_nodata_and_a(world):
    for server in MODES:
        mx, a = _dnsq(world, 'aonly.example', 'MX', 'A', server=server)[0]
        assert mx['status'] == 'nodata' and mx['records'] == [], mx['line']
        assert a['status'] == 'ok' and a['records'] == ['127.0.0.2'], a['line']
        r, _ = _dnsq(world, 'mx1.test.example', 'AAAA', server=server)
        assert r['status'] == 'nodata', r['line']


def test_dns_nxdomain(world):
    for server in MODES:
        for t in ('MX', 'A', 'TXT'):
            r, _ = _dnsq(world, 'nosuch.test.example', t, server=server)
            assert r['status'] == 'nxdomain', r['line']
    # a name in no zone nsd serves: nsd REFUSES, which is not a "no"
    r, _ = _dnsq(world, 'nosuch.example', 'MX', server='127.0.0.1')
    assert r['status'] in ('nxdomain', 'tempfail'), r['line']


def test_dns_txt(world):
    for server in MODES:
        r, _ = _dnsq(world, 'backup.example', 'TXT', server=server)
        assert r['status'] == 'ok', r['line']
        assert r['line'].split(' ', 3)[3] == '"v=spf1 mx -all"', r['line']
        r, _ = _dnsq(world, '_mta-sts.sts.example', 'TXT', server=server)
        assert r['status'] == 'ok', r['line']
        assert 'v=STSv1; id=20240101T000000;' in r['line'], r['line']


def test_dns_timeout(world):
    # nothing listens on 127.0.0.9:53: the answer is a tempfail, within the
    # timeout (libunbound may give up earlier on the ICMP refusal)
    r, took = _dnsq(world, 'backup.example', 'MX', server='127.0.0.9', timeout=2)
    assert r['status'] == 'tempfail', r['line']
    assert took < 2 + 2.5, 'took %.1fs with a 2s timeout' % took
    # a port nobody listens on, several queries at once
    rs, took = _dnsq(world, 'backup.example', 'MX', 'A', 'TLSA',
                     server='127.0.0.1:5399', timeout=2)
    assert [x['status'] for x in rs] == ['tempfail'] * 3, [x['line'] for x in rs]
    assert took < 2 + 2.5, 'took %.1fs with a 2s timeout' % took


def test_dns_bad_server(world):
    for bad in ('127.0.0.1:0', '127.0.0.1:99999', '127.0.0.1:x', ':53', '[::1'):
        p = subprocess.run([_dnsq_path(world), '-s', bad, 'backup.example', 'MX'],
                           capture_output=True, text=True, timeout=20)
        assert p.returncode == 2 and 'dnsq:' in p.stderr, (bad, p.stdout, p.stderr)


def test_dns_dnssec_secure(world):
    ta = _anchor(world)
    for server in MODES:
        tlsa, _ = _dnsq(world, '_25._tcp.mx1.dane.example', 'TLSA',
                        server=server, anchor=ta)
        assert tlsa['status'] == 'ok' and tlsa['secure'] == 1, tlsa['line']
        assert tlsa['records'], tlsa['line']
        for rec in tlsa['records']:
            u, s, m, data = rec.split(':')
            assert u in ('0', '1', '2', '3') and s in ('0', '1'), rec
            assert m in ('0', '1', '2') and len(data) > 0, rec
        a, _ = _dnsq(world, 'mx1.dane.example', 'A', server=server, anchor=ta)
        assert a['status'] == 'ok' and a['secure'] == 1, a['line']
        mx, _ = _dnsq(world, 'dane.example', 'MX', server=server, anchor=ta)
        assert mx['status'] == 'ok' and mx['secure'] == 1, mx['line']
        # a signed "no": NXDOMAIN under the anchor is secure too
        nx, _ = _dnsq(world, '_25._tcp.mxnotlsa.dane.example', 'TLSA',
                      server=server, anchor=ta)
        assert nx['status'] == 'nxdomain' and nx['secure'] == 1, nx['line']


def test_dns_dnssec_bogus(world):
    ta = _anchor(world)
    for server in MODES:
        r, _ = _dnsq(world, 'bogus.example', 'MX', server=server, anchor=ta)
        assert r['status'] == 'bogus' and r['secure'] == 0, r['line']
        assert 'DNSSEC' in r['why'], r['line']
        r, _ = _dnsq(world, '_25._tcp.mx1.bogus.example', 'TLSA', server=server,
                     anchor=ta)
        assert r['status'] == 'bogus', r['line']


def test_dns_dnssec_insecure(world):
    ta = _anchor(world)
    r, _ = _dnsq(world, 'backup.example', 'MX', server='127.0.0.1', anchor=ta)
    assert r['status'] == 'ok' and r['secure'] == 0, r['line']
    assert sorted(r['records']) == BACKUP_MX, r['line']
    # without the anchor nothing is secure, and the bogus zone is not bogus
    r, _ = _dnsq(world, '_25._tcp.mx1.dane.example', 'TLSA', server='127.0.0.1')
    assert r['status'] == 'ok' and r['secure'] == 0, r['line']
    r, _ = _dnsq(world, 'bogus.example', 'MX', server='127.0.0.1')
    assert r['status'] == 'ok' and r['secure'] == 0, r['line']


# RFC 6761 special-use names and RFC 6303 private reverse zones that
# libunbound would answer itself (NXDOMAIN) by default: asked of the
# configured server (nsd serves them in the test world) in every mode
SPECIAL = (
    ('backup.test', 'MX', ['10:mx1.backup.test', '20:mx2.backup.test']),
    ('mx1.backup.test', 'A', ['127.0.0.2']),
    ('relay.home.arpa', 'MX', ['10:mx1.relay.home.arpa', '20:mx2.relay.home.arpa']),
    ('mx1.relay.home.arpa', 'A', ['127.0.0.2']),
    ('mail.invalid', 'MX', ['10:mx1.test.example']),
    ('mx6.backup.test', 'AAAA', ['::1']),
)
SPECIAL_TXT = (
    ('mail.invalid', '"invalid but served"'),
    ('1.0.0.10.in-addr.arpa', '"10.0.0.1 served"'),
    ('1.0.168.192.in-addr.arpa', '"192.168.0.1 served"'),
    ('2.0.0.127.in-addr.arpa', '"127.0.0.2 served"'),
)


def test_dns_special_use_names_asked_of_server(world):
    for server in MODES + ('[::1]:53',):
        for name, t, want in SPECIAL:
            r, _ = _dnsq(world, name, t, server=server)
            assert r['status'] == 'ok', 'server %s: %s %s' % (server, name, r['line'])
            assert sorted(r['records']) == want, 'server %s: %s' % (server, r['line'])
        for name, want in SPECIAL_TXT:
            r, _ = _dnsq(world, name, 'TXT', server=server)
            assert r['status'] == 'ok', 'server %s: %s %s' % (server, name, r['line'])
            assert r['line'].split(' ', 3)[3] == want, r['line']
        # a "no" from the server is the server's, not libunbound's
        r, _ = _dnsq(world, 'nosuch.backup.test', 'MX', server=server)
        assert r['status'] == 'nxdomain', r['line']


def test_dns_special_use_with_trust_anchor(world):
    # with DNSSEC on, the private names are insecure answers, not bogus,
    # and the signed zones stay secure
    ta = _anchor(world)
    for name, t, want in SPECIAL:
        r, _ = _dnsq(world, name, t, server='127.0.0.1', anchor=ta)
        assert r['status'] == 'ok' and sorted(r['records']) == want, r['line']
    r, _ = _dnsq(world, 'mx1.dane.example', 'A', server='127.0.0.1', anchor=ta)
    assert r['status'] == 'ok' and r['secure'] == 1, r['line']


def test_dns_localhost_answered_locally(world):
    # nsd serves no localhost zone (it would REFUSE): only libunbound's
    # own localhost data can answer
    for server in MODES:
        r, _ = _dnsq(world, 'localhost', 'A', server=server)
        assert r['status'] == 'ok' and r['records'] == ['127.0.0.1'], r['line']
