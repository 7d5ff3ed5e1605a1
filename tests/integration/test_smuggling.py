"""SMTP smuggling (CVE-2023-51764/-51765/-51766) against the accept path.

A client ends its message with a terminator some other server would take
for the end of data ("\\n.\\n", "\\r.\\r", ...), then sends a second
MAIL/RCPT/DATA.  backmx must read on to the real CRLF.CRLF, answer that
one message once (refused: it held a bare CR/LF or NUL), never answer the
smuggled commands as a transaction, and store nothing.  What it does
store (BDAT, stuffed dots) must reach the primary as one message.
"""
import concurrent.futures
import json
import re
import socket
import time

ADDR = ('127.0.0.3', 25)

VARIANTS = [
    b'\n.\n',
    b'\n.\r\n',
    b'\r\n.\n',
    b'\r.\r',
    b'\r.\r\n',
    b'\r\n.\r',
    b'\r\n\x00.\r\n',
    b'\r\n.\x00\r\n',
    b'\r\n.\r\r\n',
    b'\r\r\n.\r\r\n',
]

SMUGGLED = (b'MAIL FROM:<evil@sender.example>\r\n'
            b'RCPT TO:<bob@backup.example>\r\n'
            b'DATA\r\n'
            b'Subject: smuggled\r\n\r\nsmuggled body\r\n')


class Raw:
    def __init__(self):
        self.s = socket.create_connection(ADDR, timeout=15)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b''
        self.banner = self.reply()

    def reply(self):
        lines = []
        while True:
            while b'\r\n' not in self.buf:
                chunk = self.s.recv(65536)
                if not chunk:
                    raise EOFError('closed; got %r' % lines)
                self.buf += chunk
            line, self.buf = self.buf.split(b'\r\n', 1)
            lines.append(line.decode('latin-1'))
            if line[3:4] != b'-':
                return '\n'.join(lines)

    def cmd(self, line):
        self.s.sendall(line + b'\r\n')
        return self.reply()

    def pending(self, wait=0.5):
        """whatever arrives within wait seconds (normally nothing)"""
        self.s.settimeout(wait)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    break
                self.buf += d
        except socket.timeout:
            pass
        finally:
            self.s.settimeout(15)
        out, self.buf = self.buf, b''
        return out

    def close(self):
        self.s.close()


def _queue(b):
    r = b.ctl('queue', '--json')
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line]


def _open_tx(rcpt=b'alice@backup.example'):
    r = Raw()
    assert r.cmd(b'EHLO smuggler.example').startswith('250')
    assert r.cmd(b'MAIL FROM:<good@sender.example>').startswith('250')
    assert r.cmd(b'RCPT TO:<' + rcpt + b'>').startswith('250')
    return r


def _smuggle(variant, pieces):
    """send one DATA transaction carrying variant + SMUGGLED, cut into
    pieces at the given offsets (each piece its own TCP write); return
    every reply from the final terminator on"""
    r = _open_tx()
    got = r.cmd(b'DATA')
    assert got.startswith('354'), got
    payload = (b'Subject: carrier\r\n\r\ninnocent text' + variant + SMUGGLED +
               b'.\r\n')
    last = 0
    for cut in list(pieces) + [len(payload)]:
        if cut > last:
            r.s.sendall(payload[last:cut])
            time.sleep(0.02)
            last = cut
    first = r.reply()
    after = r.pending(0.4)
    r.s.sendall(b'NOOP\r\n')
    noop = r.reply()
    rest = r.pending(0.3)
    r.close()
    return first, after, noop, rest


def _check_refused(variant, first, after, noop, rest):
    assert re.match(r'5(50|54) 5\.(5\.2|6\.0) ', first), \
        '%r: message not refused: %r' % (variant, first)
    assert after == b'', '%r: extra replies %r' % (variant, after)
    assert noop.startswith('250 2.0.0'), '%r: NOOP got %r' % (variant, noop)
    assert rest == b'', '%r: more replies %r' % (variant, rest)


def _smuggle_all(cases):
    """_smuggle and _check_refused for every (label, variant, pieces), each
    on its own connection, several at once: each case still waits its own
    0.4 s + 0.3 s for replies that must not come, but the waits overlap"""
    def one(case):
        label, v, pieces = case
        _check_refused(label, *_smuggle(v, pieces))
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for f in [pool.submit(one, c) for c in cases]:
            f.result()


def test_smuggling_data_variants(world):
    b = world.backmx()
    p = world.sinks['primary']
    _smuggle_all([(v, v, []) for v in VARIANTS])
    # nothing stored, nothing forwarded, nothing logged as accepted
    time.sleep(1.0)
    assert _queue(b) == []
    assert p.messages() == [], p.messages()
    log = b.log_text()
    assert 'from=<evil@sender.example>' not in log
    assert not re.search(r': from=<good@sender\.example>, size=', log), \
        'a smuggling carrier was accepted'


def test_smuggling_data_variants_split(world):
    """the same, with the terminator cut at every offset across writes"""
    b = world.backmx()
    p = world.sinks['primary']
    head = len(b'Subject: carrier\r\n\r\ninnocent text')
    cases = []
    for v in VARIANTS:
        for k in range(len(v) + 1):
            cases.append(((v, k), v, [head + k]))
        # byte by byte through the whole terminator
        cases.append(((v, 'bytes'), v, [head + k for k in range(len(v) + 1)]))
    _smuggle_all(cases)
    time.sleep(1.0)
    assert _queue(b) == []
    assert p.messages() == []


test_smuggling_data_variants_split.timeout = 300


def test_smuggling_control_real_end(world):
    """the detector works: with a real CRLF.CRLF the second transaction
    is pipelined legitimately and is answered, and both are delivered"""
    b = world.backmx()
    p = world.sinks['primary']
    r = _open_tx()
    assert r.cmd(b'DATA').startswith('354')
    r.s.sendall(b'Subject: carrier\r\n\r\ninnocent text\r\n.\r\n' + SMUGGLED +
                b'.\r\n')
    replies = [r.reply() for _ in range(5)]
    r.close()
    assert [x[:3] for x in replies] == ['250', '250', '250', '354', '250'], \
        replies
    msgs = p.wait_messages(2, timeout=15)
    assert sorted(m['mail_from'] for m in msgs) == [
        'evil@sender.example', 'good@sender.example'], msgs


def test_smuggling_bdat_bare_lf(world):
    """bare LF inside BDAT chunks: refused at LAST, nothing stored"""
    b = world.backmx()
    p = world.sinks['primary']
    def one(v):
        r = _open_tx()
        body = b'Subject: carrier\r\n\r\ninnocent text' + v + SMUGGLED
        half = len(body) // 2
        r.s.sendall(b'BDAT %d\r\n' % half + body[:half])
        got = r.reply()
        assert got.startswith('250'), (v, got)
        rest = body[half:] + b'.\r\n'
        r.s.sendall(b'BDAT %d LAST\r\n' % len(rest) + rest)
        got = r.reply()
        assert re.match(r'5(50|54) 5\.(5\.2|6\.0) ', got), (v, got)
        assert r.pending(0.3) == b''
        assert r.cmd(b'NOOP').startswith('250')
        r.close()
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for f in [pool.submit(one, v) for v in VARIANTS]:
            f.result()
    time.sleep(1.0)
    assert _queue(b) == []
    assert p.messages() == []


def test_smuggling_bdat_clean_dot_line_forwarded_once(world):
    """BDAT is not unstuffed, so a stored message may hold a line that is
    a lone "."; forwarding it over DATA must stuff it, so the primary sees
    one message to alice and the text behind it as body, not a command"""
    b = world.backmx()
    p = world.sinks['primary']
    r = _open_tx()
    body = (b'Subject: bdat-dot\r\n\r\nbefore\r\n.\r\n' + SMUGGLED +
            b'.\r\nafter\r\n')
    r.s.sendall(b'BDAT %d LAST\r\n' % len(body) + body)
    got = r.reply()
    assert got.startswith('250 2.0.0'), got
    r.close()
    msgs = p.wait_messages(1, timeout=15)
    time.sleep(1.5)
    msgs = p.messages()
    assert len(msgs) == 1, [m['mail_from'] for m in msgs]
    m = msgs[0]
    assert m['mail_from'] == 'good@sender.example'
    assert [x.lower() for x in m['rcpt_tos']] == ['alice@backup.example']
    data = m['data']
    assert b'\r\n.\r\nMAIL FROM:<evil@sender.example>\r\n' in data, data[-300:]
    assert data.endswith(b'\r\n.\r\nafter\r\n'), data[-100:]


def test_smuggling_stuffed_dot_forwarded_once(world):
    """the same through DATA: "..\\r\\n" is stored as ".\\r\\n" and must be
    stuffed again on the way out"""
    b = world.backmx()
    p = world.sinks['primary']
    r = _open_tx()
    assert r.cmd(b'DATA').startswith('354')
    r.s.sendall(b'Subject: data-dot\r\n\r\nbefore\r\n..\r\n' + SMUGGLED +
                b'.\r\n')
    got = r.reply()
    assert got.startswith('250 2.0.0'), got
    r.close()
    p.wait_messages(1, timeout=15)
    time.sleep(1.5)
    msgs = p.messages()
    assert len(msgs) == 1, [m['mail_from'] for m in msgs]
    assert b'\r\n.\r\nMAIL FROM:<evil@sender.example>\r\n' in msgs[0]['data']


def test_smuggling_bare_lf_commands(world):
    """commands ended by a bare LF are not executed (RFC 5321 2.3.8), so a
    "\\n"-joined MAIL/RCPT cannot ride along in one line"""
    b = world.backmx()
    r = Raw()
    assert r.cmd(b'EHLO smuggler.example').startswith('250')
    r.s.sendall(b'MAIL FROM:<evil@sender.example>\nRCPT TO:<bob@backup.example>\n'
                b'NOOP\r\n')
    replies = [r.reply() for _ in range(3)]
    assert replies[0].startswith('500') and replies[1].startswith('500'), replies
    assert replies[2].startswith('250 2.0.0'), replies
    # nothing was opened: RCPT now needs MAIL
    assert r.cmd(b'RCPT TO:<bob@backup.example>').startswith('503')
    r.close()
