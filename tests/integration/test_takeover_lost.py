"""The must-show runs of issue 18 (mirrored spools), with the primary as
a real sink and two backmxd in the netns.

(a) With the primary down, MIRROR_MESSAGES (100 here; 500 in `make
torture`) messages are sent alternately to node A and node B (`peer_ack
peer`: each 250 means both disks hold it).  Node A is killed with kill
-9 and its spool directory deleted, then the primary comes up.  Within
takeover_after (3s) + 1 min node B has delivered every message either
node acknowledged: 0 lost; a message delivered twice is counted and
reported (the primary was down throughout, so none is expected).

(b) Node A restarted with an EMPTY disk resynchronises B's spool from B
(its replica rebuilt by BDB's internal init) and delivers nothing again;
then mail goes to B only, B is killed with kill -9, and A takes over B's
mail: every message B acknowledged arrives, once.  On the way: B's list
of what it took from A's lost spool is marked done when A returns with a
new spool, and applied lists older than 7 days are pruned.
"""
import json
import os
import re
import subprocess
import time

from mirror import RCPT, node_a, node_b, wait_linked
from test_peer_repl import peer_json, queue_ids, replica_ids
from test_takeover import subjects

N = int(os.environ.get('MIRROR_MESSAGES', '100'))
TAKEOVER = 3
METRICS_PORT = 9426


def _send(node, sess, tag):
    """one message in the open session; its tag when it got 250"""
    try:
        sess.sendmail('sender@sender.example', [RCPT],
                      'Subject: %s\r\nMessage-ID: <%s@test>\r\n\r\nbody %s\r\n'
                      % (tag, tag, tag))
        return tag
    except Exception:
        return None


def _wait_all(sink, want, timeout):
    deadline = time.monotonic() + timeout
    while True:
        got = subjects(sink)
        missing = set(want) - set(got)
        if not missing:
            return got
        if time.monotonic() > deadline:
            raise AssertionError('lost %d of %d acknowledged messages: %s'
                                 % (len(missing), len(want),
                                    sorted(missing)[:10]))
        time.sleep(0.3)


def _report(name, got, want):
    dups = {t: n for t, n in got.items() if t in want and n > 1}
    print('%s: %d acknowledged, %d delivered, 0 lost, %d duplicate(s)'
          % (name, len(want), sum(1 for t in want if got.get(t)), len(dups)))
    return dups


def test_takeover_lost_node_then_empty_return(world):
    p = world.sinks['primary']
    p.set_mode('down')
    a = node_a(world, takeover='%ds' % TAKEOVER)
    b = node_b(world, takeover='%ds' % TAKEOVER,
               metrics='127.0.0.50:%d' % METRICS_PORT)
    wait_linked(a, b)
    sa, sb = a.smtp(), b.smtp()
    acked = []
    for i in range(N // 2):
        for node, sess, tag in ((a, sa, 'A%04d' % i), (b, sb, 'B%04d' % i)):
            if _send(node, sess, tag):
                acked.append(tag)
    sa.quit()
    sb.quit()
    assert len(acked) == N, '%d of %d acknowledged' % (len(acked), N)
    ida = queue_ids(a)
    assert len(ida) == N // 2
    assert ida <= replica_ids(b)        # every 250 of A: B holds it
    a.kill9()
    subprocess.run(['rm', '-rf', a.spool_dir], check=True)
    t0 = time.monotonic()
    p.set_mode('up')
    got = _wait_all(p, acked, TAKEOVER + 60)
    print('all %d delivered %.1fs after the primary came up'
          % (len(acked), time.monotonic() - t0))
    b.wait_log(r'takeover: %d message\(s\)' % (N // 2), timeout=5)
    dups = _report('(a)', got, acked)
    assert dups == {}, dups
    st = peer_json(b)
    assert st['takeover'] == 'taken-over', st
    assert st['taken_messages'] == N // 2 and st['duplicates'] == 0, st
    # the same counters in `backmxctl stats` and on the Prometheus page
    r = b.ctl('stats', '--json')
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout.strip().splitlines()[-1])
    assert stats['peer_takeovers'] == 1, stats
    assert stats['peer_taken_messages'] == N // 2, stats
    assert stats['peer_gated'] >= N // 2, stats
    assert stats['peer_gated_acked'] == stats['peer_gated'], stats
    assert stats['peer_gated_timeouts'] == 0, stats
    assert stats['peer_duplicates'] == 0 and stats['peer_own_link_up'] == 0
    r = b.ctl('stats')
    assert re.search(r'(?m)^peer_taken_messages +%d$' % (N // 2), r.stdout), \
        r.stdout
    page = subprocess.run(['curl', '-s', '-S', '--max-time', '10',
                           'http://127.0.0.50:%d/metrics' % METRICS_PORT],
                          capture_output=True, text=True).stdout
    assert re.search(r'(?m)^backmx_peer_taken_messages_total %d$' % (N // 2),
                     page), page[-2000:]
    assert '# TYPE backmx_peer_gated_timeouts_total counter' in page
    assert re.search(r'(?m)^backmx_peer_takeovers_total 1$', page)

    # (b) A back with an EMPTY disk: it copies B's spool, delivers nothing
    os.makedirs(a.spool_dir)
    # applied lists older than 7 days are pruned at start, newer kept
    taken = os.path.join(a.spool_dir, 'taken')
    os.makedirs(taken)
    for name, age in (('00000000000000aa.ids.done', 8 * 86400),
                      ('00000000000000bb.ids.done', 86400)):
        with open(os.path.join(taken, name), 'w') as f:
            f.write('6b1100000000\n')
        t = time.time() - age
        os.utime(os.path.join(taken, name), (t, t))
    a.start()
    wait_linked(a, b)
    a.wait_log(r'queue loaded: 0 message', timeout=5)
    # B's replica on A is rebuilt (internal init); B's own replica of
    # A's new spool too: until then B's gated replies would wait
    deadline = time.monotonic() + 60
    while not (peer_json(a)['replica_in_sync'] and
               peer_json(b)['replica_in_sync']):
        assert time.monotonic() < deadline, (peer_json(a), peer_json(b))
        time.sleep(0.3)
    assert sorted(os.listdir(taken)) == ['00000000000000bb.ids.done']
    # B's list of what it took from A's lost spool will never be applied
    # (A came back with a new spool): marked done, kept for a while
    btaken = os.listdir(os.path.join(b.spool_dir, 'taken'))
    assert len(btaken) == 1 and btaken[0].endswith('.ids.done'), btaken
    p.set_mode('down')
    sb = b.smtp()
    acked_b = [t for t in ('C%04d' % i for i in range(N // 5))
               if _send(b, sb, t)]
    sb.quit()
    assert len(acked_b) == N // 5, '%d of %d acknowledged' % (len(acked_b),
                                                           N // 5)
    idb = queue_ids(b)
    assert len(idb) == N // 5
    deadline = time.monotonic() + 20
    while not idb <= replica_ids(a):
        assert time.monotonic() < deadline, 'A never copied B\'s spool'
        time.sleep(0.3)
    assert queue_ids(a) == set()       # A holds only its replica of B
    got = subjects(p)
    assert _report('(b) before', got, acked) == {}
    b.kill9()
    p.set_mode('up')
    got = _wait_all(p, acked + acked_b, TAKEOVER + 60)
    a.wait_log(r'takeover: the peer has been silent', timeout=5)
    dups = _report('(b)', got, acked + acked_b)
    assert dups == {}, dups
    assert peer_json(a)['takeover'] == 'taken-over'
