"""Out of descriptors (EMFILE) on every path but the SMTP listener's
(test_exhaustion_out_of_fds has that one): the running daemon's
RLIMIT_NOFILE is lowered with prlimit to the number of descriptors it
holds, so socket(2) and accept(2) fail with EMFILE, then raised again.

  listeners   connections waiting on the control socket, the metrics
              endpoint and peer_listen: no busy loop (running or
              runnable under 25 % of the time, /proc/PID/task/*/schedstat:
              a spinning daemon is runnable all the time, however loaded
              the machine), "accept: Too many open files;
              pausing accepts" logged once per socket; afterwards each
              serves again (backmxctl stats, GET /metrics, the peer link
              comes up: our dial failed meanwhile and was retried).
  delivery    queued mail (an MX route: DNS through libunbound, and a
              static route) while the primary comes back: the attempts
              fail, the mail stays queued; afterwards it is delivered,
              each message once.
  callout     a session open before the squeeze: RCPT to a callout
  and LDAP    domain and to an ldap: domain (real slapd) is 450 4.4.3,
              never 250 nor 550; afterwards 250.
  milter      a session accepted with the last descriptor: the milter
              connection cannot be opened, milter_default_action tempfail
              answers 451 at MAIL and nothing is accepted unfiltered;
              afterwards the mail passes the milter and is delivered once.

DNS (libunbound) is not starved in the delivery test: the MX answer
comes from unbound's cache, so the MX route fails at connect like the
static one; test_hostile_fds_dns_deferred starves the resolver itself.

  spool       test_hostile_fds_spool_reserve: started under ulimit -n 64,
              a flood takes every descriptor; BDB's checkpoint must still
              open a log file (spool/fdreserve.c), no PANIC.

Tried on a broken build: with the control/metrics/peer accept callbacks
returning on EMFILE without pausing (main before relay/fdpause.c) the
listeners test fails: runnable ~100 % of the time while the connections
wait, thousands of accept warnings.
"""
import json
import os
import re
import resource
import smtplib
import socket
import struct
import time
import urllib.request

from ldap_server import Slapd
from mirror import RCPT, node_a, node_b, wait_linked
from primary import Primary
from test_hostile_filters import Server, _packet, _recv_exact

METRICS = ('127.0.0.3', 9157)
CALLOUT = '127.0.0.14'
MILTER = ('127.0.0.8', 8891)


def _nfd(pid):
    return len(os.listdir('/proc/%d/fd' % pid))


class Squeeze:
    """RLIMIT_NOFILE of b lowered to what it holds plus spare"""

    def __init__(self, b, spare=0, pid=None):
        self.pid = pid or b.pid
        self.old = resource.prlimit(self.pid, resource.RLIMIT_NOFILE)
        # what the daemon holds once the sessions just ended are closed
        n, last, t = _nfd(self.pid), None, time.monotonic()
        while n != last and time.monotonic() - t < 5:
            time.sleep(0.3)
            last, n = n, _nfd(self.pid)
        self.limit = n + spare
        # the soft limit only: raising a hard limit again needs
        # CAP_SYS_RESOURCE
        resource.prlimit(self.pid, resource.RLIMIT_NOFILE,
                         (self.limit, self.old[1]))

    def release(self):
        if self.old is not None:
            resource.prlimit(self.pid, resource.RLIMIT_NOFILE, self.old)
            self.old = None


def _runnable(pid):
    """seconds pid's threads ran or waited to run (schedstat): a
    process that spins is runnable all the time however loaded the
    machine is, one that sleeps is not"""
    total = 0
    tdir = '/proc/%d/task' % pid
    for t in os.listdir(tdir):
        try:
            with open(os.path.join(tdir, t, 'schedstat')) as f:
                run, wait = f.read().split()[:2]
        except (OSError, ValueError):
            continue
        total += int(run) + int(wait)
    return total / 1e9


def _busy(pid, seconds=3):
    """the share of seconds pid was running or runnable"""
    c0, t0 = _runnable(pid), time.monotonic()
    time.sleep(seconds)
    return (_runnable(pid) - c0) / (time.monotonic() - t0)


def _emfile_logged(b, what):
    return re.search(r'%s: accept: Too many open files' % what,
                     b.log_text())


def test_hostile_fds_listeners_pause(world):
    a = node_a(world, metrics='%s:%d' % METRICS)
    sq = Squeeze(a)
    held = []
    try:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(a.control_path)
        held.append(c)
        held.append(socket.create_connection(METRICS, timeout=5))
        # node B dials A's peer_listen, A cannot accept it nor dial B
        b = node_b(world)
        deadline = time.monotonic() + 10
        while not all(_emfile_logged(a, w) for w in ('control', 'metrics')):
            assert time.monotonic() < deadline, a.log_tail()
            time.sleep(0.2)
        b.wait_log(r'peer: (own-spool|replica) link|peer: mirroring')
        time.sleep(1)       # B dials as soon as it is up
        used = _busy(a.pid)
        assert a.running(), a.log_tail()
        assert used < 0.25, 'spins out of descriptors: runnable %.0f%% of the time' % (
            used * 100)
        for w in ('control', 'metrics', 'peer'):
            n = len(re.findall(r'%s: accept: Too many open files; pausing '
                               r'accepts for 1s' % w, a.log_text()))
            assert n == 1, (w, n, a.log_tail())
        sq.release()
        for s in held:
            s.close()
        held = []
        r = a.ctl('stats', '--json')
        assert r.returncode == 0, r.stderr
        json.loads(r.stdout.splitlines()[0])
        with urllib.request.urlopen('http://%s:%d/metrics' % METRICS,
                                    timeout=10) as resp:
            assert b'backmx_' in resp.read()
        wait_linked(a, b, timeout=30)
        # a message through each node, acknowledged by the other's
        # replica before its 250 (peer_ack peer): the link carries data,
        # and the replicas are past their first sync (a node stopped
        # during it can hang in DB_ENV->log_flush: mirror's, see
        # test_hostile_lifecycle)
        for node in (a, b):
            s = node.smtp()
            s.sendmail('s@sender.example', [RCPT],
                       b'Subject: fds peer\r\n\r\nhello\r\n')
            s.quit()
        print('listeners: limit %d, runnable %.1f%% of the time out of descriptors'
              % (sq.limit, used * 100))
    finally:
        sq.release()
        for s in held:
            s.close()


DELIVERY_DOMAINS = '''
domain backup.example { recipients %(dir)s/backup.rcpts  route mx }
domain static.example { recipients *  route [127.0.0.2]:25 }
'''


def test_hostile_fds_delivery_deferred(world):
    p = world.sinks['primary']
    b = world.backmx(domains=DELIVERY_DOMAINS, retry='2s')
    p.set_mode('down')
    s = b.smtp()
    s.sendmail('s@sender.example', ['bob@backup.example'],
               b'Subject: fd-mx\r\n\r\nhello\r\n')
    s.sendmail('s@sender.example', ['x@static.example'],
               b'Subject: fd-static\r\n\r\nhello\r\n')
    s.quit()
    b._close_smtps()
    for r in ('bob@backup', 'x@static'):
        b.wait_log(r'to=<%s\.example>[^\n]*status=deferred' % r,
                   timeout=20)
    n0 = b.log_text().count('status=deferred')
    sq = Squeeze(b)
    try:
        p.set_mode('up')
        # at least two more attempts each, all failing for descriptors
        deadline = time.monotonic() + 20
        while b.log_text().count('status=deferred') < n0 + 4:
            assert time.monotonic() < deadline, b.log_tail()
            time.sleep(0.2)
        used = _busy(b.pid, 2)
        assert used < 0.25, 'runnable %.0f%% of the time' % (used * 100)
        assert b.running(), b.log_tail()
        assert p.messages() == [], 'delivered without descriptors?'
        why = [l for l in b.log_text().splitlines()
               if 'Too many open files' in l]
        assert why, b.log_tail()
        print('delivery out of descriptors:\n' + '\n'.join(why[:6]))
    finally:
        sq.release()
    msgs = p.wait_messages(2, timeout=30)
    time.sleep(1)
    subjects = sorted(re.search(rb'Subject: (\S+)', m['data']).group(1)
                      for m in p.messages())
    assert subjects == [b'fd-mx', b'fd-static'], subjects
    assert len(msgs) == 2


def test_hostile_fds_dns_deferred(world):
    """the resolver out of descriptors: the lookups of a message's first
    delivery happen at the limit (a new daemon: the MX host's addresses
    are not cached), libunbound cannot open its query socket ("can't
    create socket: Too many open files") and answers SERVFAIL: the mail
    is deferred (4.4.x), never bounced, no busy loop; afterwards the
    lookups work and the mail is delivered once.  The session stays open
    meanwhile: closing it would free a descriptor."""
    p = world.sinks['primary']
    b = world.backmx(retry='2s')
    s = b.smtp()
    sq = Squeeze(b)
    try:
        s.sendmail('s@sender.example', ['bob@backup.example'],
                   b'Subject: fd-dns\r\n\r\nhello\r\n')
        deadline = time.monotonic() + 20
        while len(re.findall(r'to=<bob@backup\.example>[^\n]*dsn=4\.4\.\d, '
                             r'status=deferred', b.log_text())) < 2:
            assert time.monotonic() < deadline, b.log_tail()
            time.sleep(0.2)
        used = _busy(b.pid, 2)
        assert used < 0.25, 'runnable %.0f%% of the time' % (used * 100)
        assert b.running(), b.log_tail()
        text = b.log_text()
        assert re.search(r"libunbound.*can't create socket: Too many open "
                         r"files", text), b.log_tail()
        assert 'status=bounced' not in text, b.log_tail()
        assert p.messages() == []
        print('dns out of descriptors:\n' + '\n'.join(
            l for l in text.splitlines() if 'status=deferred' in l))
    finally:
        sq.release()
    s.quit()
    p.wait_messages(1, timeout=30)
    time.sleep(1)
    assert len(p.messages()) == 1, p.messages()
    assert b'fd-dns' in p.messages()[0]['data']
    assert not world.sinks['bounce'].messages()


def test_hostile_fds_callout_and_ldap_tempfail(world):
    d = os.path.join(world.workdir, 'slapd-fds')
    slapd = Slapd(d)
    slapd.start()
    prim = Primary(CALLOUT, users=('bob',))
    try:
        b = world.backmx(start=False, retry='1h', domains=(
            'domain callout.example { recipients callout'
            '  route [%s]:25 }\n'
            'domain ldap.example { recipients ldap:%%(dir)s/x.ldap }\n'
            % CALLOUT))
        with open(os.path.join(b.dir, 'x.ldap'), 'w') as f:
            f.write('server_host = ldap://127.0.0.10:389\n'
                    'search_base = ou=people,dc=example,dc=org\n'
                    'query_filter = (mail=%s)\ntimeout = 2s\n')
        b.start()
        s = b.smtp()
        s.mail('s@sender.example')
        sq = Squeeze(b)
        try:
            for rcpt in ('bob@callout.example', 'carol@callout.example',
                         'dave@ldap.example'):
                code, msg = s.rcpt(rcpt)
                assert code == 450 and b'4.4.3' in msg, (rcpt, code, msg)
            assert b.running(), b.log_tail()
        finally:
            sq.release()
        s.rset()
        # the directory is retried `timeout` (2 s) after its failure
        time.sleep(2.5)
        s.mail('s@sender.example')
        assert s.rcpt('bob@callout.example')[0] == 250
        assert s.rcpt('carol@callout.example')[0] == 550
        assert s.rcpt('dave@ldap.example')[0] == 250
        s.quit()
    finally:
        slapd.stop()
        prim.close()


def _accepting_milter(srv, c):
    while True:
        n = struct.unpack('!I', _recv_exact(c, 4))[0]
        body = _recv_exact(c, n)
        cmd = body[:1]
        if cmd == b'O':
            c.sendall(_packet(b'O', struct.pack('!III', 6, 0xff, 0)))
        elif cmd in (b'D', b'A'):
            pass
        elif cmd == b'Q':
            return
        elif cmd == b'E':
            c.sendall(_packet(b'h', b'X-Milter\0seen\0') + _packet(b'a'))
        else:
            c.sendall(_packet(b'c'))


def _try_mail(subject):
    """(stage, code) of one message to bob@backup.example"""
    try:
        s = smtplib.SMTP('127.0.0.3', 25, timeout=20)
    except smtplib.SMTPConnectError as e:
        return 'connect', e.smtp_code
    except OSError:
        return 'connect', -1
    try:
        s.ehlo('client.example')
        s.sendmail('s@sender.example', ['bob@backup.example'],
                   ('Subject: %s\r\n\r\nhello\r\n' % subject).encode())
        return 'sent', 250
    except smtplib.SMTPRecipientsRefused as e:
        return 'rcpt', list(e.recipients.values())[0][0]
    except smtplib.SMTPResponseException as e:
        return 'reply', e.smtp_code
    except (smtplib.SMTPServerDisconnected, OSError):
        return 'closed', -1
    finally:
        try:
            s.close()
        except Exception:
            pass


def test_hostile_fds_milter_at_connect(world):
    p = world.sinks['primary']
    milter = Server(MILTER[0], MILTER[1], _accepting_milter)
    try:
        b = world.backmx(extra=('milter inet:%s:%d\nmilter_timeout 2s\n'
                                'milter_default_action tempfail\n'
                                % MILTER))
        # one descriptor left: the accept takes it
        sq = Squeeze(b, spare=1)
        try:
            stage, code = _try_mail('fd-none')
            assert code != 250 and (code == -1 or 400 <= code < 500), \
                (stage, code, b.log_tail())
            assert b.running(), b.log_tail()
            print('milter: %s %s\n%s' % (stage, code, '\n'.join(
                l for l in b.log_text().splitlines()
                if 'Too many' in l or 'milter' in l)))
            used = _busy(b.pid, 2)
            assert used < 0.25, 'runnable %.0f%% of the time' % (used * 100)
        finally:
            sq.release()
        time.sleep(1.5)         # the SMTP listener's pause, if any
        stage, code = _try_mail('fd-after')
        assert (stage, code) == ('sent', 250), (stage, code, b.log_tail())
        m = p.wait_messages(1, timeout=20)
        time.sleep(1)
        assert len(p.messages()) == 1, p.messages()
        assert b'X-Milter: seen' in m[0]['data']
        assert b'fd-after' in m[0]['data']
    finally:
        milter.close()


SPOOL_NOFILE = 64


def _log_files(b):
    return sorted(f for f in os.listdir(b.spool_dir) if f.startswith('log.'))


def _daemon_pids(b):
    """the daemon's processes: the parent and its workers"""
    pids = [b.pid]
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % d) as f:
                st = f.read()
        except OSError:
            continue
        if int(st.rsplit(')', 1)[1].split()[1]) == b.pid:
            pids.append(int(d))
    return pids


def _queued(b):
    r = b.ctl('queue', '--json')
    assert r.returncode == 0, r.stderr
    return len([json.loads(l) for l in r.stdout.splitlines() if l.strip()])


def test_hostile_fds_spool_reserve(world):
    """the spool at the descriptor limit: started under `ulimit -n 64`,
    a flood of SMTP connections takes every descriptor (the accepting
    processes pause their accepts; one that accepts none, the parent of
    workers, is held at what it has with prlimit), and the spool must still
    open the files it needs: the checkpoint reads old log records and
    log_archive lists the spool directory (both open a descriptor inside
    BDB; EMFILE there made BDB sleep 6 s in the loop and then panic the
    environment: "BDB0061 PANIC: Too many open files", DB_RUNRECOVERY for
    every later transaction).  spool/fdreserve.c keeps 5 descriptors on
    /dev/null that BDB's open and directory listing give back at EMFILE.
    Shown: a message committed while out of descriptors, the checkpoint
    removes the oldest log file at the limit, the reserve logged as used, no
    PANIC; afterwards a clean stop (0) and every message still queued
    after a restart.

    One process (`workers 1`, as with a peer): its checkpoint reads the
    log with a descriptor of its own.  The parent of workers writes no
    mail, and its checkpoint only moves its log handle to the new file
    (close, then open: the same slot), so there the reserve is not
    needed and this test would show nothing.

    Tried on main before spool/fdreserve.c: fails with the PANIC line
    (the checkpoint's read of the log at the limit)."""
    p = world.sinks['primary']
    p.set_mode('down')
    b = world.backmx(start=False, retry='1h', timeout='300s',
                     max_size='60M', max_clients=1000,
                     max_clients_per_ip=1000, workers=1)
    real = b.backmxd
    wrapper = os.path.join(b.dir, 'lowfd.sh')
    with open(wrapper, 'w') as f:
        # dash: -n sets the soft and the hard limit, so backmxd cannot
        # raise it again (main_raise_nofile)
        f.write('#!/bin/sh\nulimit -n %d\nexec %s "$@"\n'
                % (SPOOL_NOFILE, real))
    os.chmod(wrapper, 0o755)
    b.backmxd = wrapper
    b.start()
    assert resource.prlimit(b.pid, resource.RLIMIT_NOFILE) == \
        (SPOOL_NOFILE, SPOOL_NOFILE)
    s = b.smtp(timeout=120)
    # more than one 16 MB log file: the checkpoint then reads and
    # log_archive removes log.0000000001
    body = b'Subject: big\r\n\r\n' + (b'x' * 998 + b'\r\n') * 4000
    for i in range(5):
        s.sendmail('s@sender.example', ['bob@backup.example'], body)
    assert 'log.0000000002' in _log_files(b), _log_files(b)
    assert 'log.0000000001' in _log_files(b), _log_files(b)
    held, squeezes = [], []
    try:
        for i in range(2 * SPOOL_NOFILE):
            try:
                held.append(socket.create_connection(b.listen[0], timeout=5))
            except OSError:
                break
        deadline = time.monotonic() + 15
        while not re.search(r'accept on \S+: Too many open files',
                            b.log_text()):
            assert time.monotonic() < deadline, b.log_tail()
            time.sleep(0.2)
        # a process that accepts no SMTP (the parent of workers) is
        # brought to its limit too
        for pid in _daemon_pids(b):
            squeezes.append(Squeeze(b, pid=pid))
        # committed out of descriptors (the session was open before)
        s.sendmail('s@sender.example', ['bob@backup.example'],
                   b'Subject: at-limit\r\n\r\nhello\r\n')
        nmsg = 6
        if len(_log_files(b)) < 2:
            # a slow run: the first checkpoint came before the limit; a
            # new log file, at the limit
            for i in range(5):
                s.sendmail('s@sender.example', ['bob@backup.example'], body)
            nmsg += 5
        first = _log_files(b)[0]
        # the checkpoint timer (every 30 s) at the limit
        deadline = time.monotonic() + 40
        while first in _log_files(b):
            assert 'PANIC' not in b.log_text(), b.log_tail()
            assert time.monotonic() < deadline, (_log_files(b), b.log_tail())
            time.sleep(0.5)
        assert b.running(), b.log_tail()
        text = b.log_text()
        assert 'PANIC' not in text and 'DB_RUNRECOVERY' not in text, \
            b.log_tail()
        used = [l for l in text.splitlines()
                if 'out of descriptors' in l and 'kept for the spool' in l]
        assert used, 'the reserve was never needed: not at the limit?\n' + \
            b.log_tail()
        print('at %d descriptors: %s' % (SPOOL_NOFILE, '\n'.join(used)))
    finally:
        for sq in squeezes:
            sq.release()
        for c in held:
            c.close()
    s.quit()
    b._close_smtps()
    s = b.smtp()
    s.sendmail('s@sender.example', ['bob@backup.example'],
               b'Subject: after\r\n\r\nhello\r\n')
    s.quit()
    assert b.stop() == 0, b.log_tail()
    b.start()
    assert _queued(b) == nmsg + 1, b.ctl('queue').stdout
    assert 'PANIC' not in b.log_text(), b.log_tail()


test_hostile_fds_spool_reserve.timeout = 180
