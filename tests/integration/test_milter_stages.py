"""Milter replies at their stage, over one milter connection per SMTP
session (the python3-milter test milter, milter_test.py, refuses on
trigger addresses and names):

  connect  554 instead of the banner then 503 to all but QUIT; a milter
           TEMPFAIL lets the session in and refuses its MAIL with 451;
           a 421 closes
  HELO     that command refused with the milter's text, MAIL needs HELO
  MAIL     that command refused (553 / 451); DISCARD: accepted, dropped
  RCPT     that recipient only (550 / 451), the others accepted
  DATA     refused with the milter's text, before 354
and SMFIC_ABORT on RSET, SMFIC_QUIT at the end, all on the same milter
connection; a milter that dies mid-session gets milter_default_action
at every later stage; SMFIR_PROGRESS cannot stretch a wait without bound.
"""
import smtplib
import socket
import time

from test_milter import PyMilter, _backmx, _queue
from test_proxy import Conn, v2, EXTRA as PROXY_EXTRA

MSG = ('Subject: %s\r\nFrom: <sender@sender.example>\r\n\r\n'
       'the original body\r\n.\r\n')


def _conn(b, source='127.0.0.1'):
    c = Conn(source=source, addr=tuple(b.listen[0]))
    c.s.settimeout(20)
    return c


def _closed(c):
    try:
        return c.s.recv(100) == b''
    except (ConnectionResetError, socket.timeout):
        return False


def test_milter_stage_connect(world):
    m = PyMilter(world)
    try:
        b = _backmx(world)
        # 5xx: a 554 greeting with the milter's text, 503 until QUIT
        c = _conn(b, '127.0.0.66')
        assert c.reply() == '554 5.7.1 connect refused by the test milter'
        assert c.cmd('EHLO client.test.example').startswith('503 5.7.0 '), c
        assert c.cmd('MAIL FROM:<sender@sender.example>').startswith('503 ')
        assert c.cmd('QUIT').startswith('221 ')
        b.wait_log(r'NOQUEUE: milter-reject: CONNECT from unknown\[127\.0\.0\.66\]: '
                   r'554 5\.7\.1 connect refused by the test milter; proto=SMTP; '
                   r'filter=milter inet:127\.0\.0\.7:8891')
        # TEMPFAIL: in, but every MAIL of the session gets 451
        c = _conn(b, '127.0.0.67')
        assert c.reply().startswith('220 ')
        assert c.cmd('EHLO client.test.example').startswith('250')
        r = c.cmd('MAIL FROM:<sender@sender.example>')
        assert r.startswith('451 4.7.1 '), r
        assert c.cmd('MAIL FROM:<sender@sender.example>').startswith('451 ')
        assert c.cmd('QUIT').startswith('221 ')
        # 421 from the milter: said, then closed
        c = _conn(b, '127.0.0.68')
        assert c.reply() == '421 4.7.0 test milter closing'
        assert _closed(c)
        assert m.events('connect-reject') and m.events('connect-tempfail')
        assert m.events('connect-421')
        # a client the milter likes is greeted as ever
        c = _conn(b)
        assert c.reply().startswith('220 ')
        assert c.cmd('QUIT').startswith('221 ')
    finally:
        m.stop()


def test_milter_stage_helo_mail_rcpt_data(world):
    """each stage's refusal is that command's reply; everything on one
    milter connection; ABORT on RSET, close at QUIT"""
    m = PyMilter(world)
    try:
        p = world.sinks['primary']
        b = _backmx(world)
        c = _conn(b)
        assert c.reply().startswith('220 ')
        assert c.cmd('EHLO reject.helo.example') == \
            '550 5.7.1 helo refused by the test milter'
        assert c.cmd('MAIL FROM:<sender@sender.example>').startswith('503 ')
        assert c.cmd('EHLO client.test.example').startswith('250')
        assert c.cmd('MAIL FROM:<reject-mail@sender.example>') == \
            '553 5.7.1 sender refused by the test milter'
        assert c.cmd('MAIL FROM:<tempfail-mail@sender.example>').startswith(
            '451 4.7.1 ')
        assert c.cmd('MAIL FROM:<sender@sender.example>').startswith('250')
        assert c.cmd('RCPT TO:<postmaster@backup.example>') == \
            '550 5.1.1 refused by the test milter'
        assert c.cmd('RCPT TO:<tempfail-rcpt@aonly.example>').startswith(
            '451 4.7.1 ')
        assert c.cmd('RCPT TO:<alice@backup.example>').startswith('250')
        assert c.cmd('DATA').startswith('354')
        assert c.cmd((MSG % 'stage test').rstrip('\r\n')).startswith('250')
        msg = p.wait_messages(1, timeout=15)[0]
        assert msg['rcpt_tos'] == ['alice@backup.example'], msg
        # RSET inside a transaction: SMFIC_ABORT
        assert c.cmd('MAIL FROM:<sender@sender.example>').startswith('250')
        assert c.cmd('RCPT TO:<alice@backup.example>').startswith('250')
        assert c.cmd('RSET').startswith('250')
        m.wait_event('abort')
        # refused at DATA, before 354
        assert c.cmd('MAIL FROM:<reject-data@sender.example>').startswith('250')
        assert c.cmd('RCPT TO:<alice@backup.example>').startswith('250')
        assert c.cmd('DATA') == '554 5.7.1 data refused by the test milter'
        # DISCARD at MAIL: the client is told 250, nothing is kept
        assert c.cmd('MAIL FROM:<discard-mail@sender.example>').startswith('250')
        assert c.cmd('RCPT TO:<alice@backup.example>').startswith('250')
        assert c.cmd('DATA').startswith('354')
        assert c.cmd((MSG % 'discarded').rstrip('\r\n')).startswith('250')
        b.wait_log(r'milter-discard')
        assert c.cmd('QUIT').startswith('221 ')
        m.wait_event('close')
        b.wait_log(r'milter-discard: .*filter=milter inet:127\.0\.0\.7:8891: '
                   r'discard at MAIL')
        for what in (r'EHLO from unknown\[127\.0\.0\.1\]: 550 5\.7\.1 helo refused'
                     r'.* helo=<reject\.helo\.example>',
                     r'MAIL from unknown\[127\.0\.0\.1\]: 553 5\.7\.1 sender '
                     r'refused by the test milter; from=<reject-mail@sender\.example>',
                     r'RCPT from unknown\[127\.0\.0\.1\]: 451 4\.7\.1 .*'
                     r'to=<tempfail-rcpt@aonly\.example>',
                     r'DATA from unknown\[127\.0\.0\.1\]: 554 5\.7\.1 data refused'):
            b.wait_log(r'NOQUEUE: milter-reject: ' + what)
        time.sleep(1)
        assert len(p.messages()) == 1 and _queue(b) == []
        # one milter connection for the whole session (the harness's
        # readiness probe had one of its own before)
        conn = m.events('helo-reject')[0]['conn']
        mine = [l['action'] for l in m.lines() if l['conn'] == conn]
        assert mine[0] == 'connect' and mine[-1] == 'close', mine
        for a in ('mail-reject', 'mail-tempfail', 'rcpt-reject', 'rcpt-tempfail',
                  'stage test', 'abort', 'data-reject', 'mail-discard'):
            assert a in mine, (a, mine)
        assert mine.count('connect') == 1, mine
        st = b.ctl('stats').stdout
        assert 'milter_rejected' in st
    finally:
        m.stop()


def test_milter_stage_rcpt_accept_and_two_messages(world):
    """ACCEPT at RCPT: the rest of that message is not shown; the next
    message of the session is shown whole, on the same connection"""
    m = PyMilter(world)
    try:
        p = world.sinks['primary']
        b = _backmx(world)
        s = b.smtp()
        s.sendmail('sender@sender.example', ['bob@backup.example'],
                   (MSG % 'first').rstrip('.\r\n').encode() + b'\r\n')
        s.sendmail('sender@sender.example', ['alice@backup.example'],
                   (MSG % 'second').rstrip('.\r\n').encode() + b'\r\n')
        s.quit()
        p.wait_messages(2, timeout=15)
        seen = m.seen()
        assert [x['action'] for x in seen] == ['rcpt-accept', 'second'], seen
        assert seen[1]['rcpts'] == ['<alice@backup.example>'], seen
        assert seen[1]['headers'], seen
        assert seen[0]['conn'] == seen[1]['conn']
    finally:
        m.stop()


def test_milter_stage_dies_mid_session(world):
    """the milter process exits at RCPT: that RCPT and each later stage
    get milter_default_action (tempfail: 451; accept: go on unfiltered)"""
    for action, code in (('tempfail', 451), ('accept', 250)):
        m = PyMilter(world)
        try:
            p = world.sinks['primary']
            p.clear()
            b = _backmx(world, extra='milter_default_action %s\n' % action)
            c = _conn(b)
            assert c.reply().startswith('220 ')
            assert c.cmd('EHLO client.test.example').startswith('250')
            assert c.cmd('MAIL FROM:<sender@sender.example>').startswith('250')
            r = c.cmd('RCPT TO:<die-rcpt@aonly.example>')
            assert r.startswith(str(code)), (action, r)
            b.wait_log(r'milter inet:127\.0\.0\.7:8891: .*'
                       r'milter_default_action=%s' % action)
            r = c.cmd('RCPT TO:<alice@backup.example>')
            assert r.startswith(str(code)), (action, r)
            if action == 'accept':
                assert c.cmd('DATA').startswith('354')
                assert c.cmd((MSG % 'unfiltered').rstrip('\r\n')).startswith(
                    '250')
                p.wait_messages(1, timeout=15)
            else:
                assert c.cmd('MAIL FROM:<sender@sender.example>').startswith(
                    '503')  # still inside the transaction
                assert c.cmd('RSET').startswith('250')
                assert c.cmd('MAIL FROM:<sender@sender.example>').startswith(
                    '451 4.7.1 ')
                # nothing was accepted unfiltered
                assert _queue(b) == [] and p.messages() == []
            assert c.cmd('QUIT').startswith('221 ')
            b.stop()
        finally:
            m.stop()


def test_milter_proxied_address(world):
    """behind a PROXY v2 header the milter is told the carried address
    (SMFIC_CONNECT and {client_addr})"""
    m = PyMilter(world)
    try:
        p = world.sinks['primary']
        b = _backmx(world, extra=PROXY_EXTRA)
        c = Conn()
        c.send(v2(src='192.0.2.7', sport=40123))
        assert c.reply().startswith('220 ')
        assert c.cmd('EHLO client.test.example').startswith('250')
        assert c.cmd('MAIL FROM:<sender@sender.example>').startswith('250')
        assert c.cmd('RCPT TO:<alice@backup.example>').startswith('250')
        assert c.cmd('DATA').startswith('354')
        assert c.cmd((MSG % 'proxied').rstrip('\r\n')).startswith('250')
        assert c.cmd('QUIT').startswith('221')
        p.wait_messages(1, timeout=15)
        seen = [x for x in m.seen() if x['subject'] == 'proxied']
        assert seen, m.lines()
        assert seen[0]['macros']['{client_addr}'] == '192.0.2.7', seen
        assert seen[0]['macros']['{client_port}'] == '40123', seen
        assert {'action': 'connect', 'conn': seen[0]['conn'],
                'addr': '192.0.2.7'} in m.lines(), m.lines()
    finally:
        m.stop()


def test_milter_stage_progress_bounded(world):
    """SMFIR_PROGRESS every 0.25 s: the wait still ends (10 x
    milter_timeout), the message is tempfailed, nothing queued"""
    m = PyMilter(world)
    try:
        p = world.sinks['primary']
        b = world.backmx(extra='milter inet:127.0.0.7:8891\n'
                         'milter_timeout 1s\n')
        s = b.smtp(timeout=60)
        try:
            s.sendmail('sender@sender.example', ['alice@backup.example'],
                       (MSG % 'slow-progress').rstrip('.\r\n').encode() +
                       b'\r\n')
            raise AssertionError('accepted')
        except smtplib.SMTPDataError as e:
            assert e.smtp_code == 451, e
        b.wait_log(r'milter inet:127\.0\.0\.7:8891: only progress replies '
                   r'for 10 x milter_timeout')
        assert p.messages() == [] and _queue(b) == []
    finally:
        m.stop()


test_milter_stage_progress_bounded.timeout = 90
