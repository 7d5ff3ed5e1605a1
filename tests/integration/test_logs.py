"""Logs in Postfix's formats, read by the real tools.

One scripted session mix against the real daemon (3 delivered, 1
deferred, 1 bounced with its DSN delivered, refusals from several client
addresses: unknown user, relaying denied, bare LF, ETRN not
allowed, improper pipelining), then:
- pflogsumm --syslog-name=backmx on its log reports exactly those counts;
- fail2ban-regex with contrib/fail2ban/filter.d/backmx.conf matches every
  refusal line, with the client's address, and no other line;
- the lines have Postfix's shapes (client=, message-id=, queue active,
  delays=a/b/c/d, conn_use=, removed, disconnect ... commands=N);
- under systemd (JOURNAL_STREAM naming stderr) lines carry <N> priority
  prefixes and no timestamp;
- the daemon sends READY=1 to NOTIFY_SOCKET once the banner is up.
"""
import os
import re
import smtplib
import socket
import subprocess
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
FILTER = os.path.join(ROOT, 'contrib', 'fail2ban', 'filter.d', 'backmx.conf')
MSG = 'From: a@sender.example\r\nSubject: %s\r\nMessage-ID: <%s@sender.example>\r\n\r\nbody\r\n'

_mix = {}


def _send(src, rcpt, tag, sender='sender@sender.example'):
    with smtplib.SMTP('127.0.0.3', 25, local_hostname='client.test.example',
                      source_address=(src, 0), timeout=10) as s:
        s.sendmail(sender, [rcpt], MSG % (tag, tag))


def _refused_rcpt(src, rcpt):
    with smtplib.SMTP('127.0.0.3', 25, local_hostname='bad.test.example',
                      source_address=(src, 0), timeout=10) as s:
        s.ehlo()
        s.mail('spam@sender.example')
        code, _ = s.rcpt(rcpt)
        assert code >= 500, (rcpt, code)


def _raw(src, data, wait_greeting=True):
    """A raw session from src: send data (after the greeting when
    wait_greeting), return what the server said."""
    c = socket.socket()
    c.bind((src, 0))
    c.settimeout(5)
    c.connect(('127.0.0.3', 25))
    out = b''
    try:
        if wait_greeting:
            out += c.recv(4096)
        c.sendall(data)
        time.sleep(0.3)
        while True:
            d = c.recv(4096)
            if not d:
                break
            out += d
    except (socket.timeout, ConnectionError):
        pass
    c.close()
    return out


def _dialog(src, lines):
    """One command at a time from src, each reply read; returns them all."""
    c = socket.create_connection(('127.0.0.3', 25), timeout=5, source_address=(src, 0))
    f = c.makefile('rb')
    out = [f.readline()]
    for line in lines:
        c.sendall(line)
        while True:
            r = f.readline()
            out.append(r)
            if not r or r[3:4] != b'-':
                break
    c.close()
    return b''.join(out)


def session_mix(world):
    """Run the mix once; return (log text, expected refusals by address)."""
    if _mix:
        return _mix['log'], _mix['refusals'], _mix['b']
    p = world.sinks['primary']
    st = world.sinks['static']
    p.set_mode('up')
    b = world.backmx(retry='10m', etrn_allow='127.0.0.99')
    # 3 delivered, over one connection when they queue together
    for i in range(3):
        _send('127.0.0.3', 'alice@backup.example', 'sent%d' % i)
    p.wait_messages(3, timeout=20)
    b.wait_log(r'(?s)(status=sent.*){3}', timeout=10)
    # refusals, each from its own address
    refusals = {}
    _refused_rcpt('127.0.0.21', 'nobody@backup.example')        # unknown user
    refusals['127.0.0.21'] = 1
    _refused_rcpt('127.0.0.22', 'someone@elsewhere.example')    # relaying denied
    refusals['127.0.0.22'] = 1
    out = _raw('127.0.0.24', b'EHLO x.test.example\r\nMAIL FROM:<a@sender.example>\r\n')
    assert b'554' in out, out                                    # pipelining
    refusals['127.0.0.24'] = 1       # not a "reject:" line: pflogsumm skips it
    out = _dialog('127.0.0.25', [b'EHLO x.test.example\r\n', b'ETRN backup.example\r\n',
                                 b'QUIT\r\n'])
    assert b'459' in out, out                                    # ETRN not allowed
    refusals['127.0.0.25'] = 1
    out = _dialog('127.0.0.26', [b'EHLO x.test.example\r\n', b'MAIL FROM:<a@sender.example>\r\n',
                                 b'RCPT TO:<bob@backup.example>\r\n', b'DATA\r\n',
                                 b'Subject: bare\r\n\r\nbare\nlf\r\n.\r\n', b'QUIT\r\n'])
    assert b'550 5.5.2' in out, out                              # bare LF
    refusals['127.0.0.26'] = 1
    # 1 deferred (static route answers 451)
    st.set_mode('tempfail')
    _send('127.0.0.3', 'carol@static.example', 'deferred')
    b.wait_log(r'to=<carol@static\.example>, relay=[^\n]*status=deferred', timeout=20)
    # 1 bounced (the primary says 550), its DSN delivered to the sender's MX
    p.set_mode('permfail')
    _send('127.0.0.3', 'bob@backup.example', 'bounced')
    b.wait_log(r'to=<bob@backup\.example>, relay=[^\n]*status=bounced', timeout=20)
    world.sinks['bounce'].wait_messages(1, timeout=20)
    b.wait_log(r'to=<sender@sender\.example>, relay=[^\n]*status=sent', timeout=20)
    b.wait_log(r'removed', timeout=10)
    p.set_mode('up')
    b.stop()
    _mix.update(log=b.log_text(), refusals=refusals, b=b)
    # the tests sharing this mix read the log file after the first of them
    # has passed, and a passed test's directory is removed (runner.py):
    # keep a copy of the log in the run's work directory
    _mix['path'] = os.path.join(world.workdir, 'logs-session-mix.log')
    with open(_mix['path'], 'w') as f:
        f.write(_mix['log'])
    return _mix['log'], refusals, b


def test_logs_postfix_shapes(world):
    log, _, b = session_mix(world)
    svc = r'^\S+ \S+ backmx/%s\[\d+\]: '
    qid = r'[0-9A-Fa-f]{12}: '
    for pat in (svc % 'smtpd' + r'connect from unknown\[127\.0\.0\.21\]$',
                svc % 'smtpd' + r'disconnect from unknown\[127\.0\.0\.3\] ehlo=1 mail=1 rcpt=1 data=1 commands=\d+$',
                svc % 'smtpd' + qid + r'client=unknown\[127\.0\.0\.3\]$',
                svc % 'smtpd' + qid + r'message-id=<sent0@sender\.example>$',
                svc % 'qmgr' + qid + r'from=<sender@sender\.example>, size=\d+, nrcpt=1 \(queue active\)$',
                svc % 'smtp' + qid + r'to=<alice@backup\.example>, relay=mx1\.test\.example\[127\.0\.0\.2\]:25, '
                r'(conn_use=\d+, )?delay=[\d.]+, delays=0/[\d.]+/[\d.]+/[\d.]+, dsn=2\.0\.0, status=sent \(250 ',
                svc % 'smtp' + qid + r'to=<carol@static\.example>, relay=[^,]+, delay=[\d.]+, delays=[\d./]+, '
                r'dsn=4\.\d\.\d, status=deferred \(host ',
                svc % 'smtp' + qid + r'to=<bob@backup\.example>, relay=[^,]+, delay=[\d.]+, delays=[\d./]+, '
                r'dsn=5\.1\.1, status=bounced \(host ',
                svc % 'bounce' + qid + r'sender non-delivery notification: [0-9A-Fa-f]{12}$',
                svc % 'qmgr' + qid + r'removed$',
                svc % 'smtpd' + r'NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.21\]: 550 5\.1\.1 [^;]*; '
                r'from=<spam@sender\.example> to=<nobody@backup\.example> proto=ESMTP helo=<bad\.test\.example>$'):
        assert re.search(pat, log, re.M), 'no line matching %r in:\n%s' % (pat, log[-4000:])
    # the timestamp: RFC 3339 with milliseconds, then the host
    # (the harness's own "--- harness: starting PATH" lines are not the
    # daemon's, and PATH may contain "backmx/": a checkout named backmx)
    first = [l for l in log.splitlines()
             if not l.startswith('--- ') and ' backmx/' in l][0]
    assert re.match(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d \S+ backmx/', first), first


def _pflogsumm(path):
    r = subprocess.run(['pflogsumm', '--syslog-name=backmx', path],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    counts = {}
    for key in ('received', 'delivered', 'deferred', 'bounced', 'rejected'):
        m = re.search(r'^\s*(\d+)\s+%s\b' % key, r.stdout, re.M)
        assert m, 'no %s in pflogsumm output:\n%s' % (key, r.stdout[:3000])
        counts[key] = int(m.group(1))
    return counts, r.stdout


def test_logs_pflogsumm(world):
    log, refusals, b = session_mix(world)
    counts, out = _pflogsumm(_mix['path'])
    # received: 3 sent + 1 deferred + 1 bounced (the DSN is ours, not received);
    # delivered: 3 + the DSN; rejected: the refusals
    want = {'received': 5, 'delivered': 4, 'deferred': 1, 'bounced': 1,
            'rejected': sum(refusals.values()) - 1}   # all but the pipelining
    assert counts == want, '%r != %r\n%s' % (counts, want, out[:3000])


def test_logs_fail2ban(world):
    log, refusals, b = session_mix(world)
    assert os.path.exists(FILTER), FILTER
    r = subprocess.run(['fail2ban-regex', '--raw', '-o', 'row', _mix['path'], FILTER],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    hits = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^\[?'?(\d+\.\d+\.\d+\.\d+)'?,", line.strip().lstrip('['))
        if m:
            hits[m.group(1)] = hits.get(m.group(1), 0) + 1
    assert hits == refusals, 'fail2ban matched %r, refusals were %r\n%s' % (
        hits, refusals, r.stdout[:3000])
    # every refusal line is matched, nothing else: the lines the filter
    # should see are exactly those with "reject:" or "pipelining"
    wanted = [l for l in log.splitlines()
              if re.search(r'backmx/smtpd\[\d+\]: .*(: (?:milter-)?reject: |improper command pipelining)', l)]
    assert len(wanted) == sum(refusals.values()), wanted


def _with_env(env, fn):
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return fn()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_logs_journal_stream_priorities(world):
    """Under systemd (JOURNAL_STREAM names stderr, no journal socket here):
    sd-daemon <N> priority prefixes, no timestamp, the service name."""
    b = world.backmx(max_clients=1)
    b.stop()
    st = os.stat(b.log_path)
    start_at = len(b.log_text())
    _with_env({'JOURNAL_STREAM': '%d:%d' % (st.st_dev, st.st_ino)}, b.start)
    with smtplib.SMTP('127.0.0.3', 25, local_hostname='j.test.example', timeout=10) as s:
        s.ehlo()
        s.mail('a@sender.example')
        code, _ = s.rcpt('nobody@backup.example')
        assert code == 550, code
    b.wait_log(r'<6>backmx/smtpd\[\d+\]: NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.\d+\]', timeout=10)
    b.stop()
    text = b.log_text()[start_at:]
    lines = [l for l in text.splitlines() if l and not l.startswith('---')]
    assert lines, text
    for l in lines:
        assert re.match(r'^<[0-7]>backmx/[a-z]+\[\d+\]: ', l), 'not a journal stream line: %r' % l
    # warnings at 4 (the config's recipients * warnings), info at 6
    assert any(l.startswith('<4>backmx/master[') and 'warning: ' in l for l in lines), lines
    assert any(l.startswith('<6>backmx/smtpd[') and 'connect from' in l for l in lines), lines


def test_notify_ready_after_banner(world):
    """Type=notify: READY=1 reaches NOTIFY_SOCKET once the banner is up,
    with a STATUS= naming the queue; STOPPING=1 at SIGTERM."""
    d = world.workdir if hasattr(world, 'workdir') else '/tmp'
    path = os.path.join(d, 'notify-%d.sock' % os.getpid())
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(path)
    srv.settimeout(20)
    try:
        b = world.backmx()
        b.stop()
        _with_env({'NOTIFY_SOCKET': path}, lambda: b.start(wait=False))
        got = []
        while not any(m.startswith('READY=1') for m in got):
            got.append(srv.recv(4096).decode())
        # READY came after the listener was bound: the banner is there now
        with socket.create_connection(('127.0.0.3', 25), timeout=5) as c:
            assert c.recv(512).startswith(b'220 '), 'no banner after READY=1'
        msgs = '\n'.join(got)
        srv.settimeout(5)
        while 'STATUS=' not in msgs:
            msgs += '\n' + srv.recv(4096).decode()
        assert re.search(r'STATUS=\d+ message\(s\) queued', msgs), msgs
        b.stop()
        srv.settimeout(5)
        rest = ''
        while 'STOPPING=1' not in rest:
            rest += srv.recv(4096).decode()
    finally:
        srv.close()
        os.unlink(path)
