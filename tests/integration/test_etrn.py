"""ETRN (RFC 1985) against the real daemon.

Mail for backup.example is queued with the primary down and retry '1h';
the primary comes up, and only an ETRN can explain a delivery.  Tried:
ETRN from an address in etrn_allow (250, delivered, counted), from one
outside it (refused, nothing delivered), for a domain with nothing
queued (251), for a domain that is not ours (459), and the @domain form.
"""
import json
import time


def _wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError('timed out waiting for ' + what)
        time.sleep(0.2)


def _queue(b):
    r = b.ctl('queue', '--json')
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def _queue_one_attempted(world, b, rcpt='alice@backup.example',
                         subject='etrn-mail'):
    s = b.smtp()
    s.sendmail('someone@sender.example', [rcpt],
               ('Subject: %s\r\n\r\nhello\r\n' % subject).encode())
    s.quit()
    _wait(lambda: any(r['attempts'] >= 1 for m in _queue(b)
                      for r in m['recipients']), 20, 'a failed attempt')


def test_etrn_allowed_delivers(world):
    p = world.sinks['primary']
    p.set_mode('down')
    b = world.backmx(retry='1h', etrn_allow='127.0.0.0/8')
    _queue_one_attempted(world, b)
    p.set_mode('up')
    time.sleep(2)
    assert p.messages() == [], 'delivered before ETRN'
    s = b.smtp()
    code, msg = s.docmd('ETRN', 'backup.example')
    s.quit()
    assert code in (250, 252, 253), (code, msg)
    m = p.wait_messages(1, timeout=15)[0]
    assert b'etrn-mail' in m['data']
    _wait(lambda: _queue(b) == [], 10, 'the queue to empty')
    st = json.loads(b.ctl('stats', '--json').stdout)
    assert st['etrn'] >= 1, st


def test_etrn_at_domain_form(world):
    p = world.sinks['primary']
    p.set_mode('down')
    b = world.backmx(retry='1h', etrn_allow='127.0.0.3/32 127.0.0.1')
    _queue_one_attempted(world, b)
    p.set_mode('up')
    s = b.smtp()
    code, msg = s.docmd('ETRN', '@backup.example')
    s.quit()
    assert code in (250, 252, 253), (code, msg)
    p.wait_messages(1, timeout=15)


def test_etrn_not_allowed_refused(world):
    p = world.sinks['primary']
    p.set_mode('down')
    b = world.backmx(retry='1h', etrn_allow='192.0.2.10')
    _queue_one_attempted(world, b)
    p.set_mode('up')
    s = b.smtp()
    code, msg = s.docmd('ETRN', 'backup.example')
    s.quit()
    assert code in (458, 459, 502), (code, msg)
    time.sleep(4)
    assert p.messages() == [], 'ETRN from a refused address delivered'
    assert len(_queue(b)) == 1


def test_etrn_default_nobody(world):
    b = world.backmx()
    s = b.smtp()
    code, msg = s.docmd('ETRN', 'backup.example')
    s.quit()
    assert code in (458, 459, 502), (code, msg)


def test_etrn_empty_queue_251(world):
    b = world.backmx(retry='1h', etrn_allow='127.0.0.0/8')
    s = b.smtp()
    code, msg = s.docmd('ETRN', 'static.example')
    s.quit()
    assert code == 251, (code, msg)


def test_etrn_foreign_domain_459(world):
    b = world.backmx(retry='1h', etrn_allow='127.0.0.0/8')
    s = b.smtp()
    code, msg = s.docmd('ETRN', 'example.net')
    assert code == 459, (code, msg)
    code, msg = s.docmd('ETRN', '')
    assert 500 <= code <= 501, (code, msg)
    s.quit()


def test_etrn_flush_ends_only_its_domain_suspension(world):
    """backup.example's primary and static.example's route both refuse
    connections: both destinations are suspended.  A flush of
    backup.example ends only backup.example's suspension (the log names
    it); static.example's stays until it is flushed itself."""
    p = world.sinks['primary']
    st = world.sinks['static']
    p.set_mode('down')
    st.set_mode('down')
    b = world.backmx(retry='1h')
    s = b.smtp()
    s.sendmail('someone@sender.example', ['alice@backup.example'],
               b'Subject: a\r\n\r\na\r\n')
    s.sendmail('someone@sender.example', ['alice@static.example'],
               b'Subject: s\r\n\r\ns\r\n')
    s.quit()
    _wait(lambda: len(_queue(b)) == 2 and all(
        m['recipients'][0]['attempts'] >= 1 for m in _queue(b)), 10,
        'both deferred')
    r = b.ctl('flush', 'backup.example')
    assert r.returncode == 0, r.stderr
    b.wait_log(r'delivery to backup\.example:\d+ resumed by a flush',
               timeout=5)
    time.sleep(0.5)
    assert 'delivery to 127.0.0.5' not in b.log_text(), b.log_tail(10)
    r = b.ctl('flush', 'static.example')
    assert r.returncode == 0, r.stderr
    b.wait_log(r'delivery to 127\.0\.0\.5:25:\d+ resumed by a flush',
               timeout=5)
