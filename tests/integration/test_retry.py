"""No retry storm: a recipient the primary defers (450) follows its own
retry schedule whatever else is delivered to the same destination; a
flush makes a message due once and does not advance its schedule; a
destination that recovers makes due only the mail it deferred without
an answer."""
import json
import time

SENDER = 'someone@sender.example'
BUSY = '450 4.2.1 <bob@backup.example>: mailbox busy, try later'


def _msg(subject):
    return ('From: %s\r\nTo: alice@backup.example\r\nSubject: %s\r\n'
            'Message-ID: <%s@sender.example>\r\n\r\nhello\r\n'
            % (SENDER, subject, subject.replace(' ', '.'))).encode()


def _send(b, rcpts, subject):
    s = b.smtp()
    s.sendmail(SENDER, rcpts, _msg(subject))
    s.quit()


def _queue(b):
    r = b.ctl('queue', '--json')
    assert r.returncode == 0, r.stderr
    return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]


def _bob_rcpt(b):
    """bob's entry in the queue (the only message left for him)"""
    for m in _queue(b):
        for r in m['recipients']:
            if r['address'] == 'bob@backup.example' and \
                    r['state'] == 'pending':
                return r
    return None


def _attempts(sink, addr, since, until=None):
    return [t for t, a, _ in list(sink.rcpt_log)
            if a == addr and t >= since and (until is None or t <= until)]


def _allowed(steps, window):
    """attempts a schedule allows in window seconds: the first one, then
    one after each step while the sum (no jitter: the earliest) fits"""
    n, t = 1, 0
    for i in range(1000):
        t += steps[min(i, len(steps) - 1)]
        if t > window:
            break
        n += 1
    return n


def test_retry_no_storm_while_other_mail_flows(world):
    """retry 2s 4s 8s; bob answered 450 by a live primary; for 12 s other
    mail to the same primary flows (a message every 0.3 s, connections
    reused): bob is tried at most as the schedule says (at 0, 2, 6: 3),
    not with every other delivery (the bug: one per delivery)."""
    p = world.sinks['primary']
    p.rcpt_replies['bob@backup.example'] = BUSY
    steps = [2, 4, 8]
    window = 12.0
    b = world.backmx(retry='2s 4s 8s')
    t0 = time.time()
    _send(b, ['alice@backup.example', 'bob@backup.example'], 'storm 0')
    n = 1
    while time.time() < t0 + window:
        _send(b, ['carol@backup.example'], 'other %d' % n)
        n += 1
        time.sleep(0.3)
    p.wait_messages(n, timeout=20)
    got = _attempts(p, 'bob@backup.example', t0, t0 + window)
    allowed = _allowed(steps, window)
    print('bob: %d attempts in %gs (schedule allows %d), %d other '
          'messages' % (len(got), window, allowed, n))
    assert 2 <= len(got) <= allowed, \
        'bob tried %d times in %gs (at %r), schedule allows %d' % (
            len(got), window, [round(t - t0, 2) for t in got], allowed)
    # and each attempt came at its step, not earlier (times are whole
    # seconds: up to 1 s early)
    for i in range(1, len(got)):
        gap = got[i] - got[i - 1]
        assert gap >= steps[min(i - 1, len(steps) - 1)] - 1.05, \
            'attempt %d after %.2fs: %r' % (i, gap, got)
    r = _bob_rcpt(b)
    assert r is not None and r['attempts'] == len(got), r


def test_retry_flush_once_keeps_step(world):
    """bob answered 450 (step 1: next try 8 s later, then 60 s); primary
    down, 20 messages queued, primary up, flush DOMAIN: bob is tried once
    by the flush (not once per recovered delivery: the bug gave 127 tries
    in 0.27 s), his next attempt stays where the schedule had it (the
    flush did not move him to the 60 s step), and it happens there."""
    p = world.sinks['primary']
    p.rcpt_replies['bob@backup.example'] = BUSY
    b = world.backmx(retry='8s 60s')
    _send(b, ['alice@backup.example', 'bob@backup.example'], 'flush 0')
    p.wait_messages(1, timeout=10)
    end = time.time() + 5
    while time.time() < end and not (_bob_rcpt(b) or {}).get('attempts'):
        time.sleep(0.1)
    before = _bob_rcpt(b)
    assert before is not None and before['attempts'] == 1, before
    sched = before['next_attempt']
    p.set_mode('down')
    s = b.smtp()
    for i in range(20):
        s.sendmail(SENDER, ['carol@backup.example'], _msg('queued %d' % i))
    s.quit()
    b.wait_log(r'status=deferred \((delivery temporarily suspended|'
               r'connect to)', timeout=10)
    p.set_mode('up')
    p.rcpt_replies['bob@backup.example'] = BUSY
    t_flush = time.time()
    r = b.ctl('flush', 'backup.example')
    assert r.returncode == 0, r.stderr
    assert t_flush < sched - 1, 'too slow to test: flush at %.1f, due %d' \
        % (t_flush, sched)
    p.wait_messages(21, timeout=20)
    # until just before bob's scheduled time: the flush's attempt only
    time.sleep(max(0, sched - 0.7 - time.time()))
    got = _attempts(p, 'bob@backup.example', t_flush)
    assert len(got) == 1, 'bob tried %d times after the flush: %r' % (
        len(got), [round(t - t_flush, 3) for t in got])
    after = _bob_rcpt(b)
    assert after['attempts'] == 2, after
    # the step index was not advanced: same scheduled time, not +60 s
    assert after['next_attempt'] == sched, \
        'next attempt moved from %d to %d by the flush' % (
            sched, after['next_attempt'])
    # and the scheduled attempt happens on time (step 1 -> 2)
    end = sched + 4
    while time.time() < end and len(_attempts(p, 'bob@backup.example',
                                               t_flush)) < 2:
        time.sleep(0.2)
    got = _attempts(p, 'bob@backup.example', t_flush)
    assert len(got) == 2 and got[1] >= sched - 0.5, \
        [round(t - sched, 2) for t in got]
    last = _bob_rcpt(b)
    assert last['next_attempt'] >= int(got[1]) + 59, last


def test_retry_recovery_skips_answered_deferrals(world):
    """A destination that comes back after refusing connections makes due
    the messages it deferred without an answer (they go at once) but not
    bob's, whom it answered 450 while it was up: his time stays."""
    p = world.sinks['primary']
    p.rcpt_replies['bob@backup.example'] = BUSY
    b = world.backmx(retry='30s')
    _send(b, ['bob@backup.example'], 'recover bob')
    end = time.time() + 5
    while time.time() < end and not (_bob_rcpt(b) or {}).get('attempts'):
        time.sleep(0.1)
    sched = _bob_rcpt(b)['next_attempt']
    p.set_mode('down')
    _send(b, ['alice@backup.example'], 'recover queued')
    b.wait_log(r'status=deferred \(connect to', timeout=10)
    p.set_mode('up')
    t_up = time.time()
    time.sleep(1.2)
    _send(b, ['carol@backup.example'], 'recover probe')
    msgs = p.wait_messages(2, timeout=10)
    b.wait_log(r'destination backup.example recovered', timeout=10)
    time.sleep(1)
    assert len(p.wait_messages(2)) == 2, msgs
    assert _attempts(p, 'bob@backup.example', t_up) == []
    assert _bob_rcpt(b)['next_attempt'] == sched
