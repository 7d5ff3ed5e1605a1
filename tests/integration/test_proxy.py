"""PROXY protocol (v1 text, v2 binary) on a `listen ADDR proxy` socket.

The proxy listener is 127.0.0.3:2526; the "proxy" connects from
127.0.0.9 (in proxy_allow), strangers from 127.0.0.10.  Hand-built
headers: v1 TCP4/TCP6/UNKNOWN, v2 TCP4/TCP6/LOCAL, sent whole and byte by
byte; truncated, oversized, wrong signature, a header from a stranger.
The carried address must be the client's everywhere: the log, the
Received field at the primary, the per-client limits.
"""
import socket
import struct
import time

PROXY = ('127.0.0.3', 2526)
ALLOWED = '127.0.0.9'
STRANGER = '127.0.0.10'
SIG = b'\r\n\r\n\x00\r\nQUIT\n'
EXTRA = 'listen 127.0.0.3:2526 proxy\nproxy_allow %s\n' % ALLOWED


def v2(cmd=1, fam=0x11, src='192.0.2.7', dst='127.0.0.3', sport=40000,
       dport=25, tlv=b''):
    if fam == 0x11:
        a = socket.inet_pton(socket.AF_INET, src) + \
            socket.inet_pton(socket.AF_INET, dst) + struct.pack('!HH', sport, dport)
    elif fam == 0x21:
        a = socket.inet_pton(socket.AF_INET6, src) + \
            socket.inet_pton(socket.AF_INET6, dst) + struct.pack('!HH', sport, dport)
    else:
        a = b''
    a += tlv
    return SIG + bytes([0x20 | cmd, fam]) + struct.pack('!H', len(a)) + a


class Conn:
    def __init__(self, source=ALLOWED, addr=PROXY):
        self.s = socket.socket()
        self.s.settimeout(10)
        self.s.bind((source, 0))
        self.s.connect(addr)
        self.buf = b''

    def send(self, data, bytewise=False):
        if bytewise:
            for i in range(len(data)):
                self.s.sendall(data[i:i + 1])
                time.sleep(0.01)
        else:
            self.s.sendall(data)

    def reply(self):
        lines = []
        while True:
            while b'\r\n' not in self.buf:
                d = self.s.recv(65536)
                if not d:
                    raise EOFError('closed; got %r' % lines)
                self.buf += d
            line, self.buf = self.buf.split(b'\r\n', 1)
            lines.append(line.decode('latin-1'))
            if line[3:4] != b'-':
                return '\n'.join(lines)

    def cmd(self, line):
        self.send(line.encode() + b'\r\n')
        return self.reply()

    def dropped(self, timeout=15):
        """closed by the server without a single octet"""
        self.s.settimeout(timeout)
        got = b''
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    break
                got += d
        except ConnectionResetError:
            pass
        return got == b''

    def mail(self, tag):
        assert self.cmd('EHLO proxied.example').startswith('250')
        assert self.cmd('MAIL FROM:<s@sender.example>').startswith('250')
        assert self.cmd('RCPT TO:<alice@backup.example>').startswith('250')
        assert self.cmd('DATA').startswith('354')
        r = self.cmd('Subject: %s\r\n\r\nbody\r\n.' % tag)
        assert r.startswith('250'), r
        self.cmd('QUIT')

    def close(self):
        self.s.close()


def test_proxy_v1_carried_address(world):
    p = world.sinks['primary']
    b = world.backmx(extra=EXTRA)
    c = Conn()
    c.send(b'PROXY TCP4 192.0.2.7 127.0.0.3 40000 25\r\n')
    assert c.reply().startswith('220')
    c.mail('v1')
    m = p.wait_messages(1, timeout=15)[0]
    assert b'[192.0.2.7]' in m['data'], m['data'][:400]
    assert b'127.0.0.9' not in m['data'].split(b'\r\n\r\n')[0]
    b.wait_log(r'connect from .*\[192\.0\.2\.7\]')
    b.wait_log(r'proxy: \[127\.0\.0\.9\] carries client \[192\.0\.2\.7\]')


def test_proxy_v2_bytewise_and_tcp6(world):
    p = world.sinks['primary']
    b = world.backmx(extra=EXTRA)
    c = Conn()
    c.send(v2(tlv=b'\x04\x00\x02ab'), bytewise=True)
    assert c.reply().startswith('220')
    c.mail('v2')
    c = Conn()
    c.send(v2(fam=0x21, src='2001:db8::77', dst='::1'))
    assert c.reply().startswith('220')
    c.mail('v2six')
    c = Conn()
    c.send(b'PROXY TCP6 2001:db8::78 ::1 1234 25\r\n', bytewise=True)
    assert c.reply().startswith('220')
    c.mail('v1six')
    msgs = p.wait_messages(3, timeout=15)
    data = b''.join(m['data'] for m in msgs)
    assert b'[192.0.2.7]' in data
    assert b'[IPv6:2001:db8::77]' in data
    assert b'[IPv6:2001:db8::78]' in data


def test_proxy_local_and_unknown(world):
    b = world.backmx(extra=EXTRA)
    for hdr in (v2(cmd=0, fam=0), b'PROXY UNKNOWN\r\n',
                b'PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n'):
        c = Conn()
        c.send(hdr)
        assert c.reply().startswith('220')
        assert c.cmd('EHLO health.example').startswith('250')
        c.cmd('QUIT')
        c.close()
    b.wait_log(r'connect from .*\[127\.0\.0\.9\]')
    b.wait_log(r'v2 LOCAL header')


def test_proxy_bad_headers_dropped(world):
    b = world.backmx(extra=EXTRA)
    bad = [
        b'EHLO no.header.example\r\n',                        # no header
        b'PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n',                  # 4 fields
        b'PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n',              # bad address
        b'PROXY TCP4 ' + b'1' * 120 + b'\r\n',                # oversized v1
        SIG[:6] + b'X' + SIG[7:] + b'\x21\x11\x00\x0c' + b'\0' * 12,  # signature
        SIG + b'\x21\x11\xff\xff',                            # oversized v2
        SIG + b'\x11\x11\x00\x0c' + b'\0' * 12,               # version 1 binary
        SIG + b'\x21\x31\x00\xd8' + b'\0' * 216,              # UNIX family
    ]
    for data in bad:
        c = Conn()
        c.send(data)
        assert c.dropped(), 'not dropped: %r' % data[:40]
        c.close()
    # truncated, then the client goes quiet: dropped by the header timer
    c = Conn()
    c.send(v2()[:20])
    t = time.monotonic()
    assert c.dropped(timeout=20)
    assert time.monotonic() - t > 5
    # truncated, then closed: nothing breaks
    c = Conn()
    c.send(b'PROXY TCP4 1.2.')
    c.close()
    b.wait_log(r'proxy: dropping \[127\.0\.0\.9\]: .*longer than 107')
    b.wait_log(r'proxy: dropping \[127\.0\.0\.9\]: .*signature')
    b.wait_log(r'proxy: dropping \[127\.0\.0\.9\]: no complete PROXY header')
    # the daemon is fine, on both listeners
    c = Conn()
    c.send(v2())
    assert c.reply().startswith('220')
    s = b.smtp()
    s.quit()
    st = b.ctl('stats').stdout
    assert 'proxy_dropped' in st


def test_proxy_stranger_dropped(world):
    b = world.backmx(extra=EXTRA)
    c = Conn(source=STRANGER)
    c.send(v2())
    assert c.dropped()
    b.wait_log(r'proxy: dropping \[127\.0\.0\.10\]: not in proxy_allow')
    # a plain listener is not a proxy one: a header there is an early talker
    c = Conn(source=STRANGER, addr=('127.0.0.3', 25))
    assert c.reply().startswith('220')
    assert c.cmd('PROXY TCP4 192.0.2.7 127.0.0.3 40000 25').startswith('5')


def test_proxy_config_needs_allow(world):
    b = world.backmx(start=False, extra='listen 127.0.0.3:2526 proxy\n')
    import subprocess
    r = subprocess.run([b.backmxd, '-t', '-c', b.conf_path],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert 'proxy_allow' in r.stderr + r.stdout
