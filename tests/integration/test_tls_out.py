"""Outbound TLS towards the primary: the per-domain `tls` policies.

Tried against the "primary" sink (127.0.0.2, mx1.test.example) offering
STARTTLS with certificates from certs.sh's test CA, and the signed zones
of dnssec.sh (dane.example, bogus.example; see TLS.md):

  may      encrypted when offered (and logged), in clear when not, and
           once more in clear after a failed handshake;
  encrypt  deferred (and kept queued) when STARTTLS is not offered;
  verify   deferred for a certificate naming another host, delivered
           and logged `verified` with the right name and tls_ca;
  dane     a matching TLSA 3 1 1 -> delivered `dane`; a mismatching one,
           no STARTTLS at a host with TLSA, a bogus zone -> deferred;
           TLSA of a PKIX usage only -> TLS required, unauthenticated;
           no TLSA, an unsigned zone or no trust anchor -> opportunistic;
  mta-sts  a policy served by https_server.py on 127.0.0.7:443: enforce
           with a non-matching MX or a wrong certificate -> deferred;
           matching -> delivered verified, the policy fetched once per
           instance (cache); testing -> delivered, mismatch logged; no
           policy (404) -> as may, the fetch error logged.

Each delivery line ends in `tls=...`; the stats count TLS deliveries.
"""
import json
import os
import ssl
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SENDER = 'someone@sender.example'

# every test domain's MX 20 is mx2.test.example, ourselves: the MX cut
# leaves the MX 10 host alone, so a TLS failure cannot go elsewhere
TLS_DOMAINS = '''
domain backup.example      { recipients *  route mx  tls %(backup)s }
domain dane.example        { recipients *  route mx  tls dane }
domain bad.dane.example    { recipients *  route mx  tls dane }
domain notlsa.dane.example { recipients *  route mx  tls dane }
domain pkix.dane.example   { recipients *  route mx  tls dane }
domain bogus.example       { recipients *  route mx  tls dane }
domain sts.example         { recipients *  route mx  tls mta-sts }
'''


def _backmx(world, backup='may', anchor=True, **kw):
    over = dict(domains=TLS_DOMAINS % {'backup': backup},
                tls_ca=os.path.join(world.certs, 'ca.pem'))
    if anchor:
        over['dns_trust_anchor'] = os.path.join(world.workdir,
                                                'trust-anchors')
    over.update(kw)
    return world.backmx(**over)


def _send(b, rcpt, subject):
    s = b.smtp()
    data = ('From: %s\r\nTo: %s\r\nSubject: %s\r\n'
            'Message-ID: <%s@sender.example>\r\n\r\nhello\r\n'
            % (SENDER, rcpt, subject, subject.replace(' ', '.')))
    s.sendmail(SENDER, [rcpt], data.encode())
    s.quit()


def _queue(b):
    r = b.ctl('queue', '--json')
    assert r.returncode == 0, r.stderr
    return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]


def _wait_empty(b, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        if not _queue(b):
            return
        time.sleep(0.2)
    raise AssertionError('spool not empty: %r' % _queue(b))


def _stats(b):
    r = b.ctl('stats', '--json')
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _tls_sink(world, name='mx1'):
    p = world.sinks['primary']
    p.set_tls(os.path.join(world.certs, name + '.pem'),
              os.path.join(world.certs, name + '.key'))
    return p


def _re(addr):
    return addr.replace('.', r'\.')


def _delivered(b, p, rcpt, tls_regex):
    """rcpt delivered to the primary, logged sent with tls=<tls_regex>"""
    m = p.wait_messages(1, timeout=20)[0]
    assert m['rcpt_tos'] == [rcpt], m
    line = b.wait_log(r'to=<%s>, relay=[^,]*\[127\.0\.0\.2\]:25, [^\n]*'
                      r'status=sent \([^\n]*\), tls=(%s)\n'
                      % (_re(rcpt), tls_regex), timeout=10)
    _wait_empty(b)
    return m, line.group(1)


def _deferred(b, p, rcpt, why_regex):
    """rcpt deferred for why_regex, still queued, the primary got nothing"""
    b.wait_log(r'to=<%s>, relay=[^\n]*status=deferred \([^\n]*%s'
               % (_re(rcpt), why_regex), timeout=20)
    q = _queue(b)
    assert len(q) == 1, q
    r = q[0]['recipients'][0]
    assert r['address'] == rcpt and r['state'] == 'pending', q
    assert p.messages() == [], p.messages()
    return r['last_error']


# -- may

def test_tls_out_may_encrypted(world):
    p = _tls_sink(world)
    b = _backmx(world, backup='may')
    _send(b, 'alice@backup.example', 'may tls')
    m, tls = _delivered(b, p, 'alice@backup.example',
                        r'TLSv1\.[23] [a-z]+')
    assert m['tls'], 'the primary offered STARTTLS, delivery was in clear'
    # no name check under may: the CA verifies the chain, so "trusted"
    assert tls.endswith(' trusted'), tls
    st = _stats(b)
    assert st['tls_outbound'] == 1, st
    assert st['tls_outbound_verified'] == 0, st


def test_tls_out_may_clear_when_not_offered(world):
    p = world.sinks['primary']
    b = _backmx(world, backup='may')
    _send(b, 'alice@backup.example', 'may clear')
    m, tls = _delivered(b, p, 'alice@backup.example', 'none')
    assert not m['tls'], m
    assert _stats(b)['tls_outbound'] == 0


def test_tls_out_may_retries_in_clear_after_failed_handshake(world):
    # a TLS 1.2 server insisting on a client certificate: our handshake
    # fails inside SSL_do_handshake (TLS 1.2 rejects during it)
    p = world.sinks['primary']
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.path.join(world.certs, 'mx1.pem'),
                        os.path.join(world.certs, 'mx1.key'))
    ctx.load_verify_locations(os.path.join(world.certs, 'ca.pem'))
    ctx.verify_mode = ssl.CERT_REQUIRED
    p.tls_context = ctx
    p._stop()
    p._start()
    b = _backmx(world, backup='may')
    _send(b, 'alice@backup.example', 'may broken tls')
    b.wait_log(r'TLS with mx1\.test\.example\[127\.0\.0\.2\]:25: TLS '
               r'handshake[^\n]*tls may: trying mx1\.test\.example'
               r'\[127\.0\.0\.2\]:25 again without STARTTLS', timeout=20)
    m, tls = _delivered(b, p, 'alice@backup.example', 'none')
    assert not m['tls'], m
    # once: the clear retry did not try STARTTLS again
    assert len(p.messages()) == 1
    assert b.log_text().count('again without STARTTLS') == 1, b.log_tail()


# -- encrypt

def test_tls_out_encrypt_without_starttls_deferred(world):
    p = world.sinks['primary']
    b = _backmx(world, backup='encrypt')
    _send(b, 'alice@backup.example', 'encrypt clear')
    err = _deferred(b, p, 'alice@backup.example',
                    r'TLS is required, but was not offered')
    assert err.startswith('4.7.4 '), err
    assert _stats(b)['tls_deferred'] >= 1


def test_tls_out_encrypt_with_starttls_delivered(world):
    p = _tls_sink(world, 'wrong')     # any certificate will do
    b = _backmx(world, backup='encrypt')
    _send(b, 'alice@backup.example', 'encrypt tls')
    m, tls = _delivered(b, p, 'alice@backup.example', r'TLSv1\.[23] [a-z]+')
    assert m['tls'], m


# -- verify

def test_tls_out_verify_wrong_name_deferred(world):
    p = _tls_sink(world, 'wrong')     # wrong.test.example, from our CA
    b = _backmx(world, backup='verify')
    _send(b, 'alice@backup.example', 'verify wrong')
    err = _deferred(b, p, 'alice@backup.example',
                    r'TLS with mx1\.test\.example[^\n]*hostname mismatch')
    assert err.startswith('4.7.5 ') and 'hostname mismatch' in err, err


def test_tls_out_verify_unknown_ca_deferred(world):
    p = _tls_sink(world)
    # without tls_ca the system store does not know the test CA
    b = _backmx(world, backup='verify', tls_ca=None)
    _send(b, 'alice@backup.example', 'verify ca')
    _deferred(b, p, 'alice@backup.example',
              r'TLS with [^\n]*certificate verification failed')


def test_tls_out_verify_delivered(world):
    p = _tls_sink(world)
    b = _backmx(world, backup='verify')
    _send(b, 'alice@backup.example', 'verify ok')
    m, tls = _delivered(b, p, 'alice@backup.example',
                        r'TLSv1\.[23] verified')
    assert m['tls'], m
    st = _stats(b)
    assert st['tls_outbound'] == 1, st
    assert st['tls_outbound_verified'] == 1, st


# -- DANE

def test_tls_out_dane_delivered(world):
    p = _tls_sink(world)
    b = _backmx(world)
    _send(b, 'user@dane.example', 'dane ok')
    m, tls = _delivered(b, p, 'user@dane.example', r'TLSv1\.[23] dane')
    assert m['tls'], m
    assert b'dane ok' in m['data']
    assert _stats(b)['tls_outbound_dane'] == 1


def test_tls_out_dane_mismatch_deferred(world):
    p = _tls_sink(world)
    b = _backmx(world)
    _send(b, 'user@bad.dane.example', 'dane mismatch')
    err = _deferred(b, p, 'user@bad.dane.example',
                    r'TLS with mxbad\.dane\.example[^\n]*'
                    r'DANE verification failed')
    assert err.startswith('4.7.5 ') and 'DANE' in err, err
    # and it stays that way: the retry does not fall back to clear
    b.wait_log(r'to=<user@bad\.dane\.example>[^\n]*DANE[^\n]*\n'
               r'(?:[^\n]*\n)*[^\n]*to=<user@bad\.dane\.example>[^\n]*'
               r'status=deferred \([^\n]*DANE', timeout=20)
    assert p.messages() == []


def test_tls_out_dane_requires_starttls(world):
    # a usable TLSA record makes TLS mandatory: a primary that does not
    # offer STARTTLS (a stripping attacker) gets nothing
    p = world.sinks['primary']
    b = _backmx(world)
    _send(b, 'user@dane.example', 'dane stripped')
    err = _deferred(b, p, 'user@dane.example',
                    r'TLS is required, but was not offered')
    assert err.startswith('4.7.4 '), err


def test_tls_out_dane_pkix_usage_requires_tls(world):
    # TLSA 1 1 1 only: records, none usable (RFC 7672 2.2): TLS without
    # authentication, never clear
    p = world.sinks['primary']
    b = _backmx(world)
    _send(b, 'user@pkix.dane.example', 'pkix clear')
    _deferred(b, p, 'user@pkix.dane.example', r'TLS is required')
    p = _tls_sink(world)        # the next retry finds STARTTLS
    m, tls = _delivered(b, p, 'user@pkix.dane.example', r'TLSv1\.[23] [a-z]+')
    assert m['tls'] and not tls.endswith('dane'), (m, tls)


def test_tls_out_dane_no_tlsa_opportunistic(world):
    # mxnotlsa: secure addresses, secure NXDOMAIN for the TLSA: may
    p = world.sinks['primary']
    b = _backmx(world)
    _send(b, 'user@notlsa.dane.example', 'notlsa clear')
    m, tls = _delivered(b, p, 'user@notlsa.dane.example', 'none')
    assert not m['tls']
    p.clear()
    p = _tls_sink(world)
    _send(b, 'user@notlsa.dane.example', 'notlsa tls')
    m, tls = _delivered(b, p, 'user@notlsa.dane.example',
                        r'TLSv1\.[23] [a-z]+')
    assert m['tls'] and not tls.endswith('dane'), (m, tls)


def test_tls_out_dane_unsigned_zone_opportunistic(world):
    # backup.example and mx1.test.example are not signed: no TLSA lookup
    p = world.sinks['primary']
    b = _backmx(world, backup='dane')
    _send(b, 'alice@backup.example', 'dane unsigned')
    m, tls = _delivered(b, p, 'alice@backup.example', 'none')
    assert not m['tls']


def test_tls_out_dane_without_trust_anchor_as_may(world):
    # without dns_trust_anchor nothing is secure: dane.example is "may"
    p = world.sinks['primary']
    b = _backmx(world, anchor=False)
    _send(b, 'user@dane.example', 'dane no anchor')
    m, tls = _delivered(b, p, 'user@dane.example', 'none')
    assert not m['tls']


def test_tls_out_dane_bogus_deferred(world):
    # expired signatures: bogus answers never lead to any delivery,
    # not even over TLS to the right certificate
    p = _tls_sink(world)
    b = _backmx(world)
    _send(b, 'user@bogus.example', 'bogus')
    err = _deferred(b, p, 'user@bogus.example', r'DNSSEC validation failed')
    assert err.startswith('4.'), err


# -- MTA-STS

def _https_server(world, *mode):
    """mode: ('--policy', FILE) | ('--status', '404') | ..."""
    ready = os.path.join(world.workdir, 'https.ready')
    log = os.path.join(world.workdir, 'https.log')
    for f in (ready, log):
        if os.path.exists(f):
            os.unlink(f)
    proc = subprocess.Popen(
        ['/usr/bin/python3', os.path.join(HERE, 'https_server.py'),
         '--cert', os.path.join(world.certs, 'mta-sts.pem'),
         '--key', os.path.join(world.certs, 'mta-sts.key'),
         '--listen', '127.0.0.7:443', '--ready', ready, '--log', log]
        + list(mode))
    for _ in range(100):
        if os.path.exists(ready):
            return proc, log
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise AssertionError('https_server.py did not start')


def _with_policy(world, mode, mx, fn):
    pol = os.path.join(world.workdir, 'sts-policy.txt')
    with open(pol, 'w') as f:
        f.write('version: STSv1\nmode: %s\n%smax_age: 86400\n'
                % (mode, ''.join('mx: %s\n' % m for m in mx)))
    proc, log = _https_server(world, '--policy', pol)
    try:
        return fn(log)
    finally:
        proc.terminate()
        proc.wait()


def _fetches(log):
    with open(log) as f:
        return [l.split() for l in f if '/.well-known/mta-sts.txt' in l]


def test_tls_out_mtasts_enforce_matching_delivered(world):
    def run(log):
        p = _tls_sink(world)
        b = _backmx(world)
        _send(b, 'user@sts.example', 'sts match')
        m, tls = _delivered(b, p, 'user@sts.example',
                            r'TLSv1\.[23] verified')
        assert m['tls'], m
        b.wait_log(r'MTA-STS policy of sts\.example fetched: '
                   r'id=20240101T000000, mode=enforce')
        # a second message: the cached policy, no second fetch
        p.clear()
        _send(b, 'user@sts.example', 'sts cached')
        _delivered(b, p, 'user@sts.example', r'TLSv1\.[23] verified')
        f = _fetches(log)
        assert f == [['mta-sts.sts.example', '/.well-known/mta-sts.txt',
                      '200']], f
    _with_policy(world, 'enforce', ['*.test.example'], run)


def test_tls_out_mtasts_policy_survives_restart(world):
    """The fetched policy is saved in the spool: after a restart, with
    the policy server gone and the primary no longer offering STARTTLS,
    the cached 'enforce' still holds (deferred, never sent in clear)."""
    holder = {}

    def run(log):
        p = _tls_sink(world)
        b = _backmx(world)
        holder['b'] = b
        _send(b, 'user@sts.example', 'sts before restart')
        _delivered(b, p, 'user@sts.example', r'TLSv1\.[23] verified')
        assert os.path.exists(os.path.join(b.spool_dir, 'mta-sts.cache'))
    _with_policy(world, 'enforce', ['*.test.example'], run)
    b = holder['b']
    p = world.sinks['primary']
    b.stop()
    p.set_tls()          # a downgrade: STARTTLS stripped
    p.clear()
    b.start()
    _send(b, 'user@sts.example', 'sts after restart')
    _deferred(b, p, 'user@sts.example', r'TLS')
    b.wait_log(r'1 MTA-STS policies loaded from ')


def test_tls_out_mtasts_enforce_mismatch_deferred(world):
    def run(log):
        p = _tls_sink(world)
        b = _backmx(world)
        _send(b, 'user@sts.example', 'sts mismatch')
        err = _deferred(b, p, 'user@sts.example',
                        r'MX host mx1\.test\.example does not match the '
                        r'MTA-STS policy of sts\.example')
        assert err.startswith('4.7.5'), err
    _with_policy(world, 'enforce', ['mx3.test.example'], run)


def test_tls_out_mtasts_enforce_wrong_certificate_deferred(world):
    def run(log):
        p = _tls_sink(world, 'wrong')
        b = _backmx(world)
        _send(b, 'user@sts.example', 'sts wrong cert')
        _deferred(b, p, 'user@sts.example', r'hostname mismatch')
    _with_policy(world, 'enforce', ['mx1.test.example'], run)


def test_tls_out_mtasts_enforce_no_starttls_deferred(world):
    def run(log):
        p = world.sinks['primary']
        b = _backmx(world)
        _send(b, 'user@sts.example', 'sts clear')
        _deferred(b, p, 'user@sts.example', r'TLS is required')
    _with_policy(world, 'enforce', ['mx1.test.example'], run)


def test_tls_out_mtasts_testing_mismatch_delivered(world):
    def run(log):
        p = world.sinks['primary']
        b = _backmx(world)
        _send(b, 'user@sts.example', 'sts testing')
        _delivered(b, p, 'user@sts.example', 'none')
        b.wait_log(r'MTA-STS policy of sts\.example \(mode testing\): MX '
                   r'host mx1\.test\.example does not match; delivering')
    _with_policy(world, 'testing', ['mx3.test.example'], run)


def test_tls_out_mtasts_no_policy_as_may(world):
    proc, log = _https_server(world, '--status', '404')
    try:
        p = world.sinks['primary']
        b = _backmx(world)
        _send(b, 'user@sts.example', 'sts 404')
        _delivered(b, p, 'user@sts.example', 'none')
        b.wait_log(r'MTA-STS policy fetch for sts\.example failed: '
                   r'[^\n]*404')
        assert _fetches(log), 'no fetch was made'
    finally:
        proc.terminate()
        proc.wait()

