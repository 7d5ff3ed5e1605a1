"""relay/checkdns.c (backmxctl check-dns) against the test world's nsd,
through the tests/integration/checkdnsq driver, one zone per mistake
(tests/integration/zones/checkdns-*.example.zone).  Our hostname is
mx2.test.example (127.0.0.3) unless a test says otherwise.

checkdnsq prints "LEVEL CHECK TEXT" per line, then "nfail N"; it exits 1
when N > 0 (as backmxctl does), 3 when a callback ran inside
checkdns_start.  It is built with ASan/UBSan, so a leak or overflow in the
audit fails the test too.
"""
import os
import re
import subprocess
import time

_built = {}
US = 'mx2.test.example'


def _checkdnsq_path(world):
    """Build BUILD/checkdnsq once per run."""
    if 'path' in _built:
        return _built['path']
    out = os.path.join(world.build, 'checkdnsq')
    cmd = ('cc -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter '
           '-g -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined '
           '-Ipolicy -Ispool -Irelay -o %s tests/integration/checkdnsq.c '
           'relay/checkdns*.c relay/dns.c relay/ub_ev.c relay/dns_packet.c '
           'relay/log.c relay/mtasts*.c relay/net.c relay/tls.c policy/*.c '
           '-lunbound -lev -lssl -lcrypto -lsystemd' % out)
    p = subprocess.run(cmd, shell=True, cwd=world.root, capture_output=True,
                       text=True, timeout=180)
    assert p.returncode == 0, 'building checkdnsq failed:\n%s%s' % (p.stdout, p.stderr)
    _built['path'] = out
    return out


def _check(world, domain, hostname=US, tls=None, configured=True,
           aliases=(), server='127.0.0.1', anchor=None, timeout=5, ca=None,
           noloop=False, own=()):
    """Run the audit; return (lines [(level, check, text)], nfail)."""
    cmd = [_checkdnsq_path(world), '-t', str(timeout), '-H', hostname]
    if server:
        cmd += ['-s', server]
    if anchor:
        cmd += ['-a', anchor]
    for a in aliases:
        cmd += ['-A', a]
    if ca:
        cmd += ['-C', ca]
    if noloop:
        cmd.append('-n')
    for a in own:
        cmd += ['-I', a]
    if configured:
        cmd += ['-D', domain.rstrip('.') + (':' + tls if tls else '')]
    cmd.append(domain)
    env = dict(os.environ, ASAN_OPTIONS='detect_leaks=1')
    p = subprocess.run(cmd, capture_output=True, text=True,
                       timeout=timeout * 3 + 30, env=env)
    out = p.stdout
    assert p.returncode in (0, 1), '%s: rc %d\n%s%s' % (' '.join(cmd), p.returncode,
                                                        out, p.stderr)
    assert 'Sanitizer' not in p.stderr, p.stderr
    lines = out.splitlines()
    assert lines and lines[-1].startswith('nfail '), out
    nfail = int(lines[-1].split()[1])
    res = []
    for line in lines[:-1]:
        level, check, text = line.split(' ', 2)
        assert level in ('OK', 'WARN', 'FAIL'), line
        res.append((level, check, text))
    assert nfail == sum(1 for r in res if r[0] == 'FAIL'), out
    assert p.returncode == (1 if nfail else 0), out
    return res, nfail


def _has(lines, level, check, pattern=''):
    return any(lv == level and c == check and re.search(pattern, t)
               for lv, c, t in lines)


def _show(lines):
    return '\n'.join(' '.join(x) for x in lines)


def _expect(lines, *want):
    for level, check, pattern in want:
        assert _has(lines, level, check, pattern), \
            'no %s %s /%s/ in:\n%s' % (level, check, pattern, _show(lines))


def test_checkdns_clean(world):
    lines, nfail = _check(world, 'checkdns-clean.example')
    assert nfail == 0, _show(lines)
    assert all(lv == 'OK' for lv, _, _ in lines), _show(lines)
    _expect(lines,
            ('OK', 'mx', r'10 mx1\.test\.example, 20 mx2\.test\.example$'),
            ('OK', 'self', r'MX 20, behind the primary mx1\.test\.example \(10\)'),
            ('OK', 'target', r'mx2\.test\.example \(20\): 127\.0\.0\.3 \(us\)'),
            ('OK', 'spf', 'uses mx'),
            ('OK', 'helo', r'mx2\.test\.example resolves to 127\.0\.0\.3$'),
            ('OK', 'ptr', r'127\.0\.0\.3 has PTR mx2\.test\.example, forward-confirmed'),
            ('OK', 'dmarc', r'DMARC record present \(p=reject\)'),
            ('OK', 'tls-rpt', r'TLS-RPT record present \(1 report address\)'),
            ('OK', 'mta-sts', 'no MTA-STS record'))
    # knowing this machine's addresses, the HELO name is confirmed ours
    lines, nfail = _check(world, 'checkdns-clean.example', own=('127.0.0.3',))
    assert nfail == 0, _show(lines)
    _expect(lines, ('OK', 'helo', r'resolves to 127\.0\.0\.3 \(ours\)'))
    # a trailing dot and upper case are the same domain
    lines2, _ = _check(world, 'CHECKDNS-Clean.example.', configured=False)
    _expect(lines2, ('WARN', 'domain', 'no domain block'),
            ('OK', 'self', 'MX 20'))


def test_checkdns_self(world):
    lines, nfail = _check(world, 'checkdns-missing.example')
    assert nfail == 1, _show(lines)
    _expect(lines, ('FAIL', 'self', r'not in the MX set.*"MX 20 mx2\.test\.example\."'))

    lines, nfail = _check(world, 'checkdns-best.example')
    assert nfail == 1, _show(lines)
    _expect(lines, ('FAIL', 'self', r'is the best MX \(10\)'))

    # equal-best: a FAIL for our place, a WARN for the equal preference
    lines, nfail = _check(world, 'checkdns-equal.example')
    assert nfail == 1, _show(lines)
    _expect(lines, ('FAIL', 'self', r'shares the best preference 10 with mx1'),
            ('WARN', 'equal-pref', r'preference 10 is shared.*failover'))

    # equal with another backup, behind the primary: only the WARN
    lines, nfail = _check(world, 'checkdns-equal2.example')
    assert nfail == 0, _show(lines)
    _expect(lines, ('OK', 'self', 'MX 20'),
            ('WARN', 'equal-pref', r'shared by mx2\.test\.example and mx3\.test\.example'))

    # a hostname nobody lists
    lines, nfail = _check(world, 'checkdns-clean.example', hostname='mx4.test.example')
    _expect(lines, ('FAIL', 'self', r'mx4\.test\.example is not in the MX set'))
    assert not _has(lines, 'OK', 'target', r'\(us\)'), _show(lines)


def test_checkdns_alias(world):
    # listed under a name that has our address but is not our name
    lines, nfail = _check(world, 'checkdns-alias.example')
    _expect(lines, ('FAIL', 'self', 'not in the MX set'),
            ('WARN', 'target', r'backup\.checkdns-alias\.example \(20\) has our '
             r'address 127\.0\.0\.3.*hostname_alias'))
    # with the alias configured, all is well
    lines, nfail = _check(world, 'checkdns-alias.example',
                          aliases=('backup.checkdns-alias.example',))
    assert nfail == 0, _show(lines)
    _expect(lines, ('OK', 'self', 'MX 20'),
            ('OK', 'target', r'backup\.checkdns-alias\.example \(20\): 127\.0\.0\.3 \(us\)'))


def test_checkdns_single(world):
    lines, nfail = _check(world, 'checkdns-single.example')
    _expect(lines, ('WARN', 'redundancy', r'single MX host \(mx1\.test\.example\)'),
            ('FAIL', 'self', 'not in the MX set'))
    lines, _ = _check(world, 'selfbest.example')
    _expect(lines, ('WARN', 'redundancy', 'single MX'), ('FAIL', 'self', 'best MX'))


def test_checkdns_targets(world):
    lines, nfail = _check(world, 'checkdns-literal.example')
    assert nfail == 1, _show(lines)
    _expect(lines, ('FAIL', 'target', r'192\.0\.2\.1 \(30\) is an IP address'))

    lines, nfail = _check(world, 'checkdns-cname.example')
    assert nfail == 1, _show(lines)
    _expect(lines,
            ('WARN', 'target', r'mail\.checkdns-cname\.example \(10\) is a CNAME '
             r'to mx1\.test\.example \(127\.0\.0\.2\)'),
            ('FAIL', 'target', r'dead\.checkdns-cname\.example \(30\) is a CNAME '
             r'to nowhere\.checkdns-cname\.example, which has no A'))

    lines, nfail = _check(world, 'checkdns-noaddr.example')
    assert nfail == 2, _show(lines)
    _expect(lines,
            ('FAIL', 'target', r'noaddr\.checkdns-noaddr\.example \(30\) has no A or AAAA'),
            ('FAIL', 'target', r'gone\.checkdns-noaddr\.example \(40\) does not exist'))


def test_checkdns_no_mx(world):
    lines, nfail = _check(world, 'checkdns-nullmx.example')
    assert nfail == 1, _show(lines)
    _expect(lines, ('OK', 'mx', r': 0 \.$'), ('FAIL', 'null-mx', 'RFC 7505'))
    assert not _has(lines, 'FAIL', 'self'), _show(lines)
    assert not _has(lines, 'WARN', 'spf'), _show(lines)

    lines, nfail = _check(world, 'aonly.example')
    _expect(lines, ('FAIL', 'mx', 'no MX records.*implicit MX'))

    lines, nfail = _check(world, 'nosuch.checkdns-clean.example', configured=False)
    assert nfail == 1, _show(lines)
    _expect(lines, ('FAIL', 'mx', r'does not exist \(NXDOMAIN\)'))
    assert not _has(lines, 'WARN', 'spf'), _show(lines)


def test_checkdns_spf(world):
    lines, nfail = _check(world, 'checkdns-spfnomx.example')
    assert nfail == 0, _show(lines)
    _expect(lines, ('WARN', 'spf', r'"v=spf1 ip4:127\.0\.0\.2 -all" gives fail for our '
                    r'address 127\.0\.0\.3: .*\(add mx\)'))

    lines, nfail = _check(world, 'checkdns-spfip.example')
    assert nfail == 0, _show(lines)
    _expect(lines, ('OK', 'spf', r'passes for our address 127\.0\.0\.3 '
                    r'\(matched by ip4:127\.0\.0\.0/29\)$'))

    lines, nfail = _check(world, 'checkdns-spf2.example')
    assert nfail == 1, _show(lines)
    _expect(lines, ('FAIL', 'spf', '2 SPF records'))

    lines, nfail = _check(world, 'nospf.checkdns-spf2.example')
    assert nfail == 0, _show(lines)
    _expect(lines, ('WARN', 'spf', r'no SPF record'))


def _spf_lines(lines):
    return [x for x in lines if x[1] == 'spf']


def test_checkdns_spf_include_redirect(world):
    """SPF evaluated as a receiver does (RFC 7208 4.6): include: and
    redirect= followed, the limit of 10 DNS-querying terms and of 2 void
    lookups; zone checkdns-spfinc.example, one mistake per name."""
    z = 'checkdns-spfinc.example'
    # a chain of two includes ending in a: of our address
    lines, nfail = _check(world, z)
    assert nfail == 0, _show(lines)
    assert _spf_lines(lines) == [(
        'OK', 'spf', '"v=spf1 include:_spf.%s -all" passes for our address '
        '127.0.0.3 (matched by include:_spf.%s > include:_inner.%s > '
        'a:relay.%s)' % (z, z, z, z))], _show(lines)
    # redirect= to the same chain
    lines, nfail = _check(world, 'redir.' + z)
    assert nfail == 0, _show(lines)
    _expect(lines, ('OK', 'spf', r'passes for our address 127\.0\.0\.3 '
                    r'\(matched by include:_inner\.%s > a:relay\.' % re.escape(z)))
    # 11 DNS-querying terms through the includes: permerror, one FAIL
    lines, nfail = _check(world, 'toomany.' + z)
    assert nfail == 1, _show(lines)
    assert len(_spf_lines(lines)) == 1, _show(lines)
    _expect(lines, ('FAIL', 'spf', r'^permerror: "v=spf1 include:_a\.toomany.* mx -all" '
                    r'takes 11 DNS-querying terms .*RFC 7208 4\.6\.4 allows 10'))
    # include: of a name without SPF
    lines, nfail = _check(world, 'badinc.' + z)
    assert nfail == 1, _show(lines)
    _expect(lines, ('FAIL', 'spf', r'permerror for our address 127\.0\.0\.3: '
                    r'include:gone\.%s: gone\.%s has no SPF record'
                    % (re.escape(z), re.escape(z))))
    # a record that includes itself
    lines, nfail = _check(world, 'loop.' + z)
    assert nfail == 1, _show(lines)
    _expect(lines, ('FAIL', 'spf', r'permerror: .* includes itself \(a loop\)'))
    # three void lookups: permerror at the third, before mx could match
    lines, nfail = _check(world, 'voids.' + z)
    assert nfail == 1, _show(lines)
    _expect(lines, ('FAIL', 'spf', r'permerror for our address 127\.0\.0\.3: more '
                    r'than 2 void lookups \(the last for v3\.%s\)' % re.escape(z)))
    # the clean zone's "mx" passes for us through the MX hosts' addresses
    lines, nfail = _check(world, 'checkdns-clean.example')
    _expect(lines, ('OK', 'spf', r'passes for our address 127\.0\.0\.3: it uses mx'))
    # a machine address the record does not cover is reported too
    lines, nfail = _check(world, z, own=('127.0.0.3', '127.0.0.77'))
    _expect(lines, ('OK', 'spf', r'passes for our address 127\.0\.0\.3 '),
            ('WARN', 'spf', r'gives fail for our address 127\.0\.0\.77'))


def test_checkdns_mta_sts(world):
    # a record, but mta-sts.checkdns-sts.example has no address
    lines, nfail = _check(world, 'checkdns-sts.example')
    assert nfail == 0, _show(lines)
    _expect(lines, ('OK', 'mta-sts', r'record present \(id=20240101T000000\)'),
            ('WARN', 'mta-sts', r'policy fetch from https://mta-sts\.checkdns-sts\.example/'
             r'\.well-known/mta-sts\.txt failed: .*does not exist'))
    # without a loop (backmxd.loop NULL) nothing is fetched
    lines, nfail = _check(world, 'checkdns-sts.example', noloop=True)
    _expect(lines, ('WARN', 'mta-sts', r'policy not fetched.*mx2\.test\.example'))

    lines, nfail = _check(world, 'bad.checkdns-sts.example')
    _expect(lines, ('WARN', 'mta-sts', r'invalid or there are 2 v=STSv1 records'))
    assert not _has(lines, 'WARN', 'mta-sts', 'fetch'), _show(lines)


POLICY = 'version: STSv1\nmode: %s\n%smax_age: 86400\n'


def _policy_server(world, text):
    """https_server.py on 127.0.0.7:443 (mta-sts.sts.example) serving text."""
    d = os.path.join(world.workdir, 'checkdns-sts')
    os.makedirs(d, exist_ok=True)
    pol = os.path.join(d, 'policy.txt')
    with open(pol, 'w') as f:
        f.write(text)
    ready = os.path.join(d, 'ready')
    if os.path.exists(ready):
        os.unlink(ready)
    certs = world.certs
    p = subprocess.Popen(['/usr/bin/python3',
                          os.path.join(world.root, 'tests/integration/https_server.py'),
                          '--cert', os.path.join(certs, 'mta-sts.pem'),
                          '--key', os.path.join(certs, 'mta-sts.key'),
                          '--policy', pol, '--ready', ready,
                          '--log', os.path.join(d, 'https.log')])
    for _ in range(100):
        if os.path.exists(ready):
            return p
        time.sleep(0.1)
    p.kill()
    raise AssertionError('https_server.py did not start')


def test_checkdns_mta_sts_policy(world):
    ca = os.path.join(world.certs, 'ca.pem')
    cases = [
        # (mode, mx lines, expected (level, pattern) lines, nfail)
        ('enforce', 'mx: mx1.test.example\n',
         [('FAIL', r'policy \(mode enforce\) has no mx: pattern matching '
           r'mx2\.test\.example.*add "mx: mx2\.test\.example"')], 1),
        ('testing', 'mx: mx1.test.example\n',
         [('WARN', r'policy \(mode testing\) has no mx: pattern matching')], 0),
        ('enforce', 'mx: *.test.example\n',
         [('OK', r'policy \(mode enforce\) matches mx2\.test\.example')], 0),
        ('enforce', 'mx: mx2.test.example\n',
         [('OK', r'matches mx2\.test\.example'),
          ('FAIL', r'does not match MX host\(s\) mx1\.test\.example')], 1),
        ('none', '',
         [('OK', 'policy mode none')], 0),
    ]
    for mode, mx, want, nf in cases:
        p = _policy_server(world, POLICY % (mode, mx))
        try:
            lines, nfail = _check(world, 'sts.example', ca=ca)
            for level, pattern in want:
                _expect(lines, (level, 'mta-sts', pattern))
            assert nfail == nf, '%s %r:\n%s' % (mode, mx, _show(lines))
            # the certificate is checked: without our CA the fetch fails
            if mode == 'none':
                lines, nfail = _check(world, 'sts.example')
                _expect(lines, ('WARN', 'mta-sts', 'policy fetch .* failed: '
                                'certificate verification failed'))
        finally:
            p.terminate()
            p.wait(10)


def test_checkdns_tlsa(world):
    anchor = os.path.join(world.workdir, 'trust-anchors')
    # tls dane for the domain, no TLSA for our hostname
    lines, nfail = _check(world, 'checkdns-clean.example', tls='dane')
    assert nfail == 1, _show(lines)
    _expect(lines, ('FAIL', 'tlsa', r'_25\._tcp\.mx2\.test\.example has no TLSA'))
    # not dane: no TLSA line at all
    lines, _ = _check(world, 'checkdns-clean.example', tls='verify')
    assert not any(c == 'tlsa' for _, c, _ in lines), _show(lines)

    if not os.path.exists(anchor):
        return
    # signed, usable: OK (mx1.dane.example as our name makes us best: FAIL self)
    lines, _ = _check(world, 'dane.example', hostname='mx1.dane.example',
                      tls='dane', anchor=anchor)
    _expect(lines, ('OK', 'tlsa', r'1 usable TLSA record\(s\), DNSSEC-validated'))
    # the same without a trust anchor: not validated
    lines, _ = _check(world, 'dane.example', hostname='mx1.dane.example', tls='dane')
    _expect(lines, ('WARN', 'tlsa', 'not DNSSEC-validated'))
    # usage 1 only
    lines, _ = _check(world, 'pkix.dane.example', hostname='mxpkix.dane.example',
                      tls='dane', anchor=anchor)
    _expect(lines, ('WARN', 'tlsa', r'none DANE-TA\(2\) or DANE-EE\(3\)'))
    # bogus
    lines, _ = _check(world, 'bogus.example', hostname='mx1.bogus.example',
                      tls='dane', anchor=anchor)
    _expect(lines, ('FAIL', 'tlsa', 'DNSSEC validation failed'),
            ('FAIL', 'mx', 'DNSSEC validation failed'))


def test_checkdns_timeout(world):
    # nothing answers on 127.0.0.9: every lookup fails, the audit still ends
    lines, nfail = _check(world, 'checkdns-clean.example', server='127.0.0.9', timeout=2)
    assert nfail >= 1, _show(lines)
    _expect(lines, ('FAIL', 'mx', 'MX lookup for checkdns-clean.example failed'))


def test_checkdns_resolvconf(world):
    # no server: /etc/resolv.conf of the namespace (nameserver 127.0.0.1)
    lines, nfail = _check(world, 'checkdns-clean.example', server=None)
    assert nfail == 0, _show(lines)
    _expect(lines, ('OK', 'self', 'MX 20'))


CTL_DOMAINS = '''
domain checkdns-clean.example { recipients %(dir)s/backup.rcpts  route mx }
domain checkdns-best.example  { recipients %(dir)s/backup.rcpts  route mx }
'''


def test_checkdns_backmxctl(world):
    # the real path: backmxctl -> control socket -> checkdns in backmxd
    b = world.backmx(domains=CTL_DOMAINS)
    p = b.ctl('check-dns', 'checkdns-clean.example')
    assert p.returncode == 0, 'rc %d\n%s%s' % (p.returncode, p.stdout, p.stderr)
    assert re.search(r'OK +self: mx2\.test\.example is MX 20', p.stdout), p.stdout
    assert 'FAIL' not in p.stdout, p.stdout

    p = b.ctl('check-dns', 'checkdns-best.example')
    assert p.returncode == 1, 'rc %d\n%s%s' % (p.returncode, p.stdout, p.stderr)
    assert re.search(r'FAIL +self: mx2\.test\.example is the best MX', p.stdout), p.stdout
    assert p.stderr.strip(), 'no message on stderr'


def _ctl_lines(text):
    """backmxctl's text lines: (level, check, message)"""
    out = []
    for line in text.splitlines():
        m = re.match(r'^(OK|WARN|FAIL) +([a-z-]+): (.*)$', line)
        assert m, 'not a check-dns line: %r' % line
        out.append(m.groups())
    return out


def test_checkdns_backmxctl_no_daemon(world):
    """No daemon: backmxctl reads -c, runs the audit itself with the
    configured resolver (dns 127.0.0.1:53, the world's nsd, which the host
    resolver does not know), and gives the same lines, --json included;
    the exit status still says whether a check FAILed."""
    import json
    b = world.backmx(domains=CTL_DOMAINS, start=False)
    assert not os.path.exists(b.control_path)
    p = b.ctl('check-dns', 'checkdns-clean.example')
    assert p.returncode == 0, 'rc %d\n%s%s' % (p.returncode, p.stdout, p.stderr)
    assert 'no daemon on %s' % b.control_path in p.stderr, p.stderr
    assert 'checking with the resolver of %s' % b.conf_path in p.stderr, p.stderr
    lines = _ctl_lines(p.stdout)
    assert ('OK', 'self', 'mx2.test.example is MX 20, behind the primary '
            'mx1.test.example (10)') in lines or \
        any(lv == 'OK' and c == 'self' and 'MX 20' in t for lv, c, t in lines), p.stdout
    assert not any(lv == 'FAIL' for lv, _, _ in lines), p.stdout
    # the listen address (127.0.0.3) counts as ours, as in the daemon
    assert any(lv == 'OK' and c == 'helo' and '(ours)' in t for lv, c, t in lines), p.stdout
    assert any(lv == 'OK' and c == 'spf' and 'passes for our address 127.0.0.3' in t
               for lv, c, t in lines), p.stdout
    # the same audit as the daemon's: start it and compare the lines
    b.start()
    d = b.ctl('check-dns', 'checkdns-clean.example')
    assert d.returncode == 0, d.stderr
    assert 'no daemon' not in d.stderr
    assert _ctl_lines(d.stdout) == lines, (d.stdout, p.stdout)
    b.stop()
    # a stale socket file (nobody listening: ECONNREFUSED) is "no daemon" too
    import socket
    if os.path.exists(b.control_path):
        os.unlink(b.control_path)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(b.control_path)
    stale.close()
    assert os.path.exists(b.control_path)
    # --json, one object per line; a FAIL gives exit 1 and the count
    p = b.ctl('check-dns', '--json', 'checkdns-best.example')
    assert p.returncode == 1, 'rc %d\n%s%s' % (p.returncode, p.stdout, p.stderr)
    objs = [json.loads(x) for x in p.stdout.splitlines()]
    assert objs and all(set(o) == {'status', 'check', 'message'} for o in objs), p.stdout
    assert any(o['status'] == 'FAIL' and o['check'] == 'self' and
               'is the best MX' in o['message'] for o in objs), p.stdout
    assert re.search(r'check-dns checkdns-best\.example: \d+ checks? failed', p.stderr), p.stderr
    assert 'no daemon on %s (Connection refused)' % b.control_path in p.stderr, p.stderr
    # -q: no notice, same output
    q = b.ctl('-q', 'check-dns', '--json', 'checkdns-best.example')
    assert q.returncode == 1 and 'no daemon' not in q.stderr, q.stderr
    assert q.stdout == p.stdout
    # a config that does not load: the connect error, no audit
    with open(b.conf_path, 'a') as f:
        f.write('no_such_directive 1\n')
    p = b.ctl('check-dns', 'checkdns-clean.example')
    assert p.returncode == 1 and p.stdout == '', (p.stdout, p.stderr)
    assert 'cannot' in p.stderr, p.stderr


HOST = 'checkdns-host.example'


def test_checkdns_helo_ptr(world):
    # planted mistakes in zones/checkdns-host.example.zone and 127.in-addr.arpa
    good = 'good.' + HOST
    lines, _ = _check(world, 'checkdns-clean.example', hostname=good)
    _expect(lines, ('OK', 'helo', r'good\.checkdns-host\.example resolves to 127\.0\.0\.31'),
            ('OK', 'ptr', r'127\.0\.0\.31 has PTR good\.checkdns-host\.example, '
             'forward-confirmed'))
    assert not _has(lines, 'FAIL', 'ptr') and not _has(lines, 'FAIL', 'helo'), _show(lines)
    # the HELO name resolves, but not to an address of this machine
    lines, _ = _check(world, 'checkdns-clean.example', hostname=good, own=('127.0.0.3',))
    _expect(lines, ('FAIL', 'helo', r'resolves to 127\.0\.0\.31, none of which is an '
                    r'address of this machine \(127\.0\.0\.3\)'))
    # no address at all
    lines, _ = _check(world, 'checkdns-clean.example', hostname='nohelo.' + HOST)
    _expect(lines, ('FAIL', 'helo', r'nohelo\.checkdns-host\.example .*has no A or AAAA'))
    assert not any(c == 'ptr' for _, c, _ in lines), _show(lines)
    # no PTR
    lines, _ = _check(world, 'checkdns-clean.example', hostname='noptr.' + HOST)
    _expect(lines, ('FAIL', 'ptr', r'127\.0\.0\.32 \(ours\) has no PTR record'))
    # PTR to a name that does not lead back
    lines, _ = _check(world, 'checkdns-clean.example', hostname='badptr.' + HOST)
    _expect(lines, ('FAIL', 'ptr', r'127\.0\.0\.33 \(ours\) has PTR elsewhere\.checkdns-host'
                    r'\.example, which does not resolve back'))
    # forward-confirmed, but another name than ours: a WARN
    lines, _ = _check(world, 'checkdns-clean.example', hostname='other.' + HOST)
    _expect(lines, ('WARN', 'ptr', r'127\.0\.0\.34 \(ours\) has PTR named\.checkdns-host'
                    r'\.example, forward-confirmed, but not our hostname'))
    assert not _has(lines, 'FAIL', 'ptr'), _show(lines)


def test_checkdns_dmarc_tlsrpt(world):
    lines, nfail = _check(world, 'checkdns-rpt.example')
    assert nfail == 0, _show(lines)
    _expect(lines, ('OK', 'dmarc', r'p=none\): monitoring only'),
            ('OK', 'tls-rpt', r'\(2 report addresses\)'))
    lines, nfail = _check(world, 'two.checkdns-rpt.example')
    assert nfail == 2, _show(lines)
    _expect(lines, ('FAIL', 'dmarc', r'2 DMARC records at _dmarc\.two\.checkdns-rpt\.example'),
            ('FAIL', 'tls-rpt', r'2 TLS-RPT records'))
    lines, nfail = _check(world, 'bad.checkdns-rpt.example')
    assert nfail == 2, _show(lines)
    _expect(lines, ('FAIL', 'dmarc', r'is invalid: p=none, quarantine or reject must follow'),
            ('FAIL', 'tls-rpt', r'has no rua= with a mailto: or https: address'))
    lines, nfail = _check(world, 'none.checkdns-rpt.example')
    assert nfail == 0, _show(lines)
    _expect(lines, ('WARN', 'dmarc', r'no DMARC record \(_dmarc\.none\.checkdns-rpt\.example'),
            ('WARN', 'tls-rpt', r'no TLS-RPT record \(_smtp\._tls\.none\.'))
