"""Percent hack and open-relay proofs, against the real daemon in the netns.

Tried: the percent-hack address reaches the static route's host (sink
'static') rewritten, with the original kept as ORCPT, and customer.example's
public MX (sink 'decoy') gets nothing; every refused address form of the
contract gets its 5xx and no sink receives anything; nmap's own
smtp-open-relay script reports that backmx is not an open relay.
"""
import os
import shutil
import smtplib
import socket
import subprocess
import time

HOST = 'mx2.test.example'


def _raw_rcpt(b, rcpt, mail='<probe@sender.example>', mailparams=''):
    """Send MAIL + RCPT over a raw socket (smtplib would quote/alter some
    forms); return the RCPT reply line."""
    s = socket.create_connection(('127.0.0.3', 25), timeout=10)
    f = s.makefile('rb')

    def reply():
        lines = []
        while True:
            line = f.readline()
            if not line:
                raise AssertionError('connection closed')
            lines.append(line.decode('latin-1').rstrip('\r\n'))
            if line[3:4] != b'-':
                return lines[-1]
    reply()
    s.sendall(b'EHLO probe.example\r\n')
    reply()
    s.sendall(('MAIL FROM:%s%s\r\n' % (mail, mailparams)).encode('utf-8'))
    r = reply()
    assert r.startswith('250'), 'MAIL refused: %s' % r
    s.sendall(b'RCPT TO:' + rcpt.encode('utf-8') + b'\r\n')
    r = reply()
    s.sendall(b'QUIT\r\n')
    s.close()
    return r


def test_percent_hack_delivers_to_static_route(world):
    static, decoy = world.sinks['static'], world.sinks['decoy']
    b = world.backmx()
    s = b.smtp()
    s.sendmail('someone@sender.example', ['user%%customer.example@%s' % HOST],
               b'Subject: percent\r\n\r\nhello via the percent hack\r\n')
    s.quit()
    m = static.wait_messages(1, timeout=20)[0]
    assert m['rcpt_tos'] == ['user@customer.example'], m['rcpt_tos']
    opts = ' '.join(m['rcpt_options'][0]).upper()
    assert 'ORCPT=RFC822;USER%CUSTOMER.EXAMPLE@' + HOST.upper() in opts, \
        'original address not kept as ORCPT: %r' % m['rcpt_options']
    assert b'hello via the percent hack' in m['data']
    time.sleep(1)
    assert decoy.messages() == [], 'public MX of customer.example got mail'
    b.wait_log(r'percent-hack user%customer.example@' + HOST.replace('.', r'\.') +
               r' -> user@customer.example', timeout=5)


def test_percent_hack_refusals(world):
    b = world.backmx(domains='''
domain customer.example { recipients %(dir)s/customer.rcpts route mailhost.test.example:25 percent_hack on }
domain off.example { recipients %(dir)s/customer.rcpts route [127.0.0.5]:25 percent_hack off }
domain backup.example { recipients %(dir)s/backup.rcpts route mx percent_hack off }
''')
    cases = [
        ('<user%off.example@' + HOST + '>', '550', 'percent hack off'),
        ('<nobody%customer.example@' + HOST + '>', '550 5.1.1', 'unknown user'),
        ('<user%foreign.example@' + HOST + '>', '550 5.7.1', 'inner domain not ours'),
        ('<alice%backup.example@' + HOST + '>', '550', 'no static route / off'),
        ('<user%%customer.example@' + HOST + '>', '5', 'two %'),
        ('<user%a%customer.example@' + HOST + '>', '5', 'two % (nested)'),
        ('<user%customer.example@[127.0.0.3]>', '550', '% at our literal'),
        ('<"user%customer.example"@' + HOST + '>', '550', 'quoted %'),
        ('<"user@customer.example"@' + HOST + '>', '550', 'quoted @'),
        ('<user!x%customer.example@' + HOST + '>', '550', '% with !'),
        ('<customer.example!user@' + HOST + '>', '550', 'bang at our host'),
        ('<customer.example!user>', '501', 'bang path without domain'),
        ('<@' + HOST + ':user@foreign.example>', '550 5.7.1', 'source route to foreign'),
        ('<user@foreign.example@' + HOST + '>', '501', 'two @'),
        ('<"relaytest@foreign.example">', '501', 'quoted @ without domain'),
        ('<relaytest@foreign.example>', '550 5.7.1', 'foreign domain'),
        ('<user%customer.example@mx3.test.example>', '550 5.7.1', '% at another host'),
        ('<user@' + HOST + '>', '550', 'our hostname itself'),
    ]
    bad = []
    for rcpt, want, why in cases:
        r = _raw_rcpt(b, rcpt)
        if not r.startswith(want):
            bad.append('%s (%s): %s' % (rcpt, why, r))
    assert not bad, 'accepted or wrong code:\n  ' + '\n  '.join(bad)
    time.sleep(1)
    for name, sink in world.sinks.items():
        assert sink.messages() == [], '%s sink received mail' % name


def test_nmap_open_relay(world):
    nmap = shutil.which('nmap') or '/usr/bin/nmap'
    assert os.path.exists(nmap), 'nmap not installed'
    b = world.backmx()
    p = subprocess.run(
        [nmap, '-n', '-Pn', '-sT', '-p', '25', '--script', 'smtp-open-relay',
         '--script-args',
         'smtp-open-relay.domain=nmap.scanme.org,smtp-open-relay.ip=127.0.0.3',
         '127.0.0.3'], capture_output=True, text=True, timeout=180)
    out = p.stdout
    assert p.returncode == 0, 'nmap failed: %s %s' % (out, p.stderr)
    assert 'smtp-open-relay' in out, 'script did not run: %s' % out
    assert "doesn't seem to be an open relay" in out, \
        'nmap reports a relay:\n%s' % out
    assert 'is an open relay' not in out, out
    time.sleep(1)
    for name, sink in world.sinks.items():
        assert sink.messages() == [], '%s sink received mail' % name
