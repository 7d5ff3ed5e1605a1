"""Queue operations of round 2 against the real daemon and a real spool:
filters (DOMAIN --sender --rcpt --older --younger --held --id) on queue,
hold, release, delete, bounce, flush and requeue; --all for unfiltered
delete/bounce; pause/resume (450 4.3.2, kept over reload and restart);
shape (qshape's buckets); show ID --body; a bulk operation on a large
spool with progress on stderr while the loop keeps serving SMTP.

Messages of a given age are planted with tests/integration/qload.c (the
real spool code, daemon stopped), so age filters and shape buckets are
exercised without waiting.
"""
import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import threading
import time

_built = {}
UID = os.getuid()


def _qload_path(world):
    if 'qload' in _built:
        return _built['qload']
    # the shards run beside each other and test_takeover_large plants
    # with it too: each builds its own file and renames it into place
    # (two linkers writing build/qload at once left a shard exec'ing a
    # half-written file: EACCES in a fresh-clone CI)
    out = os.path.join(world.build, 'qload')
    tmp = '%s.%d' % (out, os.getpid())
    cmd = ('cc -std=gnu11 -D_GNU_SOURCE -O2 -Ispool -o %s '
           'tests/integration/qload.c spool/*.c -ldb-5.3' % tmp)
    p = subprocess.run(cmd, shell=True, cwd=world.root, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, 'building qload failed:\n' + p.stderr
    os.replace(tmp, out)
    _built['qload'] = out
    return out


def _plant(world, b, n, age, sender, rcpt):
    p = subprocess.run([_qload_path(world), b.spool_dir, str(n), str(age),
                        sender, rcpt], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def _wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError('timed out waiting for ' + what)
        time.sleep(0.2)


def _ok(r):
    assert r.returncode == 0, 'rc %d: %s %s' % (r.returncode, r.stdout,
                                                r.stderr)
    return r


def _queue(b, *args):
    r = _ok(b.ctl('queue', '--json', *args))
    return [json.loads(line) for line in r.stdout.splitlines()]


def _j(b, *args):
    return json.loads(_ok(b.ctl(*args, '--json')).stdout)


def test_queueops_filters(world):
    p, st, bs = (world.sinks['primary'], world.sinks['static'],
                 world.sinks['bounce'])
    p.set_mode('down')
    st.set_mode('down')
    b = world.backmx(retry='1h', queue_lifetime='2d', start=False)
    os.makedirs(b.spool_dir, exist_ok=True)
    _plant(world, b, 3, 7200, 'spam@sender.example', 'alice@backup.example')
    _plant(world, b, 2, 30, 'good@sender.example', 'bob@backup.example')
    sid = _plant(world, b, 1, 30, 'good@sender.example',
                 'alice@static.example')
    _plant(world, b, 1, 100, 'x@sender.example', 'carol@backup.example')
    b.start()
    assert len(_queue(b)) == 7
    assert len(_queue(b, '--sender', '^spam@')) == 3
    assert len(_queue(b, '--rcpt', '^BOB@')) == 2      # case-insensitive
    assert len(_queue(b, 'static.example')) == 1
    assert len(_queue(b, '--older', '1h')) == 3
    assert len(_queue(b, '--younger', '1h')) == 4
    assert len(_queue(b, '--older', '1h', '--rcpt', 'bob')) == 0
    assert [m['id'] for m in _queue(b, '--id', sid)] == [sid]
    assert len(_queue(b, 'backup.example', '--sender', 'good')) == 2

    # hold / release by filter; --held selects
    r = _ok(b.ctl('hold', '--sender', '^spam@'))
    assert 'held 3 messages' in r.stdout, r.stdout
    b.wait_log(r'control: hold sender=\^spam@ n=3 matched=3 scanned=7 '
               r'uid=%d' % UID)
    held = _queue(b, '--held')
    assert len(held) == 3 and all(m['held'] for m in held), held
    assert _j(b, 'release', '--held', '--older', '1h')['released'] == 3
    assert _queue(b, '--held') == []

    # delete / bounce: a filter or --all
    for verb in ('delete', 'bounce'):
        r = b.ctl(verb)
        assert r.returncode == 1 and 'no filter given' in r.stderr, r
    r = _j(b, 'delete', '--sender', '^spam@')
    assert r['deleted'] == 3, r
    b.wait_log(r'control: delete sender=\^spam@ n=3 .* uid=%d' % UID)
    assert len(_queue(b)) == 4

    # bounce by sender: a DSN to x@sender.example
    assert _j(b, 'bounce', '--sender', '^x@')['bounced'] == 1
    dsn = bs.wait_messages(1, timeout=20)[0]
    assert dsn['rcpt_tos'] == ['x@sender.example'], dsn['rcpt_tos']
    assert b'carol@backup.example' in dsn['data']

    # flush by recipient: only bob's two, not the static one
    p.set_mode('up')
    st.set_mode('up')
    _wait(lambda: all(m['sender'] != '' for m in _queue(b)), 20,
          'the DSN to leave the queue')
    r = _j(b, 'flush', '--rcpt', '^bob@')
    assert r['flushed'] == 2, r
    msgs = p.wait_messages(2, timeout=20)
    assert all(m['rcpt_tos'] == ['bob@backup.example'] for m in msgs), msgs
    time.sleep(2)
    assert st.messages() == [], 'flush --rcpt bob delivered the static one'

    # requeue: the planted next attempt (in a day) is reset to now
    st.set_mode('down')
    q = _queue(b, '--id', sid)[0]['recipients'][0]
    assert q['next_attempt'] > time.time() + 80000, q
    assert _j(b, 'requeue', 'static.example')['requeued'] == 1
    b.wait_log(r'%s: requeued by the operator' % sid)
    b.wait_log(r'control: requeue domain=static.example n=1 .* uid=%d' % UID)

    def retried():
        r = _queue(b, '--id', sid)[0]['recipients'][0]
        # a new attempt after the reset: next = now + the first step
        return r if r['next_attempt'] < time.time() + 4000 else None
    r = _wait(retried, 20, 'the requeued message to be tried again')
    assert r['attempts'] == 1, r
    st.set_mode('up')
    assert _j(b, 'flush', '--id', sid)['flushed'] == 1
    assert len(st.wait_messages(1, timeout=20)) == 1
    _wait(lambda: _queue(b) == [], 20, 'the queue to empty')
    # an id that is not there
    r = b.ctl('hold', '--id', sid)
    assert r.returncode == 1 and 'no such message' in r.stderr, r


def _rcpt(b, addr):
    s = b.smtp()
    s.mail('someone@sender.example')
    code, msg = s.rcpt(addr)
    s.rset()
    s.quit()
    return code, msg


def test_queueops_pause(world):
    p = world.sinks['primary']
    p.set_mode('down')
    b = world.backmx(retry='1h')
    s = b.smtp()
    s.sendmail('a@sender.example', ['alice@backup.example'],
               b'Subject: before-pause\r\n\r\nqueued before the pause\r\n')
    s.quit()
    _wait(lambda: len(_queue(b)) == 1, 10, 'the message to be queued')
    r = _ok(b.ctl('pause', 'Backup.Example'))
    assert 'paused backup.example' in r.stdout, r.stdout
    b.wait_log(r'control: pause domain=backup.example changed=1 uid=%d' % UID)
    code, msg = _rcpt(b, 'bob@backup.example')
    assert code == 450 and msg.startswith(b'4.3.2'), (code, msg)
    assert _rcpt(b, 'alice@static.example')[0] == 250
    assert _j(b, 'pause') == {'paused': ['backup.example']}
    # a reload keeps it
    os.kill(b.pid, signal.SIGHUP)
    time.sleep(1)
    assert _rcpt(b, 'bob@backup.example')[0] == 450
    # a restart keeps it (spool/paused.domains)
    b.stop()
    b.start()
    assert _rcpt(b, 'bob@backup.example')[0] == 450
    # queued mail is still delivered
    p.set_mode('up')
    _ok(b.ctl('flush', 'backup.example'))
    assert len(p.wait_messages(1, timeout=20)) == 1
    r = _ok(b.ctl('resume', 'backup.example'))
    assert 'resumed backup.example' in r.stdout
    assert _rcpt(b, 'bob@backup.example')[0] == 250
    r = b.ctl('pause', 'nowhere.example')
    assert r.returncode == 1 and 'unknown domain' in r.stderr, r
    assert _j(b, 'pause') == {'paused': []}


def test_queueops_shape(world):
    world.sinks['primary'].set_mode('down')
    b = world.backmx(retry='1h', queue_lifetime='2d', start=False)
    os.makedirs(b.spool_dir, exist_ok=True)
    _plant(world, b, 2, 60, 's@sender.example', 'alice@backup.example')
    _plant(world, b, 1, 7 * 60, 's@sender.example', 'bob@backup.example')
    _plant(world, b, 1, 700 * 60, 's@sender.example', 'bob@backup.example')
    _plant(world, b, 1, 30 * 60, 's@sender.example', 'alice@static.example')
    _plant(world, b, 3, 200 * 60, 's@sender.example', 'x@aonly.example')
    b.start()
    r = _j(b, 'shape')
    assert r['buckets'] == ['0-5m', '5-10m', '10-20m', '20-40m', '40-80m',
                            '80-160m', '160-320m', '320-640m', '640m+'], r
    assert r['total'] == {'domain': 'TOTAL', 'total': 8,
                          'counts': [2, 1, 0, 1, 0, 0, 3, 0, 1]}, r
    rows = {d['domain']: d for d in r['domains']}
    assert rows['backup.example']['counts'] == [2, 1, 0, 0, 0, 0, 0, 0, 1]
    assert rows['aonly.example']['total'] == 3
    assert rows['static.example']['counts'] == [0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert [d['domain'] for d in r['domains']] == [
        'backup.example', 'aonly.example', 'static.example'], r
    text = _ok(b.ctl('shape')).stdout.splitlines()
    assert re.match(r'^\s+T\s+5\s+10\s+20\s+40\s+80\s+160\s+320\s+640\s+'
                    r'640\+$', text[0]), text
    assert text[1].split() == ['TOTAL', '8', '2', '1', '0', '1', '0', '0',
                               '3', '0', '1'], text
    assert text[2].split()[0:2] == ['backup.example', '4'], text
    one = _j(b, 'shape', 'static.example')
    assert one['total']['total'] == 1 and len(one['domains']) == 1, one
    b.wait_log(r'control: shape domain=static.example n=1 scanned=8 '
               r'uid=%d' % UID)
    assert len(_queue(b, '--older', '10h')) == 1
    assert len(_queue(b, '--younger', '5m')) == 2


def test_queueops_show_body(world):
    world.sinks['primary'].set_mode('down')
    b = world.backmx(retry='1h')
    body = ('Subject: body-test\r\nMessage-Id: <body@ctl.test>\r\n\r\n'
            'line one\r\n\r\n' + ('x' * 900 + '\r\n') * 100 +
            'last line\r\n')     # over one 60 KiB spool chunk
    s = b.smtp()
    s.sendmail('a@sender.example', ['alice@backup.example'], body.encode())
    s.quit()
    m = _wait(lambda: _queue(b), 10, 'the message')[0]
    r = _ok(b.ctl('show', m['id'], '--body'))
    assert r.stdout.startswith('Received: '), r.stdout[:200]
    assert r.stdout.endswith(body.replace('\r\n', '\n')), r.stdout[-300:]
    b.wait_log(r'control: show id=%s body octets=%d uid=%d'
               % (m['id'], m['size'], UID))
    r = _ok(b.ctl('show', m['id'], '--body', '--json'))
    data = ''.join(json.loads(l)['data'] for l in r.stdout.splitlines())
    assert len(data) == m['size'] and data.endswith(body), data[-200:]
    r = b.ctl('show', '0123456789ab', '--body')
    assert r.returncode == 1 and 'no such message' in r.stderr, r


def test_queueops_bulk(world):
    """A hold and a delete of 60 000 messages: batched, progress lines on
    stderr, and the loop answers SMTP within a second meanwhile."""
    n = 60000
    world.sinks['primary'].set_mode('down')
    b = world.backmx(retry='1h', start=False)
    os.makedirs(b.spool_dir, exist_ok=True)
    _plant(world, b, n, 60, 'bulk@sender.example', 'alice@backup.example')
    b.start(timeout=60)
    worst = [0.0]
    stop = threading.Event()

    def probe():
        host, port = b.listen[0]
        while not stop.is_set():
            t = time.monotonic()
            try:
                with socket.create_connection((host, port), timeout=10) as s:
                    s.recv(100)
                    s.sendall(b'QUIT\r\n')
                    s.recv(100)
            except OSError:
                pass
            worst[0] = max(worst[0], time.monotonic() - t)
            time.sleep(0.05)
    th = threading.Thread(target=probe)
    th.start()
    try:
        r = _ok(b.ctl('hold', timeout=110))
        assert 'held %d messages' % n in r.stdout, r.stdout
        assert re.search(r'backmxctl: hold: \d+ of about %d messages '
                         r'scanned, \d+ matched' % n, r.stderr), r.stderr
        r = _ok(b.ctl('delete', '--all', '--held', '--json', timeout=110))
        assert json.loads(r.stdout)['deleted'] == n, r.stdout
        assert 'delete:' in r.stderr
        r = _ok(b.ctl('-q', 'queue', '--json'))
        assert r.stdout == '' and r.stderr == '', r
    finally:
        stop.set()
        th.join()
    assert worst[0] < 1.0, 'a banner took %.2f s during the bulk run' % worst[0]
    b.wait_log(r'control: delete held n=%d matched=%d scanned=%d uid=%d'
               % (n, n, n, UID))
test_queueops_bulk.timeout = 300
