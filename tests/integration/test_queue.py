"""Forwarder details beyond test_forward.py: outbound STARTTLS per the
domain's tls policy (may uses it when offered, encrypt never falls back to
clear, verify checks the chain and the MX name), the percent hack and a
static route reach the 'static' sink and never the decoy, several queued
messages go out after an outage with nothing lost or doubled, and the
deferred/sent log lines carry relay, delay and dsn."""
import os
import time

SENDER = 'someone@sender.example'

DOMAINS = '''
domain backup.example   { recipients %%(dir)s/backup.rcpts  route mx  tls %s }
domain static.example   { recipients %%(dir)s/backup.rcpts  route [127.0.0.5]:25 }
domain customer.example { recipients %%(dir)s/customer.rcpts route mailhost.test.example:25  percent_hack on }
'''


def _send(b, rcpts, subject, sender=SENDER):
    s = b.smtp()
    data = ('From: %s\r\nSubject: %s\r\n\r\nbody of %s\r\n'
            % (sender, subject, subject)).encode()
    s.sendmail(sender, rcpts, data)
    s.quit()
    return data


def _tls_backmx(world, policy, cert='mx1'):
    p = world.sinks['primary']
    c = world.certs
    if cert:
        p.set_tls(os.path.join(c, cert + '.pem'),
                  os.path.join(c, cert + '.key'))
    return p, world.backmx(domains=DOMAINS % policy,
                           tls_ca=os.path.join(c, 'ca.pem'))


def test_queue_tls_may_uses_starttls(world):
    p, b = _tls_backmx(world, 'may', cert='wrong')
    _send(b, ['alice@backup.example'], 'tls may')
    m = p.wait_messages(1, timeout=15)[0]
    assert m['tls'], 'delivered in clear although STARTTLS was offered'
    b.wait_log(r'TLS connection established to mx1\.test\.example')
    b.wait_log(r'to=<alice@backup\.example>, relay=mx1\.test\.example'
               r'\[127\.0\.0\.2\]:25, delay=[\d.]+, dsn=2\.\d\.\d, '
               r'status=sent')


def test_queue_tls_may_clear_when_not_offered(world):
    p, b = _tls_backmx(world, 'may', cert=None)
    _send(b, ['alice@backup.example'], 'clear may')
    m = p.wait_messages(1, timeout=15)[0]
    assert not m['tls']


def test_queue_tls_encrypt_never_in_clear(world):
    p, b = _tls_backmx(world, 'encrypt', cert=None)
    _send(b, ['alice@backup.example'], 'encrypt')
    b.wait_log(r'to=<alice@backup\.example>.*dsn=4\.7\.5, '
               r'status=deferred .*TLS required', timeout=15)
    time.sleep(1)
    assert p.messages() == []
    assert world.sinks['decoy'].messages() == []


def test_queue_tls_verify(world):
    p, b = _tls_backmx(world, 'verify', cert='mx1')
    _send(b, ['alice@backup.example'], 'verify ok')
    m = p.wait_messages(1, timeout=15)[0]
    assert m['tls']
    b.wait_log(r'TLS connection established to .*verified')


def test_queue_tls_verify_wrong_name(world):
    p, b = _tls_backmx(world, 'verify', cert='wrong')
    _send(b, ['alice@backup.example'], 'verify wrong')
    b.wait_log(r'to=<alice@backup\.example>.*dsn=4\.7\.5, '
               r'status=deferred', timeout=15)
    time.sleep(1)
    assert p.messages() == []


def test_queue_percent_hack_to_static(world):
    s, d = world.sinks['static'], world.sinks['decoy']
    b = world.backmx()
    _send(b, ['user%customer.example@mx2.test.example'], 'percent')
    m = s.wait_messages(1, timeout=15)[0]
    assert m['rcpt_tos'] == ['user@customer.example'], m['rcpt_tos']
    b.wait_log(r'to=<user@customer\.example>, relay=mailhost\.test\.example'
               r'\[127\.0\.0\.5\]:25, .*status=sent')
    _send(b, ['carol@static.example'], 'static')
    m = s.wait_messages(2, timeout=15)[1]
    assert m['rcpt_tos'] == ['carol@static.example']
    time.sleep(1)
    assert d.messages() == []


def test_queue_outage_drains_once(world):
    p, d = world.sinks['primary'], world.sinks['decoy']
    p.set_mode('down')
    b = world.backmx(retry='1s')
    n = 12
    for i in range(n):
        _send(b, ['alice@backup.example', 'bob@backup.example'],
              'outage %d' % i)
    b.wait_log(r'status=deferred \(connect to mx1\.test\.example'
               r'\[127\.0\.0\.2\]:25: Connection refused\)')
    p.set_mode('up')
    p.wait_messages(n, timeout=30)
    time.sleep(2)
    msgs = p.messages()
    assert len(msgs) == n, len(msgs)
    for m in msgs:
        assert sorted(m['rcpt_tos']) == ['alice@backup.example',
                                         'bob@backup.example']
    assert d.messages() == []
    end = time.time() + 10
    while time.time() < end:
        r = b.ctl('queue')
        if r.returncode == 0 and 'alice' not in r.stdout:
            break
        time.sleep(0.3)
    assert 'alice' not in b.ctl('queue').stdout
