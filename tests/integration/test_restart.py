"""Restart from the next-attempt index (issue 19): the schedule is loaded
from next.db on the loop after the banner, in batches, not from every
envelope.

  queued before a kill -9   delivered after the restart; the ones due at
                            the restart go at once (retry 2s 1h: a lost or
                            wrong schedule would hold them for the hour),
                            ones not due stay queued until a flush (which
                            finishes the load first); mail accepted while
                            the load runs is delivered too.
  delay warning             a message whose next attempt is an hour away
                            but whose delay warning falls before it gets
                            its warning on time after the restart.
  clean close               the start says how many are queued (from the
                            state file's clean line) and the load
                            schedules every one of them.

BACKMXD_TEST_LOAD_BATCH=KEYS:SECONDS makes the load take several loop
iterations, SECONDS apart; due mail must be sent before the load ends.
"""
import os
import re
import time

SENDER = 'someone@sender.example'


def _send(b, tag, rcpt='alice@backup.example'):
    s = b.smtp()
    try:
        s.sendmail(SENDER, [rcpt],
                   'From: %s\r\nSubject: %s\r\n\r\nbody %s\r\n'
                   % (SENDER, tag, tag))
    finally:
        try:
            s.quit()
        except Exception:
            pass


def _subjects(sink):
    out = []
    for m in sink.messages():
        mm = re.search(rb'\r?\nSubject: (\S+)', m['data'])
        if mm:
            out.append(mm.group(1).decode())
    return out


def _wait_count(b, regex, n, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(re.findall(regex, b.log_text())) >= n:
            return
        time.sleep(0.1)
    raise AssertionError('fewer than %d log lines matching %r:\n%s'
                         % (n, regex, b.log_tail()))


def _load_line(b, regex, timeout=10):
    """regex in the log of the last start"""
    r = re.compile(regex)
    deadline = time.monotonic() + timeout
    while True:
        m = r.search(b.log_text().split('--- harness: starting')[-1])
        if m:
            return m
        if time.monotonic() > deadline:
            raise AssertionError('no %r since the last start:\n%s'
                                 % (regex, b.log_tail()))
        time.sleep(0.1)


def _start_batched(b):
    os.environ['BACKMXD_TEST_LOAD_BATCH'] = '2:1'
    try:
        b.start()
    finally:
        del os.environ['BACKMXD_TEST_LOAD_BATCH']


def test_restart_index_kill9(world):
    p = world.sinks['primary']
    bs = world.sinks['bounce']
    p.set_mode('down')
    b = world.backmx(retry='2s 1h', delay_warning='9s',
                     queue_lifetime='2h')
    t0 = time.monotonic()
    for i in range(3):
        _send(b, 'late-%d' % i)
    # their second attempt (2 s on) defers them for the hour
    _wait_count(b, r'status=deferred', 6, timeout=15)
    for i in range(10):
        _send(b, 'due-%d' % i)
    _wait_count(b, r'status=deferred', 16, timeout=10)
    b.kill9()
    time.sleep(2.2)             # the due ones' next attempt has passed
    p.set_mode('up')
    _start_batched(b)
    _send(b, 'new-0')
    got = p.wait_messages(11, timeout=15)
    subj = _subjects(p)
    assert sorted(subj) == sorted(['due-%d' % i for i in range(10)] +
                                  ['new-0']), subj
    m = _load_line(b, r'queue loaded: (\d+) message\(s\) scheduled from the '
                   r'index in [0-9.]+ s \((\d+) envelope\(s\) read\)')
    # due mail went out while the load still ran (not after it)
    last = b.log_text().split('--- harness: starting')[-1]
    assert last.index('status=sent') < last.index('queue loaded'), last
    # the three late ones were read for their warning, nothing else
    assert m.group(2) == '3', m.group(0)
    assert int(m.group(1)) >= 13, m.group(0)
    # the late ones: their delay warning (9 s after arrival) comes on
    # time though their next attempt is an hour away
    left = 9 + 20 - (time.monotonic() - t0)
    warn = bs.wait_messages(3, timeout=max(left, 1))
    assert len(warn) == 3, len(warn)
    for w in warn:
        assert b'Delayed Mail' in w['data'], w['data'][:300]
    assert not [s for s in _subjects(p) if s.startswith('late-')]
    # a flush finishes the load (here done) and sends them
    r = b.ctl('flush')
    assert r.returncode == 0, (r.stdout, r.stderr)
    p.wait_messages(14, timeout=15)
    assert sorted(s for s in _subjects(p) if s.startswith('late-')) == \
        ['late-0', 'late-1', 'late-2'], _subjects(p)


def test_restart_index_clean_flush_during_load(world):
    p = world.sinks['primary']
    p.set_mode('down')
    b = world.backmx(retry='1h')
    for i in range(12):
        _send(b, 'q-%d' % i)
    _wait_count(b, r'status=deferred', 12, timeout=10)
    b.stop()
    n0 = len(re.findall(r'started: .*', b.log_text()))
    p.set_mode('up')
    # one key a second: the flush arrives while it loads
    os.environ['BACKMXD_TEST_LOAD_BATCH'] = '1:1'
    try:
        b.start()
    finally:
        del os.environ['BACKMXD_TEST_LOAD_BATCH']
    starts = re.findall(r'started: .*?(\d+) message\(s\) queued',
                        b.log_text())
    assert len(starts) == n0 + 1 and starts[-1] == '12', starts
    r = b.ctl('flush')
    assert r.returncode == 0, (r.stdout, r.stderr)
    p.wait_messages(12, timeout=15)
    assert sorted(_subjects(p)) == sorted('q-%d' % i for i in range(12))
    m = b.wait_log(r'queue loaded \(the rest at once for a flush\): (\d+) '
                   r'message\(s\) scheduled')
    assert m.group(1) == '12', m.group(0)
