"""Hostile clients: many sessions trickling a byte a second, PROXY
headers byte by byte, SMTP smuggling cut across BDAT chunks and across
TLS records.

  trickle   1000 sessions (from 10 addresses), each sending one octet a
            second of a command it never finishes; meanwhile a normal
            client delivers a message.  backmxd's VmRSS (/proc/PID/status)
            grows by less than 64 KB a session and falls back once they
            go; the figures are printed (backmxd(8) MEMORY quotes them).
  proxy     v1 and v2 headers (the v2 one with 400 octets of TLVs) sent
            an octet per write: served with the carried address; bad
            headers sent an octet per write: dropped without a reply, as
            soon as they are bad; a header trickled slower than the
            10 s allowed for it: dropped, while others are served.
  bdat      every smuggling variant of test_smuggling.py cut at every
            offset between two BDAT chunks: refused at LAST (bare CR/LF),
            nothing stored, the session in sync.
  tls       the same variants over STARTTLS, each piece its own TLS
            record: refused, nothing stored; a real CRLF.CRLF cut across
            records still ends the data (accepted once).
"""
import concurrent.futures
import json
import os
import re
import selectors
import socket
import ssl
import time

from test_proxy import Conn, v2, EXTRA as PROXY_EXTRA
from test_smuggling import VARIANTS, SMUGGLED, Raw, _check_refused, _queue

ADDR = ('127.0.0.3', 25)


def _rss_kb(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise AssertionError('no VmRSS')


def _deliver(subject):
    r = Raw()
    try:
        assert r.cmd(b'EHLO normal.example').startswith('250')
        assert r.cmd(b'MAIL FROM:<n@sender.example>').startswith('250')
        assert r.cmd(b'RCPT TO:<alice@backup.example>').startswith('250')
        assert r.cmd(b'DATA').startswith('354')
        got = r.cmd(b'Subject: ' + subject + b'\r\n\r\nhello\r\n.')
        r.cmd(b'QUIT')
        return got
    finally:
        r.close()


# -- 1000 trickling sessions

def test_hostile_trickle_1000_sessions(world):
    n = 1000
    b = world.backmx(max_clients=n + 50, max_clients_per_ip=n)
    p = world.sinks['primary']
    time.sleep(0.5)
    rss0 = _rss_kb(b.pid)
    sel = selectors.DefaultSelector()
    socks = []
    try:
        for i in range(n):
            s = socket.socket()
            s.bind(('127.0.1.%d' % (1 + i % 10), 0))
            s.setblocking(False)
            try:
                s.connect(ADDR)
            except BlockingIOError:
                pass
            socks.append(s)
            sel.register(s, selectors.EVENT_READ, [b''])
        # every one greeted
        greeted, deadline = 0, time.monotonic() + 30
        while greeted < n and time.monotonic() < deadline:
            for key, _ in sel.select(1):
                d = key.fileobj.recv(4096)
                key.data[0] += d
                if key.data[0].endswith(b'\r\n') and \
                        key.data[0].startswith(b'220 '):
                    greeted += 1
                    sel.unregister(key.fileobj)
                elif not d:
                    raise AssertionError('closed before 220: %r'
                                         % key.data[0])
        assert greeted == n, 'only %d of %d greeted' % (greeted, n)
        cmd = b'MAIL FROM:<trickle@sender.example>\r\n'
        peak = 0
        for sec in range(8):
            t = time.monotonic()
            for s in socks:
                s.send(cmd[sec:sec + 1])
            if sec == 4:
                got = _deliver(b'while 1000 trickle')
                assert got.startswith('250 '), got
            peak = max(peak, _rss_kb(b.pid))
            time.sleep(max(0, 1 - (time.monotonic() - t)))
        st = open('/proc/%d/status' % b.pid).read()
        threads = int(re.search(r'Threads:\s+(\d+)', st).group(1))
        assert b.running()
        per = (peak - rss0) * 1024 // n
        print('figures: trickle %d sessions: VmRSS %d KB -> peak %d KB '
              '(%d octets/session), threads %d'
              % (n, rss0, peak, per, threads))
        assert per < 64 << 10, per
        assert p.wait_messages(1, timeout=20)
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        r = b.ctl('stats', '--json')
        if json.loads(r.stdout).get('sessions_active', 0) == 0:
            break
        time.sleep(0.3)
    time.sleep(1)
    after = _rss_kb(b.pid)
    print('figures: trickle: after close VmRSS %d KB' % after)
    assert _deliver(b'after the trickle').startswith('250 ')


test_hostile_trickle_1000_sessions.timeout = 90


# -- PROXY headers an octet at a time

def _bytewise(c, data, gap=0.001):
    for i in range(len(data)):
        c.s.sendall(data[i:i + 1])
        if gap:
            time.sleep(gap)


def test_hostile_proxy_bytewise_good(world):
    p = world.sinks['primary']
    b = world.backmx(extra=PROXY_EXTRA)
    c = Conn()
    _bytewise(c, b'PROXY TCP4 192.0.2.31 127.0.0.3 40001 25\r\n')
    assert c.reply().startswith('220')
    c.mail('v1 bytewise')
    tlv = b''.join(b'\x04' + (97).to_bytes(2, 'big') + b'n' * 97
                   for _ in range(4))         # 400 octets of NOOP TLVs
    c = Conn()
    _bytewise(c, v2(src='192.0.2.32', tlv=tlv))
    assert c.reply().startswith('220')
    c.mail('v2 bytewise')
    msgs = p.wait_messages(2, timeout=15)
    data = b''.join(m['data'] for m in msgs)
    assert b'[192.0.2.31]' in data and b'[192.0.2.32]' in data, data[:600]
    assert b.running()


BAD = [
    b'PROXY TCP4 192.0.2.1 127.0.0.3 1 25\rX',        # CR without LF
    b'PROXY TCP4 192.0.2.1 127.0.0.3 1 25\n',         # bare LF
    b'PROXY TCP9 192.0.2.1 127.0.0.3 1 25\r\n',       # no such family
    b'PROXY TCP4 ' + b'1' * 120 + b'\r\n',            # over 107 octets
    b'\r\n\r\n\x00\r\nQUIT\n\x21\x11\x08\x00',         # v2 length 2048
    b'\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c',         # v2 version 3
    b'PROXZ',                                          # neither
]


def test_hostile_proxy_bytewise_bad_dropped(world):
    b = world.backmx(extra=PROXY_EXTRA)
    for hdr in BAD:
        c = Conn()
        t = time.monotonic()
        try:
            _bytewise(c, hdr, gap=0.002)
        except OSError:
            pass                # closed under our feet: fine
        assert c.dropped(timeout=12), hdr
        took = time.monotonic() - t
        # dropped when it went bad, not at the header timeout
        assert took < 5, (hdr, took)
    assert b.running()
    c = Conn()
    c.send(b'PROXY TCP4 192.0.2.33 127.0.0.3 40003 25\r\n')
    assert c.reply().startswith('220')


def test_hostile_proxy_too_slow_dropped(world):
    b = world.backmx(extra=PROXY_EXTRA)
    hdr = b'PROXY TCP4 192.0.2.34 127.0.0.3 40004 25\r\n'
    slow = Conn()
    t = time.monotonic()
    sent = 0
    slow.s.settimeout(0.5)
    got = None
    while time.monotonic() - t < 20:
        try:
            slow.s.sendall(hdr[sent:sent + 1])
            sent += 1
        except OSError:
            got = b''
            break
        try:
            got = slow.s.recv(100)
            break
        except socket.timeout:
            pass
        if sent == 4:
            # meanwhile another proxied client is served at once
            c = Conn()
            c.send(b'PROXY TCP4 192.0.2.35 127.0.0.3 40005 25\r\n')
            assert c.reply().startswith('220')
            c.s.close()
    took = time.monotonic() - t
    assert got == b'', got
    assert 9 <= took < 14, took
    assert sent < len(hdr), sent
    assert b.running()


test_hostile_proxy_too_slow_dropped.timeout = 60


# -- smuggling cut between BDAT chunks

def _each(cases, fn):
    """fn(case) for every case, 8 connections at a time (each case waits
    0.2 s for replies that must not come; the waits overlap)"""
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for f in [pool.submit(fn, c) for c in cases]:
            f.result()
    return len(cases)


def _bdat_cut(v, cut):
    r = Raw()
    try:
        assert r.cmd(b'EHLO smuggler.example').startswith('250')
        assert r.cmd(b'MAIL FROM:<good@sender.example>').startswith('250')
        assert r.cmd(b'RCPT TO:<alice@backup.example>').startswith('250')
        one = b'Subject: carrier\r\n\r\ninnocent text' + v[:cut]
        two = v[cut:] + SMUGGLED + b'.\r\n'
        r.s.sendall(b'BDAT %d\r\n' % len(one) + one)
        got = r.reply()
        assert got.startswith('250'), (v, cut, got)
        r.s.sendall(b'BDAT %d LAST\r\n' % len(two) + two)
        first = r.reply()
        after = r.pending(0.1)
        r.s.sendall(b'NOOP\r\n')
        noop = r.reply()
        rest = r.pending(0.1)
        return first, after, noop, rest
    finally:
        r.close()


def test_hostile_smuggling_across_bdat_chunks(world):
    b = world.backmx()
    p = world.sinks['primary']
    cases = [(v, cut) for v in VARIANTS for cut in range(len(v) + 1)]
    n = _each(cases, lambda c: _check_refused(c, *_bdat_cut(*c)))
    time.sleep(0.5)
    assert _queue(b) == []
    assert p.messages() == []
    print('figures: %d BDAT cuts refused' % n)


# -- smuggling cut across TLS records

def _tls_backmx(world):
    c = world.certs
    return world.backmx(tls_cert=os.path.join(c, 'mx2.pem'),
                        tls_key=os.path.join(c, 'mx2.key'))


class TlsRaw(Raw):
    def __init__(self, world):
        Raw.__init__(self)
        assert self.cmd(b'EHLO smuggler.example').startswith('250')
        assert self.cmd(b'STARTTLS').startswith('220')
        ctx = ssl.create_default_context(
            cafile=os.path.join(world.certs, 'ca.pem'))
        ctx.check_hostname = False
        self.s = ctx.wrap_socket(self.s)
        assert self.cmd(b'EHLO smuggler.example').startswith('250')

    def pending(self, wait=0.5):
        self.s.settimeout(wait)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    break
                self.buf += d
        except (socket.timeout, ssl.SSLWantReadError):
            pass
        finally:
            self.s.settimeout(15)
        out, self.buf = self.buf, b''
        return out


def _tls_records(world, payload, cuts):
    r = TlsRaw(world)
    try:
        assert r.cmd(b'MAIL FROM:<good@sender.example>').startswith('250')
        assert r.cmd(b'RCPT TO:<alice@backup.example>').startswith('250')
        assert r.cmd(b'DATA').startswith('354')
        last = 0
        for cut in list(cuts) + [len(payload)]:
            if cut > last:
                r.s.sendall(payload[last:cut])     # one TLS record each
                last = cut
        first = r.reply()
        after = r.pending(0.1)
        r.s.sendall(b'NOOP\r\n')
        noop = r.reply()
        rest = r.pending(0.1)
        return first, after, noop, rest
    finally:
        r.close()


def test_hostile_smuggling_across_tls_records(world):
    b = _tls_backmx(world)
    p = world.sinks['primary']
    head = b'Subject: carrier\r\n\r\ninnocent text'
    cases = []
    for v in VARIANTS:
        # every octet of the variant its own record, then a cut at each
        # offset into two records
        cases.append((v, [len(head) + i for i in range(len(v) + 1)]))
        cases += [(v, [len(head) + i]) for i in range(1, len(v))]

    def one(case):
        v, cuts = case
        payload = head + v + SMUGGLED + b'.\r\n'
        _check_refused(case, *_tls_records(world, payload, cuts))
    n = _each(cases, one)
    time.sleep(0.5)
    assert _queue(b) == []
    assert p.messages() == []
    # the real terminator cut across records still ends the data, once
    payload = b'Subject: real end\r\n\r\nclean text\r\n.\r\n'
    end = len(payload) - 5
    first, after, noop, rest = _tls_records(world, payload,
                                            [end + i for i in range(5)])
    assert first.startswith('250 2.0.0'), first
    assert after == b'' and noop.startswith('250') and rest == b''
    msgs = p.wait_messages(1, timeout=15)
    assert b'clean text' in msgs[0]['data'], msgs
    assert b'with ESMTPS' in msgs[0]['data'], msgs[0]['data'][:300]
    print('figures: %d TLS record cuts refused' % n)


test_hostile_smuggling_across_tls_records.timeout = 120
