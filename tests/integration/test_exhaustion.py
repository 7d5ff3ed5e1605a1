"""Resource exhaustion: the daemon degrades with the right SMTP replies and
recovers by itself when the resource comes back.

  disk full during DATA      spool on a small tmpfs nearly filled by a filler
                             file: 452 4.3.1 (or 451), no crash, still
                             answering; free the filler: accepted again;
                             everything that got 250 is delivered.
  disk full while delivering messages queued, then the tmpfs filled to the
                             last byte and the primary brought up: nothing
                             lost or corrupted; after freeing, the queue
                             drains.
  max_clients                the session after max_clients gets 421 4.7.0;
                             closing some makes room again.
  out of descriptors         RLIMIT_NOFILE lowered (prlimit) on the running
                             daemon, more connections than descriptors: no
                             crash, no busy loop (CPU time from
                             /proc/PID/stat), serves again afterwards.
  slowloris                  clients dribbling a message 1 byte per 0.1 s do
                             not delay others, and their mail is accepted; a
                             hog holding 300 connections is refused with 421
                             past max_clients_per_ip while others are served.
  idle timeout               a silent client (command or DATA state) is
                             dropped with 421 4.4.2 after `timeout`; a slow
                             but active one is not.
"""
import os
import re
import smtplib
import socket
import subprocess
import threading
import time

HOST, PORT = '127.0.0.3', 25
CLK = os.sysconf('SC_CLK_TCK')


# ------------------------------------------------------------------ helpers

class Raw:
    """A raw SMTP connection (socket + line reader)."""

    def __init__(self, source=None, timeout=10):
        self.sock = socket.create_connection(
            (HOST, PORT), timeout=timeout,
            source_address=(source, 0) if source else None)
        self.f = self.sock.makefile('rb')

    def line(self):
        return self.f.readline().decode('utf-8', 'replace')

    def reply(self):
        """One complete reply (multi-line joined), '' on EOF."""
        out = []
        while True:
            ln = self.line()
            if not ln:
                return ''.join(out)
            out.append(ln)
            if len(ln) < 4 or ln[3] != '-':
                return ''.join(out)

    def cmd(self, text):
        self.sock.sendall(text.encode() + b'\r\n')
        return self.reply()

    def close(self):
        for c in (self.f, self.sock):
            try:
                c.close()
            except OSError:
                pass


def _body(tag, size=2000):
    line = ('%s ' % tag) * 8
    n = max(1, size // (len(line) + 2))
    return ('Subject: %s\r\nMessage-Id: <%s@exhaust.test>\r\n\r\n%s' %
            (tag, tag, (line + '\r\n') * n)).encode()


def _send(tag, size=2000, rcpt='alice@backup.example', timeout=20):
    """Send one message; (code, text) of the final reply or of the failing
    command; (-1, error) when the connection broke."""
    try:
        s = smtplib.SMTP(HOST, PORT, local_hostname='client.test.example',
                         timeout=timeout)
    except (OSError, smtplib.SMTPException) as e:
        return -1, str(e)
    try:
        s.ehlo()
        s.sendmail('sender@sender.example', [rcpt], _body(tag, size))
        code, text = 250, b''
    except smtplib.SMTPDataError as e:
        code, text = e.smtp_code, e.smtp_error
    except smtplib.SMTPRecipientsRefused as e:
        code, text = list(e.recipients.values())[0]
    except smtplib.SMTPSenderRefused as e:
        code, text = e.smtp_code, e.smtp_error
    except smtplib.SMTPResponseException as e:
        code, text = e.smtp_code, e.smtp_error
    except (OSError, smtplib.SMTPException) as e:
        return -1, str(e)
    finally:
        try:
            s.close()
        except Exception:
            pass
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'replace')
    return code, text


def _alive(b, timeout=10):
    """The daemon runs and a new session gets 220 and NOOP 250."""
    assert b.running(), 'backmxd died; log:\n%s' % b.log_tail()
    r = Raw(timeout=timeout)
    try:
        g = r.reply()
        assert g.startswith('220'), 'greeting %r' % g
        n = r.cmd('NOOP')
        assert n.startswith('250'), 'NOOP -> %r' % n
        r.cmd('QUIT')
    finally:
        r.close()


def _cpu(pid):
    """utime + stime of pid, in seconds."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def _tags(msgs):
    out = []
    for m in msgs:
        mm = re.search(rb'Subject: (\S+)', m['data'])
        if mm:
            out.append(mm.group(1).decode())
    return out


from diskfill import mount_tmpfs as _mount_tmpfs, umount as _umount, \
    free as _free, fill as _fill


def _wait_delivered(p, tags, timeout):
    deadline = time.monotonic() + timeout
    while True:
        got = set(_tags(p.messages()))
        if set(tags) <= got or time.monotonic() > deadline:
            return got
        time.sleep(0.3)


def _queue_ids(b):
    r = b.ctl('queue', '--json')
    assert r.returncode == 0, 'backmxctl queue --json: %s' % r.stderr
    return [ln for ln in r.stdout.splitlines() if ln.strip().startswith('{')]


def _check_bodies(msgs, size):
    """Every delivered copy carries the exact body that was sent."""
    for m in msgs:
        tag = re.search(rb'Subject: (\S+)', m['data'])
        if not tag:
            continue
        want = _body(tag.group(1).decode(), size).split(b'\r\n\r\n', 1)[1]
        got = m['data'].replace(b'\r\n', b'\n').split(b'\n\n', 1)[1]
        assert got.rstrip(b'\n') == want.replace(b'\r\n', b'\n').rstrip(b'\n'), \
            'message %s corrupted on delivery' % tag.group(1).decode()


# ------------------------------------------------------------------ disk full

def test_exhaustion_disk_full_data(world):
    p = world.sinks['primary']
    p.set_mode('down')
    fs = os.path.join(world.workdir, 'tmpfs-data')
    _mount_tmpfs(fs, '256m')
    b = None
    try:
        b = world.backmx(spool=os.path.join(fs, 'spool'), retry='1s')
        filler = os.path.join(fs, 'filler')
        left = _fill(filler, 3 << 20)
        assert left < (4 << 20), 'could not fill the tmpfs (%d free)' % left
        acked, refused = [], None
        for i in range(60):
            tag = 'df-%d' % i
            code, text = _send(tag, size=256 * 1024)
            if code == 250:
                acked.append(tag)
                continue
            refused = (code, text)
            break
        assert refused is not None, \
            'no refusal after %d x 256K messages with 3M free' % len(acked)
        code, text = refused
        print('disk full in DATA: %d accepted, then %d %s' % (len(acked), code, text.strip()))
        assert code in (452, 451), 'disk full answered %r' % (refused,)
        if code == 452:
            assert '4.3.1' in text, 'disk full answered %r' % (refused,)
        # no crash, still answering, still refusing politely
        _alive(b)
        code2, _ = _send('df-again', size=256 * 1024)
        assert code2 in (250, 452, 451), 'second try while full: %r' % code2
        if code2 == 250:
            acked.append('df-again')
        # free the space: accepted again (the daemon may need a moment)
        os.unlink(filler)
        deadline = time.monotonic() + 20
        while True:
            code, text = _send('df-after', size=256 * 1024)
            if code == 250:
                acked.append('df-after')
                break
            assert time.monotonic() < deadline, \
                'still refused after freeing space: %d %s' % (code, text)
            time.sleep(1)
        _alive(b)
        # everything acknowledged is still queued ...
        q = _queue_ids(b)
        assert len(q) >= len(acked), 'queue holds %d messages, %d were acknowledged' \
            % (len(q), len(acked))
        # ... and is delivered, intact
        p.set_mode('up')
        b.ctl('flush')
        got = _wait_delivered(p, acked, 40)
        lost = sorted(set(acked) - got)
        assert not lost, 'lost after disk full: %s' % lost
        _check_bodies(p.messages(), 256 * 1024)
    finally:
        if b is not None:
            b.stop()
        _umount(fs)


test_exhaustion_disk_full_data.timeout = 150


def test_exhaustion_disk_full_delivery(world):
    p = world.sinks['primary']
    p.set_mode('down')
    fs = os.path.join(world.workdir, 'tmpfs-deliv')
    _mount_tmpfs(fs, '256m')
    b = None
    try:
        b = world.backmx(spool=os.path.join(fs, 'spool'), retry='1s')
        acked = []
        for i in range(20):
            tag = 'dd-%d' % i
            code, text = _send(tag, size=64 * 1024)
            assert code == 250, '%s: %d %s' % (tag, code, text)
            acked.append(tag)
        # fill the disk to the last byte, then let deliveries run: marking
        # recipients done and removing messages needs log space
        filler = os.path.join(fs, 'filler')
        _fill(filler, 0)
        p.set_mode('up')
        b.ctl('flush')
        time.sleep(6)
        assert b.running(), 'backmxd died with the spool full; log:\n%s' % b.log_tail()
        full_errors = len(re.findall(r'No space left on device', b.log_text()))
        print('disk full during delivery: %d ENOSPC log lines, %d delivered while full'
              % (full_errors, len(p.messages())))
        os.unlink(filler)
        b.ctl('flush')
        got = _wait_delivered(p, acked, 40)
        lost = sorted(set(acked) - got)
        assert not lost, 'lost with the spool full during delivery: %s' % lost
        _check_bodies(p.messages(), 64 * 1024)
        # the queue drains once there is space again
        deadline = time.monotonic() + 30
        while _queue_ids(b):
            assert time.monotonic() < deadline, \
                'queue did not drain after freeing space: %s' % _queue_ids(b)[:3]
            time.sleep(1)
            b.ctl('flush')
        tags = _tags(p.messages())
        print('disk full during delivery: acknowledged=%d delivered=%d duplicates=%d'
              % (len(acked), len(set(tags)), len(tags) - len(set(tags))))
        _alive(b)
    finally:
        if b is not None:
            b.stop()
        _umount(fs)


test_exhaustion_disk_full_delivery.timeout = 150


# ------------------------------------------------------------------ sessions

def test_exhaustion_max_clients(world):
    b = world.backmx(max_clients=5)
    held = []
    try:
        for i in range(5):
            r = Raw()
            g = r.reply()
            assert g.startswith('220'), 'session %d greeted %r' % (i + 1, g)
            held.append(r)
        extra = Raw()
        g = extra.reply()
        extra.close()
        assert g.startswith('421') and '4.7.0' in g, \
            'session 6 of max_clients 5 greeted %r' % g
        # the held ones still work
        for r in held:
            assert r.cmd('NOOP').startswith('250')
        # close two: two new sessions fit again, the third does not
        for r in held[:2]:
            r.cmd('QUIT')
            r.close()
        held = held[2:]
        deadline = time.monotonic() + 10
        fresh = []
        while len(fresh) < 2:
            r = Raw()
            g = r.reply()
            if g.startswith('220'):
                fresh.append(r)
                continue
            r.close()
            assert time.monotonic() < deadline, 'no room after closing: %r' % g
            time.sleep(0.2)
        held += fresh
        r = Raw()
        g = r.reply()
        r.close()
        assert g.startswith('421'), 'over the limit again but greeted %r' % g
        # mail still flows through a held session
        r = held[0]
        assert r.cmd('EHLO client.test.example').startswith('250')
        assert r.cmd('MAIL FROM:<s@sender.example>').startswith('250')
        assert r.cmd('RCPT TO:<alice@backup.example>').startswith('250')
        assert r.cmd('DATA').startswith('354')
        assert r.cmd('Subject: mc\r\n\r\nhello\r\n.').startswith('250')
    finally:
        for r in held:
            r.close()
    assert 'max_clients 5 reached' in b.log_text() or \
        re.search(r'max_clients', b.log_text()), 'refusal not logged'


def test_exhaustion_out_of_fds(world):
    b = world.backmx(max_clients=1000, max_clients_per_ip=1000)
    pid = b.pid
    nfd = len(os.listdir('/proc/%d/fd' % pid))
    import resource
    limit = nfd + 6
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
    conns = []
    try:
        greeted = 0
        for i in range(40):
            try:
                r = Raw(timeout=3)
            except OSError:
                continue
            conns.append(r)
        # the first few get 220; the rest wait in the backlog
        for r in conns[:4]:
            try:
                if r.reply().startswith('220'):
                    greeted += 1
            except OSError:
                pass
        assert greeted >= 1, 'no session at all under the descriptor limit'
        time.sleep(1)
        c0, t0 = _cpu(pid), time.monotonic()
        time.sleep(4)
        used = (_cpu(pid) - c0) / (time.monotonic() - t0)
        assert b.running(), 'backmxd died out of descriptors; log:\n%s' % b.log_tail()
        assert used < 0.25, 'backmxd spins out of descriptors: %.0f%% CPU' % (used * 100)
        assert re.search(r'Too many open files', b.log_text()), \
            'the daemon never ran out of descriptors (limit %d); log:\n%s' \
            % (limit, b.log_tail())
        for r in conns:
            r.close()
        conns = []
        # serves again (accepts resume within about a second)
        deadline = time.monotonic() + 15
        while True:
            try:
                _alive(b, timeout=5)
                break
            except (AssertionError, OSError):
                assert b.running(), 'backmxd died; log:\n%s' % b.log_tail()
                assert time.monotonic() < deadline, \
                    'no service after the connections closed; log:\n%s' % b.log_tail()
                time.sleep(0.5)
        code, text = _send('fd-after')
        assert code == 250, 'mail after descriptor exhaustion: %d %s' % (code, text)
        print('out of fds: limit %d, %d connections, %d greeted, %.1f%% CPU while stuck'
              % (limit, 40, greeted, used * 100))
    finally:
        for r in conns:
            r.close()
        try:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (4096, 4096))
        except OSError:
            pass


# ------------------------------------------------------------------ slowloris

def _dribble(data, r, stop, delay, result):
    try:
        for i in range(len(data)):
            if stop.is_set():
                break
            r.sock.sendall(data[i:i + 1])
            time.sleep(delay)
        result.append(r.reply())
    except OSError as e:
        result.append('error %s' % e)


def test_exhaustion_slowloris_dribble(world):
    b = world.backmx(max_clients_per_ip=100)
    slow, threads, results = [], [], []
    stop = threading.Event()
    body = ('Subject: slow\r\n\r\n' + 'x' * 2000 + '\r\n.\r\n').encode()
    try:
        for i in range(20):
            r = Raw(timeout=60)
            assert r.reply().startswith('220')
            assert r.cmd('EHLO slow.test.example').startswith('250')
            assert r.cmd('MAIL FROM:<slow@sender.example>').startswith('250')
            assert r.cmd('RCPT TO:<bob@backup.example>').startswith('250')
            assert r.cmd('DATA').startswith('354')
            res = []
            t = threading.Thread(target=_dribble, args=(body, r, stop, 0.1, res))
            t.start()
            slow.append(r)
            threads.append(t)
            results.append(res)
        # normal sessions while 20 clients dribble
        times = []
        for i in range(5):
            t0 = time.monotonic()
            code, text = _send('normal-%d' % i)
            dt = time.monotonic() - t0
            times.append(dt)
            assert code == 250, 'normal client refused: %d %s' % (code, text)
            assert dt < 10, 'normal session took %.1fs with slow clients around' % dt
            time.sleep(1)
        # a dribbling client ends its message: accepted, nothing dropped
        stop.set()
        for r in slow:
            r.sock.sendall(b'\r\n.\r\n')
        for t in threads:
            t.join(30)
        ok = sum(1 for res in results if res and res[0].startswith('250'))
        assert ok == len(slow), 'slow clients: %s' % [res[:1] for res in results]
        print('slowloris: 20 dribbling clients; normal sessions %.2fs max'
              % max(times))
    finally:
        stop.set()
        for r in slow:
            r.close()
    _alive(b)


def test_exhaustion_connection_hog(world):
    b = world.backmx(max_clients_per_ip=10)
    hog, counts = [], {'220': 0, '421': 0, 'other': 0}
    try:
        for i in range(300):
            try:
                r = Raw(source='127.0.0.9', timeout=10)
            except OSError:
                counts['other'] += 1
                continue
            hog.append(r)
        for r in hog:
            try:
                g = r.reply()
            except OSError:
                g = ''
            if g.startswith('220'):
                counts['220'] += 1
            elif g.startswith('421') and '4.7.0' in g:
                counts['421'] += 1
            else:
                counts['other'] += 1
        assert counts['220'] <= 10, 'hog got %d sessions past max_clients_per_ip 10' \
            % counts['220']
        assert counts['421'] >= 280, 'hog refusals: %s' % counts
        # everyone else is served promptly while the hog holds its sessions
        for i in range(3):
            t0 = time.monotonic()
            code, text = _send('other-%d' % i)
            dt = time.monotonic() - t0
            assert code == 250, 'other client: %d %s' % (code, text)
            assert dt < 10, 'other client took %.1fs' % dt
        print('hog: %s' % counts)
    finally:
        for r in hog:
            r.close()
    _alive(b)


# ------------------------------------------------------------------ timeout

def test_exhaustion_idle_timeout(world):
    b = world.backmx(timeout='3s')

    def dropped_after(prepare):
        r = Raw(timeout=20)
        try:
            assert r.reply().startswith('220')
            prepare(r)
            t0 = time.monotonic()
            got = r.reply()
            dt = time.monotonic() - t0
            rest = r.reply()    # then EOF
            return got, dt, rest
        finally:
            r.close()

    got, dt, rest = dropped_after(lambda r: None)
    assert got.startswith('421') and '4.4.2' in got, 'silent client got %r' % got
    assert 2.5 <= dt <= 10, 'silent client dropped after %.1fs (timeout 3s)' % dt
    assert rest == '', 'connection stays open after 421: %r' % rest

    def in_data(r):
        assert r.cmd('EHLO c.test.example').startswith('250')
        assert r.cmd('MAIL FROM:<s@sender.example>').startswith('250')
        assert r.cmd('RCPT TO:<carol@backup.example>').startswith('250')
        assert r.cmd('DATA').startswith('354')
        r.sock.sendall(b'Subject: half\r\n\r\nhalf a message\r\n')

    got, dt, rest = dropped_after(in_data)
    assert got.startswith('421'), 'silent client in DATA got %r' % got
    assert 2.5 <= dt <= 10, 'silent DATA client dropped after %.1fs' % dt

    # active but slow: a NOOP every second for 7 s is never dropped
    r = Raw(timeout=20)
    try:
        assert r.reply().startswith('220')
        for i in range(7):
            time.sleep(1)
            got = r.cmd('NOOP')
            assert got.startswith('250'), 'active client got %r after %ds' % (got, i + 1)
    finally:
        r.close()
    # the half message was not queued
    q = _queue_ids(b)
    assert not q, 'a timed-out DATA left a message in the queue: %s' % q
    _alive(b)
