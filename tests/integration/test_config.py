"""backmxd -t and SIGHUP reload, driven on the real binary.

Tried: each kind of configuration error is reported as FILE:LINE with exit
1; a good file exits 0; warnings alone exit 0; SIGHUP with a broken file
keeps the running configuration (mail still accepted), SIGHUP with a good
one takes effect (a new recipient becomes valid) without dropping an open
session.
"""
import atexit
import os
import shutil
import signal
import smtplib
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BACKMXD = os.environ.get('BACKMXD', os.path.join(ROOT, 'build', 'backmxd'))


def _check(text, files=None):
    d = tempfile.mkdtemp(prefix='backmx-t-')
    atexit.register(shutil.rmtree, d, True)
    for name, content in (files or {}).items():
        with open(os.path.join(d, name), 'w') as f:
            f.write(content)
    path = os.path.join(d, 'backmx.conf')
    with open(path, 'w') as f:
        f.write(text.replace('@DIR@', d))
    p = subprocess.run([BACKMXD, '-t', '-c', path], capture_output=True,
                       text=True, timeout=20)
    return p.returncode, p.stderr, path


def test_config_t_good(world):
    rc, err, _ = _check('hostname mx2.test.example\nlisten 127.0.0.3:25\n'
                        'domain backup.example {\n recipients @DIR@/r\n route mx\n}\n',
                        {'r': 'alice\n'})
    assert rc == 0, 'good config refused: %r' % err


def test_config_t_errors(world):
    cases = [
        ('bogus on\n', ':1: unknown directive'),
        ('\nmax_size huge\n', ':2: max_size'),
        ('domain d.example {\n route mx\n}\n', ':1: domain d.example has no recipients'),
        ('domain d.example {\n recipients @DIR@/missing\n}\n', 'missing'),
        ('domain d.example {\n recipients *\n percent_hack on\n}\n', 'static route'),
        ('listen nowhere\n', ':1: listen'),
        ('retry 5m soon\n', ':1: retry'),
        ('tls_cert @DIR@/nocert.pem\ntls_key @DIR@/nokey.pem\n', 'tls_cert: cannot read'),
    ]
    for text, expect in cases:
        rc, err, path = _check(text)
        assert rc == 1, 'exit %d for %r' % (rc, text)
        assert expect in err, 'expected %r for %r, got %r' % (expect, text, err)
        assert path in err, 'no FILE:LINE in %r' % err


def test_config_t_bad_recipient_file_line(world):
    rc, err, _ = _check('domain d.example {\n recipients @DIR@/r\n}\n',
                        {'r': 'alice\nbad entry with spaces\n'})
    assert rc == 1, err
    assert '/r:2:' in err, 'recipient file error lacks FILE:LINE: %r' % err


def test_config_t_warning_only(world):
    rc, err, _ = _check('domain d.example {\n recipients *\n}\n')
    assert rc == 0, err
    assert 'warning' in err, 'no warning for recipients *: %r' % err


def test_config_reload(world):
    b = world.backmx()
    s = b.smtp()
    code, _ = s.mail('x@sender.example')
    assert code == 250
    code, msg = s.rcpt('dave@backup.example')
    assert code == 550, 'dave accepted before reload: %r' % msg
    s.rset()

    # a broken configuration is refused and the old one kept
    good = open(b.conf_path).read()
    with open(b.conf_path, 'a') as f:
        f.write('\nthis_is_not_a_directive 1\n')
    os.kill(b.pid, signal.SIGHUP)
    b.wait_log(r'keeping the running configuration', timeout=10)
    code, _ = s.mail('x@sender.example')
    assert code == 250, 'session broken by a failed reload'
    code, msg = s.rcpt('alice@backup.example')
    assert code == 250, 'old config lost after failed reload: %r' % msg
    s.rset()

    # a good one takes effect, the open session survives
    rcpts = os.path.join(b.dir, 'backup.rcpts')
    with open(rcpts, 'a') as f:
        f.write('dave\n')
    with open(b.conf_path, 'w') as f:
        f.write(good)
    os.kill(b.pid, signal.SIGHUP)
    b.wait_log(r'reloaded', timeout=10)
    code, _ = s.mail('x@sender.example')
    assert code == 250
    code, msg = s.rcpt('dave@backup.example')
    assert code == 250, 'new recipient not valid after reload: %r' % msg
    s.quit()
