"""Milter: the python3-milter test milter (milter_test.py) exercising every
action and modification, milters that are down, slow or speak garbage
(milter_default_action), and rspamd as a real milter (test_milter_rspamd*).

Observed at the primary sink (headers, recipients, body) or in the spool
(quarantine -> held, released by `backmxctl release`).
"""
import json
import os
import smtplib
import socket
import subprocess
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PYMILTER_PORT = 8891


def _wait_port(host, port, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError('nothing listens on %s:%d' % (host, port))


class PyMilter:
    def __init__(self, world, port=None):
        port = port or PYMILTER_PORT
        self.log = os.path.join(world.workdir, 'pymilter-%d-%d.log'
                                % (os.getpid(), port))
        if os.path.exists(self.log):
            os.unlink(self.log)
        self.p = subprocess.Popen(['/usr/bin/python3',
                                   os.path.join(HERE, 'milter_test.py'),
                                   str(port), self.log],
                                  stdout=subprocess.DEVNULL,
                                  stderr=open(self.log + '.err', 'w'))
        _wait_port('127.0.0.7', port)

    def lines(self):
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            return [json.loads(l) for l in f if l.strip()]

    def seen(self):
        """the messages the milter saw to their end (or accepted)"""
        return [l for l in self.lines() if 'headers' in l]

    def events(self, action):
        return [l for l in self.lines() if l['action'] == action]

    def wait_event(self, action, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ev = self.events(action)
            if ev:
                return ev
            time.sleep(0.1)
        raise AssertionError('milter logged no %r: %r' % (action,
                                                          self.lines()))

    def stop(self):
        self.p.kill()
        self.p.wait()
        with open(self.log + '.err') as f:
            err = f.read()
        if err:
            print('milter_test.py stderr:\n' + err[-3000:])


def _backmx(world, **kw):
    extra = kw.pop('extra', '')
    return world.backmx(extra='milter inet:127.0.0.7:%d\nmilter_timeout 5s\n'
                        % PYMILTER_PORT + extra, **kw)


def _send(b, subject, rcpts=('alice@backup.example',), extra_hdr=''):
    """None when accepted, else the refusal (at MAIL, RCPT or DATA)"""
    s = b.smtp()
    try:
        s.sendmail('sender@sender.example', list(rcpts),
                   ('Subject: %s\r\nX-Remove: this goes\r\n%s\r\n'
                    'the original body\r\n' % (subject, extra_hdr)).encode())
        return None
    except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as e:
        return e
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            pass


def _queue(b):
    r = b.ctl('queue', '--json')
    assert r.returncode == 0, r.stderr
    return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]


def test_milter_continue_and_macros(world):
    m = PyMilter(world)
    try:
        p = world.sinks['primary']
        b = _backmx(world)
        assert _send(b, 'hello') is None
        msg = p.wait_messages(1, timeout=15)[0]
        assert b'the original body' in msg['data']
        seen = m.seen()
        assert len(seen) == 1, seen
        mac = seen[0]['macros']
        assert mac['j'] == 'mx2.test.example', mac
        assert mac['{daemon_name}'] == 'backmx'
        assert mac['{client_addr}'] == '127.0.0.1', mac
        assert mac['{mail_addr}'] == 'sender@sender.example'
        assert mac['{rcpt_addr}'] == 'alice@backup.example'
        assert len(mac['i']) > 0
        assert seen[0]['rcpts'] == ['<alice@backup.example>']
        assert seen[0]['mail_from'] == '<sender@sender.example>'
        assert ['Subject', 'hello'] in [[h[0], h[1].strip()]
                                        for h in seen[0]['headers']]
        assert 'the original body' in seen[0]['body']
        b.wait_log(r'from=<sender@sender\.example>')
    finally:
        m.stop()


def test_milter_reject_tempfail_discard(world):
    m = PyMilter(world)
    try:
        p = world.sinks['primary']
        b = _backmx(world)
        e = _send(b, 'reject')
        assert e is not None and e.smtp_code == 554, e
        assert b'5.7.1 python milter says no' in e.smtp_error, e.smtp_error
        e = _send(b, 'tempfail')
        assert e is not None and e.smtp_code == 451, e
        assert _send(b, 'discard') is None       # 250, then dropped
        b.wait_log(r'milter-reject: END-OF-MESSAGE from unknown\[127\.0\.0\.1\]: 554 '
                   r'5\.7\.1 python milter says no')
        b.wait_log(r'milter-discard')
        time.sleep(1)
        assert p.messages() == []
        assert _queue(b) == []
        st = b.ctl('stats').stdout
        assert 'milter_rejected' in st
    finally:
        m.stop()


def test_milter_modifications(world):
    m = PyMilter(world)
    try:
        p = world.sinks['primary']
        b = _backmx(world)
        assert _send(b, 'modify', rcpts=('alice@backup.example',
                                         'carol@backup.example'),
                     extra_hdr='X-Keep: yes\r\n') is None
        msg = p.wait_messages(1, timeout=15)[0]
        data = msg['data']
        head, _, body = data.partition(b'\r\n\r\n')
        assert b'X-Added: by the test milter' in head, head
        assert b'Subject: modified by the milter' in head, head
        assert b'Subject: modify' not in head
        assert b'X-Remove' not in head, head
        assert b'X-Keep: yes' in head
        # inserted first among the client's fields (after our Received)
        fields = [l for l in head.split(b'\r\n') if l and l[:1] not in b' \t']
        assert fields[0].startswith(b'Received:'), fields
        assert fields[1] == b'X-First: inserted at the top', fields
        assert body == b'the body the milter wrote\r\n', body
        assert sorted(msg['rcpt_tos']) == ['alice@backup.example',
                                           'bob@backup.example'], msg
    finally:
        m.stop()


def test_milter_rcpt_reject_and_accept(world):
    m = PyMilter(world)
    try:
        p = world.sinks['primary']
        b = _backmx(world)
        assert _send(b, 'x', rcpts=('alice@backup.example',
                                    'postmaster@backup.example')) is None
        msg = p.wait_messages(1, timeout=15)[0]
        assert msg['rcpt_tos'] == ['alice@backup.example'], msg
        b.wait_log(r'NOQUEUE: milter-reject: RCPT from unknown\[127\.0\.0\.1\]: '
                   r'550 5\.1\.1 refused by the test milter; '
                   r'from=<sender@sender\.example> to=<postmaster@backup\.example>')
        p.clear()
        assert _send(b, 'accept') is None
        msg = p.wait_messages(1, timeout=15)[0]
        assert b'the original body' in msg['data']
    finally:
        m.stop()


def test_milter_quarantine_held(world):
    m = PyMilter(world)
    try:
        p = world.sinks['primary']
        b = _backmx(world)
        assert _send(b, 'quarantine') is None
        b.wait_log(r'milter-hold: .*held by the test milter')
        time.sleep(1.5)
        assert p.messages() == []
        q = _queue(b)
        assert len(q) == 1 and q[0]['held'] is True, q
        assert b.ctl('release', q[0]['id']).returncode == 0
        p.wait_messages(1, timeout=15)
    finally:
        m.stop()


def _serve(port, behaviour):
    """a fake milter on 127.0.0.8:port: 'garbage' or 'silent'"""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(('127.0.0.8', port))
    ls.listen(16)

    def run():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            try:
                c.recv(4096)
                if behaviour == 'garbage':
                    c.sendall(b'\xff\xff\xff\xffHELLO I AM NOT A MILTER')
                else:
                    time.sleep(8)
            except OSError:
                pass
            c.close()
    threading.Thread(target=run, daemon=True).start()
    return ls


def test_milter_down_slow_garbage(world):
    p = world.sinks['primary']
    # nothing listens: default tempfail, nothing accepted unfiltered
    b = world.backmx(extra='milter inet:127.0.0.8:8899\nmilter_timeout 2s\n')
    e = _send(b, 'x')
    assert e is not None and e.smtp_code == 451, e
    b.wait_log(r'milter inet:127\.0\.0\.8:8899: .*milter_default_action=tempfail')
    b.stop()
    for port, what in ((8897, 'garbage'), (8898, 'silent')):
        ls = _serve(port, what)
        try:
            b = world.backmx(extra='milter inet:127.0.0.8:%d\n'
                             'milter_timeout 2s\n' % port)
            t = time.monotonic()
            e = _send(b, 'x')
            assert e is not None and e.smtp_code == 451, (what, e)
            if what == 'silent':
                assert 1.5 < time.monotonic() - t < 6
            b.stop()
        finally:
            ls.close()
    assert p.messages() == []
    # milter_default_action accept / reject
    b = world.backmx(extra='milter inet:127.0.0.8:8899\n'
                     'milter_default_action accept\n')
    assert _send(b, 'through') is None
    p.wait_messages(1, timeout=15)
    b.stop()
    b = world.backmx(extra='milter inet:127.0.0.8:8899\n'
                     'milter_default_action reject\n')
    e = _send(b, 'x')
    assert e is not None and e.smtp_code == 550, e


def test_milter_two_in_order(world):
    m = PyMilter(world)
    try:
        p = world.sinks['primary']
        # the second one is down, with default accept: the first still
        # rejects; a clean message passes both
        b = _backmx(world, extra='milter inet:127.0.0.8:8899\n'
                    'milter_default_action accept\n')
        e = _send(b, 'reject')
        assert e is not None and e.smtp_code == 554
        assert _send(b, 'hello') is None
        p.wait_messages(1, timeout=15)
    finally:
        m.stop()


def test_milter_chgfrom(world):
    """SMFIR_CHGFROM: the primary gets the milter's envelope sender"""
    m = PyMilter(world)
    try:
        p = world.sinks['primary']
        b = _backmx(world)
        assert _send(b, 'chgfrom') is None
        msg = p.wait_messages(1, timeout=15)[0]
        assert msg['mail_from'] == 'changed@sender.example', msg
        b.wait_log(r'milter: sender changed from <sender@sender\.example> '
                   r'to <changed@sender\.example>')
        b.wait_log(r'from=<changed@sender\.example>, size=')
    finally:
        m.stop()


def test_milter_chain_sees_edits(world):
    """two milters: the second is shown the first one's header and body
    edits and its sender change; both are logged and counted with their
    wait"""
    m1 = PyMilter(world)
    m2 = PyMilter(world, port=PYMILTER_PORT + 10)
    try:
        p = world.sinks['primary']
        b = _backmx(world, extra='milter inet:127.0.0.7:%d\n'
                    % (PYMILTER_PORT + 10), metrics='127.0.0.3:9426')
        assert _send(b, 'modify', rcpts=('alice@backup.example',
                                         'carol@backup.example')) is None
        msg = p.wait_messages(1, timeout=15)[0]
        head, _, body = msg['data'].partition(b'\r\n\r\n')
        assert b'Subject: modified by the milter' in head, head
        assert body == b'the body the milter wrote\r\n', body
        seen = m2.seen()
        assert len(seen) == 1, seen
        hdrs = [[h[0], h[1].strip()] for h in seen[0]['headers']]
        assert ['X-Added', 'by the test milter'] in hdrs, hdrs
        assert ['X-First', 'inserted at the top'] == hdrs[0], hdrs
        assert ['Subject', 'modified by the milter'] in hdrs, hdrs
        assert not [h for h in hdrs if h[0] == 'X-Remove'], hdrs
        assert seen[0]['body'] == 'the body the milter wrote\r\n', seen
        assert m1.seen()[0]['body'].startswith('the original body')
        for port in (PYMILTER_PORT, PYMILTER_PORT + 10):
            b.wait_log(r'milter inet:127\.0\.0\.7:%d: accepted, waited '
                       r'[0-9.]+s' % port)
        r = subprocess.run(['curl', '-s', '--max-time', '10',
                            'http://127.0.0.3:9426/metrics'],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        for port in (PYMILTER_PORT, PYMILTER_PORT + 10):
            lab = 'milter="inet:127.0.0.7:%d"' % port
            assert ('backmx_milter_outcomes_total{%s,outcome="accepted"} 1'
                    % lab) in r.stdout, r.stdout
            assert ('backmx_milter_latency_seconds_count{%s} 1' % lab) \
                in r.stdout, r.stdout
        pt = subprocess.run(['promtool', 'check', 'metrics'], input=r.stdout,
                            capture_output=True, text=True, timeout=30)
        assert pt.returncode == 0, pt.stdout + pt.stderr
    finally:
        m1.stop()
        m2.stop()


# ---------------------------------------------------------------- rspamd
GTUBE = ('XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X')


class Rspamd:
    """rspamd (Debian) over its stock configuration, with
    tests/integration/rspamd/ as local.d: proxy worker in milter mode on
    127.0.0.7:11332, self_scan, no redis."""

    def __init__(self, world, timeout=240):
        import shutil
        if shutil.which('rspamd') is None:
            raise AssertionError('rspamd not installed (contrib/install-deps test)')
        self.dir = os.path.join(world.workdir, 'rspamd-%d' % os.getpid())
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.join(self.dir, 'local.d'))
        os.makedirs(os.path.join(self.dir, 'db'))
        src = os.path.join(HERE, 'rspamd')
        for f in os.listdir(src):
            if f != 'README':
                shutil.copy(os.path.join(src, f),
                            os.path.join(self.dir, 'local.d', f))
        self.p = subprocess.Popen(
            ['rspamd', '-f', '-u', 'root', '-g', 'root', '-i',
             '-c', '/etc/rspamd/rspamd.conf',
             '--var=LOCAL_CONFDIR=' + self.dir,
             '--var=DBDIR=' + os.path.join(self.dir, 'db'),
             '--var=RUNDIR=' + self.dir, '--var=LOGDIR=' + self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd=self.dir, start_new_session=True)
        _wait_port('127.0.0.7', 11332, timeout=timeout)

    def stop(self):
        import signal
        # the master and its workers: the whole process group
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.p.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(('127.0.0.7', 11332), timeout=1).close()
                time.sleep(0.2)
            except OSError:
                return
        raise AssertionError('rspamd still listens after kill')


def test_milter_rspamd(world):
    r = Rspamd(world)
    try:
        p = world.sinks['primary']
        b = world.backmx(extra='milter inet:127.0.0.7:11332\n'
                               'milter_timeout 30s\n')
        # GTUBE: rejected with rspamd's text
        e = _send(b, 'gtube', extra_hdr='Message-ID: <gtube@sender.example>\r\n'
                  'From: <sender@sender.example>\r\n'
                  'To: <alice@backup.example>\r\n\r\n' + GTUBE + '\r\n')
        assert e is not None and e.smtp_code == 554, e
        assert e.smtp_error.startswith(b'5.7.1 Gtube pattern'), e.smtp_error
        b.wait_log(r'milter-reject: .*554 5\.7\.1 Gtube pattern')
        # a clean message: delivered with rspamd's X-Spam fields
        assert _send(b, 'a clean message',
                     extra_hdr='Message-ID: <clean@sender.example>\r\n'
                     'From: <sender@sender.example>\r\n'
                     'To: <alice@backup.example>\r\n'
                     'Date: Wed, 2 Dec 2026 10:00:00 +0000\r\n') is None
        msg = p.wait_messages(1, timeout=30)[0]
        head = msg['data'].partition(b'\r\n\r\n')[0]
        assert b'X-Spamd-Result:' in head or b'X-Spam-Status:' in head, head
        # rspamd killed: tempfail (the default), nothing accepted unfiltered
        r.stop()
        p.clear()
        e = _send(b, 'while rspamd is down')
        assert e is not None and e.smtp_code == 451, e
        time.sleep(1)
        assert p.messages() == [] and _queue(b) == []
    finally:
        if r.p.poll() is None:
            r.stop()


test_milter_rspamd.timeout = 400
