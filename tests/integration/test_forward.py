"""Forwarding end to end: the primary gets each message exactly once with
one added Received header, the decoy (worse MX) never gets anything, the
backup defers while the primary is down and delivers on the next try,
we never send to ourselves (selfbest), implicit MX, tempfail retried, DSN
parameters passed on, and a kill -9 during delivery loses nothing."""
import json
import re
import time

SENDER = 'someone@sender.example'


def _msg(subject, body='hello\r\n'):
    return ('From: %s\r\nTo: alice@backup.example\r\nSubject: %s\r\n'
            'Message-ID: <%s@sender.example>\r\n\r\n%s'
            % (SENDER, subject, subject.replace(' ', '.'), body))


def _send(b, rcpts, subject, body='hello\r\n', sender=SENDER,
          mail_options=(), rcpt_options=()):
    s = b.smtp()
    data = _msg(subject, body)
    s.sendmail(sender, rcpts, data.encode(), mail_options=list(mail_options),
               rcpt_options=list(rcpt_options))
    s.quit()
    return data.encode()


def _subjects(msgs):
    """the Subject of every message, in order"""
    out = []
    for m in msgs:
        for line in m['data'].split(b'\r\n'):
            if line.startswith(b'Subject: '):
                out.append(line[9:].decode())
                break
    return out


def _send_many(b, rcpt, prefix, n):
    """n messages 'prefix i' to rcpt in one session"""
    s = b.smtp()
    for i in range(n):
        s.sendmail(SENDER, [rcpt], _msg('%s %d' % (prefix, i)).encode())
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


def _strip_received(data):
    """Remove the first header line (our Received, possibly folded)."""
    lines = data.split(b'\r\n')
    assert lines[0].lower().startswith(b'received:'), lines[0]
    i = 1
    while lines[i][:1] in (b' ', b'\t'):
        i += 1
    return b'\r\n'.join(lines[i:])


def test_forward_primary_up(world):
    p, decoy = world.sinks['primary'], world.sinks['decoy']
    b = world.backmx()
    body = 'line one\r\n.leading dot\r\n..two dots\r\n' + 'x' * 900 + '\r\n'
    sent = _send(b, ['alice@backup.example'], 'up test', body)
    m = p.wait_messages(1, timeout=15)[0]
    assert m['rcpt_tos'] == ['alice@backup.example'], m
    assert m['mail_from'] == SENDER
    assert _strip_received(m['data']) == sent, m['data'][:300]
    b.wait_log(r'to=<alice@backup\.example>, relay=mx1\.test\.example'
               r'\[127\.0\.0\.2\]:25, (conn_use=\d+, )?delay=[0-9.]+, delays=[0-9./]+, dsn=2\.\d\.\d, status=sent')
    _wait_empty(b)
    time.sleep(1)
    assert len(p.messages()) == 1
    assert decoy.messages() == []


def test_forward_primary_down_then_up(world):
    p, decoy = world.sinks['primary'], world.sinks['decoy']
    p.set_mode('down')
    b = world.backmx(retry='2s 2s 2s')
    _send(b, ['bob@backup.example'], 'down test')
    b.wait_log(r'to=<bob@backup\.example>.*status=deferred', timeout=15)
    q = _queue(b)
    assert len(q) == 1 and q[0]['recipients'][0]['attempts'] >= 1, q
    assert q[0]['recipients'][0]['state'] == 'pending'
    assert decoy.messages() == []
    p.set_mode('up')
    p.wait_messages(1, timeout=15)
    _wait_empty(b)
    time.sleep(2)
    assert len(p.messages()) == 1
    assert decoy.messages() == []


def test_forward_selfbest(world):
    b = world.backmx()
    _send(b, ['alice@selfbest.example'], 'selfbest')
    b.wait_log(r'loops back to myself', timeout=15)
    time.sleep(1)
    for name in ('primary', 'decoy', 'static', 'bounce'):
        assert world.sinks[name].messages() == [], name
    q = _queue(b)
    # a temporary 451 (the mail stays queued) with a class-4 enhanced
    # code: RFC 3463 says the class digit matches the reply's
    assert len(q) == 1 and (q[0]['recipients'][0]['last_error']
                            or '').startswith('4.4.6 '), q
    assert re.search(r'dsn=4\.4\.6, status=deferred \(mail for '
                     r'selfbest\.example loops back', b.log_text()), \
        b.log_tail(10)
    assert not re.search(r'451 5\.|dsn=5\.4\.6', b.log_text())


def test_forward_aonly_implicit_mx(world):
    p = world.sinks['primary']
    b = world.backmx()
    _send(b, ['anyone@aonly.example'], 'implicit mx')
    m = p.wait_messages(1, timeout=15)[0]
    assert m['rcpt_tos'] == ['anyone@aonly.example']
    _wait_empty(b)


def test_forward_static_route(world):
    st, decoy = world.sinks['static'], world.sinks['decoy']
    b = world.backmx()
    _send(b, ['carol@static.example'], 'static')
    m = st.wait_messages(1, timeout=15)[0]
    assert m['rcpt_tos'] == ['carol@static.example']
    _wait_empty(b)
    assert decoy.messages() == []


def test_forward_tempfail_retried(world):
    p = world.sinks['primary']
    p.set_mode('tempfail')
    b = world.backmx(retry='2s')
    _send(b, ['alice@backup.example'], 'tempfail')
    b.wait_log(r'to=<alice@backup\.example>.*dsn=4\.\d\.\d+, '
               r'status=deferred \(host mx1', timeout=15)
    p.set_mode('up')
    p.wait_messages(1, timeout=15)
    _wait_empty(b)
    assert len(p.messages()) == 1


def test_forward_dsn_params_passed(world):
    p = world.sinks['primary']
    b = world.backmx()
    _send(b, ['alice@backup.example'], 'dsn params',
          mail_options=['RET=HDRS', 'ENVID=abc+2Bdef'],
          rcpt_options=['NOTIFY=SUCCESS,FAILURE',
                        'ORCPT=rfc822;alice+40orig.example'])
    m = p.wait_messages(1, timeout=15)[0]
    opts = ' '.join(m['mail_options'])
    assert 'RET=HDRS' in opts and 'ENVID=abc+2Bdef' in opts, m
    ropts = ' '.join(m['rcpt_options'][0])
    assert 'NOTIFY=SUCCESS,FAILURE' in ropts, m
    assert 'ORCPT=rfc822;alice+40orig.example' in ropts, m


def test_forward_several_recipients_one_transaction(world):
    p = world.sinks['primary']
    b = world.backmx()
    _send(b, ['alice@backup.example', 'bob@backup.example'], 'two rcpts')
    m = p.wait_messages(1, timeout=15)[0]
    assert sorted(m['rcpt_tos']) == ['alice@backup.example',
                                     'bob@backup.example']
    _wait_empty(b)
    time.sleep(1)
    assert len(p.messages()) == 1


def test_forward_kill9_during_delivery(world):
    p = world.sinks['primary']
    p.set_mode('down')
    b = world.backmx(retry='1s')
    n = 30
    for i in range(n):
        _send(b, ['alice@backup.example'], 'crash %d' % i)
    p.set_mode('up')
    # let some deliveries start, then crash
    try:
        p.wait_messages(3, timeout=15)
    except AssertionError:
        pass
    b.kill9()
    b.start()
    end = time.time() + 60
    subjects = set()
    while time.time() < end:
        subjects = set(_subjects(p.messages()))
        if len(subjects) == n:
            break
        time.sleep(0.5)
    missing = ['crash %d' % i for i in range(n)
               if 'crash %d' % i not in subjects]
    assert missing == [], 'lost: %r' % missing
    _wait_empty(b, timeout=30)
    dups = len(p.messages()) - n
    print('kill9: %d delivered, losses 0, duplicates %d' % (n, dups))


def test_forward_flush_per_destination_limit(world):
    """60 queued messages, max_per_destination 2, max_deliveries 3: a flush
    sends all of them, each exactly once, mostly over reused connections
    (the blocked ones wait for a slot of their destination and take over
    the connection of the delivery that ends)."""
    p = world.sinks['primary']
    p.set_mode('down')
    b = world.backmx(retry='1h', extra='max_per_destination 2\n'
                     'max_deliveries 3\n')
    n = 60
    _send_many(b, 'carol@backup.example', 'flush', n)
    b.wait_log(r'status=deferred', timeout=15)
    time.sleep(1)
    p.set_mode('up')
    r = b.ctl('flush')
    assert r.returncode == 0, r.stderr
    msgs = p.wait_messages(n, timeout=60)
    _wait_empty(b, timeout=30)
    time.sleep(1)
    subjects = _subjects(p.messages())
    assert sorted(subjects) == sorted('flush %d' % i for i in range(n)), \
        subjects
    peers = set(m['peer_port'] for m in p.messages())
    # a connection per message would give about n distinct peers
    assert len(peers) < n // 2, 'connections: %d for %d messages' % (
        len(peers), n)


def test_forward_dead_primary_suspended(world):
    """Primary down: after the first refused connection the destination is
    suspended: the next messages are deferred at once ('delivery
    temporarily suspended'), at most one probe a second connects; when the
    primary is back, the next probe gets through and drains the rest."""
    p = world.sinks['primary']
    p.set_mode('down')
    b = world.backmx(retry='1h')
    n = 40
    _send_many(b, 'alice@backup.example', 'dead', n)
    end = time.time() + 15
    while time.time() < end:
        log = b.log_text()
        if len(re.findall(r'status=deferred', log)) >= n:
            break
        time.sleep(0.2)
    log = b.log_text()
    suspended = len(re.findall(r'status=deferred \(delivery temporarily '
                               r'suspended: ', log))
    refused = len(re.findall(r'status=deferred \(connect to ', log))
    assert suspended + refused >= n, log[-2000:]
    assert suspended >= n // 2 and refused <= n // 2, \
        'suspended %d, connection attempts %d' % (suspended, refused)
    # the queue says why, for every message, suspended or not
    q = _queue(b)
    assert len(q) == n, q
    for m in q:
        r = m['recipients'][0]
        assert r['state'] == 'pending' and r['attempts'] >= 1, m
        assert 'Connection refused' in json.dumps(m), m
    p.set_mode('up')
    time.sleep(1.2)
    _send(b, ['alice@backup.example'], 'dead probe')
    p.wait_messages(n + 1, timeout=30)
    _wait_empty(b, timeout=30)
