"""The accept path (relay/listen.c, relay/smtpd.c) seen from a client:
what is accepted and stored, what is refused and with which code, and that
the session survives every refusal.

Mail that must stay in the spool is sent with the primary (sink 'primary',
MX 10 of backup.example) down and retry 1h, so the spool is inspected with
`backmxctl queue --json` / `show ID --json` before anything is forwarded.
"""
import json
import re
import socket
import time

ADDR = ('127.0.0.3', 25)
ENH = re.compile(r'^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)')


class Raw:
    """A raw SMTP client: exact octets out, whole replies in."""

    def __init__(self, timeout=15):
        self.s = socket.create_connection(ADDR, timeout=timeout)
        self.buf = b''
        self.banner = self.reply()

    def send(self, data):
        self.s.sendall(data)

    def reply(self):
        lines = []
        while True:
            while b'\r\n' not in self.buf:
                chunk = self.s.recv(65536)
                if not chunk:
                    if lines:
                        raise EOFError('closed mid-reply: %r' % lines)
                    return ''
                self.buf += chunk
            line, self.buf = self.buf.split(b'\r\n', 1)
            lines.append(line.decode('latin-1'))
            if line[3:4] != b'-':
                return '\n'.join(lines)

    def cmd(self, line):
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b'\r\n')
        return self.reply()

    def nothing_more(self, wait=1.0):
        """True when no further reply arrives within wait seconds"""
        if self.buf:
            return False
        self.s.settimeout(wait)
        try:
            d = self.s.recv(4096)
            self.buf += d
            return False
        except socket.timeout:
            return True
        finally:
            self.s.settimeout(15)

    def close(self):
        self.s.close()


def _queue(b):
    r = b.ctl('queue', '--json')
    assert r.returncode == 0, 'queue --json: %s' % r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line]


def _held_backmx(world, **kw):
    """a daemon whose mail stays queued: primary down, long retry"""
    world.sinks['primary'].set_mode('down')
    kw.setdefault('retry', '1h')
    return world.backmx(**kw)


def _ok(reply, code, enh=None):
    assert reply.startswith(str(code)), 'wanted %s, got %r' % (code, reply)
    if enh is not None:
        assert reply[4:].startswith(enh), 'wanted %s %s, got %r' % (
            code, enh, reply)


def test_accept_ehlo_keywords(world):
    b = world.backmx(max_size='10M')
    r = Raw()
    _ok(r.banner, 220)
    assert 'mx2.test.example' in r.banner, r.banner
    ehlo = r.cmd('EHLO client.test.example')
    kw = [l[4:].upper() for l in ehlo.split('\n')[1:]]
    for want in ('PIPELINING', 'SIZE 10485760', '8BITMIME',
                 'ENHANCEDSTATUSCODES', 'DSN', 'SMTPUTF8', 'CHUNKING',
                 'ETRN'):
        assert want in kw, '%s not advertised: %r' % (want, kw)
    assert 'STARTTLS' not in kw, 'STARTTLS advertised without tls_cert'
    assert r.cmd('STARTTLS')[0] == '5'
    # every reply after the greeting carries an enhanced status code
    for line in ('NOOP', 'HELO client.test.example', 'VRFY alice',
                 'MAIL FROM:<s@sender.example>', 'RCPT TO:<x@nowhere.example>',
                 'RSET', 'FROB', 'QUIT'):
        got = r.cmd(line)
        if line.startswith('HELO'):
            continue        # RFC 2034: the HELO/EHLO greeting line has none
        assert ENH.match(got), '%s -> %r has no enhanced code' % (line, got)
    r.close()


def test_accept_valid_recipient_is_spooled(world):
    b = _held_backmx(world)
    r = Raw()
    r.cmd('EHLO client.test.example')
    _ok(r.cmd('MAIL FROM:<sender@sender.example>'), 250, '2.1.0')
    _ok(r.cmd('RCPT TO:<Alice@backup.example>'), 250, '2.1.5')
    _ok(r.cmd('DATA'), 354)
    body = (b'Subject: accept-1\r\nMessage-Id: <a1@accept.test>\r\n\r\n'
            b'line one\r\n..dot-stuffed\r\nlast\r\n')
    r.send(body + b'.\r\n')
    got = r.reply()
    m = re.match(r'250 2\.0\.0 Ok: queued as (\S+)$', got)
    assert m, got
    qid = m.group(1)
    _ok(r.cmd('QUIT'), 221)
    r.close()
    b.wait_log(re.escape(qid) + r': from=<sender@sender\.example>, '
               r'size=\d+, nrcpt=1')
    q = _queue(b)
    assert len(q) == 1, q
    assert q[0]['id'].lower() == qid.lower(), (q[0]['id'], qid)
    assert q[0]['sender'] == 'sender@sender.example'
    assert [x['address'].lower() for x in q[0]['recipients']] == [
        'alice@backup.example'], q[0]['recipients']
    assert q[0]['recipients'][0]['state'] == 'pending'
    s = b.ctl('show', qid, '--json')
    assert s.returncode == 0, s.stderr
    hdr = json.loads(s.stdout)['header']
    # our trace field comes first, then the client's header unchanged
    assert re.match(r'Received: from client\.test\.example \(\[127\.0\.0\.\d+\]\)'
                    r'\r?\n\tby mx2\.test\.example \(backmx\) with ESMTP id '
                    + re.escape(qid), hdr, re.I), hdr[:300]
    assert re.search(r'for <alice@backup\.example>;\r?\n\t\w{3}, \d\d? \w{3} '
                     r'\d{4} \d\d:\d\d:\d\d [+-]\d{4}', hdr, re.I), hdr[:300]
    assert 'Subject: accept-1' in hdr
    # the size counts the unstuffed body plus our Received field
    assert q[0]['size'] > len(body) - 1, q[0]['size']


def test_accept_delivered_unchanged(world):
    """what the primary receives is our Received field + the octets sent"""
    b = world.backmx()
    p = world.sinks['primary']
    r = Raw()
    r.cmd('EHLO client.test.example')
    r.cmd('MAIL FROM:<sender@sender.example>')
    r.cmd('RCPT TO:<bob@backup.example>')
    _ok(r.cmd('DATA'), 354)
    body = (b'Subject: unchanged\r\nX-Odd:   spaces  \r\n\r\n'
            b'..leading dot\r\n.\r\n')
    r.send(body)
    _ok(r.reply(), 250, '2.0.0')
    r.close()
    m = p.wait_messages(1, timeout=15)[0]
    data = m['data'].replace(b'\r\n', b'\n')
    want = (b'Subject: unchanged\nX-Odd:   spaces  \n\n.leading dot\n')
    assert data.startswith(b'Received: from client.test.example'), data[:200]
    assert data.endswith(want), data[-200:]
    assert data.count(b'Received:') == 1


def test_accept_refusals(world):
    b = _held_backmx(world)
    r = Raw()
    r.cmd('EHLO client.test.example')
    _ok(r.cmd('MAIL FROM:<sender@sender.example>'), 250)
    _ok(r.cmd('RCPT TO:<nosuchuser@backup.example>'), 550, '5.1.1')
    _ok(r.cmd('RCPT TO:<alice@elsewhere.example>'), 550, '5.7.1')
    _ok(r.cmd('RCPT TO:<alice%backup.example@mx2.test.example>'), 550)
    # a source route is ignored (RFC 5321 C), so it cannot reach a
    # foreign domain through us
    _ok(r.cmd('RCPT TO:<@mx2.test.example:alice@elsewhere.example>'), 550,
        '5.7.1')
    _ok(r.cmd('RCPT TO:<alice!backup.example@mx2.test.example>'), 550)
    _ok(r.cmd('DATA'), 554)       # no valid recipients
    _ok(r.cmd('RSET'), 250)
    _ok(r.cmd('MAIL FROM:<s@sender.example> BODY=BINARYMIME'), 501, '5.5.4')
    _ok(r.cmd('MAIL FROM:<s@sender.example> ENVID=' + 'x' * 101), 501, '5.5.4')
    _ok(r.cmd('MAIL FROM:<s@sender.example> ENVID=a+ZZ'), 501, '5.5.4')
    _ok(r.cmd('MAIL FROM:<s@sender.example> XFOO=1'), 555, '5.5.4')
    _ok(r.cmd('MAIL FROM:<s@sender.example> SMTPUTF8 BODY=8BITMIME RET=HDRS '
              'ENVID=abc+2B'), 250)
    _ok(r.cmd('RCPT TO:<alice@backup.example> NOTIFY=NEVER,SUCCESS'), 501)
    _ok(r.cmd('RCPT TO:<alice@backup.example> NOTIFY=SOMETIMES'), 501)
    # over ORCPT's 500 octets: 501 (or 500 for the command line length)
    _ok(r.cmd('RCPT TO:<alice@backup.example> ORCPT=rfc822;' + 'x' * 494), 50)
    _ok(r.cmd('RCPT TO:<alice@backup.example> XFOO=1'), 555)
    # RFC 3461 4.1: NOTIFY and ORCPT at most once each
    _ok(r.cmd('RCPT TO:<alice@backup.example> NOTIFY=FAILURE NOTIFY=DELAY'),
        501, '5.5.4')
    _ok(r.cmd('RCPT TO:<alice@backup.example> ORCPT=rfc822;a+40b.example '
              'ORCPT=rfc822;c+40d.example'), 501, '5.5.4')
    _ok(r.cmd('RCPT TO:<alice@backup.example> NOTIFY=SUCCESS,FAILURE '
              'ORCPT=rfc822;alice+40backup.example'), 250)
    _ok(r.cmd('QUIT'), 221)
    r.close()
    assert _queue(b) == []
    st = b.ctl('stats', '--json')
    assert st.returncode == 0, st.stderr


def test_accept_long_dsn_params(world):
    """RFC 3461 section 4 lets ORCPT (500) and ENVID (100) make RCPT and
    MAIL longer than the 512 octets of RFC 5321 4.5.3.1.4; a server that
    advertises DSN must take them"""
    b = _held_backmx(world)
    r = Raw()
    r.cmd('EHLO client.test.example')
    envid = 'e' * 100
    _ok(r.cmd('MAIL FROM:<s@sender.example> RET=HDRS SIZE=1000 ENVID=' +
              envid), 250)
    orcpt = 'rfc822;' + 'o' * 470 + '@backup.example'
    assert len(orcpt) <= 500
    line = ('RCPT TO:<alice@backup.example> NOTIFY=SUCCESS,FAILURE,DELAY '
            'ORCPT=' + orcpt)
    assert len(line) + 2 > 512
    _ok(r.cmd(line), 250)
    r.close()


def test_accept_dsn_params_passed_on(world):
    b = world.backmx()
    p = world.sinks['primary']
    r = Raw()
    r.cmd('EHLO client.test.example')
    _ok(r.cmd('MAIL FROM:<s@sender.example> RET=HDRS ENVID=env+2B1'), 250)
    _ok(r.cmd('RCPT TO:<carol@backup.example> NOTIFY=SUCCESS,DELAY '
              'ORCPT=rfc822;carol@backup.example'), 250)
    _ok(r.cmd('DATA'), 354)
    r.send(b'Subject: dsn\r\n\r\nx\r\n.\r\n')
    _ok(r.reply(), 250)
    r.close()
    m = p.wait_messages(1, timeout=15)[0]
    opts = ' '.join(m['mail_options']).upper()
    assert 'RET=HDRS' in opts and 'ENVID=ENV+2B1' in opts, m['mail_options']
    ropts = ' '.join(m['rcpt_options'][0]).upper()
    assert 'NOTIFY=SUCCESS,DELAY' in ropts, m['rcpt_options']
    assert 'ORCPT=RFC822;CAROL@BACKUP.EXAMPLE' in ropts, m['rcpt_options']


def test_accept_pipelined_in_order(world):
    b = _held_backmx(world)
    r = Raw()
    r.cmd('EHLO client.test.example')
    # one write; every reply in order, one per command
    r.send(b'MAIL FROM:<p@sender.example>\r\n'
           b'RCPT TO:<alice@backup.example>\r\n'
           b'RCPT TO:<unknown@backup.example>\r\n'
           b'RCPT TO:<bob@backup.example>\r\n'
           b'NOOP\r\n'
           b'DATA\r\n')
    codes = [r.reply()[:9] for _ in range(6)]
    assert codes == ['250 2.1.0', '250 2.1.5', '550 5.1.1', '250 2.1.5',
                     '250 2.0.0', '354 End d'], codes
    assert r.nothing_more(0.5)
    # the body, the end, and the next transaction in one write as well
    r.send(b'Subject: piped\r\n\r\nbody\r\n.\r\n'
           b'MAIL FROM:<p2@sender.example>\r\n'
           b'RCPT TO:<carol@backup.example>\r\n'
           b'DATA\r\n')
    got = [r.reply() for _ in range(4)]
    assert got[0].startswith('250 2.0.0 Ok: queued as'), got
    assert [g[:3] for g in got[1:]] == ['250', '250', '354'], got
    r.send(b'Subject: piped 2\r\n\r\nbody\r\n.\r\nQUIT\r\n')
    _ok(r.reply(), 250, '2.0.0')
    _ok(r.reply(), 221)
    r.close()
    q = _queue(b)
    assert sorted(len(m['recipients']) for m in q) == [1, 2], q


def test_accept_size_limits(world):
    b = _held_backmx(world, max_size='64K')
    r = Raw()
    r.cmd('EHLO client.test.example')
    _ok(r.cmd('MAIL FROM:<s@sender.example> SIZE=65537'), 552, '5.3.4')
    _ok(r.cmd('MAIL FROM:<s@sender.example> SIZE=99999999999999999999999'),
        5)
    _ok(r.cmd('MAIL FROM:<s@sender.example> SIZE=10000'), 250)
    _ok(r.cmd('RCPT TO:<alice@backup.example>'), 250)
    _ok(r.cmd('DATA'), 354)
    # the declared size was a lie: read to the end, then refuse
    line = b'y' * 78 + b'\r\n'
    r.send(b'Subject: big\r\n\r\n' + line * 1000 + b'.\r\n')
    _ok(r.reply(), 552, '5.3.4')
    # the session goes on and a small message is taken
    _ok(r.cmd('MAIL FROM:<s@sender.example>'), 250)
    _ok(r.cmd('RCPT TO:<alice@backup.example>'), 250)
    _ok(r.cmd('DATA'), 354)
    r.send(b'Subject: small\r\n\r\n' + line * 10 + b'.\r\n')
    _ok(r.reply(), 250)
    r.close()
    q = _queue(b)
    assert len(q) == 1, q


def test_accept_max_recipients(world):
    b = _held_backmx(world, max_recipients=100)
    r = Raw()
    r.cmd('EHLO client.test.example')
    batch = b'MAIL FROM:<s@sender.example>\r\n' + b''.join(
        b'RCPT TO:<u%d@aonly.example>\r\n' % i for i in range(102))
    r.send(batch)
    _ok(r.reply(), 250)
    replies = [r.reply() for _ in range(102)]
    assert all(x.startswith('250') for x in replies[:100]), replies[:100]
    for x in replies[100:]:
        _ok(x, 452, '4.5.3')
    _ok(r.cmd('DATA'), 354)
    r.send(b'Subject: many\r\n\r\nhi\r\n.\r\n')
    _ok(r.reply(), 250)
    r.close()
    q = _queue(b)
    assert len(q) == 1 and len(q[0]['recipients']) == 100, \
        [len(m['recipients']) for m in q]


def test_accept_long_lines(world):
    b = _held_backmx(world)
    r = Raw()
    r.cmd('EHLO client.test.example')
    # a 600-octet command: one error, then the session goes on
    _ok(r.cmd('NOOP ' + 'x' * 593), 500, '5.5.2')
    assert r.nothing_more(0.3)
    _ok(r.cmd('NOOP'), 250)
    # a command of exactly 512 octets with CRLF is still allowed
    _ok(r.cmd('NOOP ' + 'x' * 505), 250)
    # bare LF ends no command
    r.send(b'NOOP\n')
    _ok(r.reply(), 500, '5.5.2')
    _ok(r.cmd('NOOP'), 250)
    _ok(r.cmd('MAIL FROM:<s@sender.example>'), 250)
    _ok(r.cmd('RCPT TO:<alice@backup.example>'), 250)
    _ok(r.cmd('DATA'), 354)
    # a 1001-octet text line (999 + CRLF): refused after the end of data
    r.send(b'Subject: long\r\n\r\n' + b'z' * 999 + b'\r\n.\r\n')
    got = r.reply()
    assert got[0] == '5' and re.match(r'5\d\d 5\.\d+\.\d+', got), got
    assert r.nothing_more(0.3)
    # exactly 1000 octets with CRLF is fine
    _ok(r.cmd('MAIL FROM:<s@sender.example>'), 250)
    _ok(r.cmd('RCPT TO:<alice@backup.example>'), 250)
    _ok(r.cmd('DATA'), 354)
    r.send(b'Subject: long\r\n\r\n' + b'z' * 998 + b'\r\n.\r\n')
    _ok(r.reply(), 250)
    r.close()
    assert len(_queue(b)) == 1
    assert b.running()


def test_accept_bdat(world):
    b = _held_backmx(world)
    r = Raw()
    r.cmd('EHLO client.test.example')
    _ok(r.cmd('MAIL FROM:<s@sender.example> BODY=8BITMIME'), 250)
    _ok(r.cmd('RCPT TO:<alice@backup.example>'), 250)
    part1 = b'Subject: chunked\r\n\r\n'
    part2 = b'.a line starting with a dot\r\nend\r\n'
    r.send(b'BDAT %d\r\n' % len(part1) + part1)
    _ok(r.reply(), 250)
    r.send(b'BDAT %d LAST\r\n' % len(part2) + part2)
    got = r.reply()
    m = re.match(r'250 2\.0\.0 Ok: queued as (\S+)', got)
    assert m, got
    # DATA after BDAT in a new transaction is fine; mixing is not
    _ok(r.cmd('MAIL FROM:<s@sender.example>'), 250)
    _ok(r.cmd('RCPT TO:<alice@backup.example>'), 250)
    r.send(b'BDAT 3\r\nabc')
    _ok(r.reply(), 250)
    _ok(r.cmd('DATA'), 503)
    r.close()
    q = _queue(b)
    assert len(q) == 1, q
    s = json.loads(b.ctl('show', m.group(1), '--json').stdout)
    assert 'Subject: chunked' in s['header']


def test_accept_idle_timeout(world):
    b = world.backmx(timeout='2s')
    r = Raw(timeout=20)
    t0 = time.monotonic()
    got = r.reply()
    dt = time.monotonic() - t0
    _ok(got, 421, '4.4.2')
    assert 1.5 <= dt <= 8, 'dropped after %.1fs' % dt
    assert r.reply() == '', 'still open after 421'
    r.close()
    b.wait_log(r'disconnect from unknown\[127\.0\.0\.\d+\]')


def test_accept_too_many_errors(world):
    b = world.backmx()
    r = Raw()
    r.cmd('EHLO client.test.example')
    r.send(b'FROB\r\n' * 30)
    replies = []
    while True:
        x = r.reply()
        if not x:
            break
        replies.append(x)
    assert replies[-1].startswith('421'), replies[-3:]
    assert 15 <= len(replies) <= 25, len(replies)
    assert all(x.startswith('500 5.5.2') for x in replies[:-1]), replies
    r.close()


def test_accept_log_lines(world):
    b = world.backmx()
    r = Raw()
    r.cmd('EHLO client.test.example')
    r.cmd('MAIL FROM:<s@sender.example>')
    r.cmd('RCPT TO:<x@elsewhere.example>')
    r.cmd('QUIT')
    r.close()
    b.wait_log(r'connect from unknown\[127\.0\.0\.\d+\]')
    b.wait_log(r'reject: RCPT .*5\.7\.1')
    b.wait_log(r'disconnect from unknown\[127\.0\.0\.\d+\]')


def test_accept_shutdown_421(world):
    b = world.backmx()
    r = Raw()
    r.cmd('EHLO client.test.example')
    _ok(r.cmd('MAIL FROM:<s@sender.example>'), 250)
    rc = b.stop()
    assert rc == 0, rc
    _ok(r.reply(), 421, '4.3.2')
    r.close()
