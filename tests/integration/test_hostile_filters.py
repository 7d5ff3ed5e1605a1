"""Hostile filters: a milter, a DNSBL server and an LDAP server that
answer garbage, truncate their answers or stall.

Each is a small server in this file speaking just enough of its protocol
to get to the point where it misbehaves:

  milter  (127.0.0.8, a port per mode) negotiates options properly, asks
          to skip every step but end-of-message, and there: truncates a
          packet and closes, stalls in the middle of one, announces a
          2 GB packet, sends an unknown reply, answers twice, sends
          progress replies forever, floods add-header or replace-body
          modifications.  With the default milter_default_action
          tempfail the client gets 451 within a bounded time: the mail is
          neither accepted unfiltered nor lost (the client keeps it).
  DNSBL   a DNS forwarder (fakedns.FakeDNS) answering for hostbl.example
          with random octets, a packet cut inside its record, the TC bit
          without a TCP server, an A record of the wrong length, or a
          listing whose TXT carries CR LF and a fake "250": a failed
          lookup never blocks (the client gets its 220), the listed
          client gets one clean 554 line.
  LDAP    (127.0.0.12:389) garbage instead of BER, a BER message cut short,
          a 2 GB BER length followed by a flood, a well-formed answer to
          another message id: the RCPT gets 450 4.4.3 within the
          source's timeout, memory stays bounded.

After each, the daemon is still running and serves the next client.
"""
import os
import random
import smtplib
import socket
import struct
import threading
import time

from fakedns import FakeDNS

MILTER_ADDR = '127.0.0.8'
MILTER_PORTS = {'truncate': 8871, 'stall': 8872, 'huge': 8873,
                'unknown': 8874, 'twice': 8875, 'progress': 8876,
                'hdrflood': 8877, 'bodyflood': 8878}
SENDER = 'sender@sender.example'


def _rss_kb(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise AssertionError('no VmRSS for %d' % pid)


class Server:
    """a TCP server on addr:port running handler(conn) per connection"""

    def __init__(self, addr, port, handler):
        self.handler = handler
        self.conns = []
        self.sent = 0
        self.stopping = False
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, port))
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._run, args=(c,), daemon=True).start()

    def _run(self, c):
        c.settimeout(30)
        try:
            self.handler(self, c)
        except (OSError, ValueError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def close(self):
        self.stopping = True
        for s in [self.sock] + self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass


# -- milter

def _recv_exact(c, n):
    out = b''
    while len(out) < n:
        chunk = c.recv(n - len(out))
        if not chunk:
            raise ValueError('closed')
        out += chunk
    return out


def _packet(cmd, data=b''):
    return struct.pack('!I', len(data) + 1) + cmd + data


def _milter(mode):
    def handle(srv, c):
        while True:
            n = struct.unpack('!I', _recv_exact(c, 4))[0]
            body = _recv_exact(c, n)
            cmd = body[:1]
            if cmd == b'O':
                # version 6, every action, skip all but end-of-message
                c.sendall(_packet(b'O', struct.pack('!III', 6, 0xff,
                                                    0x37f)))
            elif cmd in (b'D', b'A', b'Q'):
                if cmd == b'Q':
                    return
            elif cmd != b'E':
                c.sendall(_packet(b'c'))
            else:
                _misbehave(srv, c, mode)
                return
    return handle


def _misbehave(srv, c, mode):
    if mode == 'truncate':
        c.sendall(struct.pack('!I', 50) + b'yabc')
    elif mode == 'stall':
        c.sendall(struct.pack('!I', 20) + b'y554 ')
        time.sleep(10)
    elif mode == 'huge':
        c.sendall(struct.pack('!I', 0x7ffffff0) + b'b')
        junk = b'x' * 65536
        while srv.sent < 64 << 20 and not srv.stopping:
            c.sendall(junk)
            srv.sent += len(junk)
    elif mode == 'unknown':
        c.sendall(_packet(b'Z', b'what is this\0'))
        time.sleep(5)
    elif mode == 'twice':
        c.sendall(_packet(b'c') + _packet(b'c'))
        time.sleep(5)
    elif mode == 'progress':
        while not srv.stopping and srv.sent < 200:
            c.sendall(_packet(b'p'))
            srv.sent += 1
            time.sleep(0.25)
    elif mode == 'hdrflood':
        one = _packet(b'h', b'X-Flood\0' + b'y' * 60000 + b'\0')
        while not srv.stopping and srv.sent < 512 << 20:
            c.sendall(one)
            srv.sent += len(one)
    elif mode == 'bodyflood':
        one = _packet(b'b', b'z' * 65000)
        while not srv.stopping and srv.sent < 512 << 20:
            c.sendall(one)
            srv.sent += len(one)


def _send(b):
    s = b.smtp()
    try:
        s.sendmail(SENDER, ['alice@backup.example'],
                   b'Subject: filtered\r\n\r\nhello\r\n')
        return None
    except smtplib.SMTPDataError as e:
        return e
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            pass


def _hostile_milter(world, mode, bound=12, timeout='2s'):
    srv = Server(MILTER_ADDR, MILTER_PORTS[mode], _milter(mode))
    try:
        p = world.sinks['primary']
        b = world.backmx(extra='milter inet:%s:%d\nmilter_timeout %s\n'
                         % (MILTER_ADDR, MILTER_PORTS[mode], timeout))
        rss0 = _rss_kb(b.pid)
        t = time.monotonic()
        e = _send(b)
        took = time.monotonic() - t
        assert e is not None and e.smtp_code == 451, (mode, e)
        assert took < bound, (mode, took)
        line = b.wait_log(r'milter inet:%s:%d: ([^\n]*)milter_default_action'
                          r'=tempfail' % (MILTER_ADDR.replace('.', r'\.'),
                                          MILTER_PORTS[mode]))
        rss = _rss_kb(b.pid)
        print('figures: milter %s: %.1fs, RSS %d -> %d KB, peer sent %d'
              % (mode, took, rss0, rss, srv.sent))
        # nothing went through unfiltered, nothing stayed queued
        time.sleep(0.3)
        assert p.messages() == [], p.messages()
        r = b.ctl('queue')
        assert r.returncode == 0 and r.stdout.strip() in (
            '', 'queue is empty'), r.stdout
        assert b.running()
        # and the next client is served
        s = b.smtp()
        assert s.noop()[0] == 250
        s.quit()
        return line.group(1), srv, rss - rss0
    finally:
        srv.close()


def test_hostile_milter_truncated_packet(world):
    why, _, _ = _hostile_milter(world, 'truncate')
    assert 'connection closed' in why, why


def test_hostile_milter_stalls_mid_packet(world):
    why, _, _ = _hostile_milter(world, 'stall', bound=6)
    assert 'timeout' in why, why


def test_hostile_milter_2gb_packet(world):
    why, srv, grew = _hostile_milter(world, 'huge')
    assert 'bad packet length' in why or 'too long' in why, why
    assert srv.sent < 8 << 20, srv.sent
    assert grew < 16 << 10, grew         # KB


def test_hostile_milter_unknown_reply(world):
    why, _, _ = _hostile_milter(world, 'unknown')
    assert "unexpected reply 'Z'" in why, why


def test_hostile_milter_answers_twice(world):
    why, _, _ = _hostile_milter(world, 'twice')
    assert 'more replies than asked for' in why, why


def test_hostile_milter_progress_forever(world):
    # progress replies restart the wait, but not for ever
    why, srv, _ = _hostile_milter(world, 'progress', bound=20, timeout='1s')
    assert 'progress' in why, why
    assert srv.sent < 200, srv.sent


def test_hostile_milter_header_flood(world):
    why, srv, grew = _hostile_milter(world, 'hdrflood', bound=30)
    assert 'too many' in why or 'too large' in why, why
    assert grew < 64 << 10, grew


def test_hostile_milter_body_flood(world):
    why, srv, grew = _hostile_milter(world, 'bodyflood', bound=30)
    assert 'too large' in why, why
    assert srv.sent < 64 << 20, srv.sent


# -- DNSBL

DNS_PORT = 5371
BL = 'hostbl.example'


class HostileDNS(FakeDNS):
    """FakeDNS with hostile modes for one zone"""
    EXTRA = ('garbage', 'cut', 'tc', 'badlen', 'crlf')

    def set_mode(self, zone, mode):
        with self._lock:
            self.modes[zone] = mode

    def _answer(self, pkt, peer):
        from fakedns import _qname, _wire
        name, qend = _qname(pkt)
        zone = self._zone_of(name)
        mode = self.modes.get(zone, 'pass') if zone else 'pass'
        if zone:
            with self._lock:
                self.queries[zone] += 1
        if mode not in self.EXTRA:
            return FakeDNS._answer(self, pkt, peer)
        qid, flags = struct.unpack('!HH', pkt[:4])
        rd = flags & 0x0100
        qtype = struct.unpack('!H', pkt[qend - 4:qend - 2])[0]
        question = pkt[12:qend]
        if mode == 'crlf' and not name.startswith('30.0.0.127.'):
            # only the test's client is listed (not the harness's probe)
            soa = (_wire('ns.' + zone) + _wire('hostmaster.' + zone) +
                   struct.pack('!IIIII', 1, 3600, 600, 86400, 1))
            rr = _wire(zone) + struct.pack('!HHIH', 6, 1, 1, len(soa)) + soa
            hdr = struct.pack('!HHHHHH', qid, 0x8480 | rd | 3, 1, 0, 1, 0)
            self._sock.sendto(hdr + question + rr, peer)
            return
        if mode == 'garbage':
            out = struct.pack('!H', qid) + bytes(random.getrandbits(8)
                                                 for _ in range(300))
        elif mode == 'tc':
            out = struct.pack('!HHHHHH', qid, 0x8780 | rd, 1, 0, 0, 0) + \
                question
        else:
            if qtype == 16:     # TXT
                txt = (b'listed\r\n250 2.0.0 ok: smuggled\r\n' +
                       b'\x01\x7f' * 20 + b'y' * 150)
                rdata = bytes([len(txt)]) + txt + bytes([200]) + b'w' * 200
            else:
                rdata = bytes([127, 0, 0, 2])
            rr = _wire(name) + struct.pack('!HHIH', qtype, 1, 60,
                                           len(rdata)) + rdata
            if mode == 'badlen':
                rr = _wire(name) + struct.pack('!HHIH', qtype, 1, 60,
                                               len(rdata) + 12) + rdata
            out = struct.pack('!HHHHHH', qid, 0x8480 | rd, 1, 1, 0, 0) + \
                question + rr
            if mode == 'cut':
                out = out[:len(out) - 3]
        self._sock.sendto(out, peer)


def _greeting(source):
    s = socket.socket()
    s.settimeout(40)
    s.bind((source, 0))
    s.connect(('127.0.0.3', 25))
    line = s.makefile('rb').readline()
    s.close()
    return line


def _hostile_dnsbl(world, mode):
    dns = HostileDNS(DNS_PORT, [BL])
    try:
        dns.set_mode(BL, mode)
        b = world.backmx(dns=dns.server, extra='dnsbl %s\n' % BL)
        t = time.monotonic()
        line = _greeting('127.0.0.30')
        took = time.monotonic() - t
        assert dns.queries[BL] >= 1, dns.queries
        assert b.running()
        return b, line, took
    finally:
        dns.close()


def _served(b, line, took, bound=35):
    assert line.startswith(b'220 '), line
    assert took < bound, took
    b.wait_log(r'dnsbl[^\n]*%s[^\n]*(fail|error|timeout|SERVFAIL)'
               % BL.replace('.', r'\.'))


def test_hostile_dnsbl_garbage(world):
    _served(*_hostile_dnsbl(world, 'garbage'))


def test_hostile_dnsbl_cut_record(world):
    _served(*_hostile_dnsbl(world, 'cut'))


def test_hostile_dnsbl_truncated_without_tcp(world):
    _served(*_hostile_dnsbl(world, 'tc'))


def test_hostile_dnsbl_bad_rdlength(world):
    _served(*_hostile_dnsbl(world, 'badlen'))


def test_hostile_dnsbl_txt_with_crlf(world):
    b, line, took = _hostile_dnsbl(world, 'crlf')
    assert line.startswith(b'554 5.7.1 '), line
    assert line.endswith(b'\r\n') and line.count(b'\r') == 1, line
    assert b'\n' not in line[:-1] and len(line) <= 512, line
    assert all(0x20 <= ch < 0x7f for ch in line[:-2]), line
    assert b.wait_log(r'filter=dnsbl')


# -- LDAP

LDAP_ADDR = '127.0.0.12'


def _ldap(mode):
    def handle(srv, c):
        req = c.recv(4096)
        if not req:
            return
        if mode == 'garbage':
            c.sendall(b'\xff\xfe HELLO this is not BER\r\n' * 4)
            time.sleep(5)
        elif mode == 'cut':
            # SEQUENCE of 64 octets, then 10 of them and the end
            c.sendall(b'\x30\x40\x02\x01\x01\x65\x07\x0a\x01\x00\x04')
        elif mode == 'huge':
            c.sendall(b'\x30\x84\x7f\xff\xff\xf0')
            junk = b'\x04' * 65536
            while srv.sent < 64 << 20 and not srv.stopping:
                c.sendall(junk)
                srv.sent += len(junk)
        elif mode == 'stall':
            # the bind accepted; the search's answer stops after 6 of
            # its 14 octets and the directory stalls: the loop must not
            # wait in a read for the rest (the lookup's timer answers)
            c.sendall(b'\x30\x0c\x02\x01\x01\x61\x07\x0a\x01\x00\x04\x00'
                      b'\x04\x00')
            if c.recv(4096):
                c.sendall(b'\x30\x0c\x02\x01\x02\x65')
                time.sleep(15)
        elif mode == 'otherid':
            # searchResDone success, for message id 99
            c.sendall(b'\x30\x0c\x02\x01\x63\x65\x07\x0a\x01\x00\x04\x00'
                      b'\x04\x00')
            time.sleep(5)
    return handle


def _hostile_ldap(world, mode):
    srv = Server(LDAP_ADDR, 389, _ldap(mode))
    try:
        b = world.backmx(start=False, domains=(
            'domain ldap.example {\n recipients ldap:%(dir)s/h.ldap\n}\n'))
        with open(os.path.join(b.dir, 'h.ldap'), 'w') as f:
            f.write('server_host = ldap://%s:389\n'
                    'search_base = ou=people,dc=example,dc=org\n'
                    'query_filter = (uid=%%u)\ntimeout = 2s\n' % LDAP_ADDR)
        b.start()
        rss0 = _rss_kb(b.pid)
        s = b.smtp()
        s.mail(SENDER)
        t = time.monotonic()
        code, msg = s.rcpt('dave@ldap.example')
        took = time.monotonic() - t
        assert code == 450 and b'4.4.3' in msg, (mode, code, msg)
        assert took < 8, (mode, took)
        s.quit()
        assert b.running()
        grew = _rss_kb(b.pid) - rss0
        print('figures: ldap %s: %.1fs, RSS %d KB +%d KB, peer sent %d'
              % (mode, took, rss0, grew, srv.sent))
        s = b.smtp()
        assert s.noop()[0] == 250
        s.quit()
        return srv, grew
    finally:
        srv.close()


def test_hostile_ldap_garbage(world):
    _hostile_ldap(world, 'garbage')


def test_hostile_ldap_cut_message(world):
    _hostile_ldap(world, 'cut')


def test_hostile_ldap_2gb_length(world):
    srv, grew = _hostile_ldap(world, 'huge')
    assert grew < 32 << 10, (grew, srv.sent)


def test_hostile_ldap_stall_inside_a_search_result(world):
    _hostile_ldap(world, 'stall')


def test_hostile_ldap_answer_to_another_id(world):
    _hostile_ldap(world, 'otherid')
