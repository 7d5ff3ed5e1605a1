"""The test world proving itself with real clients, before any test of
backmx relies on it.

Tried: nsd answers the zones of HARNESS.md (the MX set of backup.example,
null MX, A-only) both when asked directly with dig and through the
namespace's resolv.conf (dig and the C library); the primary sink records a
message sent by smtplib, by swaks and by Postfix's smtp-source; the DSN and
other ESMTP parameters reach the sink's record unchanged; down, tempfail
and permfail are each seen by real clients; the Backmx class starts a
daemon, waits for its banner, restarts it and reports one that never
greets; the real backmxd starts and greets under the harness.
"""
import os
import smtplib
import socket
import stat
import subprocess
import time

PRIMARY = ('127.0.0.2', 25)
SWAKS = '/usr/bin/swaks'


def smtp_source(world):
    """Postfix's smtp-source as contrib/install-deps test provides it: a
    wrapper in BUILD/postfix-tools (the system's, or one unpacked from the
    postfix .deb, so the tests never install Postfix as the host's MTA)."""
    path = os.path.join(world.build, 'postfix-tools', 'smtp-source')
    if not os.access(path, os.X_OK) and os.access('/usr/sbin/smtp-source', os.X_OK):
        return '/usr/sbin/smtp-source'   # run.sh without make check's deps-test
    assert os.access(path, os.X_OK), \
        '%s missing: run sh contrib/install-deps test %s' % (path, world.build)
    return path


def _dig(*args, server='127.0.0.1'):
    cmd = ['dig', '+short', '+time=2', '+tries=2']
    if server:
        cmd.append('@' + server)
    p = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, 'dig %s failed: %s %s' % (args, p.stdout, p.stderr)
    return sorted(line.strip() for line in p.stdout.splitlines() if line.strip())


def _dig_status(*args):
    p = subprocess.run(['dig', '+time=2', '+tries=2', '@127.0.0.1'] + list(args),
                       capture_output=True, text=True, timeout=20)
    for line in p.stdout.splitlines():
        if 'status:' in line:
            return line.split('status:')[1].split(',')[0].strip()
    raise AssertionError('no status in dig output: %s' % p.stdout)


BACKUP_MX = ['10 mx1.test.example.', '20 mx2.test.example.', '30 mx3.test.example.']


def test_world_dns_mx(world):
    got = _dig('MX', 'backup.example')
    assert got == BACKUP_MX, 'MX backup.example from nsd: %r' % got
    # the same through the namespace's resolv.conf
    conf = open('/etc/resolv.conf').read()
    assert 'nameserver 127.0.0.1' in conf, '/etc/resolv.conf in the netns: %r' % conf
    got = _dig('MX', 'backup.example', server=None)
    assert got == BACKUP_MX, 'MX backup.example via resolv.conf: %r' % got
    for name, addr in (('mx1.test.example', '127.0.0.2'),
                       ('mx2.test.example', '127.0.0.3'),
                       ('mx3.test.example', '127.0.0.4'),
                       ('mailhost.test.example', '127.0.0.5'),
                       ('mx.sender.example', '127.0.0.6')):
        a = sorted({ai[4][0] for ai in socket.getaddrinfo(name, 25, socket.AF_INET)})
        assert a == [addr], '%s resolves to %r via the C library' % (name, a)
    assert _dig('MX', 'selfbest.example') == ['10 mx2.test.example.']
    assert _dig('MX', 'sender.example') == ['10 mx.sender.example.']
    assert _dig('MX', 'customer.example') == ['10 mx3.test.example.']
    assert _dig('MX', 'static.example') == ['10 mx3.test.example.']


def test_world_dns_nullmx(world):
    got = _dig('MX', 'nullmx.example')
    assert got == ['0 .'], 'MX nullmx.example: %r' % got


def test_world_dns_aonly(world):
    assert _dig('MX', 'aonly.example') == [], 'aonly.example has an MX'
    assert _dig_status('MX', 'aonly.example') == 'NOERROR'
    assert _dig('A', 'aonly.example') == ['127.0.0.2']
    assert _dig_status('A', 'nosuch.backup.example') == 'NXDOMAIN'


def _one(sink, timeout=10):
    msgs = sink.wait_messages(1, timeout=timeout)
    assert len(msgs) == 1, '%d messages, wanted 1' % len(msgs)
    return msgs[0]


def test_world_sink_smtplib(world):
    p = world.sinks['primary']
    with smtplib.SMTP(*PRIMARY, local_hostname='client.test.example', timeout=10) as s:
        code, banner = s.ehlo()
        assert code == 250, banner
        s.sendmail('someone@sender.example', ['alice@backup.example', 'bob@backup.example'],
                   b'Subject: smtplib probe\r\n\r\nline one\r\n.leading dot\r\n')
    m = _one(p)
    assert m['mail_from'] == 'someone@sender.example', m
    assert m['rcpt_tos'] == ['alice@backup.example', 'bob@backup.example'], m
    assert m['rcpt_options'] == [[], []], m
    assert m['helo'] == 'client.test.example', m
    assert m['peer'].startswith('127.'), m
    assert b'Subject: smtplib probe' in m['data'], m['data']
    assert b'\r\n.leading dot\r\n' in m['data'], 'dot unstuffing: %r' % m['data']
    # and as files
    d = p.dir
    assert os.path.exists(os.path.join(d, '1.eml')) or \
        any(f.endswith('.eml') for f in os.listdir(d)), os.listdir(d)
    # the other sinks saw nothing
    for name in ('decoy', 'static', 'bounce'):
        assert world.sinks[name].messages() == [], name


def test_world_sink_swaks(world):
    p = world.sinks['primary']
    r = subprocess.run([SWAKS, '--server', '127.0.0.2:25', '--from', 'x@sender.example',
                        '--to', 'carol@backup.example', '--helo', 'swaks.test.example',
                        '--header', 'Subject: swaks probe', '--body', 'hello from swaks'],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, 'swaks exit %d: %s' % (r.returncode, r.stdout[-800:])
    m = _one(p)
    assert m['rcpt_tos'] == ['carol@backup.example'], m
    assert m['mail_from'] == 'x@sender.example', m
    assert m['helo'] == 'swaks.test.example', m
    assert b'Subject: swaks probe' in m['data'] and b'hello from swaks' in m['data']


def test_world_sink_smtp_source(world):
    p = world.sinks['primary']
    r = subprocess.run([smtp_source(world), '-m', '5', '-s', '2', '-l', '2048',
                        '-f', 'src@sender.example', '-t', 'bob@backup.example',
                        '-S', 'smtp-source probe', '-M', 'source.test.example',
                        '127.0.0.2:25'],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, 'smtp-source exit %d: %s %s' % (r.returncode, r.stdout, r.stderr)
    msgs = p.wait_messages(5, timeout=20)
    assert len(msgs) == 5, len(msgs)
    for m in msgs:
        assert m['mail_from'] == 'src@sender.example', m['mail_from']
        assert m['rcpt_tos'] == ['bob@backup.example'], m['rcpt_tos']
        assert b'smtp-source probe' in m['data']
        assert len(m['data']) >= 2048, len(m['data'])


def test_world_sink_dsn_params(world):
    p = world.sinks['primary']
    with smtplib.SMTP(*PRIMARY, timeout=10) as s:
        s.ehlo('dsn.test.example')
        for ext in ('size', '8bitmime', 'smtputf8', 'pipelining', 'dsn'):
            assert s.has_extn(ext), 'sink does not advertise %s: %r' % (
                ext, s.esmtp_features)
        refused = s.sendmail(
            'dsn@sender.example', ['alice@backup.example', 'bob@backup.example'],
            b'Subject: dsn\r\n\r\nbody\r\n',
            mail_options=['RET=HDRS', 'ENVID=Abc+2Bdef', 'BODY=8BITMIME'],
            rcpt_options=['NOTIFY=SUCCESS,FAILURE', 'ORCPT=rfc822;Alice@backup.example'])
        assert refused == {}, refused
        # unknown parameters are still refused, as a real server would
        code, msg = s.mail('x@sender.example', ['FOO=bar'])
        assert code == 555, (code, msg)
    m = _one(p)
    # smtplib adds size=N itself when SIZE is advertised
    assert m['mail_options'] == ['size=%d' % len(m['data']), 'RET=HDRS',
                                 'ENVID=Abc+2Bdef', 'BODY=8BITMIME'], m['mail_options']
    assert m['rcpt_options'] == [['NOTIFY=SUCCESS,FAILURE', 'ORCPT=rfc822;Alice@backup.example']] * 2, \
        m['rcpt_options']


def test_world_sink_smtputf8_null_sender(world):
    p = world.sinks['primary']
    with smtplib.SMTP(*PRIMARY, timeout=10) as s:
        s.ehlo('utf8.test.example')
        s.sendmail('', ['postmaster@backup.example'], b'Subject: bounce\r\n\r\nx\r\n')
        s.sendmail('j\u00f6rg@sender.example', ['alice@backup.example'],
                   'Subject: caf\u00e9\r\n\r\n\u00fc\r\n'.encode('utf-8'),
                   mail_options=['SMTPUTF8', 'BODY=8BITMIME'])
    msgs = p.wait_messages(2)
    assert msgs[0]['mail_from'] == '', msgs[0]['mail_from']
    assert msgs[1]['mail_from'] == 'j\u00f6rg@sender.example', msgs[1]['mail_from']
    assert 'caf\u00e9'.encode('utf-8') in msgs[1]['data']


def test_world_sink_down(world):
    p = world.sinks['primary']
    p.set_mode('down')
    try:
        smtplib.SMTP(*PRIMARY, timeout=5)
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError('sink down, but smtplib connected')
    r = subprocess.run([SWAKS, '--server', '127.0.0.2:25', '--to', 'alice@backup.example',
                        '--from', 'x@sender.example', '--timeout', '5'],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, 'swaks to a down sink: exit %d %s' % (r.returncode, r.stdout)
    p.set_mode('up')
    with smtplib.SMTP(*PRIMARY, timeout=5) as s:
        assert s.noop()[0] == 250
    assert p.messages() == []


def test_world_sink_tempfail(world):
    p = world.sinks['primary']
    p.set_mode('tempfail')
    with smtplib.SMTP(*PRIMARY, timeout=10) as s:
        s.ehlo('t.test.example')
        code, msg = s.mail('x@sender.example')
        assert code == 451, (code, msg)
    r = subprocess.run([SWAKS, '--server', '127.0.0.2:25', '--to', 'alice@backup.example',
                        '--from', 'x@sender.example'],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and '<** 451' in r.stdout, \
        'swaks saw no 451: exit %d %s' % (r.returncode, r.stdout[-600:])
    r = subprocess.run([smtp_source(world), '-f', 'x@sender.example', '-t', 'alice@backup.example',
                        '127.0.0.2:25'], capture_output=True, text=True, timeout=30)
    assert '451' in r.stdout + r.stderr, 'smtp-source saw no 451: %s %s' % (r.stdout, r.stderr)
    assert p.messages() == []


def test_world_sink_permfail(world):
    p = world.sinks['primary']
    p.set_mode('permfail')
    with smtplib.SMTP(*PRIMARY, timeout=10) as s:
        try:
            s.sendmail('x@sender.example', ['alice@backup.example'], b'Subject: x\r\n\r\nx\r\n')
        except smtplib.SMTPRecipientsRefused as e:
            code, msg = e.recipients['alice@backup.example']
            assert code == 550 and msg.startswith(b'5.1.1'), (code, msg)
        else:
            raise AssertionError('permfail sink accepted the recipient')
    r = subprocess.run([SWAKS, '--server', '127.0.0.2:25', '--to', 'alice@backup.example',
                        '--from', 'x@sender.example'],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 24 and '<** 550 5.1.1' in r.stdout, \
        'swaks saw no 550 5.1.1: exit %d %s' % (r.returncode, r.stdout[-600:])
    assert p.messages() == []


FAKE_DAEMON = r'''#!/usr/bin/python3
# a stand-in for backmxd: greets on the config's first listen address
import re, signal, socket, sys, time
conf = open(sys.argv[sys.argv.index('-c') + 1]).read()
host, port = re.search(r'(?m)^listen (\S+):(\d+)$', conf).groups()
mode = re.search(r'(?m)^# fake (\S+)', conf).group(1)
print('fake backmxd starting, mode', mode, flush=True)
if mode == 'mute':
    time.sleep(60)
signal.signal(signal.SIGTERM, lambda *a: (print('stopping', flush=True), sys.exit(0)))
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, int(port)))
s.listen(5)
print('listening on %s:%s' % (host, port), flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b'220 fake.test.example ESMTP\r\n')
    f = c.makefile('rb')
    for line in f:
        if line.upper().startswith(b'QUIT'):
            c.sendall(b'221 bye\r\n')
            break
        c.sendall(b'250 fake.test.example\r\n' if line[:4].upper() == b'EHLO'
                  else b'250 ok\r\n')
    c.close()
'''


def test_world_harness_fake_daemon(world):
    path = os.path.join(world.workdir, 'fake-backmxd')
    with open(path, 'w') as f:
        f.write(FAKE_DAEMON)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)

    b = world.backmx(start=False, listen=['127.0.0.3:2599'], extra='# fake greet')
    b.backmxd = path
    t0 = time.monotonic()
    b.start()
    assert b.pid and b.running()
    s = b.smtp()
    assert s.noop()[0] == 250
    s.quit()
    b.wait_log(r'listening on 127\.0\.0\.3:2599')
    assert b.kill9() == -9
    b.start()
    assert b.stop() == 0, 'fake daemon exit status on SIGTERM'
    b.wait_log(r'stopping')
    assert time.monotonic() - t0 < 20

    mute = world.backmx(start=False, listen=['127.0.0.3:2598'], extra='# fake mute')
    mute.backmxd = path
    try:
        mute.start(timeout=3)
    except AssertionError as e:
        assert 'no 220 banner' in str(e) and 'fake backmxd starting, mode mute' in str(e), \
            'banner timeout does not show the log: %s' % e
    else:
        raise AssertionError('a daemon that never greets was accepted')
    mute.kill9()


def test_world_backmx_starts(world):
    assert os.access(world.backmxd, os.X_OK), '%s not built' % world.backmxd
    b = world.backmx()
    with socket.create_connection(('127.0.0.3', 25), timeout=10) as c:
        banner = c.makefile('rb').readline()
    assert banner.startswith(b'220 mx2.test.example'), banner
    s = b.smtp()
    assert s.noop()[0] == 250
    s.quit()
    assert b.stop() == 0, 'backmxd exit status after SIGTERM'
