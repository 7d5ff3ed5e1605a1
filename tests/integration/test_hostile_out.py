"""Hostile primaries: the outbound client against a peer that lies.

A small threaded server on 127.0.0.10 (HostilePrimary, a port per mode) plays the
primary of hostile.example (a static route, `tls encrypt` where TLS is
the point):

  inject    after our STARTTLS it sends "220" and, in the same packet,
            a plaintext "250" meant to be taken as the reply to the EHLO
            we send over TLS (client side of CVE-2011-0411): everything
            buffered before the handshake must be dropped, so the mail
            is delivered over TLS with every reply in step;
  bigline   a 100 KB reply line: "reply too long", deferred;
  endless   a multi-line banner that never ends: "too many reply
            lines", deferred after a bounded read;
  tarpit    a banner, then silence: deferred after command_timeout.
  tlsjunk   offers STARTTLS, answers it 220, then plaintext junk instead
            of a ServerHello; tlsclose: 220, then the connection closed;
            tlsstall: 220, then silence.  Under `tls may` the same
            address is tried once more in clear and the mail delivered;
            under `tls encrypt` and `tls verify` it is deferred (4.7.5;
            the stall 4.4.2 after command_timeout) and never a MAIL
            command is sent in clear.
  barelf    every reply line ends in a bare LF: taken as line ends (as
            other clients do), the mail delivered, and what we send is
            still CRLF only.

Each deferral leaves the mail queued and the daemon running.
"""
import json
import os
import socket
import ssl
import threading
import time

ADDR = '127.0.0.10'
SENDER = 'someone@sender.example'
# a port per mode: a test never waits for the last one's socket to go
PORTS = {'inject': 2601, 'bigline': 2602, 'endless': 2603, 'tarpit': 2604,
         'tlsjunk': 2605, 'tlsclose': 2606, 'tlsstall': 2607, 'barelf': 2608}


class HostilePrimary:
    def __init__(self, mode, certs):
        self.mode = mode
        self.certs = certs
        self.commands = []
        self.messages = []
        self.sent = 0           # octets of the endless modes
        self.conns = 0
        self.raw = []           # every octet received, per connection
        self.stopping = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ADDR, PORTS[mode]))
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)   # wakes accept()
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _serve(self, c):
        c.settimeout(30)
        self.conns += 1
        try:
            getattr(self, '_' + self.mode)(c)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    # -- modes
    def _bigline(self, c):
        c.sendall(b'220-' + b'x' * 100000 + b'\r\n220 ok\r\n')
        self._drain(c)

    def _endless(self, c):
        line = b'220-still talking\r\n' * 512
        while not self.stopping and self.sent < 64 << 20:
            c.sendall(line)
            self.sent += len(line)

    def _tarpit(self, c):
        c.sendall(b'220 mx.hostile.example ESMTP\r\n')
        self._drain(c)

    def _drain(self, c):
        while c.recv(4096):
            pass

    def _inject(self, c):
        self._dialog(c, b'\r\n')

    def _tlsjunk(self, c):
        self._dialog(c, b'\r\n')

    def _tlsclose(self, c):
        self._dialog(c, b'\r\n')

    def _tlsstall(self, c):
        self._dialog(c, b'\r\n')

    def _barelf(self, c):
        self._dialog(c, b'\n')

    def _dialog(self, c, eol):
        f = c.makefile('rb')
        raw = []
        self.raw.append(raw)

        def send(text):
            c.sendall(text.replace(b'\r\n', eol))
        send(b'220 mx.hostile.example ESMTP\r\n')
        tls = None
        while True:
            line = f.readline(4096)
            if not line:
                return
            raw.append(line)
            cmd = line.decode('latin-1').rstrip('\r\n')
            self.commands.append((tls is not None, cmd))
            verb = cmd.split(' ', 1)[0].split(':', 1)[0].upper()
            if verb == 'EHLO' and tls is None:
                send(b'250-mx.hostile.example\r\n250-PIPELINING\r\n'
                     b'250-8BITMIME\r\n250 STARTTLS\r\n')
            elif verb == 'STARTTLS' and self.mode == 'tlsjunk':
                c.sendall(b'220 2.0.0 go ahead\r\n')
                time.sleep(0.2)
                c.sendall(b'this is not a ServerHello\r\n' * 8)
                return
            elif verb == 'STARTTLS' and self.mode == 'tlsclose':
                c.sendall(b'220 2.0.0 go ahead\r\n')
                return
            elif verb == 'STARTTLS' and self.mode == 'tlsstall':
                c.sendall(b'220 2.0.0 go ahead\r\n')
                self._drain(c)
                return
            elif verb == 'STARTTLS' and self.mode == 'barelf':
                send(b'454 4.7.0 not today\r\n')
            elif verb == 'STARTTLS' and tls is None:
                # the 220 and the injected reply in one segment
                c.sendall(b'220 2.0.0 go ahead\r\n'
                          b'250 injected before the handshake\r\n')
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(os.path.join(self.certs, 'mx1.pem'),
                                    os.path.join(self.certs, 'mx1.key'))
                tls = ctx.wrap_socket(c, server_side=True)
                c = tls
                f = c.makefile('rb')
            elif verb == 'EHLO':
                send(b'250-mx.hostile.example\r\n250 PIPELINING\r\n')
            elif verb in ('MAIL', 'RCPT', 'RSET', 'NOOP'):
                send(b'250 2.0.0 ok\r\n')
            elif verb == 'DATA':
                send(b'354 go\r\n')
                data = b''
                while not data.endswith(b'\r\n.\r\n'):
                    chunk = f.readline(65536)
                    if not chunk:
                        return
                    data += chunk
                raw.append(data)
                self.messages.append((tls is not None, data))
                send(b'250 2.0.0 queued\r\n')
            elif verb == 'QUIT':
                send(b'221 2.0.0 bye\r\n')
                return
            else:
                send(b'502 5.5.2 what\r\n')


def _backmx(world, mode, tls='encrypt', **kw):
    dom = ('domain hostile.example { recipients *  route [%s]:%d  tls %s }\n'
           % (ADDR, PORTS[mode], tls))
    return world.backmx(domains=dom, tls_ca=os.path.join(world.certs,
                                                          'ca.pem'), **kw)


def _send(b, subject):
    s = b.smtp()
    s.sendmail(SENDER, ['x@hostile.example'],
               ('From: %s\r\nTo: x@hostile.example\r\nSubject: %s\r\n\r\n'
                'hello\r\n' % (SENDER, subject)).encode())
    s.quit()


def _queue(b):
    r = b.ctl('queue', '--json')
    assert r.returncode == 0, r.stderr
    return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]


def _run(world, mode, **kw):
    h = HostilePrimary(mode, world.certs)
    try:
        b = _backmx(world, mode, **kw)
        _send(b, mode)
        return b, h
    except Exception:
        h.close()
        raise


def _deferred(b, why):
    line = b.wait_log(r'to=<x@hostile\.example>, relay=[^\n]*'
                      r'status=deferred \(([^\n]*)\)', timeout=30)
    assert why in line.group(1).lower(), line.group(0)
    q = _queue(b)
    assert len(q) == 1 and q[0]['recipients'][0]['state'] == 'pending', q
    assert b.running()


def test_hostile_out_starttls_injection_discarded(world):
    b, h = _run(world, 'inject')
    try:
        b.wait_log(r'to=<x@hostile\.example>, relay=[^\n]*status=sent '
                   r'[^\n]*tls=', timeout=30)
        assert len(h.messages) == 1 and h.messages[0][0], h.messages
        after = [cmd.split(' ', 1)[0].split(':', 1)[0].upper()
                 for over_tls, cmd in h.commands if over_tls]
        # the EHLO over TLS got its own reply, not the injected one
        assert after[:4] == ['EHLO', 'MAIL', 'RCPT', 'DATA'], h.commands
        assert 'injected' not in b.log_text()
    finally:
        h.close()


def test_hostile_out_100k_reply_line_deferred(world):
    b, h = _run(world, 'bigline', tls='may')
    try:
        _deferred(b, 'too long')
    finally:
        h.close()


def test_hostile_out_endless_multiline_deferred(world):
    b, h = _run(world, 'endless', tls='may')
    try:
        _deferred(b, 'too many reply lines')
        # the client gave up after a bounded read, not at the 64 MB cap
        assert h.sent < 8 << 20, h.sent
    finally:
        h.close()


def test_hostile_out_tarpit_deferred(world):
    b, h = _run(world, 'tarpit', tls='may', command_timeout='2s')
    try:
        _deferred(b, 'timed out')
    finally:
        h.close()


# -- STARTTLS offered, then the handshake fails

def _clear_retry_delivered(world, mode, **kw):
    b, h = _run(world, mode, tls='may', **kw)
    try:
        b.wait_log(r'tls may: trying \[?127\.0\.0\.10\]?[^\n]*again without '
                   r'STARTTLS', timeout=30)
        b.wait_log(r'to=<x@hostile\.example>, relay=[^\n]*status=sent '
                   r'[^\n]*tls=none', timeout=30)
        assert len(h.messages) == 1 and not h.messages[0][0], h.messages
        # the retry in clear did not offer STARTTLS a second chance
        starttls = [cmd for _, cmd in h.commands
                    if cmd.upper() == 'STARTTLS']
        assert len(starttls) == 1, h.commands
        assert h.conns == 2, h.conns
        assert _queue(b) == []
    finally:
        h.close()


def _never_clear(world, mode, policy, enh='4.7.5 ', **kw):
    b, h = _run(world, mode, tls=policy, **kw)
    try:
        _deferred(b, 'tls')
        err = _queue(b)[0]['recipients'][0]['last_error']
        assert err.startswith(enh), err
        # nothing but EHLO and STARTTLS ever went out in clear
        verbs = set(cmd.split(' ', 1)[0].upper() for _, cmd in h.commands)
        assert verbs <= {'EHLO', 'STARTTLS', 'QUIT'}, h.commands
        assert h.messages == [], h.messages
        assert 'again without STARTTLS' not in b.log_text()
    finally:
        h.close()


def test_hostile_out_tls_junk_may_retries_in_clear(world):
    _clear_retry_delivered(world, 'tlsjunk')


def test_hostile_out_tls_close_may_retries_in_clear(world):
    _clear_retry_delivered(world, 'tlsclose')


def test_hostile_out_tls_junk_encrypt_deferred(world):
    _never_clear(world, 'tlsjunk', 'encrypt')


def test_hostile_out_tls_close_verify_deferred(world):
    _never_clear(world, 'tlsclose', 'verify')


def test_hostile_out_tls_junk_verify_deferred(world):
    _never_clear(world, 'tlsjunk', 'verify')


def test_hostile_out_tls_stall_encrypt_deferred(world):
    t = time.monotonic()
    # a timeout, not a failed handshake: 4.4.2, after command_timeout
    _never_clear(world, 'tlsstall', 'encrypt', enh='4.4.2 ',
                 command_timeout='2s')
    assert time.monotonic() - t < 20


# -- replies ending in a bare LF

def test_hostile_out_bare_lf_replies(world):
    b, h = _run(world, 'barelf', tls='may')
    try:
        b.wait_log(r'to=<x@hostile\.example>, relay=[^\n]*status=sent ',
                   timeout=30)
        assert len(h.messages) == 1, h.messages
        # the 454 to STARTTLS was read as one reply: we went on in clear
        verbs = [cmd.split(' ', 1)[0].split(':', 1)[0].upper()
                 for _, cmd in h.commands]
        assert verbs[:2] == ['EHLO', 'STARTTLS'], h.commands
        assert 'MAIL' in verbs and 'DATA' in verbs, h.commands
        # whatever the primary's line ends, ours are CRLF only
        sent = b''.join(h.raw[-1])
        assert sent.count(b'\n') == sent.count(b'\r\n'), sent
        assert sent.count(b'\r') == sent.count(b'\r\n'), sent
        assert b'Subject: barelf\r\n' in h.messages[0][1]
    finally:
        h.close()
