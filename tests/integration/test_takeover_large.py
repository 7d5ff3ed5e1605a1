"""A large takeover keeps the node answering SMTP (issue 18,
relay/mirror_takeover.c: the import runs a step of about 10 ms per loop
iteration).

Node A's spool holds LARGE_TAKEOVER (5000) messages, planted with
tests/integration/qload.c before A starts (4 KB bodies would only slow
the planting; the import's cost is per message: a body chunk and an
envelope a transaction).  B's replica of it is built by BDB's internal
init when the link comes up.  A is killed with kill -9, `backmxctl
takeover` on B; meanwhile two clients keep sending one message a session
to B.  Shown: sessions were answered while the import was under way (in
B's log, their connect/accept/disconnect lines are between the takeover's
first and last line, checked when the import took >= 1 s: a fast disk
imports 5000 in 0.1 s, when no probe session need fall inside it), the
import was spread over many loop iterations (the count in its last line:
one call on the loop would be 1 step; 5000 messages are >= 157 batches
of 32), the probes kept being answered after the import began (sessions
done between the takeover command and the import's end), no
command waited longer than BOUND seconds, and every planted message is
in B's queue afterwards under A's id.  Both nodes `peer_ack local`: with
A gone, B's `peer_ack peer` replies would be 451 (tests/integration/
test_peer_ack.py).  On the way: A's spool, made by qload without
replication, is opened as a replicated one (its BDB regions are rebuilt:
a node that gets a `peer`).  Then B killed with kill -9 in the middle of
the import: the next start imports the rest (what was in already is
skipped and listed), B's queue is exactly A's ids, the list names them
all.
"""
import os
import re
import smtplib
import threading
import time

from mirror import RCPT, node_a, node_b, wait_linked
from test_peer_repl import peer_json, queue_ids
from test_queueops import _plant

N = int(os.environ.get('LARGE_TAKEOVER', '5000'))
BOUND = 3.0     # seconds for any one reply during the import


class Prober(threading.Thread):
    """One message a session to node, until stopped; the slowest reply."""

    def __init__(self, node):
        super().__init__(daemon=True)
        self.host, self.port = node.listen[0]
        self.stop = threading.Event()
        self.sent, self.errors, self.slowest = 0, [], 0.0
        self.done = []   # (start, end) of each completed session

    def _timed(self, fn, *a):
        t = time.monotonic()
        r = fn(*a)
        self.slowest = max(self.slowest, time.monotonic() - t)
        return r

    def run(self):
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                t0 = time.monotonic()
                s = self._timed(smtplib.SMTP, self.host, self.port,
                                'client.test.example', 30)
                self._timed(s.ehlo)
                self._timed(s.sendmail, 'probe@sender.example', [RCPT],
                            'Subject: probe %d\r\n\r\nprobe\r\n' % i)
                self._timed(s.quit)
                self.sent += 1
                self.done.append((t0, time.monotonic()))
            except Exception as e:       # noqa: BLE001 - reported below
                self.errors.append(repr(e))
                time.sleep(0.05)


def test_takeover_large_keeps_answering(world):
    world.sinks['primary'].set_mode('down')
    a = node_a(world, start=False, ack='local')
    first = _plant(world, a, N, 60, 'planted@sender.example', RCPT)
    a.start()
    a.wait_log(r'spool: its environment was made with replication on and '
               r'is opened with it off, or the other way')
    b = node_b(world, ack='local')
    wait_linked(a, b)
    deadline = time.monotonic() + 120
    while True:
        st = peer_json(b)
        if st['replica_in_sync']:
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.3)
    ida = queue_ids(a)
    assert len(ida) == N and first in ida
    # B's internal init walks A's spool directory, SPOOL/replica (a
    # directory) included: BDB's EISDIR there is not an error of ours
    bdb = [l for l in a.log_text().splitlines() if 'error: spool: BDB' in l]
    assert not bdb, bdb[:4]
    a.kill9()
    mark = len(b.log_text())
    probes = [Prober(b) for _ in range(2)]
    for probe in probes:
        probe.start()
    time.sleep(0.5)
    t_take = time.monotonic()
    r = b.ctl('takeover')
    assert r.returncode == 0, r.stdout + r.stderr
    m = b.wait_log(r'takeover: %d message\(s\) .* of the peer.s spool \S+ '
                   r'are ours now .*, ([0-9.]+)s in (\d+) step\(s\)\)' % N,
                   timeout=300)
    t_done = time.monotonic()
    time.sleep(0.3)
    for probe in probes:
        probe.stop.set()
    for probe in probes:
        probe.join(60)
    sent = sum(p.sent for p in probes)
    errors = [e for p in probes for e in p.errors]
    slowest = max(p.slowest for p in probes)
    log = b.log_text()[mark:]
    begin = log.index('delivering the mail held for the peer')
    end = log.index('are ours now')
    # the probe's lines (connect, accept, disconnect) logged while the
    # import was under way
    during = len(re.findall(r'backmx/smtpd\[\d+\]: (?:connect from|'
                            r'disconnect from|\S+: from=<probe@)',
                            log[begin:end]))
    secs, steps = float(m.group(1)), int(m.group(2))
    # sessions that ended after the takeover command and began before the
    # import's last line was seen: answered while it was under way
    overlap = sum(1 for p in probes for (t0, t1) in p.done
                  if t1 > t_take and t0 < t_done)
    print('import of %d messages: %.1fs in %d steps; %d probe session lines '
          'logged during it, %d probe sessions overlapping it (%d probe '
          'messages in all), slowest reply %.3fs, %d errors'
          % (N, secs, steps, during, overlap, sent, slowest, len(errors)))
    assert not errors, errors[:5]
    assert steps >= 2, m.group(0)
    if secs >= 1.0:
        assert during >= 2, log[begin:begin + 3000]
    assert overlap >= 1, (overlap, sent)
    assert slowest < BOUND, slowest
    st = peer_json(b)
    assert st['taken_messages'] == N and st['taken_reid'] == 0, st
    idb = queue_ids(b)
    assert ida <= idb and len(idb) == N + sent
    assert not [d for d in os.listdir(b.spool_dir)
                if d.startswith('replica-')], os.listdir(b.spool_dir)


def test_takeover_large_resumes_after_kill9(world):
    """B killed with kill -9 in the middle of the import: the replica
    moved aside (SPOOL/replica-ID) is imported on at the next start,
    what was in already skipped (and listed), nothing lost, no id twice."""
    world.sinks['primary'].set_mode('down')
    a = node_a(world, start=False, ack='local')
    _plant(world, a, N, 60, 'planted@sender.example', RCPT)
    a.start()
    b = node_b(world, ack='local')
    wait_linked(a, b)
    deadline = time.monotonic() + 120
    while not peer_json(b)['replica_in_sync']:
        assert time.monotonic() < deadline, peer_json(b)
        time.sleep(0.3)
    ida = queue_ids(a)
    a.kill9()
    r = b.ctl('takeover')
    assert r.returncode == 0, r.stdout + r.stderr
    b.wait_log(r'takeover: importing \S+replica-[0-9a-f]{16} ', timeout=30)
    time.sleep(0.2)
    b.kill9()
    log = b.log_text()
    cut = 'are ours now' not in log
    aside = [d for d in os.listdir(b.spool_dir) if d.startswith('replica-')]
    print('killed %s the import; left aside: %s'
          % ('in the middle of' if cut else 'after', aside))
    assert aside if cut else not aside, (cut, aside)
    b.start()
    if cut:
        m = b.wait_log(r'takeover: (\d+) message\(s\) .* are ours now '
                       r'\((\d+) imported before', timeout=120)
        assert int(m.group(1)) + int(m.group(2)) == N, m.group(0)
        assert int(m.group(2)) > 0, m.group(0)
        print('after the restart: %s imported, %s in before'
              % (m.group(1), m.group(2)))
    assert queue_ids(b) == ida
    assert not [d for d in os.listdir(b.spool_dir)
                if d.startswith('replica-')], os.listdir(b.spool_dir)
    ids = open(os.path.join(b.spool_dir, 'taken',
                            [f for f in os.listdir(os.path.join(
                                b.spool_dir, 'taken'))][0])).read().split()
    assert set(ids) == ida, (len(ids), len(set(ids)), len(ida))
