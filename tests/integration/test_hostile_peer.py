"""A peer node that answers garbage, truncates or stalls, on the link
node A dials (test_peer.py has the connections A accepts).

A fake node B on B's peer address (127.0.0.50:4225) with B's certificate
serves A's successive dials, one behaviour per connection:

  garbage      A's HELLO read, 4 KB of random octets back
  truncated    half a HELLO, then close
  huge         a valid HELLO, then a frame announcing 2 GB
  stall_frame  a valid HELLO, then 3 octets of a frame header and silence
  stall_tls    the TCP connection accepted, no TLS handshake at all

Each time A closes the link with the reason in the log (garbage: a frame
error, here "frame over the size limit"; truncated: TLS "unexpected eof"
or "closed by the peer"; huge: "frame over the size limit" at the
header, never read; "peer silent" after 6 s; "handshake timed out" after
10 s) and dials again with
its backoff; meanwhile it accepts mail (peer_ack local) and keeps it
queued (a node forwards only once the peer's TAKEN list is in),
its VmRSS grows by under 8 MB (the 2 GB frame is never buffered), and it
stops with status 0.

Not tried on a broken build (no time left this session); each reason is
waited for by its own log line, so a link that stays open on any of these
fails the test by timeout.
"""
import os
import random
import socket
import ssl
import struct
import threading
import time

from mirror import B_ADDR, PEER_PORT, RCPT, node_a

NAME = b'peerb.test.example'
MODES = ('garbage', 'truncated', 'huge', 'stall_frame', 'stall_tls')


def _hello():
    payload = bytes([1, 1]) + bytes(8) + bytes([len(NAME)]) + NAME
    return struct.pack('!IB', len(payload), 1) + payload


def _rss_kb(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


class FakeB:
    def __init__(self, certs):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(os.path.join(certs, 'peerb.pem'),
                                 os.path.join(certs, 'peerb.key'))
        self.ctx.load_verify_locations(os.path.join(certs, 'ca.pem'))
        self.ctx.verify_mode = ssl.CERT_OPTIONAL
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((B_ADDR, PEER_PORT))
        self.sock.listen(8)
        self.served = []
        self.conns = []
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            i = len(self.served)
            mode = MODES[i] if i < len(MODES) else 'idle'
            self.served.append(mode)
            threading.Thread(target=self._serve, args=(c, mode),
                             daemon=True).start()

    def _serve(self, c, mode):
        c.settimeout(30)
        try:
            if mode in ('stall_tls', 'idle'):
                c.recv(65536)           # A's ClientHello, never answered
                time.sleep(30)
                return
            s = self.ctx.wrap_socket(c, server_side=True)
            self.conns.append(s)
            s.recv(4096)                # A's HELLO
            if mode == 'garbage':
                rnd = random.Random(20)
                s.sendall(bytes(rnd.getrandbits(8) for _ in range(4096)))
                time.sleep(1)
            elif mode == 'truncated':
                s.sendall(_hello()[:12])
                s.close()
            elif mode == 'huge':
                s.sendall(_hello() + struct.pack('!IB', 0x7fffffff, 2))
                s.sendall(b'\0' * 65536)
                time.sleep(2)
            elif mode == 'stall_frame':
                s.sendall(_hello() + b'\0\0\0')
                time.sleep(20)
        except (OSError, ssl.SSLError):
            pass

    def close(self):
        self.stop = True
        # shutdown first: close() alone leaves the socket listening while
        # _accept's thread is blocked in accept() on it (a later test's
        # node B then cannot bind 127.0.0.50:4225)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def test_hostile_peer_dialed_node_misbehaves(world):
    fake = FakeB(world.certs)
    try:
        a = node_a(world, ack='local')
        rss0 = _rss_kb(a.pid)
        want = (r'own-spool link to 127\.0\.0\.50:4225 closed: (?!closed by)',
                r'own-spool link to 127\.0\.0\.50:4225 closed: '
                r'(closed by the peer|[^\n]*unexpected eof)',
                r'own-spool link to 127\.0\.0\.50:4225 closed: [^\n]*(length|big|large|limit)',
                r'own-spool link to 127\.0\.0\.50:4225 closed: peer silent',
                r'own-spool link to 127\.0\.0\.50:4225 closed: handshake timed out')
        for i, regex in enumerate(want):
            a.wait_log(regex, timeout=25)
            s = a.smtp()
            s.sendmail('s@sender.example', [RCPT],
                       ('Subject: peer %s\r\n\r\nhi\r\n' % MODES[i]).encode())
            s.quit()
            assert a.running(), a.log_tail()
        # the garbage happens to announce a frame over the limit too
        assert a.log_text().count('closed: frame over the size limit') >= 2
        # accepted and kept: a node forwards its spool only once the
        # peer's TAKEN list is in (mirror's takeover rule), which this
        # peer never sends
        r = a.ctl('queue', '--json')
        assert r.returncode == 0, r.stderr
        queued = [l for l in r.stdout.splitlines() if l.strip()]
        assert len(queued) == len(MODES), r.stdout
        grown = _rss_kb(a.pid) - rss0
        assert grown < 8 * 1024, 'VmRSS grew by %d KB' % grown
        assert fake.served[:len(MODES)] == list(MODES), fake.served
        print('hostile peer: %d connections, VmRSS +%d KB; %s' % (
            len(fake.served), grown, '; '.join(
                l.split('closed: ', 1)[1] for l in a.log_text().splitlines()
                if 'own-spool link to' in l and 'closed:' in l)))
        assert a.stop() == 0
    finally:
        fake.close()


test_hostile_peer_dialed_node_misbehaves.timeout = 120
