"""Stopping a mirror node (issue 18, relay/mirror.c mirror_shutdown).

A node stopped with SIGTERM right after its links came up - its replica
of the peer's spool still in its first synchronisation (BDB's client
sync / internal init holds a replication lockout) - must exit cleanly
within a few seconds: the shutdown flush and checkpoint of the replica
used to spin forever in BDB (__env_rep_enter waiting for the lockout to
end, which needs messages the loop no longer reads).  Tried at several
moments of the first sync, and while the peer streams mail into it.
"""
import threading

from mirror import RCPT, node_a, node_b, wait_linked


def _stop(node, within=10):
    """SIGTERM; the harness raises (after a SIGKILL) past within seconds"""
    return node.stop(timeout=within)


def test_peer_stop_right_after_link(world):
    b = node_b(world)
    for round_ in range(3):
        a = node_a(world) if round_ == 0 else a
        if round_:
            a.start()
        wait_linked(a, b)
        assert _stop(a) == 0, a.log_tail()
    # B saw it go and is still fine; A comes back with its spool
    a.start()
    wait_linked(a, b)
    assert _stop(b) == 0, b.log_tail()


def test_peer_stop_during_peer_stream(world):
    a = node_a(world, ack='local')
    b = node_b(world, ack='local')
    wait_linked(a, b)
    assert _stop(a) == 0
    a.start()
    stop = threading.Event()

    def feed():
        s = b.smtp()
        i = 0
        while not stop.is_set() and i < 200:
            s.sendmail('sender@sender.example', [RCPT],
                       'Subject: s%d\r\n\r\n%s' % (i, ('x' * 70 + '\r\n') * 60))
            i += 1
        s.quit()

    t = threading.Thread(target=feed)
    t.start()
    try:
        wait_linked(a, b)
        assert _stop(a) == 0, a.log_tail()
    finally:
        stop.set()
        t.join(60)
    # A back: its replica catches up with what B took meanwhile
    a.start()
    wait_linked(a, b)
