"""Faults an operator meets (issue 21, issue 22 section 7), on the real daemon.

  half-written config   a truncated file, an empty file and a syntax error
                        half way are each refused on SIGHUP (logged at err)
                        and mail is still accepted; -t and start refuse a
                        file without domain blocks.
  dropping a domain     a reload that drops a domain with queued mail is
                        refused (SIGHUP and `backmxctl reload`) unless
                        `backmxctl reload --force`; dropping an idle one works.
  reload + SIGTERM      after reloads the daemon exits 0 and removes its
                        pidfile, with no sanitizer report (the ASan build
                        build/asan/backmxd is used when it was built).
  small disk            a fresh spool on a 20 MB tmpfs: a clear "disk full"
                        exit naming spool_cache, never a signal; with
                        spool_cache 2M it starts and accepts mail.
  full disk at restart  too little space: "disk full", exit 1, the region
                        files kept; with space back it starts with every
                        queued message.
  damaged log           the live log cut short before a kill -9: the restart
                        says so at err, stats shows it until ack-spool.
  BDAT 2^64-1           552 5.3.4 at once and the connection closed; a chunk
                        over max_size but readable: 552 at once, the chunk
                        read into nowhere, the session still in sync.
"""
import glob
import os
import re
import signal
import socket
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


from diskfill import mount_tmpfs as _mount_tmpfs, umount as _umount, \
    free as _free, fill as _fill


def _accepts(b, rcpt='alice@backup.example'):
    s = b.smtp()
    try:
        code, _ = s.mail('x@sender.example')
        assert code == 250
        code, msg = s.rcpt(rcpt)
        return code, msg
    finally:
        try:
            s.quit()
        except Exception:
            pass


def _send(b, tag, rcpt='alice@backup.example'):
    s = b.smtp()
    try:
        s.sendmail('x@sender.example', [rcpt],
                   'From: x@sender.example\r\nSubject: %s\r\n\r\nbody %s\r\n'
                   % (tag, tag))
    finally:
        try:
            s.quit()
        except Exception:
            pass


def _nqueued(b):
    r = b.ctl('queue', '--json')
    assert r.returncode == 0, r.stderr
    return len([ln for ln in r.stdout.splitlines() if ln.strip().startswith('{')])


def _count(b, regex):
    return len(re.findall(regex, b.log_text()))


# ------------------------------------------------------------------ config

def test_faults_reload_half_written(world):
    b = world.backmx()
    good = open(b.conf_path).read()
    # cut after the global lines, as an editor or a deploy tool can leave it
    cut = good[:good.index('domain ')]
    mid = good.index('domain static.example')
    variants = [('truncated', cut),
                ('empty', ''),
                ('syntax error half way',
                 good[:mid] + 'domain broken.example {\n recipients\n' + good[mid:])]
    for name, text in variants:
        before = _count(b, r'error: reload: .*keeping the running configuration')
        with open(b.conf_path, 'w') as f:
            f.write(text)
        os.kill(b.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while _count(b, r'error: reload: .*keeping the running configuration') == before:
            assert time.monotonic() < deadline, \
                '%s config: no err-level refusal logged:\n%s' % (name, b.log_tail())
            time.sleep(0.1)
        code, msg = _accepts(b)
        assert code == 250, '%s config loaded on SIGHUP: RCPT got %d %r' % (name, code, msg)
    assert 'no domain blocks' in b.log_text()
    # -t and a start refuse the truncated file too
    with open(b.conf_path, 'w') as f:
        f.write(cut)
    p = subprocess.run([b.backmxd, '-t', '-c', b.conf_path], capture_output=True,
                       text=True, timeout=20)
    assert p.returncode == 1 and 'no domain blocks' in p.stderr, (p.returncode, p.stderr)
    with open(b.conf_path, 'w') as f:
        f.write(good)
    os.kill(b.pid, signal.SIGHUP)
    b.wait_log(r'reloaded .*: 6 domain', timeout=10)


def test_faults_reload_drop_queued_domain(world):
    p = world.sinks['primary']
    p.set_mode('down')
    b = world.backmx(retry='1h')
    _send(b, 'q1')
    assert _nqueued(b) == 1
    good = open(b.conf_path).read()
    # drop backup.example (one message queued) and nullmx.example (idle)
    dropped = re.sub(r'domain backup\.example \{[^}]*\}\n?', '', good)
    dropped = re.sub(r'domain nullmx\.example \{[^}]*\}\n?', '', dropped)
    with open(b.conf_path, 'w') as f:
        f.write(dropped)
    os.kill(b.pid, signal.SIGHUP)
    b.wait_log(r'error: reload: .*drops 2 domain\(s\) and 1 queued message\(s\).*backup\.example',
               timeout=10)
    code, msg = _accepts(b)
    assert code == 250, 'domain with queued mail dropped by SIGHUP: %d %r' % (code, msg)
    r = b.ctl('reload')
    assert r.returncode == 1 and '--force' in r.stderr, (r.returncode, r.stdout, r.stderr)
    code, _ = _accepts(b)
    assert code == 250
    r = b.ctl('reload', '--force')
    assert r.returncode == 0 and 'reloaded' in r.stdout, (r.returncode, r.stdout, r.stderr)
    code, msg = _accepts(b)
    assert code == 550, 'dropped domain still served after --force: %d %r' % (code, msg)
    assert _nqueued(b) == 1, 'queued mail lost by a forced reload'
    # a domain without queued mail may go without --force
    with open(b.conf_path, 'w') as f:
        f.write(re.sub(r'domain aonly\.example \{[^}]*\}\n?', '', dropped))
    r = b.ctl('reload')
    assert r.returncode == 0, r.stderr
    code, _ = _accepts(b, 'x@aonly.example')
    assert code == 550
    # the queued message waits (deferred) until its domain comes back
    p.set_mode('up')
    b.ctl('flush')
    b.wait_log(r'no longer configured here', timeout=10)
    assert _nqueued(b) == 1 and not p.messages()
    with open(b.conf_path, 'w') as f:
        f.write(good)
    r = b.ctl('reload')
    assert r.returncode == 0, r.stderr
    b.ctl('flush')
    p.wait_messages(1, timeout=20)


def test_faults_reload_then_sigterm(world):
    asan = os.path.join(world.build, 'asan', 'backmxd')
    b = world.backmx(start=False)
    if os.access(asan, os.X_OK):
        b.backmxd = asan
    b.start(timeout=30)
    pidfile = os.path.join(b.dir, 'backmxd.pid')
    assert os.path.exists(pidfile)
    for i in range(2):
        os.kill(b.pid, signal.SIGHUP)
        deadline = time.monotonic() + 15
        while _count(b, r'reloaded ') < i + 1:
            assert time.monotonic() < deadline, b.log_tail()
            time.sleep(0.1)
    code, _ = _accepts(b)
    assert code == 250
    rc = b.stop()
    assert rc == 0, 'exit status %s after reload + SIGTERM:\n%s' % (rc, b.log_tail())
    assert not os.path.exists(pidfile), 'pidfile left behind after a reload'
    assert not re.search(r'ERROR: (Address|Leak)Sanitizer|runtime error:', b.log_text()), \
        b.log_tail()


# ------------------------------------------------------------------ disk

def test_faults_small_disk_start(world):
    fs = os.path.join(world.workdir, 'tmpfs-small')
    _mount_tmpfs(fs, '20m')
    try:
        b = world.backmx(start=False, spool=os.path.join(fs, 'spool'))
        try:
            b.start(timeout=20)
            raise AssertionError('backmxd started with a 64M cache on a 20M disk')
        except AssertionError as e:
            if 'started with' in str(e):
                raise
        rc = b.proc.returncode
        assert rc == 1, 'exit status %s (a signal death is negative)' % rc
        log = b.log_text()
        assert re.search(r'disk full: .*needs about \d+ MB.*spool_cache', log), log[-2000:]
        b.write_config(spool=os.path.join(fs, 'spool'), spool_cache='2M')
        b.start(timeout=20)
        _send(b, 'small-disk')
        world.sinks['primary'].wait_messages(1, timeout=20)
    finally:
        for inst in world.instances:
            if inst.running():
                inst.stop()
        _umount(fs)


def test_faults_full_disk_restart(world):
    p = world.sinks['primary']
    p.set_mode('down')
    fs = os.path.join(world.workdir, 'tmpfs-restart')
    _mount_tmpfs(fs, '96m')
    try:
        spool = os.path.join(fs, 'spool')
        b = world.backmx(spool=spool, spool_cache='8M', retry='1h')
        for i in range(10):
            _send(b, 'rs-%d' % i)
        b.kill9()
        regions = sorted(glob.glob(os.path.join(spool, '__db.0*')))
        assert regions
        filler = os.path.join(fs, 'filler')
        _fill(filler, 1 << 20)
        try:
            b.start(timeout=20)
            raise AssertionError('backmxd started on a full disk')
        except AssertionError as e:
            if 'started on' in str(e):
                raise
        assert b.proc.returncode == 1, b.proc.returncode
        assert re.search(r'disk full', b.log_text()), b.log_tail()
        assert 'DB_RUNRECOVERY' not in b.log_text().split('starting')[-1]
        assert sorted(glob.glob(os.path.join(spool, '__db.0*'))) == regions, \
            'region files removed by a refused start'
        os.unlink(filler)
        b.start(timeout=20)
        assert _nqueued(b) == 10, 'queued mail lost over a full-disk restart'
    finally:
        for inst in world.instances:
            if inst.running():
                inst.stop()
        _umount(fs)


def test_faults_damaged_log(world):
    p = world.sinks['primary']
    p.set_mode('down')
    b = world.backmx(retry='1h')
    for i in range(20):
        _send(b, 'dl-%d' % i)
    time.sleep(1.1)
    _send(b, 'dl-last')     # a group commit a second later records the log end
    state = open(os.path.join(b.spool_dir, 'backmxd.state')).read()
    m = re.search(r'lsn (\d+) (\d+)', state)
    assert m, state
    b.kill9()
    logf = os.path.join(b.spool_dir, 'log.%010d' % int(m.group(1)))
    with open(logf, 'r+b') as f:
        f.truncate(int(m.group(2)) // 2)
    b.start(timeout=20)
    m = b.wait_log(r'error: spool .*damaged or truncated.*lost \((\d+) message\(s\) queued '
                   r'then, (\d+) now', timeout=10)
    assert int(m.group(1)) == 21, m.group(0)
    r = b.ctl('stats')
    assert r.returncode == 0 and 'spool_damage' in r.stdout, r.stdout
    # survives a restart until acknowledged
    b.stop()
    b.start(timeout=20)
    assert 'spool_damage' in b.ctl('stats').stdout
    r = b.ctl('ack-spool')
    assert r.returncode == 0 and 'acknowledged' in r.stdout, (r.stdout, r.stderr)
    assert 'spool_damage' not in b.ctl('stats').stdout
    b.stop()
    n = _count(b, r'damaged or truncated')
    b.start(timeout=20)
    time.sleep(0.5)
    assert _count(b, r'damaged or truncated') == n, 'damage reported again after ack'
    _send(b, 'after')


# ------------------------------------------------------------------ BDAT

def _raw(b):
    host, port = b.listen[0]
    c = socket.create_connection((host, port), timeout=10)
    f = c.makefile('rb')

    def reply():
        lines = []
        while True:
            ln = f.readline()
            if not ln:
                return None
            lines.append(ln)
            if ln[3:4] != b'-':
                return b''.join(lines).decode()
    assert reply().startswith('220')
    c.sendall(b'EHLO client.test.example\r\n')
    assert reply().startswith('250')
    return c, reply


def test_faults_bdat_huge(world):
    b = world.backmx(max_size='1M')
    c, reply = _raw(b)
    c.sendall(b'MAIL FROM:<x@sender.example>\r\n')
    assert reply().startswith('250')
    c.sendall(b'RCPT TO:<alice@backup.example>\r\n')
    assert reply().startswith('250')
    t0 = time.monotonic()
    c.sendall(b'BDAT 18446744073709551615 LAST\r\n')
    r = reply()
    assert r is not None and r.startswith('552 5.3.4'), r
    assert time.monotonic() - t0 < 3
    # the announced octets can never be read through: the session ends
    try:
        c.sendall(b'x' * 65536)
    except OSError:
        pass
    c.settimeout(5)
    assert reply() is None, 'session still open after an unreadable chunk'
    c.close()

    # over max_size but readable: 552 now, the chunk is skipped, in sync
    c, reply = _raw(b)
    c.sendall(b'MAIL FROM:<x@sender.example>\r\nRCPT TO:<alice@backup.example>\r\n')
    assert reply().startswith('250') and reply().startswith('250')
    c.sendall(b'BDAT 1000000\r\n' + b'z' * 1000000)
    assert reply().startswith('250')
    c.sendall(b'BDAT 500000 LAST\r\n')
    r = reply()
    assert r.startswith('552 5.3.4'), r
    c.sendall(b'y' * 500000)
    c.sendall(b'NOOP\r\n')
    r = reply()
    assert r.startswith('250'), 'out of sync after a refused chunk: %r' % r
    c.sendall(b'BDAT 4 LAST\r\nabcd')
    assert reply().startswith('503'), 'the refused transaction went on'
    c.sendall(b'QUIT\r\n')
    assert reply().startswith('221')
    c.close()
    assert _nqueued(b) == 0
    assert b.running()


# ------------------------------------------------------------------ backmxd -t

def _t(b):
    p = subprocess.run([b.backmxd, '-t', '-c', b.conf_path], capture_output=True,
                       text=True, timeout=30)
    return p.returncode, p.stderr


def _expired_cert(d):
    """A self-signed certificate valid only on 1 January 2020."""
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, 'index.txt'), 'w').close()
    with open(os.path.join(d, 'serial'), 'w') as f:
        f.write('01\n')
    with open(os.path.join(d, 'ca.cnf'), 'w') as f:
        f.write('[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\n'
                'serial=serial\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n')
    for cmd in (['openssl', 'req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'k.pem',
                 '-out', 'r.csr', '-subj', '/CN=old.test.example'],
                ['openssl', 'ca', '-batch', '-config', 'ca.cnf', '-selfsign', '-keyfile',
                 'k.pem', '-in', 'r.csr', '-out', 'c.pem', '-startdate', '20200101000000Z',
                 '-enddate', '20200102000000Z']):
        r = subprocess.run(cmd, cwd=d, capture_output=True, text=True)
        assert r.returncode == 0, '%s: %s' % (cmd[1], r.stderr)
    return os.path.join(d, 'c.pem'), os.path.join(d, 'k.pem')


def test_faults_t_tls_checks(world):
    certs = world.certs
    b = world.backmx(start=False, tls_cert=os.path.join(certs, 'mx2.pem'),
                     tls_key=os.path.join(certs, 'mx2.key'))
    rc, err = _t(b)
    assert rc == 0, err
    # a key of another certificate
    b.write_config(tls_cert=os.path.join(certs, 'mx2.pem'),
                   tls_key=os.path.join(certs, 'wrong.key'))
    rc, err = _t(b)
    assert rc == 1 and 'does not match the certificate' in err, (rc, err)
    # an expired certificate
    cert, key = _expired_cert(os.path.join(b.dir, 'old'))
    b.write_config(tls_cert=cert, tls_key=key)
    rc, err = _t(b)
    assert rc == 1 and 'has expired' in err, (rc, err)
    # not a certificate at all
    b.write_config(tls_cert=os.path.join(b.dir, 'backup.rcpts'), tls_key=key)
    rc, err = _t(b)
    assert rc == 1 and 'no PEM certificate' in err, (rc, err)


def test_faults_t_user_access(world):
    b = world.backmx(start=False, user='nobody')
    # the run's work directories are 0700: open the way down to b.dir
    # for `nobody` for this test only
    opened = []
    d = b.dir
    while d not in ('/', '/tmp'):
        mode = os.stat(d).st_mode & 0o7777
        if not mode & 0o001:
            os.chmod(d, mode | 0o011)
            opened.append((d, mode))
        d = os.path.dirname(d)
    try:
        _t_user_access(b)
    finally:
        for d, mode in opened:
            os.chmod(d, mode)


def _t_user_access(b):
    rc, err = _t(b)
    assert rc == 0, err
    # a recipient file only root can read: the daemon (as nobody) could not
    # re-read it on SIGHUP
    rcpts = os.path.join(b.dir, 'backup.rcpts')
    os.chmod(rcpts, 0o600)
    rc, err = _t(b)
    assert rc == 1 and re.search(r'recipients .*backup\.rcpts is not readable by user nobody',
                                 err), (rc, err)
    os.chmod(rcpts, 0o644)
    # a spool file left by a run as root
    junk = os.path.join(b.spool_dir, 'log.0000000001')
    with open(junk, 'w') as f:
        f.write('x')
    os.chmod(junk, 0o600)
    rc, err = _t(b)
    assert rc == 1 and 'not writable by user nobody' in err and 'chown -R nobody' in err, \
        (rc, err)
    os.unlink(junk)
    # the spool below a directory nobody cannot enter
    inner = os.path.join(b.dir, 'closed')
    os.makedirs(inner, mode=0o700)
    b.write_config(user='nobody', spool=os.path.join(inner, 'spool'))
    rc, err = _t(b)
    assert rc == 1 and 'not searchable by user nobody' in err, (rc, err)


# ------------------------------------------------------------------ stats

def _stat(b, name):
    r = b.ctl('stats')
    assert r.returncode == 0, r.stderr
    m = re.search(r'^%s\s+(\d+)' % name, r.stdout, re.M)
    assert m, r.stdout
    return int(m.group(1))


def test_faults_stats_after_disk_full(world):
    """issue 21.6: stats spool_messages equals the queue after refusals."""
    p = world.sinks['primary']
    p.set_mode('down')
    fs = os.path.join(world.workdir, 'tmpfs-stats')
    _mount_tmpfs(fs, '64m')
    try:
        b = world.backmx(spool=os.path.join(fs, 'spool'), spool_cache='2M', retry='1h')
        filler = os.path.join(fs, 'filler')
        _fill(filler, 2 << 20)
        codes = []
        body = ('x' * 70 + '\r\n') * 850
        for i in range(60):
            s = b.smtp()
            try:
                s.mail('x@sender.example')
                s.rcpt('alice@backup.example')
                code, _ = s.data('From: x@sender.example\r\nSubject: sf-%d\r\n\r\n%s' % (i, body))
            except Exception:
                code = -1
            finally:
                try:
                    s.quit()
                except Exception:
                    pass
            codes.append(code)
            if len([c for c in codes if c != 250]) >= 5:
                break
        assert 250 in codes and any(c in (451, 452) for c in codes), codes
        os.unlink(filler)
        _send(b, 'sf-after')
        queued = _nqueued(b)
        stated = _stat(b, 'spool_messages')
        print('disk full: %d accepted, %d refused; queue %d, stats %d'
              % (codes.count(250), len(codes) - codes.count(250), queued, stated))
        assert stated == queued, 'stats says %d queued, the queue holds %d' % (stated, queued)
        assert queued >= codes.count(250) + 1, 'acknowledged mail missing'
    finally:
        for inst in world.instances:
            if inst.running():
                inst.stop()
        _umount(fs)


# ------------------------------------------------------------------ kept

def test_faults_deleted_regions(world):
    """kill -9, then the __db.* region files removed: nothing lost."""
    p = world.sinks['primary']
    p.set_mode('down')
    b = world.backmx(retry='1h')
    for i in range(5):
        _send(b, 'dr-%d' % i)
    b.kill9()
    regions = glob.glob(os.path.join(b.spool_dir, '__db.*'))
    assert regions
    for f in regions:
        os.unlink(f)
    b.start(timeout=20)
    assert _nqueued(b) == 5, 'mail lost after the region files were deleted'
    p.set_mode('up')
    b.ctl('flush')
    p.wait_messages(5, timeout=30)


def test_faults_readonly_spool(world):
    """a read-only spool file system: a clear refusal, exit 1, no signal."""
    world.sinks['primary'].set_mode('down')
    fs = os.path.join(world.workdir, 'tmpfs-ro')
    _mount_tmpfs(fs, '128m')
    try:
        b = world.backmx(spool=os.path.join(fs, 'spool'), spool_cache='4M', retry='1h')
        _send(b, 'ro-1')
        b.stop()
        r = subprocess.run(['mount', '-o', 'remount,ro', fs], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        try:
            b.start(timeout=20)
            raise AssertionError('backmxd started on a read-only spool')
        except AssertionError as e:
            if 'started on' in str(e):
                raise
        assert b.proc.returncode == 1, b.proc.returncode
        assert re.search(r'spool .*(Read-only file system|read-only)', b.log_text(), re.I), \
            b.log_tail()
        subprocess.run(['mount', '-o', 'remount,rw', fs], capture_output=True)
        b.start(timeout=20)
        assert _nqueued(b) == 1
    finally:
        for inst in world.instances:
            if inst.running():
                inst.stop()
        _umount(fs)
