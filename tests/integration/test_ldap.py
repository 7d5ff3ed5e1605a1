"""The ldap:FILE recipient source against a real slapd (ldap_server.py):
dave is in the directory, not in any file; slapd stopped: verify_down."""
import os
import socket
import threading

from ldap_server import Slapd
from primary import Primary


def test_ldap_found_no_callout_then_down(world):
    d = os.path.join(world.workdir, 'slapd')
    slapd = Slapd(d)
    slapd.start()
    p = Primary('127.0.0.9', users=('bob',))
    try:
        b = world.backmx(start=False, retry='1h', domains=(
            'domain ldap.example {\n recipients ldap:%(dir)s/x.ldap callout'
            '\n route [127.0.0.9]:25\n}\n'))
        with open(os.path.join(b.dir, 'x.ldap'), 'w') as f:
            f.write('server_host = ldap://127.0.0.10:389\n'
                    'search_base = ou=people,dc=example,dc=org\n'
                    'query_filter = (mail=%s)\ntimeout = 2s\n')
        b.start()
        s = b.smtp()
        s.mail('s@sender.example')
        assert s.rcpt('dave@ldap.example')[0] == 250
        # metacharacters are escaped: no match, then the callout says no
        code, _ = s.rcpt('*@ldap.example')
        assert code == 550, code
        assert s.rcpt('bob@ldap.example')[0] == 250    # callout
        s.quit()
        assert '<dave@ldap.example>' not in p.rcpts(), p.rcpts()
        assert '<bob@ldap.example>' in p.rcpts()
        slapd.stop()
        p.set_mode('down')
        s = b.smtp()
        s.mail('s@sender.example')
        code, msg = s.rcpt('erin@ldap.example')
        assert code == 450 and b'4.4.3' in msg, (code, msg)
        s.quit()
    finally:
        slapd.stop()
        p.close()


def _ldap_file(b, name, extra, query='(uid=%u)', host='127.0.0.10'):
    path = os.path.join(b.dir, name)
    with open(path, 'w') as f:
        f.write('server_host = ldap://%s:389\n'
                'search_base = ou=people,dc=example,dc=org\n'
                'query_filter = %s\ntimeout = 3s\n%s' % (host, query, extra))
    return path


def test_ldap_start_tls_and_bind(world):
    """slapd wants TLS for everything but StartTLS, and only the bind DN
    may read: start_tls + bind_dn/bind_pw finds dave; without StartTLS, with
    a wrong password or without the test CA it is unknown (450); an
    anonymous search sees nothing (550)."""
    from ldap_server import BIND_DN, BIND_PW
    certs = world.certs
    slapd = Slapd(os.path.join(world.workdir, 'slapd-tls'), certs=certs,
                  require_tls=True, require_bind=True)
    slapd.start()
    try:
        kinds = ('tls', 'notls', 'badpw', 'anon', 'noca')
        b = world.backmx(start=False, domains=''.join(
            'domain %s.example {\n recipients ldap:%%(dir)s/%s.ldap\n}\n'
            % (k, k) for k in kinds))
        pw = os.path.join(b.dir, 'bind.pw')
        bad = os.path.join(b.dir, 'bad.pw')
        for path, text in ((pw, BIND_PW), (bad, 'wrong')):
            with open(path, 'w') as f:
                f.write(text + '\n')
            os.chmod(path, 0o600)
        ca = 'tls_ca_cert_file = %s/ca.pem\n' % certs
        bind = 'bind_dn = %s\nbind_pw = %s\n' % (BIND_DN, pw)
        _ldap_file(b, 'tls.ldap', 'start_tls = yes\n' + ca + bind)
        _ldap_file(b, 'notls.ldap', bind)
        _ldap_file(b, 'badpw.ldap', 'start_tls = yes\n' + ca +
                   'bind_dn = %s\nbind_pw = %s\n' % (BIND_DN, bad))
        _ldap_file(b, 'anon.ldap', 'start_tls = yes\n' + ca)
        _ldap_file(b, 'noca.ldap', 'start_tls = yes\n' + bind)
        b.start()
        s = b.smtp()
        s.mail('s@sender.example')
        code, msg = s.rcpt('dave@tls.example')
        assert code == 250, (code, msg)
        code, msg = s.rcpt('nobody@tls.example')
        assert code == 550 and b'5.1.1' in msg, (code, msg)
        for k in ('notls', 'badpw', 'noca'):
            code, msg = s.rcpt('dave@%s.example' % k)
            assert code == 450 and b'4.4.3' in msg, (k, code, msg)
        code, msg = s.rcpt('dave@anon.example')
        assert code == 550, (code, msg)
        s.quit()
        log = b.log_text()
        assert 'Confidentiality required' in log, b.log_tail()
        assert 'Invalid credentials' in log, b.log_tail()
        assert BIND_PW not in log
        assert 'TLS: Connect error' in log, b.log_tail()   # noca
    finally:
        slapd.stop()


def test_ldap_bind_pw_file_mode_checked(world):
    import subprocess
    b = world.backmx(start=False, domains=(
        'domain pw.example {\n recipients ldap:%(dir)s/pw.ldap\n}\n'))
    pw = os.path.join(b.dir, 'bind.pw')
    with open(pw, 'w') as f:
        f.write('secret\n')
    _ldap_file(b, 'pw.ldap', 'bind_dn = cn=x\nbind_pw = %s\n' % pw)

    def check():
        r = subprocess.run([world.backmxd, '-t', '-c', b.conf_path],
                           capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout + r.stderr
    os.chmod(pw, 0o644)
    rc, out = check()
    assert rc != 0 and 'readable by others' in out, out
    os.chmod(pw, 0o640)
    rc, out = check()
    assert rc == 0, out
    os.chown(pw, 65534, 65534)      # nobody: neither root nor backmx
    rc, out = check()
    assert rc != 0 and 'owned by root or the backmx user' in out, out


def _read_lines(sock, n):
    """n reply lines, read byte by byte (nothing read ahead)."""
    lines, cur = [], b''
    while len(lines) < n:
        c = sock.recv(1)
        if not c:
            break
        cur += c
        if cur.endswith(b'\n'):
            lines.append(cur)
            cur = b''
    return lines


def test_ldap_silent_server_does_not_stall_the_loop(world):
    """A directory that accepts TCP but never answers (with StartTLS, which
    libldap would wait for forever on the loop): the RCPT waits for the
    timeout and gets 450, while another session runs to its end first."""
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(('127.0.0.11', 389))
    lsock.listen(16)
    held = []

    def hold():
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            held.append(c)      # never a byte back
    threading.Thread(target=hold, daemon=True).start()
    try:
        b = world.backmx(start=False, domains=(
            'domain silent.example {\n recipients ldap:%(dir)s/s.ldap\n}\n'
            'domain plain.example {\n recipients ldap:%(dir)s/p.ldap\n}\n'
            'domain files.example {\n recipients %(dir)s/f.rcpts\n'
            ' route [127.0.0.5]:25\n}\n'))
        _ldap_file(b, 's.ldap', 'start_tls = yes\n', host='127.0.0.11')
        _ldap_file(b, 'p.ldap', '', host='127.0.0.11')
        with open(os.path.join(b.dir, 'f.rcpts'), 'w') as f:
            f.write('fred\n')
        b.start()
        for dom in ('silent', 'plain'):
            a = socket.create_connection(('127.0.0.3', 25), 30)
            assert _read_lines(a, 1)[0][:3] == b'220'
            a.sendall(b'EHLO a.example\r\n')
            while not _read_lines(a, 1)[0].startswith(b'250 '):
                pass
            a.sendall(b'MAIL FROM:<s@sender.example>\r\n'
                      b'RCPT TO:<x@%s.example>\r\n' % dom.encode())
            assert _read_lines(a, 1)[0][:3] == b'250'   # MAIL
            # the RCPT waits for the directory; meanwhile a whole session
            s = b.smtp()
            s.mail('s@sender.example')
            assert s.rcpt('fred@files.example')[0] == 250
            s.rset()
            s.quit()
            a.setblocking(False)
            try:
                early = a.recv(100)
            except BlockingIOError:
                early = b''
            assert early == b'', (dom, early)    # still waiting
            a.setblocking(True)
            a.settimeout(30)
            line = _read_lines(a, 1)[0]
            assert line.startswith(b'450') and b'4.4.3' in line, (dom, line)
            a.close()
            b.stop()            # a fresh connection (and retry) each round
            b.start()
    finally:
        lsock.close()
        for c in held:
            c.close()


def _reload(b, regex):
    import re
    import signal
    before = len(re.findall(regex, b.log_text()))
    os.kill(b.pid, signal.SIGHUP)
    import time
    deadline = time.monotonic() + 10
    while len(re.findall(regex, b.log_text())) == before:
        assert time.monotonic() < deadline, \
            'no log line %r after SIGHUP:\n%s' % (regex, b.log_tail())
        time.sleep(0.1)


def test_ldap_reload_rereads_the_file(world):
    """SIGHUP reads an ldap:FILE again: a changed definition answers at
    once (not from the old one's cache), the open session survives; a
    file cut short (keys missing, a filter cut mid-line) or a recipients
    file with a bad line refuses the reload, logged with FILE:LINE, and
    the running definition keeps answering (fresh addresses each time, so
    the directory is asked, not the cache)."""
    slapd = Slapd(os.path.join(world.workdir, 'slapd-reload'),
                  people=('dave', 'erin', 'frank', 'gina', 'hank', 'ivan'))
    slapd.start()
    try:
        b = world.backmx(start=False, domains=(
            'domain ldap.example {\n recipients %(dir)s/l.rcpts '
            'ldap:%(dir)s/x.ldap\n}\n'))
        rcpts = os.path.join(b.dir, 'l.rcpts')
        with open(rcpts, 'w') as f:
            f.write('zed\n')
        nobody = '(&(uid=%u)(sn=nobody))'
        path = _ldap_file(b, 'x.ldap', '', query=nobody)
        b.start()
        s = b.smtp()
        s.mail('s@sender.example')
        code, msg = s.rcpt('erin@ldap.example')
        assert code == 550 and b'5.1.1' in msg, (code, msg)    # cached no
        good = open(path).read().replace(nobody, '(uid=%u)')
        with open(path, 'w') as f:
            f.write(good)
        _reload(b, r'master\[\d+\]: reloaded /')
        assert 'x.ldap changed: ldap://127.0.0.10:389' in b.log_text(), \
            b.log_tail()
        code, msg = s.rcpt('erin@ldap.example')
        assert code == 250, ('changed ldap:FILE not used', code, msg)
        s.rset()
        # backmxctl verify: the cached LDAP answer of the new definition
        r = b.ctl('verify', 'erin@ldap.example')
        assert r.returncode == 0, r.stdout + r.stderr
        assert 'cache ldap: valid, 250 found in LDAP' in r.stdout, r.stdout
        assert 'verdict: 250' in r.stdout, r.stdout
        refused = r'error: reload: .*keeping the running configuration'
        cuts = [('keys missing', good[:good.index('search_base')],
                 'x.ldap:0: server_host, search_base and query_filter '
                 'are required', 'frank'),
                ('filter cut mid-line',
                 good[:good.index('(uid=%u)') + 5],
                 'x.ldap:3: query_filter: expected one filter', 'gina'),
                ('empty', '', 'x.ldap:0: server_host', 'hank')]
        for name, text, why, who in cuts:
            with open(path, 'w') as f:
                f.write(text)
            _reload(b, refused)
            assert why in b.log_text(), (name, b.log_tail())
            s.mail('s@sender.example')
            code, msg = s.rcpt('%s@ldap.example' % who)
            assert code == 250, (name, 'old definition lost', code, msg)
            assert s.rcpt('zed@ldap.example')[0] == 250
            s.rset()
        # a recipients file with a bad line: refused too, the old list kept
        with open(path, 'w') as f:
            f.write(good)
        with open(rcpts, 'w') as f:
            f.write('yan\nbad entry\n')
        _reload(b, refused)
        assert 'l.rcpts:2: blank inside entry' in b.log_text(), b.log_tail()
        s.mail('s@sender.example')
        assert s.rcpt('zed@ldap.example')[0] == 250
        code, msg = s.rcpt('yan@ldap.example')
        assert code == 550, ('half-read recipients file used', code, msg)
        s.quit()
        assert b.running()
    finally:
        slapd.stop()


def test_reload_refuses_an_emptied_recipients_file(world):
    """A recipients file that lists nobody after a reload, where it listed
    someone before (cut short to nothing by a failed copy), would turn
    every address into 550: SIGHUP refuses it, logged, and the old list
    answers; `backmxctl reload --force` takes it; -t warns."""
    import subprocess
    b = world.backmx()
    rcpts = os.path.join(b.dir, 'backup.rcpts')
    before = open(rcpts).read()
    assert before.strip(), 'the default recipients file is empty'
    first = before.split()[0]
    open(rcpts, 'w').close()
    _reload(b, r'error: reload: domain backup.example: its recipients '
               r'file\(s\) .*now list nobody, \d+ entries before')
    s = b.smtp()
    s.mail('x@sender.example')
    code, msg = s.rcpt('%s@backup.example' % first)
    assert code == 250, ('emptied list taken by SIGHUP', code, msg)
    s.quit()
    r = subprocess.run([world.backmxd, '-t', '-c', b.conf_path],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and 'backup.rcpts lists nobody' in r.stderr, \
        (r.returncode, r.stderr)
    r = b.ctl('reload', '--force')
    assert r.returncode == 0, r.stdout + r.stderr
    s = b.smtp()
    s.mail('x@sender.example')
    code, msg = s.rcpt('%s@backup.example' % first)
    assert code == 550, ('reload --force did not take the empty list',
                         code, msg)
    s.quit()
