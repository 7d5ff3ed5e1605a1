"""Takeover between two mirror nodes (issue 18, relay/mirror_takeover.c,
spool/repl_import.c), with the primary as a real sink.

Tried: with the primary down, mail sent alternately to both nodes
(`peer_ack peer`: each 250 means both disks hold it); node A killed with
kill -9 and its spool deleted; the primary up; `backmxctl takeover` on B:
B delivers every message A had acknowledged (0 lost, no duplicate), with
A's queue ids (the two nodes' ids never collide: A's counters are even,
B's odd).  Then node A is silent with its disk kept: B takes over by
itself after `takeover_after` (3s); A restarted with its old spool holds
its forwarding until B's list of what it delivered for A arrives, removes
those messages without delivering them (not_redelivered, 0 duplicates),
and B marks the list applied.  The 500-message version is
tests/bench/row_mirror.sh / `make torture`.
"""
import collections
import json
import os
import subprocess
import time

from mirror import RCPT, node_a, node_b, wait_linked
from test_peer_repl import peer_json, queue_ids, replica_ids


def send_tagged(node, tags):
    s = node.smtp()
    for t in tags:
        s.sendmail('sender@sender.example', [RCPT],
                   'Subject: %s\r\nMessage-ID: <%s@test>\r\n\r\nbody %s\r\n'
                   % (t, t, t))
    s.quit()


def subjects(sink):
    c = collections.Counter()
    for m in sink.messages():
        for line in m['data'].decode('latin-1').splitlines():
            if line.startswith('Subject: '):
                c[line[9:].strip()] += 1
                break
    return c


def wait_subjects(sink, want, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        got = subjects(sink)
        if set(want) <= set(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError('primary lacks %d of %d messages: %s'
                                 % (len(set(want) - set(got)), len(want),
                                    sorted(set(want) - set(got))[:10]))
        time.sleep(0.2)


def _parity(ids):
    return {int(i[-1], 16) & 1 for i in ids}


def test_takeover_kill9_lost_disk(world):
    p = world.sinks['primary']
    p.set_mode('down')
    a = node_a(world)
    b = node_b(world)
    wait_linked(a, b)
    tags_a = ['a%d' % i for i in range(8)]
    tags_b = ['b%d' % i for i in range(8)]
    for i in range(8):      # alternately, one message at a time
        send_tagged(a, tags_a[i:i + 1])
        send_tagged(b, tags_b[i:i + 1])
    ida, idb = queue_ids(a), queue_ids(b)
    assert len(ida) == 8 and len(idb) == 8, (ida, idb)
    assert not (ida & idb)
    assert len(_parity(ida)) == 1 and _parity(ida) != _parity(idb), (ida, idb)
    # every 250 of A means B holds it already
    assert ida <= replica_ids(b)
    a.kill9()
    subprocess.run(['rm', '-rf', a.spool_dir], check=True)
    p.set_mode('up')
    r = b.ctl('takeover')
    assert r.returncode == 0, r.stdout + r.stderr
    b.wait_log(r'takeover: 8 message\(s\) .* of the peer.s spool \S+ are ours')
    got = wait_subjects(p, tags_a + tags_b)
    assert all(got[t] == 1 for t in tags_a + tags_b), got   # 0 lost, once each
    st = peer_json(b)
    assert st['takeover'] == 'taken-over' and st['taken_messages'] == 8, st
    assert st['taken_reid'] == 0, st
    # the queue ids were kept: B's log names A's ids
    log = b.log_text()
    assert all(i in log for i in ida), ida
    assert queue_ids(b) == set()
    r = b.ctl('takeover')
    assert r.returncode != 0 and 'already' in r.stdout + r.stderr


def test_takeover_after_silence_then_return(world):
    p = world.sinks['primary']
    p.set_mode('down')
    a = node_a(world, takeover='3s')
    b = node_b(world, takeover='3s')
    wait_linked(a, b)
    tags_a = ['sa%d' % i for i in range(5)]
    tags_b = ['sb%d' % i for i in range(5)]
    send_tagged(a, tags_a)
    send_tagged(b, tags_b)
    ida = queue_ids(a)
    assert len(ida) == 5
    a.kill9()               # A is lost, its disk kept
    p.set_mode('up')
    b.wait_log(r'takeover: the peer has been silent for \d+s', timeout=15)
    got = wait_subjects(p, tags_a + tags_b)
    assert all(got[t] == 1 for t in tags_a + tags_b), got
    assert peer_json(b)['takeover'] == 'taken-over'
    # A comes back with the spool B delivered for: it must not deliver again
    a.start()
    a.wait_log(r'takeover: the peer.s list is in \(5 removed, 0 duplicates')
    b.wait_log(r'takeover: the peer has applied the list')
    st = peer_json(a)
    assert st['not_redelivered'] == 5 and st['duplicates'] == 0, st
    assert not st['forward_held'], st
    assert queue_ids(a) == set()
    time.sleep(1.5)         # A's forwarder is running: nothing more comes
    got = subjects(p)
    assert all(got[t] == 1 for t in tags_a + tags_b), got
    assert peer_json(b)['takeover'] == 'normal'
    done = os.listdir(os.path.join(b.spool_dir, 'taken'))
    assert len(done) == 1 and done[0].endswith('.ids.done'), done
    # each node forwards its own mail again
    send_tagged(a, ['after-a'])
    wait_subjects(p, ['after-a'])
