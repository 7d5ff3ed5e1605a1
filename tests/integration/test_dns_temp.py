"""A configured domain is never bounced because of DNS (issue 22 §2).

backmxd's `dns` is tests/integration/fakedns.py, a real forwarder the test
switches between the real answer (relayed from nsd) and NXDOMAIN,
SERVFAIL or silence for the zone dyn.test.  For a configured domain each
of those defers (queue shows it, a warning names the DNS answer, the
dns_deferred counter counts it), the mail is delivered once DNS is fixed
and bounced only at queue_lifetime, the bounce saying what DNS answered.
A null MX stays permanent (test_bounce.py); so does NXDOMAIN for a domain
that is not configured (a bounce to a sender's domain).  The zones live
under .test: the forwarder is the only server that knows them.
"""
import email
import email.policy
import json
import os
import re
import time

from fakedns import FakeDNS

SENDER = 'someone@sender.example'
PORT = 5301
DOMAINS = '''
domain backup.example   { recipients %(dir)s/backup.rcpts  route mx }
domain dyn.test         { recipients *  route mx }
domain host.dyn.test    { recipients *  route mx }
domain noaddr.backup.test { recipients *  route mx }
domain nodata.backup.test { recipients *  route mx }
domain nomx.backup.test { recipients *  route mx }
domain bogus.example    { recipients *  route mx }
'''


def _send(b, rcpt, subject, sender=SENDER):
    s = b.smtp()
    s.sendmail(sender, [rcpt], ('From: %s\r\nSubject: %s\r\n\r\nbody\r\n'
                                % (sender, subject)).encode())
    s.quit()


def _queue(b):
    r = b.ctl('queue', '--json')
    assert r.returncode == 0, r.stderr
    return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]


def _stats(b):
    r = b.ctl('stats', '--json')
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _pending_error(b, rcpt, regex, timeout=40):
    """wait until rcpt is queued, deferred with last_error matching regex"""
    end, last = time.time() + timeout, None
    while time.time() < end:
        for e in _queue(b):
            for r in e['recipients']:
                if r['address'] == rcpt:
                    last = r
                    if (r['state'] == 'pending' and r['attempts'] >= 1 and
                            re.search(regex, r['last_error'] or '')):
                        return r
        time.sleep(0.2)
    raise AssertionError('%s: no pending %r, last %r' % (rcpt, regex, last))


def _world(world, **kw):
    fake = FakeDNS(PORT, ['dyn.test'])
    try:
        b = world.backmx(dns=fake.server, domains=DOMAINS, retry='1s',
                         **kw)
    except Exception:
        fake.close()
        raise
    return fake, b


def _temporary_then_delivered(world, mode, answer, timeout=40):
    p, bs = world.sinks['primary'], world.sinks['bounce']
    fake, b = _world(world)
    try:
        fake.set_mode('dyn.test', mode)
        _send(b, 'alice@dyn.test', 'dns %s' % mode)
        r = _pending_error(b, 'alice@dyn.test',
                           r'name=dyn\.test type=MX: DNS answered %s' % answer,
                           timeout=timeout)
        assert r['last_error'].startswith('4.4.3'), r
        b.wait_log(r'warning.*dns: MX lookup for dyn\.test: %s; deferred'
                   % answer, timeout=5)
        assert _stats(b)['dns_deferred'] >= 1, _stats(b)
        assert fake.queries['dyn.test'] >= 1
        assert p.messages() == [] and bs.messages() == []
        fake.set_mode('dyn.test', 'pass')       # DNS fixed
        m = p.wait_messages(1, timeout=30)[0]
        assert m['rcpt_tos'] == ['alice@dyn.test'], m
        assert bs.messages() == [], 'bounced: %r' % bs.messages()
    finally:
        fake.close()


def test_dns_temp_nxdomain_defers(world):
    _temporary_then_delivered(world, 'nxdomain', 'NXDOMAIN')


def test_dns_temp_servfail_defers(world):
    _temporary_then_delivered(world, 'servfail', 'SERVFAIL')


def test_dns_temp_timeout_defers(world):
    _temporary_then_delivered(world, 'drop', '(timeout|SERVFAIL)', timeout=60)


test_dns_temp_timeout_defers.timeout = 180


def test_dns_temp_forwarder_only_knows_test_mx(world):
    # host.dyn.test exists only behind the forwarder (libunbound's own
    # .test local zone would say NXDOMAIN): delivered at once
    p = world.sinks['primary']
    fake, b = _world(world)
    try:
        _send(b, 'bob@host.dyn.test', 'forwarder only')
        m = p.wait_messages(1, timeout=15)[0]
        assert m['rcpt_tos'] == ['bob@host.dyn.test'], m
        assert fake.queries['dyn.test'] >= 1
    finally:
        fake.close()


def test_dns_temp_bounce_at_lifetime_names_dns(world):
    bs = world.sinks['bounce']
    fake, b = _world(world, queue_lifetime='4s')
    try:
        fake.set_mode('dyn.test', 'nxdomain')
        _send(b, 'carol@dyn.test', 'dns lifetime')
        m = bs.wait_messages(1, timeout=40)[0]
        msg = email.message_from_bytes(m['data'], policy=email.policy.compat32)
        parts = msg.get_payload()
        rcpt = parts[1].get_payload()[1]
        assert rcpt['Action'] == 'failed', rcpt.items()
        assert rcpt['Status'] in ('4.4.7', '5.4.7'), rcpt.items()
        text = parts[0].get_payload() + str(rcpt)
        assert 'NXDOMAIN' in text, text
        b.wait_log(r'status=expired.*NXDOMAIN', timeout=5)
        assert not re.search(r'carol@dyn\.test.*status=bounced', b.log_text())
    finally:
        fake.close()


def test_dns_temp_mx_host_without_address(world):
    # nsd's own answers: the MX host is NXDOMAIN / has no A nor AAAA
    p, bs = world.sinks['primary'], world.sinks['bounce']
    b = world.backmx(domains=DOMAINS, retry='1s')
    _send(b, 'x@noaddr.backup.test', 'noaddr')
    _send(b, 'x@nodata.backup.test', 'nodata')
    r = _pending_error(b, 'x@noaddr.backup.test',
                       r'4\.4\.4 .*missing\.backup\.test \(A NXDOMAIN, '
                       r'AAAA NXDOMAIN\)|missing\.backup\.test \(AAAA NXDOMAIN, '
                       r'A NXDOMAIN\)', timeout=15)
    r = _pending_error(b, 'x@nodata.backup.test',
                       r'4\.4\.4 .*mxtxt\.backup\.test \(.*A NODATA', timeout=15)
    b.wait_log(r'warning.*dns: no address for the MX hosts of '
               r'noaddr\.backup\.test', timeout=5)
    _send(b, 'x@nomx.backup.test', 'nomx')
    r = _pending_error(b, 'x@nomx.backup.test',
                       r'4\.4\.4 .*nomx\.backup\.test \(MX NODATA, .*A NODATA',
                       timeout=15)
    assert _stats(b)['dns_deferred'] >= 3
    time.sleep(2.5)       # retried on schedule, still not bounced
    assert bs.messages() == [] and p.messages() == []
    assert len(_queue(b)) == 3


def test_dns_temp_dnssec_bogus_defers(world):
    bs = world.sinks['bounce']
    b = world.backmx(domains=DOMAINS, retry='1s',
                     dns_trust_anchor=os.path.join(world.workdir,
                                                   'trust-anchors'))
    _send(b, 'x@bogus.example', 'bogus')
    r = _pending_error(b, 'x@bogus.example', r'DNS answered DNSSEC bogus',
                       timeout=15)
    assert r['last_error'].startswith('4.4.3'), r
    b.wait_log(r'warning.*dns: MX lookup for bogus\.example: DNSSEC bogus',
               timeout=5)
    assert bs.messages() == []


def test_dns_temp_unconfigured_nxdomain_stays_permanent(world):
    # the bounce of a failed message goes to a sender domain that does not
    # exist and is not ours: NXDOMAIN is final for it (no endless retry)
    p = world.sinks['primary']
    p.set_mode('permfail')
    b = world.backmx(domains=DOMAINS, retry='1s')
    _send(b, 'alice@backup.example', 'to nowhere',
          sender='nobody@nosuch.backup.test')
    b.wait_log(r'to=<nobody@nosuch\.backup\.test>.*dsn=5\.1\.2.*NXDOMAIN',
               timeout=20)


SPECIAL_DOMAINS = '''
domain backup.test      { recipients *  route mx }
domain relay.home.arpa  { recipients *  route mx }
'''


def test_dns_special_use_domains_delivered(world):
    # backed-up domains and MX hosts under .test and home.arpa, asked of
    # the configured server (dns 127.0.0.1:53) and of resolv.conf's
    for dns in ('127.0.0.1:53', None):
        p, decoy = world.sinks['primary'], world.sinks['decoy']
        b = world.backmx(dns=dns, domains=SPECIAL_DOMAINS)
        s = b.smtp()
        s.sendmail(SENDER, ['a@backup.test'], b'Subject: t\r\n\r\nx\r\n')
        s.sendmail(SENDER, ['b@relay.home.arpa'], b'Subject: h\r\n\r\nx\r\n')
        s.quit()
        msgs = p.wait_messages(2, timeout=20)
        assert sorted(m['rcpt_tos'][0] for m in msgs) == \
            ['a@backup.test', 'b@relay.home.arpa'], (dns, msgs)
        b.wait_log(r'to=<a@backup\.test>, relay=mx1\.backup\.test\[127\.0\.0\.2\]'
                   r':25.*status=sent', timeout=5)
        b.wait_log(r'to=<b@relay\.home\.arpa>, relay=mx1\.relay\.home\.arpa'
                   r'\[127\.0\.0\.2\]:25.*status=sent', timeout=5)
        assert decoy.messages() == []
        b.stop()
        p.clear()
