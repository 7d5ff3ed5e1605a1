"""The link between two mirror nodes (issue 18, relay/peer.c).

Tried: `backmxd -t` accepts a complete peer configuration and refuses an
incomplete one, a bad peer_ack, a key that does not match the
certificate; two nodes with certificates from peer_ca in each other's
names bring up both connections; connections to peer_listen without a
certificate, with one in another name, with a self-signed one, or with
plain-text garbage are refused and logged; a client with the right
certificate that then sends garbage frames is closed; the node lives on
and still accepts mail.
"""
import os
import random
import re
import socket
import ssl
import subprocess
import time

from mirror import A_ADDR, PEER_PORT, node_a, node_b, wait_linked


def _t(world, b):
    return subprocess.run([world.backmxd, '-t', '-c', b.conf_path],
                          capture_output=True, text=True, timeout=30)


def test_peer_config_t(world):
    a = node_a(world, start=False)
    p = _t(world, a)
    assert p.returncode == 0, p.stderr
    c = world.certs
    bad = node_a(world, start=False, key=os.path.join(c, 'peerb.key'))
    p = _t(world, bad)
    assert p.returncode == 1 and 'does not match peer_cert' in p.stderr, p.stderr
    for extra, want in (('peer_ack maybe\n', 'peer_ack: expected'),
                        ('peer_ack peer 0s\n', 'is not a duration from 1s'),
                        ('peer_ack peer soon\n', 'is not a duration from 1s'),
                        ('peer_ack local 5s\n', 'peer_ack: expected'),
                        ('takeover_after 0\n', 'takeover_after: expected'),
                        ('peer_listen 127.0.0.3:4226\n', 'peer_listen: given twice')):
        b = node_a(world, start=False, extra=extra)
        p = _t(world, b)
        assert p.returncode == 1 and want in p.stderr, (extra, p.stderr)
    # a lone peer_ack: the rest is missing
    lone = world.backmx(start=False, extra='peer_ack local\n')
    p = _t(world, lone)
    assert p.returncode == 1 and 'without "peer NAME' in p.stderr, p.stderr
    assert 'needs peer_cert' in p.stderr, p.stderr
    name = world.backmx(start=False, extra='peer bad_name 127.0.0.9:1\n')
    p = _t(world, name)
    assert p.returncode == 1 and 'is not a host name' in p.stderr, p.stderr


def test_peer_link_up(world):
    a = node_a(world)
    b = node_b(world)
    wait_linked(a, b)
    # the links carry pings: still up a few seconds later.  Only what is
    # logged after both links are up counts: a first dial may be retried
    # while the other node is still starting (under load a first
    # handshake has timed out, then the redial came up at once)
    seen = {n: len(n.log_text()) for n in (a, b)}
    time.sleep(2)
    for n in (a, b):
        assert 'closed' not in n.log_text()[seen[n]:], n.log_tail()


def _tls_client(world, cert):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert:
        c = world.certs
        ctx.load_cert_chain(os.path.join(c, cert + '.pem'),
                            os.path.join(c, cert + '.key'))
    raw = socket.create_connection((A_ADDR, PEER_PORT), timeout=5)
    s = ctx.wrap_socket(raw)
    return s


def _try(world, cert, payload=b''):
    try:
        s = _tls_client(world, cert)
        if payload:
            s.sendall(payload)
        # the refusal may come after our side of the handshake (TLS 1.3)
        s.settimeout(5)
        data = s.recv(100)
        s.close()
        return data
    except (OSError, ssl.SSLError):
        return None


def test_peer_refused(world):
    a = node_a(world)
    _try(world, None)
    a.wait_log(r'peer: refused connection from 127\.0\.0\.1: .*'
               r'(did not return a certificate|no client certificate)')
    _try(world, 'peerx')
    a.wait_log(r'peer: refused connection from 127\.0\.0\.1: .*hostname mismatch')
    _try(world, 'rogue')
    a.wait_log(r'peer: refused connection from 127\.0\.0\.1: .*self.signed')
    # the right certificate, then no HELLO but a frame of an unknown type
    _try(world, 'peerb', b'\x00\x00\x00\x00\x63')
    a.wait_log(r'peer: refused connection from 127\.0\.0\.1: unknown frame type')
    # a length over the limit
    _try(world, 'peerb', b'\xff\xff\xff\xff\x02')
    a.wait_log(r'refused connection from 127\.0\.0\.1: frame over the size limit')
    # plain-text garbage instead of a ClientHello
    rnd = random.Random(18)
    for _ in range(5):
        with socket.create_connection((A_ADDR, PEER_PORT), timeout=5) as s:
            try:
                s.sendall(bytes(rnd.getrandbits(8) for _ in range(4096)))
                s.settimeout(5)
                s.recv(100)
            except OSError:
                pass
    a.wait_log(r'refused connection from 127\.0\.0\.1: TLS handshake')
    assert a.running(), 'backmxd died on garbage:\n' + a.log_tail()
    s = a.smtp()
    assert s.noop()[0] == 250
    s.quit()


def test_peer_garbage_after_hello(world):
    """An authenticated peer that sends a bad frame after HELLO is closed."""
    a = node_a(world)
    s = _tls_client(world, 'peerb')
    name = b'peerb.test.example'
    hello = (bytes([0, 0, 0, 11 + len(name), 1, 1, 0]) + bytes(8) +
             bytes([len(name)]) + name)
    s.sendall(hello)
    a.wait_log(r'peer: replica link from peerb\.test\.example \(127\.0\.0\.1\) up')
    s.sendall(b'\x00\x00\x00\x07\x03garbage')   # an ACK of 7 octets
    a.wait_log(r'replica link from 127\.0\.0\.1 closed: ACK/STATE of a bad size')
    s.close()
    assert a.running()


def test_peer_first_dial_while_peer_starts(world):
    """A node whose peer starts late (or slowly) links up as soon as the
    peer listens: its refused dials are retried at least every second
    (PEER_BACKOFF_REFUSED; the backoff doubling to 10s made the first
    link wait up to 10s more: dials at 0, 0.2, 0.6, 1.4, 3, 6.2, 12.6,
    22.6 s), and a node listens on peer_listen only once its spools are
    open, so a dial is never left in the backlog of a node still
    starting until its handshake times out."""
    a = node_a(world)
    time.sleep(13)          # A's dials refused meanwhile
    b = node_b(world, start=False)
    seen = len(a.log_text())
    b.start()
    up = time.monotonic()
    wait_linked(a, b, timeout=15)
    a.wait_log(r'peer: own-spool link to \S+ \(\S+\) up', timeout=15)
    took = time.monotonic() - up
    print('own-spool link of A up %.2fs after B answered' % took)
    assert took < 3.0, (took, a.log_tail())
    for n, text in ((a, a.log_text()[seen:]), (b, b.log_text())):
        assert 'handshake timed out' not in text, n.log_tail()
        assert 'refused connection' not in text, n.log_tail()


def test_peer_workers_one_process(world):
    """A node with `peer` runs one process whatever `workers` says, and
    logs it (relay/worker.c: the replication transport lives in the
    process that commits); the mirror works as with workers 1."""
    from test_peer_repl import queue_ids, replica_ids
    a = node_a(world, extra='workers 3\n')
    b = node_b(world, extra='workers auto\n')
    wait_linked(a, b)
    a.wait_log(r'workers 3: one process with `peer`')
    for n in (a, b):
        n.wait_log(r'started: .* 1 process\(es\) accepting')
        assert not re.search(r'backmx/(?:smtpd|worker)\[(?!%d\])\d+\]'
                             % n.pid, n.log_text()), n.log_tail()
    world.sinks['primary'].set_mode('down')
    s = a.smtp()
    assert s.sendmail('s@sender.example', ['alice@mirror.example'],
                      'Subject: w\r\n\r\nw\r\n') == {}
    s.quit()
    ida = queue_ids(a)      # peer_ack peer: the 250 came with B's copy
    assert len(ida) == 1 and ida <= replica_ids(b), (ida, replica_ids(b))
