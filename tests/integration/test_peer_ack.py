"""`peer_ack peer`: the 250 after DATA only once the peer holds the message
(issue 18, relay/mirror_gate.c).

Tried: with both nodes linked, each 250 (DATA and BDAT LAST) comes with the
message already in the peer's replica (read with db5.3_dump at the moment
of the 250, no waiting); with the peer never started, clients get
451 4.3.0 and nothing stays queued; with the peer linked but frozen
(SIGSTOP: the link is up, no ACK comes) the reply waits the bound
(`peer_ack peer 2s`) and is 451 4.3.0, the local copy discarded; once
the peer is back a new message gets its 250; `peer_ack local` answers 250
with the peer down.
"""
import os
import signal
import smtplib

from mirror import RCPT, node_a, node_b, wait_linked
from test_peer_repl import peer_json, queue_ids, replica_ids

MSG = 'Subject: gate %d\r\n\r\nbody %d\r\n'


def _one(s, i):
    """One transaction: (code, text) of the final reply."""
    s.mail('sender@sender.example')
    code, _ = s.rcpt(RCPT)
    assert code == 250
    return s.data(MSG % (i, i))


def _bdat(s, i):
    s.mail('sender@sender.example')
    assert s.rcpt(RCPT)[0] == 250
    body = (MSG % (i, i)).encode()
    s.send(b'BDAT %d LAST\r\n' % len(body) + body)
    return s.getreply()


def _qid(text):
    return text.decode().rsplit(' ', 1)[-1]


def test_peer_ack_peer_up(world):
    world.sinks['primary'].set_mode('down')
    a = node_a(world, ack='peer 5s')
    b = node_b(world, ack='peer 5s')
    wait_linked(a, b)
    s = a.smtp()
    for i in range(4):
        code, text = _one(s, i) if i % 2 == 0 else _bdat(s, i)
        assert code == 250, (code, text)
        # durable on B already: no waiting here
        assert _qid(text) in replica_ids(b), (text, replica_ids(b))
    s.quit()
    st = peer_json(a)
    assert st['gated'] == 4 and st['gated_acked'] == 4, st
    assert st['gated_timeouts'] == 0 and st['ack_timeout'] == 5, st
    assert len(queue_ids(a)) == 4


def test_peer_ack_unreachable(world):
    world.sinks['primary'].set_mode('down')
    a = node_a(world, ack='peer 2s')
    s = a.smtp()
    for i in range(3):
        code, text = _one(s, i)
        assert code == 451 and text.startswith(b'4.3.0'), (code, text)
    s.quit()
    a.wait_log(r': the peer did not acknowledge its copy within 2s: '
               r'451 4\.3\.0, message discarded')
    assert queue_ids(a) == set(), 'a 451 message stayed queued'
    st = peer_json(a)
    assert st['gated_timeouts'] == 3 and st['gated_acked'] == 0, st


def test_peer_ack_frozen_peer(world):
    world.sinks['primary'].set_mode('down')
    a = node_a(world, ack='peer 2s')
    b = node_b(world, ack='peer 2s')
    wait_linked(a, b)
    s = a.smtp()
    assert _one(s, 0)[0] == 250
    os.kill(b.pid, signal.SIGSTOP)
    try:
        code, text = _one(s, 1)
        assert code == 451 and text.startswith(b'4.3.0'), (code, text)
        st = peer_json(a)
        assert st['own_link'], st   # the link was up: the bound was waited
        assert st['gated_timeouts'] == 1, st
    finally:
        os.kill(b.pid, signal.SIGCONT)
    assert len(queue_ids(a)) == 1
    wait_linked(a, b)
    # back: the next message is acknowledged again
    for _ in range(50):
        code, text = _one(s, 2)
        if code == 250:
            break
    assert code == 250, (code, text)
    assert _qid(text) in replica_ids(b)
    s.quit()


def test_peer_ack_local(world):
    world.sinks['primary'].set_mode('down')
    a = node_a(world, ack='local')
    s = a.smtp()
    code, text = _one(s, 0)
    assert code == 250, (code, text)
    s.quit()
    st = peer_json(a)
    assert st['peer_ack'] == 'local' and st['gated'] == 0, st
    assert st['lag_messages'] >= 1, st
