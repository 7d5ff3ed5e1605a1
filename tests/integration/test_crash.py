"""Crash consistency: nothing that got 250 is ever lost.

Tried: four concurrent clients send numbered messages while backmxd is
kill -9'ed three times at random moments during accept (primary down) and
restarted; then the primary comes up and backmxd is kill -9'ed twice more
during delivery.  Every message that got 250 must reach the primary
(lost = 0); duplicates are allowed (at-least-once) and reported.
Also: a second backmxd on the same spool refuses to start.
"""
import random
import re
import smtplib
import subprocess
import threading
import time


def _sender(stop, acked, lock, prefix):
    n = 0
    while not stop.is_set():
        n += 1
        tag = '%s-%d' % (prefix, n)
        body = ('Subject: %s\r\nMessage-Id: <%s@crash.test>\r\n\r\n%s\r\n' %
                (tag, tag, ('line %s\r\n' % tag) * 20)).encode()
        try:
            s = smtplib.SMTP('127.0.0.3', 25, timeout=10)
            s.ehlo('crash.test')
            s.sendmail('crash@sender.example', ['alice@backup.example'], body)
            try:
                s.quit()
            except Exception:
                pass
        except Exception:
            time.sleep(0.05)    # not acknowledged: may or may not be stored
            continue
        with lock:
            acked.add(tag)


def _tags(msgs):
    out = []
    for m in msgs:
        mm = re.search(rb'Subject: (c\d-\d+)', m['data'])
        if mm:
            out.append(mm.group(1).decode())
    return out


def test_crash_kill9_accept_and_delivery(world):
    p = world.sinks['primary']
    p.set_mode('down')
    b = world.backmx(retry='1s 1s 2s')
    stop = threading.Event()
    acked, lock = set(), threading.Lock()
    threads = [threading.Thread(target=_sender, args=(stop, acked, lock, 'c%d' % i))
               for i in range(4)]
    for t in threads:
        t.start()
    rnd = random.Random()
    try:
        for _ in range(3):
            time.sleep(rnd.uniform(0.5, 2.0))
            b.kill9()
            time.sleep(rnd.uniform(0.0, 0.3))
            b.start()
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    n_acked = len(acked)
    assert n_acked >= 20, 'too few messages acknowledged to prove anything: %d' % n_acked

    # delivery phase, with two more kills while the queue drains
    p.set_mode('up')
    for _ in range(2):
        time.sleep(rnd.uniform(0.3, 1.0))
        b.kill9()
        b.start()

    deadline = time.time() + 90
    while time.time() < deadline:
        got = set(_tags(p.messages()))
        if acked <= got:
            break
        time.sleep(0.5)
    tags = _tags(p.messages())
    got = set(tags)
    lost = sorted(acked - got)
    dups = len(tags) - len(got)
    print('crash test: acknowledged=%d delivered=%d lost=%d duplicates=%d' %
          (n_acked, len(got), len(lost), dups))
    assert not lost, 'LOST %d acknowledged messages: %s' % (len(lost), lost[:10])


def test_second_daemon_refused(world):
    """A second backmxd on the same spool (other port, other control
    socket) must refuse to start with a clear message."""
    import os
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    backmxd = os.environ.get('BACKMXD', os.path.join(root, 'build', 'backmxd'))
    b = world.backmx()
    conf = open(b.conf_path).read()
    conf = re.sub(r'(?m)^listen .*$', 'listen 127.0.0.3:2599', conf)
    conf = re.sub(r'(?m)^control .*$', 'control %s/second.sock' % b.dir, conf)
    conf = re.sub(r'(?m)^metrics .*$', '', conf)
    conf = re.sub(r'(?m)^pidfile .*$', '', conf)
    path = os.path.join(b.dir, 'second.conf')
    open(path, 'w').write(conf)
    try:
        r = subprocess.run([backmxd, '-f', '-c', path], capture_output=True,
                           text=True, timeout=20)
    except subprocess.TimeoutExpired:
        raise AssertionError('second backmxd kept running on the same spool')
    assert r.returncode != 0, 'second backmxd started on the same spool'
    assert re.search(r'(another|running|in use|busy|locked)', r.stderr, re.I), r.stderr
    # the first one still works
    s = b.smtp()
    code, _ = s.noop()
    assert code == 250
    s.quit()
