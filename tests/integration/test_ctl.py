"""backmxctl against the real daemon: listing, show, hold/release, delete,
bounce, flush DOMAIN, errors, streaming to stalled clients, auto-flush,
SIGTERM under load.

Mail is queued with the primary (sink 'primary', MX of backup.example)
down and, where the test needs it, a long retry schedule ('1h'), so only
the command under test can explain a delivery.
"""
import json
import re
import smtplib
import socket
import threading
import time

ID_RE = re.compile(r'^[0-9a-fA-F]{12}$')


def _wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError('timed out waiting for ' + what)
        time.sleep(0.2)


def _queue(b, *args):
    r = b.ctl('queue', '--json', *args)
    assert r.returncode == 0, 'queue --json: rc %d: %s' % (r.returncode,
                                                          r.stderr)
    return [json.loads(line) for line in r.stdout.splitlines()]


def _wait_attempted(b, n, timeout=20):
    """Wait until n messages are queued and each had a failed attempt."""
    def ok():
        q = _queue(b)
        if len(q) == n and all(r['attempts'] >= 1 for m in q
                               for r in m['recipients']):
            return q
        return None
    return _wait(ok, timeout, '%d queued messages with an attempt' % n)


def _send(b, sender, rcpts, subject, s=None):
    own = s is None
    if own:
        s = b.smtp()
    s.sendmail(sender, rcpts, ('Subject: %s\r\nMessage-Id: <%s@ctl.test>\r\n'
                               '\r\nbody of %s\r\n'
                               % (subject, subject, subject)).encode())
    if own:
        s.quit()


def _subjects(msgs):
    out = []
    for m in msgs:
        mm = re.search(rb'Subject: (\S+)', m['data'])
        out.append(mm.group(1).decode() if mm else None)
    return out


def test_ctl_queue_listing(world):
    world.sinks['primary'].set_mode('down')
    b = world.backmx(retry='1h')
    t0 = int(time.time())
    _send(b, 'alice@sender.example', ['alice@backup.example',
                                      'bob@backup.example'], 'q-one')
    _send(b, '', ['carol@backup.example'], 'q-two')
    q = _wait_attempted(b, 2)
    r = b.ctl('queue', '--json')
    for line in r.stdout.splitlines():
        obj = json.loads(line)           # one object per line
        assert isinstance(obj, dict), line
    bysender = {m['sender']: m for m in q}
    assert set(bysender) == {'alice@sender.example', ''}, bysender.keys()
    m = bysender['alice@sender.example']
    assert ID_RE.match(m['id']), m['id']
    assert isinstance(m['size'], int) and m['size'] > 20, m
    assert t0 - 5 <= m['arrival'] <= time.time() + 5, m
    assert m['held'] is False
    assert [x['address'] for x in m['recipients']] == [
        'alice@backup.example', 'bob@backup.example'], m['recipients']
    for rc in m['recipients']:
        assert rc['state'] == 'pending', rc
        assert rc['attempts'] >= 1, rc
        # retry 1h, jitter at most 10%
        assert rc['next_attempt'] > time.time() + 2700, rc
        assert isinstance(rc['last_error'], str) and rc['last_error'], rc
    # the human listing: id, sender, recipients, the last error
    r = b.ctl('queue')
    assert r.returncode == 0, r.stderr
    assert m['id'] in r.stdout and '<alice@sender.example>' in r.stdout
    assert 'bob@backup.example' in r.stdout and 'pending' in r.stdout
    assert m['recipients'][0]['last_error'] in r.stdout, r.stdout
    assert max(len(x) for x in r.stdout.splitlines()) <= 100, r.stdout
    # by domain
    assert len(_queue(b, 'backup.example')) == 2
    assert _queue(b, 'static.example') == []
    r = b.ctl('queue', 'static.example')
    assert r.returncode == 0 and 'empty' in r.stdout, r.stdout
    b.wait_log(r'control: queue domain=static.example n=0')


def test_ctl_show(world):
    world.sinks['primary'].set_mode('down')
    b = world.backmx(retry='1h')
    _send(b, 'alice@sender.example', ['alice@backup.example'], 'show-me')
    m = _wait_attempted(b, 1)[0]
    r = b.ctl('show', m['id'])
    assert r.returncode == 0, r.stderr
    for want in (m['id'], '<alice@sender.example>', 'alice@backup.example',
                 'Subject: show-me', 'Received: from'):
        assert want in r.stdout, (want, r.stdout)
    assert 'body of show-me' not in r.stdout, 'body shown'
    r = b.ctl('show', m['id'].upper(), '--json')
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj['id'] == m['id'] and obj['sender'] == 'alice@sender.example'
    assert 'Subject: show-me' in obj['header'], obj['header']
    assert obj['recipients'][0]['attempts'] >= 1
    r = b.ctl('show', '000000000000')
    assert r.returncode == 1 and 'no such message' in r.stderr, r


def test_ctl_hold_release(world):
    p = world.sinks['primary']
    p.set_mode('down')
    b = world.backmx(retry='1s')
    _send(b, 'alice@sender.example', ['alice@backup.example'], 'held-one')
    m = _wait_attempted(b, 1)[0]
    r = b.ctl('hold', m['id'])
    assert r.returncode == 0, r.stderr
    b.wait_log(r'control: hold id=%s' % m['id'])
    assert _queue(b)[0]['held'] is True
    p.set_mode('up')
    time.sleep(6)                       # several retry periods
    assert p.messages() == [], 'a held message was delivered'
    assert len(_queue(b)) == 1
    r = b.ctl('release', m['id'])
    assert r.returncode == 0, r.stderr
    msgs = p.wait_messages(1, timeout=15)
    assert _subjects(msgs) == ['held-one']
    _wait(lambda: _queue(b) == [], 10, 'the queue to empty')
    # by domain
    p.set_mode('down')
    p.clear()
    _send(b, 'alice@sender.example', ['bob@backup.example'], 'held-two')
    _wait_attempted(b, 1)
    r = b.ctl('hold', 'backup.example')
    assert r.returncode == 0 and '1' in r.stdout, (r.stdout, r.stderr)
    p.set_mode('up')
    time.sleep(5)
    assert p.messages() == []
    assert b.ctl('release', 'backup.example').returncode == 0
    assert _subjects(p.wait_messages(1, timeout=15)) == ['held-two']
    r = b.ctl('hold', 'nowhere.example')
    assert r.returncode == 1 and 'unknown domain' in r.stderr, r


def test_ctl_delete(world):
    p = world.sinks['primary']
    p.set_mode('down')
    b = world.backmx(retry='1h')
    _send(b, 'alice@sender.example', ['alice@backup.example'], 'del-keep')
    _send(b, 'alice@sender.example', ['bob@backup.example'], 'del-gone')
    q = _wait_attempted(b, 2)
    gone = [m for m in q if m['recipients'][0]['address'].startswith('bob')][0]
    keep = [m for m in q if m['id'] != gone['id']][0]
    r = b.ctl('delete', gone['id'])
    assert r.returncode == 0, r.stderr
    b.wait_log(r'control: delete id=%s' % gone['id'])
    assert [m['id'] for m in _queue(b)] == [keep['id']]
    r = b.ctl('delete', gone['id'])
    assert r.returncode == 1 and 'no such message' in r.stderr, r
    p.set_mode('up')
    assert b.ctl('flush').returncode == 0
    assert _subjects(p.wait_messages(1, timeout=15)) == ['del-keep']
    time.sleep(2)
    assert len(p.messages()) == 1


def test_ctl_bounce(world):
    p, bs = world.sinks['primary'], world.sinks['bounce']
    p.set_mode('down')
    b = world.backmx(retry='1h')
    _send(b, 'someone@sender.example', ['alice@backup.example'], 'to-bounce')
    m = _wait_attempted(b, 1)[0]
    r = b.ctl('bounce', m['id'])
    assert r.returncode == 0, r.stderr
    b.wait_log(r'control: bounce id=%s' % m['id'])
    dsn = bs.wait_messages(1, timeout=20)[0]
    assert dsn['mail_from'] in ('', '<>'), dsn['mail_from']
    assert dsn['rcpt_tos'] == ['someone@sender.example'], dsn['rcpt_tos']
    assert b'multipart/report' in dsn['data'], dsn['data'][:500]
    assert b'alice@backup.example' in dsn['data']
    _wait(lambda: all(x['sender'] == '' for x in _queue(b)), 10,
          'the bounced message to leave the queue')
    p.set_mode('up')
    b.ctl('flush', 'backup.example')
    time.sleep(3)
    assert p.messages() == [], 'a bounced message was delivered'


def test_ctl_flush_domain(world):
    p, st = world.sinks['primary'], world.sinks['static']
    p.set_mode('down')
    st.set_mode('down')
    b = world.backmx(retry='1h')
    _send(b, 'alice@sender.example', ['alice@backup.example'], 'fl-backup')
    _send(b, 'alice@sender.example', ['alice@static.example'], 'fl-static')
    _wait_attempted(b, 2)
    p.set_mode('up')
    st.set_mode('up')
    time.sleep(2)
    assert p.messages() == [] and st.messages() == [], 'delivered unasked'
    r = b.ctl('flush', 'backup.example')
    assert r.returncode == 0, r.stderr
    assert '1' in r.stdout, r.stdout
    b.wait_log(r'control: flush domain=backup.example n=1')
    assert _subjects(p.wait_messages(1, timeout=15)) == ['fl-backup']
    time.sleep(3)
    assert st.messages() == [], 'flush of backup.example delivered static'
    q = _queue(b)
    assert [m['recipients'][0]['address'] for m in q] == [
        'alice@static.example'], q
    r = b.ctl('flush', '--json')
    assert r.returncode == 0 and json.loads(r.stdout)['flushed'] >= 1, r
    assert _subjects(st.wait_messages(1, timeout=15)) == ['fl-static']


def test_ctl_errors(world):
    b = world.backmx()
    r = b.ctl('frobnicate')
    assert r.returncode == 1 and 'usage' in r.stderr, r
    r = b.ctl()
    assert r.returncode == 1 and 'usage' in r.stderr, r
    r = b.ctl('delete', 'not-an-id')      # a domain filter, not ours
    assert r.returncode == 1 and 'unknown domain' in r.stderr, r
    r = b.ctl('delete', 'not/an-id')
    assert r.returncode == 1 and 'bad queue id or domain' in r.stderr, r
    r = b.ctl('show', 'abcdefabcdef')
    assert r.returncode == 1 and 'no such message' in r.stderr, r
    assert r.stderr.count('\n') == 1, r.stderr
    r = b.ctl('queue', 'a b')
    assert r.returncode == 1, r
    import subprocess
    r = subprocess.run([b.backmxctl, '-s', b.dir + '/nonexistent.sock',
                        'stats'], capture_output=True, text=True)
    assert r.returncode == 1 and 'cannot connect to' in r.stderr, r
    # malformed requests straight on the socket get -ERR, not a crash
    for req in (b'\x00\xff\n', b'x' * 5000, b'queue ' + b'a.' * 300 + b'\n',
                b'stats extra\n'):
        s = socket.socket(socket.AF_UNIX)
        s.connect(b.control_path)
        s.sendall(req)
        s.settimeout(15)
        data = b''
        while not data.endswith(b'\n'):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        assert data.startswith(b'-ERR '), (req[:20], data)
    assert b.ctl('stats').returncode == 0


def test_ctl_streaming_stalled_clients(world):
    world.sinks['primary'].set_mode('down')
    b = world.backmx(retry='1h')
    s = b.smtp()
    for i in range(300):
        _send(b, 'bulk@sender.example', ['alice@backup.example'],
              'bulk-%d' % i, s=s)
    s.quit()
    _wait(lambda: len(_queue(b)) == 300, 30, '300 queued messages')
    stalled = []
    for _ in range(8):
        c = socket.socket(socket.AF_UNIX)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.connect(b.control_path)
        c.sendall(b'queue --json\n')
        stalled.append(c)
    time.sleep(1)
    t = time.monotonic()
    r = b.ctl('stats', '--json', timeout=10)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t < 3, 'stats slow while clients stall'
    assert json.loads(r.stdout)['spool_messages'] == 300
    smtp = b.smtp()                     # SMTP still served
    smtp.quit()
    # a stalled client can still read everything, in order
    f = stalled[0].makefile('rb')
    ids = []
    for line in f:
        if line == b'.\n':
            break
        assert line.startswith(b'+'), line
        ids.append(json.loads(line[1:])['id'])
    assert len(ids) == 300 and ids == sorted(ids), len(ids)
    for c in stalled:
        c.close()
    assert len(_queue(b)) == 300


def test_ctl_autoflush(world):
    p = world.sinks['primary']
    p.set_mode('down')
    b = world.backmx(retry='1h')
    s = b.smtp()
    for i in range(200):
        _send(b, 'af@sender.example', ['alice@backup.example'], 'af-%d' % i,
              s=s)
    s.quit()
    _wait_attempted(b, 200, timeout=60)
    p.set_mode('up')
    time.sleep(2)
    assert p.messages() == []
    # one new message goes out at once; its success drains the rest
    _send(b, 'af@sender.example', ['alice@backup.example'], 'af-new')
    msgs = p.wait_messages(201, timeout=90)
    assert sorted(set(_subjects(msgs))) == sorted(
        ['af-%d' % i for i in range(200)] + ['af-new'])
    _wait(lambda: _queue(b) == [], 20, 'the queue to empty')


test_ctl_autoflush.timeout = 200


def _sender(b, stop, acked, lock, prefix):
    n = 0
    while not stop.is_set():
        n += 1
        tag = '%s-%d' % (prefix, n)
        try:
            s = smtplib.SMTP('127.0.0.3', 25, timeout=10)
            s.ehlo('load.test')
            s.sendmail('load@sender.example', ['alice@backup.example'],
                       ('Subject: %s\r\n\r\n%s\r\n' % (tag, tag * 50))
                       .encode())
            try:
                s.quit()
            except Exception:
                pass
        except Exception:
            time.sleep(0.05)
            continue
        with lock:
            acked.add(tag)


def test_ctl_sigterm_under_load(world):
    p = world.sinks['primary']
    p.set_mode('down')
    b = world.backmx(retry='1h')
    stop, lock, acked = threading.Event(), threading.Lock(), set()
    threads = [threading.Thread(target=_sender,
                                args=(b, stop, acked, lock, 'L%d' % i))
               for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(2)
    listing = b.ctl('queue', '--json')
    assert listing.returncode == 0, listing.stderr
    rc = b.stop()
    stop.set()
    for t in threads:
        t.join()
    assert rc == 0, 'backmxd exited %r on SIGTERM' % rc
    assert acked, 'nothing was accepted'
    b.start()
    q = _queue(b)
    assert len(q) >= len(acked), (len(q), len(acked))
    p.set_mode('up')
    assert b.ctl('flush').returncode == 0
    _wait(lambda: acked <= set(_subjects(p.messages())), 60,
          'every acknowledged message at the primary')
