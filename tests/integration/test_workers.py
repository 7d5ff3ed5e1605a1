"""`workers N`: accept processes sharing one spool (relay/worker*.c).

Every test runs the real daemon with `workers 2` (a parent with the
forwarder and control socket, two accept workers on SO_REUSEPORT copies
of the listener).  Tried: mail over many sessions taken by both workers
(two pids in the log) and every message delivered once, the counters of
`backmxctl stats` summed over the processes, SIGTERM ending every process
with status 0; max_clients_per_ip holding across the workers (sessions
from one address on both, exactly the limit admitted); ETRN in a worker's
session flushing the parent's queue; a reload reaching every worker (a
domain added is accepted by both) and a truncated file refused by the
parent with mail still accepted; kill -9 of a worker (the parent stops
everything, exits 1; after a restart every acknowledged message is
delivered) and kill -9 of the parent (the workers stop; the same).
"""
import json
import os
import re
import signal
import socket
import threading
import time


def _wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError('timed out waiting for ' + what)
        time.sleep(0.1)


def _children(pid):
    """Pids whose parent is pid (the workers)."""
    out = []
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % d) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(')') + 2:].split()
        if int(fields[1]) == pid:
            out.append(int(d))
    return out


def _gone(pids):
    return all(not os.path.exists('/proc/%d' % p) or
               open('/proc/%d/stat' % p).read().split(') ')[1][0] == 'Z'
               for p in pids)


def _session_pids(b, what='connect from'):
    return set(int(p) for p in
               re.findall(r'\[(\d+)\]: %s' % re.escape(what),
                          b.log_text()))


def _stats(b):
    r = b.ctl('stats', '--json')
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _send_one(b, subject, rcpt='alice@backup.example'):
    s = b.smtp()
    s.sendmail('someone@sender.example', [rcpt],
               ('Subject: %s\r\n\r\nhello\r\n' % subject).encode())
    s.quit()


def _send_parallel(b, n, prefix):
    errors = []

    def one(i):
        try:
            _send_one(b, '%s-%d' % (prefix, i))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def _b(world, **kw):
    extra = kw.pop('extra', '')
    b = world.backmx(extra='workers 2\n' + extra, **kw)
    b.wait_log(r'worker 2 started', timeout=10)
    _wait(lambda: len(_children(b.pid)) == 2, 10, 'two workers')
    return b


def test_workers_spread_delivered_stats(world):
    p = world.sinks['primary']
    b = _b(world)
    assert 'process(es) accepting' in b.log_text()
    _send_parallel(b, 24, 'spread')
    msgs = p.wait_messages(24, timeout=60)
    subjects = sorted(re.search(rb'Subject: (\S+)', m['data']).group(1)
                      for m in msgs)
    assert subjects == sorted(b'spread-%d' % i for i in range(24)), subjects
    pids = _session_pids(b)
    workers = set(_children(b.pid))
    assert b.pid not in pids, 'the parent accepted a session'
    assert len(pids) == 2 and pids <= workers, (pids, workers)
    st = _wait(lambda: (lambda s: s if s['delivered'] >= 24 else None)(
        _stats(b)), 20, 'delivered 24 in stats')
    assert st['accepted'] == 24, st
    assert st['sessions'] >= 24, st
    r = b.ctl('queue')
    assert r.returncode == 0, r.stderr
    time.sleep(1)
    assert len(p.messages()) == 24, 'a message was delivered twice'
    assert b.stop() == 0
    assert _gone(workers), 'a worker outlived the parent'
    assert 'abnormally' not in b.log_text()


def test_workers_per_ip_limit_shared(world):
    b = _b(world, max_clients_per_ip=4)
    conns, greet = [], []
    try:
        for i in range(14):
            c = socket.create_connection(('127.0.0.3', 25), timeout=10)
            conns.append(c)
        for c in conns:
            greet.append(c.makefile('rb').readline())
        ok = [g for g in greet if g.startswith(b'220')]
        refused = [g for g in greet if g.startswith(b'421')]
        assert len(ok) == 4 and len(refused) == 10, greet
        # the limit was counted by both workers together
        pids = _session_pids(b) | _session_pids(b, 'NOQUEUE: reject: '
                                                 'CONNECT')
        assert len(pids) == 2, pids
    finally:
        for c in conns:
            c.close()


def test_workers_etrn_reaches_forwarder(world):
    p = world.sinks['primary']
    p.set_mode('down')
    b = _b(world, retry='1h', etrn_allow='127.0.0.0/8')
    _send_one(b, 'etrn-w')
    _wait(lambda: b.ctl('queue', '--json').stdout.count('"attempts": 1') or
          re.search(r'"attempts": ?[1-9]', b.ctl('queue', '--json').stdout),
          20, 'a failed attempt')
    p.set_mode('up')
    time.sleep(1)
    assert p.messages() == []
    codes = []
    for i in range(4):  # sessions on both workers
        s = b.smtp()
        codes.append(s.docmd('ETRN', 'backup.example')[0])
        s.quit()
    assert codes[0] == 250 and all(c in (250, 251, 458) for c in codes), \
        codes
    m = p.wait_messages(1, timeout=15)[0]
    assert b'etrn-w' in m['data']
    assert _stats(b)['etrn'] >= 1


def test_workers_reload(world):
    base = ('domain backup.example { recipients %(dir)s/backup.rcpts '
            'route mx }\n')
    b = _b(world, domains=base)
    s = b.smtp()
    s.mail('someone@sender.example')
    assert s.rcpt('x@aonly.example')[0] >= 500
    s.quit()
    with open(b.conf_path) as f:
        conf = f.read()
    with open(b.conf_path, 'w') as f:
        f.write(conf + 'domain aonly.example { recipients * route mx }\n')
    os.kill(b.pid, signal.SIGHUP)
    _wait(lambda: b.log_text().count('reloaded ') >= 3, 15,
          'the parent and both workers reloaded')
    for i in range(8):
        s = b.smtp()
        s.mail('someone@sender.example')
        assert s.rcpt('x@aonly.example')[0] == 250, 'session %d' % i
        s.quit()
    # a truncated file: refused by the parent, the workers keep theirs
    with open(b.conf_path, 'w') as f:
        f.write(conf[:len(conf) // 2] + '\ndomain {{{\n')
    os.kill(b.pid, signal.SIGHUP)
    b.wait_log(r'keeping the running configuration', timeout=15)
    time.sleep(0.5)
    assert b.log_text().count('reloaded ') == 3
    _send_parallel(b, 6, 'after-bad-reload')
    world.sinks['primary'].wait_messages(6, timeout=30)
    with open(b.conf_path, 'w') as f:
        f.write(conf)


def _stream(b, acked, stop):
    """Send mail until stop; record the subjects answered 250."""
    def run(k):
        i = 0
        while not stop.is_set():
            subj = 'crash-%d-%d' % (k, i)
            i += 1
            try:
                _send_one(b, subj)
            except Exception:  # noqa: BLE001 - the daemon is being killed
                continue
            acked.append(subj.encode())
    ts = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    return ts


def _crash_and_check(world, b, victim):
    p = world.sinks['primary']
    acked, stop = [], threading.Event()
    ts = _stream(b, acked, stop)
    _wait(lambda: len(acked) >= 20, 60, '20 acknowledged messages')
    workers = _children(b.pid)
    os.kill(victim(b, workers), signal.SIGKILL)
    time.sleep(0.5)
    stop.set()
    for t in ts:
        t.join(60)
    b.expected_exit = True
    rc = b.proc.wait(20)
    _wait(lambda: _gone(workers), 20, 'every worker to exit')
    p.set_mode('up')
    b.start()
    want = set(acked)
    _wait(lambda: want <= set(re.search(rb'Subject: (\S+)', m['data']).group(1)
                              for m in p.messages()),
          90, 'every acknowledged message (%d) delivered' % len(want))
    return rc


def test_workers_kill9_worker_loses_nothing(world):
    world.sinks['primary'].set_mode('down')
    b = _b(world, retry='1s')
    rc = _crash_and_check(world, b, lambda b, w: w[0])
    assert rc == 1, rc
    assert re.search(r'worker \d+ killed by signal 9', b.log_text())


def test_workers_kill9_parent_loses_nothing(world):
    world.sinks['primary'].set_mode('down')
    b = _b(world, retry='1s')
    rc = _crash_and_check(world, b, lambda b, w: b.pid)
    assert rc == -9, rc
