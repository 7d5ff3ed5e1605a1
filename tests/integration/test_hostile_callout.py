"""Memory per callout under a flood (backmxd(8) MEMORY): 300 sessions,
each with a RCPT to its own unknown recipient of a callout domain whose
primary is a tarpit (greets, then never answers).  The daemon's VmRSS
growth over the flood, divided by the sessions plus the callouts at the
tarpit, stays under 64 KB each, and every RCPT gets 450 (never 250, never
550); the daemon runs on.  Measured 2026-12-03 (ASan-free build): 4
callouts reach the tarpit (the rest wait and are answered once the
primary is suspended), VmRSS 25640 -> 32420 KB, 22 KB per session, all
300 RCPTs 450, in about 10 s.
"""
import socket
import threading
import time

N = 300
TARPIT = '127.0.0.14'


def _rss_kb(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


class Tarpit:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((TARPIT, 25))
        self.sock.listen(1024)
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            try:
                c.sendall(b'220 tarpit ESMTP\r\n')
            except OSError:
                pass

    def close(self):
        # shutdown first: close() alone leaves the socket listening while
        # _accept's thread is blocked in accept() on it (a later test in
        # the same shard then cannot bind 127.0.0.14:25)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in self.conns:
            c.close()


def _reply(f):
    lines = []
    while True:
        ln = f.readline()
        if not ln:
            return b''.join(lines)
        lines.append(ln)
        if len(ln) < 4 or ln[3:4] != b'-':
            return b''.join(lines)


def test_hostile_callout_flood_memory_bounded(world):
    pit = Tarpit()
    socks = []
    try:
        b = world.backmx(
            retry='1h', max_clients=1000, max_clients_per_ip=1000,
            timeout='30s',
            domains='domain callout.example { recipients callout'
                    '  route [%s]:25 }\n' % TARPIT)
        time.sleep(0.5)
        rss0 = _rss_kb(b.pid)
        for i in range(N):
            s = socket.create_connection(('127.0.0.3', 25), timeout=60)
            f = s.makefile('rb')
            assert _reply(f).startswith(b'220'), i
            s.sendall(b'EHLO flood.example\r\n')
            _reply(f)
            s.sendall(b'MAIL FROM:<s@sender.example>\r\n')
            assert _reply(f).startswith(b'250'), i
            s.sendall(b'RCPT TO:<u%d@callout.example>\r\n' % i)
            socks.append((s, f))
        deadline = time.monotonic() + 10
        while len(pit.conns) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2)
        rss1 = _rss_kb(b.pid)
        inflight = len(pit.conns)
        grown = rss1 - rss0
        per = grown / (N + inflight)
        assert b.running(), b.log_tail()
        codes = {}
        for s, f in socks:
            r = _reply(f)
            codes[r[:3]] = codes.get(r[:3], 0) + 1
        print('callout flood: %d sessions, %d callouts at the tarpit, '
              'VmRSS %d -> %d KB (+%d KB, %.1f KB each); RCPT replies %s'
              % (N, inflight, rss0, rss1, grown, per, codes))
        assert per < 64, per
        assert set(codes) == {b'450'}, codes
        assert b.running(), b.log_tail()
    finally:
        for s, f in socks:
            s.close()
        pit.close()


test_hostile_callout_flood_memory_bounded.timeout = 150
