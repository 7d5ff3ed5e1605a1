"""Inbound STARTTLS with real clients (openssl s_client, swaks, smtplib).

Tried: STARTTLS is offered only when tls_cert/tls_key are set; smtplib
and swaks --tls complete the handshake and deliver; openssl s_client
-starttls smtp completes it; a command pipelined in the same packet as
STARTTLS is not executed after the handshake (CVE-2011-0411); STARTTLS
twice is refused; garbage instead of a ClientHello is a logged failure,
not a crash; the Received header says ESMTPS with the TLS version.
"""
import os
import re
import smtplib
import socket
import ssl
import subprocess
import time


def _tls_backmx(world, **kw):
    c = world.certs
    return world.backmx(tls_cert=os.path.join(c, 'mx2.pem'),
                        tls_key=os.path.join(c, 'mx2.key'), **kw)


def _ctx(world, check_hostname=True):
    ctx = ssl.create_default_context(cafile=os.path.join(world.certs, 'ca.pem'))
    ctx.check_hostname = check_hostname
    return ctx


def test_tls_not_offered_without_cert(world):
    b = world.backmx()
    s = b.smtp()
    assert not s.has_extn('starttls'), 'STARTTLS offered without a certificate'
    code, _ = s.docmd('STARTTLS')
    assert code in (502, 454), code
    s.quit()


def test_tls_smtplib_delivers(world):
    p = world.sinks['primary']
    b = _tls_backmx(world)
    # by name, so smtplib checks the certificate against mx2.test.example
    s = smtplib.SMTP('mx2.test.example', 25, timeout=20)
    s.ehlo('tls.example')
    assert s.has_extn('starttls'), 'STARTTLS not offered'
    code, _ = s.starttls(context=_ctx(world))
    assert code == 220
    s.ehlo('tls.example')
    assert not s.has_extn('starttls'), 'STARTTLS offered again after TLS'
    s.sendmail('t@sender.example', ['alice@backup.example'],
               b'Subject: over tls\r\n\r\nsecret\r\n')
    s.quit()
    b.wait_log(r'TLS connection established from unknown\[127\.0\.0\.\d+\]: TLSv1\.[23]', timeout=5)
    m = p.wait_messages(1, timeout=20)[0]
    assert re.search(rb'with ESMTPS id [0-9a-f]+', m['data']), m['data'][:400]
    assert b'TLSv1.' in m['data'].split(b'\r\n\r\n')[0], 'TLS version not in Received'


def test_tls_swaks(world):
    b = _tls_backmx(world)
    r = subprocess.run(['swaks', '--server', '127.0.0.3:25', '--tls',
                        '--to', 'bob@backup.example', '--from', 's@sender.example',
                        '--tls-verify', '--tls-ca-path', os.path.join(world.certs, 'ca.pem'),
                        '--helo', 'swaks.example'],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout[-800:] + r.stderr[-400:]
    assert re.search(r'250 2\.0\.0 Ok: queued as', r.stdout), r.stdout[-800:]


def test_tls_openssl_s_client(world):
    b = _tls_backmx(world)
    p = subprocess.Popen(['openssl', 's_client', '-starttls', 'smtp', '-connect',
                          '127.0.0.3:25', '-CAfile', os.path.join(world.certs, 'ca.pem'),
                          '-verify_hostname', 'mx2.test.example', '-crlf', '-quiet'],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    # one command at a time: EHLO must not be pipelined
    for line in ('EHLO s-client.example', 'NOOP', 'QUIT'):
        time.sleep(0.7)
        p.stdin.write(line + '\n')
        p.stdin.flush()
    try:
        out, err = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    assert 'verify error' not in err, err[-800:]
    assert re.search(r'^250 2\.0\.0 Ok', out, re.M), out[-800:] + err[-400:]
    assert '221' in out, out[-800:]


def test_tls_plaintext_injection_discarded(world):
    b = _tls_backmx(world)
    raw = socket.create_connection(('127.0.0.3', 25), timeout=10)
    f = raw.makefile('rb')

    def reply(fp):
        while True:
            line = fp.readline()
            if not line:
                raise AssertionError('closed')
            if line[3:4] != b'-':
                return line
    reply(f)
    raw.sendall(b'EHLO inject.example\r\n')
    reply(f)
    # STARTTLS and a command in the same segment: the command arrived in
    # plaintext and must never run inside the TLS session
    raw.sendall(b'STARTTLS\r\nMAIL FROM:<injected@sender.example>\r\n')
    line = reply(f)
    assert line.startswith(b'220'), line
    tls = _ctx(world).wrap_socket(raw, server_hostname='mx2.test.example')
    tls.settimeout(2)
    try:
        extra = tls.recv(4096)
    except (socket.timeout, TimeoutError):
        extra = b''
    assert extra == b'', 'server answered the injected command: %r' % extra
    tls.settimeout(10)
    tf = tls.makefile('rb')
    tls.sendall(b'EHLO inject.example\r\n')
    reply(tf)
    # if MAIL had been executed, this would be a nested MAIL (503)
    tls.sendall(b'MAIL FROM:<real@sender.example>\r\n')
    line = reply(tf)
    assert line.startswith(b'250'), 'injected MAIL was executed: %r' % line
    tls.sendall(b'QUIT\r\n')
    tls.close()


def test_tls_twice_and_garbage(world):
    b = _tls_backmx(world)
    s = smtplib.SMTP('mx2.test.example', 25, timeout=20)
    s.ehlo('tls.example')
    s.starttls(context=_ctx(world))
    s.ehlo('tls.example')
    code, _ = s.docmd('STARTTLS')
    assert code == 503, 'second STARTTLS: %d' % code
    s.quit()
    # garbage instead of a TLS ClientHello
    raw = socket.create_connection(('127.0.0.3', 25), timeout=10)
    f = raw.makefile('rb')
    f.readline()
    raw.sendall(b'EHLO junk.example\r\n')
    while f.readline()[3:4] == b'-':
        pass
    raw.sendall(b'STARTTLS\r\n')
    f.readline()
    raw.sendall(os.urandom(2000))
    raw.settimeout(10)
    try:
        while raw.recv(4096):
            pass
    except OSError:
        pass
    raw.close()
    b.wait_log(r'SSL_accept error from unknown\[.*\]', timeout=10)
    s = b.smtp()
    assert s.noop()[0] == 250, 'daemon unhealthy after TLS garbage'
    s.quit()
