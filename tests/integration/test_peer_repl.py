"""Replication between two mirror nodes (issue 18, spool/repl.c, relay/mirror.c).

Tried: with the primary down, mail accepted by each node is in the other
node's replica (SPOOL/replica, read with db5.3_dump) and `backmxctl peer`
shows the peer acknowledged everything (lag 0, last acked LSN = last sent);
a node whose spool directory was deleted comes back, rebuilds its replica
of the peer's spool from the peer (BDB internal init), and the peer takes
the mail of the lost spool over (its replica, kept aside as replica-ID,
imported into its own spool, ids kept) and copies the new one.
"""
import json
import os
import subprocess
import time

from mirror import RCPT, node_a, node_b, wait_linked


def send(node, n, tag):
    ids = []
    s = node.smtp()
    for i in range(n):
        s.sendmail('sender@sender.example', [RCPT],
                   'Subject: %s %d\r\n\r\nbody %d\r\n' % (tag, i, i))
    s.quit()
    return ids


def peer_json(node):
    p = node.ctl('peer', '--json')
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def wait_acked(node, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        st = peer_json(node)
        if (st['connected'] and st['lag_messages'] == 0 and
                st['last_acked_lsn'] == st['last_sent_lsn']):
            return st
        if time.monotonic() > deadline:
            raise AssertionError('peer never acknowledged: %r' % st)
        time.sleep(0.1)


def queue_ids(node):
    p = node.ctl('queue', '--json')
    assert p.returncode == 0, p.stderr
    ids = set()
    for line in p.stdout.splitlines():
        line = line.strip()
        if line.startswith('{'):
            ids.add(json.loads(line)['id'])
    return ids


def replica_ids(node, sub='replica'):
    d = os.path.join(node.spool_dir, sub)
    p = subprocess.run(['db5.3_dump', '-p', '-h', d, 'envelopes.db'],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    keys = set()
    lines = p.stdout.split('HEADER=END\n', 1)[1].splitlines()
    for i in range(0, len(lines) - 1, 2):
        keys.add(lines[i].strip())
    return keys


def wait_replica(node, want, sub='replica', timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = replica_ids(node, sub)
        except (AssertionError, IndexError):
            got = set()
        if want <= got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError('replica %s of %s lacks %d of %d messages'
                                 % (sub, node.dir, len(want - got), len(want)))
        time.sleep(0.2)


def test_peer_repl_both_ways(world):
    world.sinks['primary'].set_mode('down')
    a = node_a(world)
    b = node_b(world)
    wait_linked(a, b)
    send(a, 10, 'to-a')
    send(b, 7, 'to-b')
    wait_acked(a)
    wait_acked(b)
    ida, idb = queue_ids(a), queue_ids(b)
    assert len(ida) == 10 and len(idb) == 7, (ida, idb)
    assert wait_replica(b, ida) == ida
    assert wait_replica(a, idb) == idb
    st = peer_json(a)
    assert st['replica_in_sync'] and st['takeover'] == 'normal', st
    assert st['refused'] == 0 and st['replication_errors'] == 0, st


def test_peer_repl_empty_node_resyncs(world):
    world.sinks['primary'].set_mode('down')
    a = node_a(world)
    b = node_b(world)
    wait_linked(a, b)
    send(a, 5, 'to-a')
    send(b, 4, 'to-b')
    wait_acked(a)
    wait_acked(b)
    ida, idb = queue_ids(a), queue_ids(b)
    wait_replica(a, idb)
    # B loses its disk
    b.kill9()
    subprocess.run(['rm', '-rf', b.spool_dir], check=True)
    os.makedirs(b.spool_dir)
    b.start()
    wait_linked(a, b)
    # A kept its copy of B's old spool aside and, that spool being gone
    # for good, took its mail over at once (ids kept), then copies the new one
    a.wait_log(r'peer: the peer.s spool is a new one .* kept in \S+replica-')
    a.wait_log(r'takeover: 4 message\(s\) .* of the peer.s spool')
    old = [d for d in os.listdir(a.spool_dir) if d.startswith('replica-')]
    assert old == [], os.listdir(a.spool_dir)
    assert queue_ids(a) == ida | idb
    # B's replica of A is rebuilt from A: A's own mail and B's old mail
    # that A delivers now
    assert wait_replica(b, ida | idb) == ida | idb
    send(b, 3, 'to-new-b')
    wait_acked(b)
    idb2 = queue_ids(b)
    assert len(idb2) == 3
    assert wait_replica(a, idb2) == idb2
