"""harness.py - the integration world: sinks, and backmxd instances under test.

The API is fixed in HARNESS.md.  World holds the four sinks (started once
for the whole run, reset before every test) and starts Backmx instances;
Backmx writes a configuration for one backmxd, runs it in the foreground
(`backmxd -f -c FILE`, stderr to FILE's directory), and waits for its
SMTP banner.  The runner (runner.py) calls World.cleanup() after every
test, which stops every instance the test started.
"""
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import time

from sink import Sink

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

SINKS = (
    ('primary', '127.0.0.2', 'mx1.test.example'),
    ('decoy', '127.0.0.4', 'mx3.test.example'),
    ('static', '127.0.0.5', 'mailhost.test.example'),
    ('bounce', '127.0.0.6', 'mx.sender.example'),
)

BACKUP_RCPTS = 'alice\nbob\ncarol\npostmaster\n'
CUSTOMER_RCPTS = 'user\ninfo\n'

DEFAULT_DOMAINS = '''
domain backup.example {
	recipients %(dir)s/backup.rcpts
	route mx
}
domain selfbest.example {
	recipients %(dir)s/backup.rcpts
	route mx
}
domain aonly.example {
	recipients *
	route mx
}
domain nullmx.example {
	recipients *
	route mx
}
domain static.example {
	recipients %(dir)s/backup.rcpts
	route [127.0.0.5]:25
}
domain customer.example {
	recipients %(dir)s/customer.rcpts
	route mailhost.test.example:25
	percent_hack on
}
'''

# keyword -> default value (None: not written unless given)
GLOBALS = (
    ('hostname', 'mx2.test.example'),
    ('listen', ['127.0.0.3:25']),
    ('timeout', '30s'),
    ('retry', '2s 2s 4s'),
    ('queue_lifetime', '1h'),
    ('max_size', None),
    ('max_recipients', None),
    ('max_hops', None),
    ('max_clients', None),
    ('etrn_allow', None),
    ('metrics', None),
    ('tls_cert', None),
    ('tls_key', None),
)

START_TIMEOUT = 15
STOP_TIMEOUT = 15
FATAL_SIGNALS = (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGFPE,
                 signal.SIGILL)
SANITIZER = re.compile(r'ERROR: (Address|Leak|Memory|Thread)Sanitizer|'
                       r'runtime error:|SUMMARY: UndefinedBehaviorSanitizer')


def _split_hostport(text):
    """'127.0.0.3:25' / '[::1]:25' -> (host, port)"""
    m = re.match(r'^\[([^\]]+)\]:(\d+)$', text) or \
        re.match(r'^([^:]+):(\d+)$', text)
    if not m:
        raise ValueError('listen %r: not host:port' % text)
    return m.group(1), int(m.group(2))


class Backmx:
    """One backmxd under test; see HARNESS.md."""

    def __init__(self, world, directory, overrides):
        self.world = world
        self.dir = directory
        self.spool_dir = os.path.join(directory, 'spool')
        self.conf_path = os.path.join(directory, 'backmx.conf')
        self.log_path = os.path.join(directory, 'backmxd.log')
        self.control_path = os.path.join(directory, 'control.sock')
        self.backmxd = world.backmxd
        self.backmxctl = world.backmxctl
        self.proc = None
        self.expected_exit = True
        self.deaths = []        # unexpected exits: (returncode, when)
        self._smtps = []
        os.makedirs(self.spool_dir, exist_ok=True)
        with open(os.path.join(directory, 'backup.rcpts'), 'w') as f:
            f.write(BACKUP_RCPTS)
        with open(os.path.join(directory, 'customer.rcpts'), 'w') as f:
            f.write(CUSTOMER_RCPTS)
        self.write_config(**overrides)

    # -- configuration
    def write_config(self, **overrides):
        o = dict(overrides)
        lines = ['# written by tests/integration/harness.py']
        for key, default in GLOBALS:
            value = o.pop(key, default)
            if value is None:
                continue
            if key == 'listen':
                if isinstance(value, str):
                    value = [value]
                for v in value:
                    lines.append('listen %s' % v)
                continue
            lines.append('%s %s' % (key, value))
        self.listen = [_split_hostport(v) for v in
                       ([overrides['listen']] if isinstance(overrides.get('listen'), str)
                        else overrides.get('listen', ['127.0.0.3:25']))]
        self.hostname = overrides.get('hostname', 'mx2.test.example')
        for key, value in (('spool', self.spool_dir),
                           ('control', self.control_path),
                           ('pidfile', os.path.join(self.dir, 'backmxd.pid')),
                           ('dns', '127.0.0.1:53')):
            value = o.pop(key, value)
            if value is not None:
                lines.append('%s %s' % (key, value))
        extra = o.pop('extra', '')
        domains = o.pop('domains', DEFAULT_DOMAINS)
        # anything else: written as a directive (an extension of HARNESS.md)
        for key in sorted(o):
            if o[key] is not None:
                lines.append('%s %s' % (key, o[key]))
        text = '\n'.join(lines) + '\n'
        if extra:
            text += extra.rstrip('\n') + '\n'
        text += domains.replace('%(dir)s', self.dir)
        with open(self.conf_path, 'w') as f:
            f.write(text)
        self.config_text = text

    # -- process
    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait=True, timeout=START_TIMEOUT):
        """Start backmxd -f -c conf and wait (timeout) for its banner."""
        if self.running():
            raise AssertionError('backmxd already running (pid %d)' % self.pid)
        self._reap()
        if not os.access(self.backmxd, os.X_OK):
            raise AssertionError('backmxd not built: %s' % self.backmxd)
        with open(self.log_path, 'ab') as log:
            log.write(b'--- harness: starting %s\n' % self.backmxd.encode())
            log.flush()
            self.proc = subprocess.Popen(
                [self.backmxd, '-f', '-c', self.conf_path],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.dir)
        self.expected_exit = False
        if wait:
            self.wait_banner(timeout)
        return self

    def wait_banner(self, timeout=START_TIMEOUT):
        """Wait until every listen address greets with 220."""
        deadline = time.monotonic() + timeout
        for host, port in self.listen:
            last = None
            while True:
                if self.proc.poll() is not None:
                    self.expected_exit = True
                    raise AssertionError(
                        'backmxd exited with status %s before its banner; log:\n%s'
                        % (self.proc.returncode, self.log_tail()))
                try:
                    with socket.create_connection((host, port), timeout=2) as s:
                        s.settimeout(max(0.5, deadline - time.monotonic()))
                        f = s.makefile('rb')
                        line = f.readline()
                        if line.startswith(b'220'):
                            # QUIT and wait for the 221: the daemon has
                            # then ended this probe session, so it does
                            # not count against the test's max_clients
                            try:
                                s.sendall(b'QUIT\r\n')
                                f.readline()
                            except OSError:
                                pass
                            break
                        last = 'greeting %r' % line
                except OSError as e:
                    last = str(e)
                if time.monotonic() > deadline:
                    raise AssertionError(
                        'no 220 banner from backmxd on %s:%d within %ds (%s); log:\n%s'
                        % (host, port, timeout, last, self.log_tail()))
                time.sleep(0.05)

    def _reap(self):
        if self.proc is not None and self.proc.poll() is not None:
            if not self.expected_exit:
                self.deaths.append(self.proc.returncode)
            self.expected_exit = True

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM and wait; returns the exit status.  AssertionError (after
        a SIGKILL) when it does not exit within timeout."""
        self._close_smtps()
        if self.proc is None:
            return None
        self._reap()
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.expected_exit = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError('backmxd did not exit within %ds of SIGTERM; log:\n%s'
                                 % (timeout, self.log_tail()))

    def kill9(self):
        """SIGKILL and wait (a crash, as far as backmxd can tell)."""
        self._close_smtps()
        if self.proc is None:
            return None
        self._reap()
        self.expected_exit = True
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait()

    def smtp(self, timeout=30):
        """smtplib.SMTP connected to the first listen address, EHLO'd."""
        host, port = self.listen[0]
        s = smtplib.SMTP(host, port, local_hostname='client.test.example',
                         timeout=timeout)
        s.ehlo()
        self._smtps.append(s)
        return s

    def _close_smtps(self):
        for s in self._smtps:
            try:
                s.close()
            except Exception:
                pass
        self._smtps = []

    def ctl(self, *args, timeout=30):
        """subprocess.CompletedProcess of backmxctl -c conf ARGS (text)."""
        return subprocess.run([self.backmxctl, '-c', self.conf_path] + list(args),
                              capture_output=True, text=True, timeout=timeout)

    # -- logs
    def log_text(self):
        try:
            with open(self.log_path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except FileNotFoundError:
            return ''

    def log_tail(self, n=40):
        return '\n'.join(self.log_text().splitlines()[-n:])

    def wait_log(self, regex, timeout=10):
        """Wait for a log line matching regex; return the match.
        AssertionError with the log's tail on timeout."""
        r = re.compile(regex)
        deadline = time.monotonic() + timeout
        while True:
            m = r.search(self.log_text())
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError('no log line matching %r within %gs; log:\n%s'
                                     % (regex, timeout, self.log_tail()))
            time.sleep(0.1)

    def problems(self):
        """What went wrong with this instance behind the test's back:
        crashes and sanitizer reports.  Call after stop()."""
        self._reap()
        out = []
        for rc in self.deaths:
            if rc < 0 and -rc in [int(s) for s in FATAL_SIGNALS]:
                out.append('backmxd crashed (%s)' % signal.Signals(-rc).name)
            elif rc > 0:
                out.append('backmxd exited by itself with status %d' % rc)
        m = SANITIZER.search(self.log_text())
        if m:
            line = self.log_text()[m.start():].splitlines()[0]
            out.append('sanitizer report: %s' % line)
        return out


class World:
    """Sinks plus the backmxd instances of the current test."""

    def __init__(self, build, workdir):
        self.build = os.path.abspath(build)
        self.workdir = workdir
        self.backmxd = os.path.abspath(os.environ.get(
            'BACKMXD', os.path.join(self.build, 'backmxd')))
        self.backmxctl = os.path.abspath(os.environ.get(
            'BACKMXCTL', os.path.join(self.build, 'backmxctl')))
        self.root = ROOT
        self.sinks = {}
        self.instances = []
        self.test_name = 'setup'
        self._certs = None
        for name, addr, host in SINKS:
            s = Sink(name, addr, 25, os.path.join(workdir, 'sinks', name))
            s.banner_name = host
            self.sinks[name] = s
        for s in self.sinks.values():
            s.set_mode('up')

    def backmx(self, start=True, **overrides):
        """A new backmxd with the default configuration and overrides,
        started and greeting (start=False: configured only)."""
        n = len(self.instances) + 1
        d = os.path.join(self.workdir, 'tests', '%s-%d' % (self.test_name, n))
        if os.path.exists(d):
            shutil.rmtree(d)
        os.makedirs(d)
        b = Backmx(self, d, overrides)
        self.instances.append(b)
        if start:
            b.start()
        return b

    @property
    def certs(self):
        """Directory of the test CA and certificates (certs.sh), made once."""
        if self._certs is None:
            d = os.path.join(self.workdir, 'certs')
            subprocess.run(['sh', os.path.join(HERE, 'certs.sh'), d], check=True,
                           timeout=120)
            self._certs = d
        return self._certs

    def begin(self, name):
        self.test_name = re.sub(r'[^A-Za-z0-9_.-]', '_', name)
        self.instances = []
        for s in self.sinks.values():
            s.reset()

    def cleanup(self):
        """Stop every instance of the test; return (problems, logs): the
        problems found (crashes, hangs on SIGTERM, sanitizer reports) and
        the tail of every instance's log."""
        problems, logs = [], []
        for b in self.instances:
            try:
                was_running = b.running()
                rc = b.stop()
                if was_running and rc not in (0, None):
                    problems.append('backmxd exited with status %s after SIGTERM '
                                    '(contract: 0)' % rc)
            except AssertionError as e:
                problems.append(str(e).splitlines()[0])
            except Exception as e:
                problems.append('stopping backmxd: %r' % e)
            problems.extend(b.problems())
            logs.append((b.dir, b.log_tail(30)))
        self.instances = []
        for s in self.sinks.values():
            try:
                s.reset()
            except Exception as e:
                problems.append('sink %s reset: %s' % (s.name, e))
        return problems, logs

    def kill_all(self):
        """Emergency: SIGKILL every instance (used by the watchdog)."""
        for b in list(self.instances):
            try:
                b.kill9()
            except Exception:
                pass

    def close(self):
        for s in self.sinks.values():
            s.close()
