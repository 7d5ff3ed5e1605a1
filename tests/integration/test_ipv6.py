"""IPv6 end to end (issue 22 §6), over ::1 in the test namespace: listen
on [::1]:25 and [::]:PORT, a primary reachable only over AAAA, an MX host
with A and AAAA where one family refuses (the other is tried), address
literals [IPv6:...] refused as recipients, etrn_allow with v6 prefixes,
and v6 addresses in the log and the Received: field.  Zones: backup.test
(v6only, dual, dual4)."""
import json
import os
import smtplib
import socket
import time

from sink import Sink

SENDER = 'someone@sender.example'
DOMAINS = '''
domain backup.example   { recipients %(dir)s/backup.rcpts  route mx }
domain v6only.backup.test { recipients *  route mx }
domain dual.backup.test   { recipients *  route mx }
domain dual4.backup.test  { recipients *  route mx }
'''


def _msg(subject):
    return ('From: %s\r\nSubject: %s\r\n\r\nbody of %s\r\n'
            % (SENDER, subject, subject)).encode()


def _queue(b):
    r = b.ctl('queue', '--json')
    assert r.returncode == 0, r.stderr
    return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]


def _v6_sink(world, name='v6'):
    s = Sink(name, '::1', 25, os.path.join(world.workdir, 'sinks',
                                            '%s-%s' % (name, world.test_name)))
    s.banner_name = 'mx6.backup.test'
    s.set_mode('up')
    return s


def test_ipv6_listen_loopback(world):
    p = world.sinks['primary']
    b = world.backmx(listen=['[::1]:25'])
    s = smtplib.SMTP('::1', 25, local_hostname='client6.test', timeout=30)
    assert s.sock.family == socket.AF_INET6
    s.ehlo('client6.test')
    s.sendmail(SENDER, ['alice@backup.example'], _msg('over v6'))
    s.quit()
    m = p.wait_messages(1, timeout=15)[0]
    first = m['data'].split(b'\r\n\t')[0]
    assert first == b'Received: from client6.test ([IPv6:::1])', m['data'][:200]
    b.wait_log(r'connect from unknown\[::1\]', timeout=5)
    b.wait_log(r'client=unknown\[::1\]', timeout=5)


def test_ipv6_listen_wildcard(world):
    p = world.sinks['primary']
    b = world.backmx(listen=['[::]:2526'])
    s = smtplib.SMTP('::1', 2526, local_hostname='client6.test', timeout=30)
    s.sendmail(SENDER, ['bob@backup.example'], _msg('over v6 wildcard'))
    s.quit()
    p.wait_messages(1, timeout=15)
    # a v6-only socket: 127.0.0.1:2526 is not ours
    try:
        socket.create_connection(('127.0.0.1', 2526), timeout=2).close()
        raise AssertionError('[::]:2526 also answered on 127.0.0.1')
    except ConnectionRefusedError:
        pass


def test_ipv6_primary_aaaa_only(world):
    v6 = _v6_sink(world)
    try:
        b = world.backmx(domains=DOMAINS)
        s = b.smtp()
        s.sendmail(SENDER, ['x@v6only.backup.test'], _msg('to aaaa'))
        s.quit()
        m = v6.wait_messages(1, timeout=15)[0]
        assert m['rcpt_tos'] == ['x@v6only.backup.test']
        assert '::1' in str(m['peer']), m['peer']
        b.wait_log(r'to=<x@v6only\.backup\.test>, relay=mx6\.backup\.test'
                   r'\[::1\]:25.*status=sent', timeout=5)
    finally:
        v6._stop()


def test_ipv6_dual_stack_v4_refuses(world):
    # mxdual: A 127.0.0.9 refuses, AAAA ::1 delivers
    v6 = _v6_sink(world)
    try:
        b = world.backmx(domains=DOMAINS)
        s = b.smtp()
        s.sendmail(SENDER, ['y@dual.backup.test'], _msg('dual v6'))
        s.quit()
        m = v6.wait_messages(1, timeout=15)[0]
        assert m['rcpt_tos'] == ['y@dual.backup.test']
        assert b.wait_log(r'to=<y@dual\.backup\.test>.*\[::1\]:25.*status=sent',
                          timeout=5)
    finally:
        v6._stop()


def test_ipv6_dual_stack_v6_refuses(world):
    # mxdual4: AAAA ::1 refuses (no v6 sink), A 127.0.0.2 delivers
    p = world.sinks['primary']
    b = world.backmx(domains=DOMAINS)
    s = b.smtp()
    s.sendmail(SENDER, ['z@dual4.backup.test'], _msg('dual v4'))
    s.quit()
    m = p.wait_messages(1, timeout=15)[0]
    assert m['rcpt_tos'] == ['z@dual4.backup.test']
    b.wait_log(r'to=<z@dual4\.backup\.test>.*\[127\.0\.0\.2\]:25.*status=sent',
               timeout=5)


def test_ipv6_literal_recipient_refused(world):
    b = world.backmx(listen=['[::1]:25'])
    s = smtplib.SMTP('::1', 25, local_hostname='client6.test', timeout=30)
    s.ehlo('client6.test')
    code, _ = s.mail(SENDER)
    assert code == 250
    for rcpt in ('postmaster@[IPv6:::1]', 'alice@[IPv6:2001:db8::1]'):
        code, msg = s.rcpt(rcpt)
        assert 500 <= code < 600, (rcpt, code, msg)
    s.quit()
    assert _queue(b) == []


def _etrn_from_v6(b, domain='backup.example'):
    s = smtplib.SMTP('::1', 25, local_hostname='client6.test', timeout=30)
    s.ehlo('client6.test')
    code, msg = s.docmd('ETRN', domain)
    s.quit()
    return code, msg


def test_ipv6_etrn_allow_prefix(world):
    p = world.sinks['primary']
    p.set_mode('down')
    b = world.backmx(listen=['[::1]:25'], retry='1h',
                     etrn_allow='127.0.0.0/8 ::/64')
    s = smtplib.SMTP('::1', 25, local_hostname='client6.test', timeout=30)
    s.sendmail(SENDER, ['carol@backup.example'], _msg('etrn v6'))
    s.quit()
    end = time.time() + 20
    while time.time() < end and not any(
            r['attempts'] >= 1 for e in _queue(b) for r in e['recipients']):
        time.sleep(0.2)
    p.set_mode('up')
    code, msg = _etrn_from_v6(b)
    assert code in (250, 252, 253), (code, msg)
    p.wait_messages(1, timeout=15)


def test_ipv6_etrn_not_in_prefix_refused(world):
    b = world.backmx(listen=['[::1]:25'], etrn_allow='127.0.0.0/8 2001:db8::/32')
    code, msg = _etrn_from_v6(b)
    assert 400 <= code < 600 and code not in (250, 252, 253), (code, msg)
