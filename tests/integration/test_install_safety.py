"""contrib/install-deps against the real apt-get, in simulation (issue 17).

A copy of this machine's dpkg status (tests/integration/aptsim.py) with
exim4-daemon-light installed, postfix absent and the build/test packages
that apt can put back taken out; install-deps `build` and `test` run with
APT_GET = `apt-get -s -o Dir::State::status=COPY` and DPKG_QUERY reading
the copy.  The simulated transactions only add packages (no "Remv" line)
and exim4 stays; the control: `apt-get -s install postfix` on the same
copy would remove exim4, and with --no-remove apt refuses.  Nothing is
installed or removed on the machine (its dpkg status is compared).

Skipped (a "SKIP" line, the test passes) when apt has no package lists or
does not know exim4-daemon-light, or when not root (install-deps only
calls apt-get as root).
"""
import glob
import hashlib
import os
import re
import shutil
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))
DEPS = os.path.join(ROOT, 'contrib', 'install-deps')
APTSIM = os.path.join(HERE, 'aptsim.py')


def _pkgs_of(*names):
    """the packages contrib/install-deps puts in the variables NAMES"""
    r = subprocess.run(['sh', '-c', 'eval "$(sed -n "1,/^mode=/p" %s | grep -v ^mode=)"; echo %s'
                        % (DEPS, ' '.join('$' + n for n in names))],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def _skip_reason():
    if os.geteuid() != 0:
        return 'not root: install-deps does not call apt-get'
    if not shutil.which('apt-get') or not shutil.which('apt-cache'):
        return 'no apt-get/apt-cache'
    if not glob.glob('/var/lib/apt/lists/*_Packages*'):
        return 'apt has no package lists (/var/lib/apt/lists is empty)'
    r = subprocess.run(['apt-cache', 'show', '--no-all-versions', 'exim4-daemon-light'],
                       capture_output=True, text=True)
    if r.returncode != 0 or 'Package: exim4-daemon-light' not in r.stdout:
        return 'apt-cache does not know exim4-daemon-light'
    return None


def _digest(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_install_deps_simulated_keeps_exim(world):
    """install-deps build/test on a simulated exim4 host: apt-get -s adds
    packages only, exim4-daemon-light stays; installing postfix would
    remove it (the control)."""
    why = _skip_reason()
    if why:
        print('SKIP test_install_deps_simulated_keeps_exim: ' + why, flush=True)
        return
    real_status = _digest('/var/lib/dpkg/status')
    d = tempfile.mkdtemp(prefix='backmx-aptsim-')
    try:
        want = {'build': _pkgs_of('BUILD_PKGS'),
                'test': _pkgs_of('BUILD_PKGS', 'TEST_PKGS', 'PFTOOLS_PKGS')}
        r = subprocess.run(['/usr/bin/python3', APTSIM, 'make', d] + want['test'],
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr
        dropped = open(os.path.join(d, 'dropped')).read().split()
        assert dropped, 'no build/test package could be taken out of the status copy'
        status = os.path.join(d, 'status')
        shutil.copy(status, status + '.orig')

        def query(*pkgs):
            r = subprocess.run([os.path.join(d, 'dpkg-query'), '-W',
                                '-f=${Package} ${db:Status-Status}\n'] + list(pkgs),
                               capture_output=True, text=True)
            return dict(l.split()[:2] for l in r.stdout.splitlines() if l.strip())

        def reset():
            shutil.copy(status + '.orig', status)
            for f in ('calls', 'sim.log'):
                open(os.path.join(d, f), 'w').close()

        reset()
        st = query('exim4-daemon-light', 'postfix', *dropped)
        assert st.get('exim4-daemon-light') == 'installed', st
        assert st.get('postfix') != 'installed', st
        assert not [p for p in dropped if st.get(p) == 'installed'], st

        for mode in ('build', 'test'):
            reset()
            build = os.path.join(d, 'build-' + mode)
            tools = os.path.join(build, 'postfix-tools')
            os.makedirs(tools)
            # smtp-source/smtp-sink are present: the unpacking of the postfix
            # .deb (test_package.py) is not what this test is about
            for t in ('smtp-source', 'smtp-sink'):
                with open(os.path.join(tools, t), 'w') as f:
                    f.write('#!/bin/sh\n')
                os.chmod(os.path.join(tools, t), 0o755)
            with open(os.path.join(tools, 'kind'), 'w') as f:
                f.write('private\n')
            env = dict(os.environ, APT_GET=os.path.join(d, 'apt-get'),
                       DPKG_QUERY=os.path.join(d, 'dpkg-query'), DPKG_DEB='/bin/false',
                       APT_ARCHIVES=os.path.join(d, 'archives'),
                       POLICY_RC_D=os.path.join(d, 'policy-rc.d'), NO_SERVICE_STOP='1')
            r = subprocess.run(['sh', DEPS, mode, build], env=env, capture_output=True,
                               text=True, timeout=300)
            sim = open(os.path.join(d, 'sim.log')).read()
            assert r.returncode == 0, '%s: %s%s\n%s' % (mode, r.stdout, r.stderr, sim[-2000:])
            calls = [c.split() for c in open(os.path.join(d, 'calls')).read().splitlines()]
            installs = [c for c in calls if c and c[0] == 'install']
            assert len(installs) == 1 and '--no-remove' in installs[0], (mode, calls)
            assert not any(c and c[0] == 'download' for c in calls), (mode, calls)
            expect = set(dropped) & set(want[mode])
            assert expect and expect <= set(installs[0]), (mode, expect, installs)
            remv = [l for l in sim.splitlines() if l.startswith('Remv')]
            assert not remv, '%s: the simulated install removes packages: %s' % (mode, remv)
            inst = set(re.findall(r'(?m)^Inst (\S+)', sim))
            assert expect <= inst, (mode, expect - inst)
            assert 'postfix' not in inst, (mode, sorted(inst))
            st = query('exim4-daemon-light', 'postfix', *expect)
            assert st.get('exim4-daemon-light') == 'installed', (mode, st)
            assert st.get('postfix') != 'installed', (mode, st)
            assert all(st.get(p) == 'installed' for p in expect), (mode, st)

        # the control: the same copy, postfix through plain apt-get -s
        reset()
        base = ['apt-get', '-s', '-o', 'Dir::State::status=' + status,
                '-o', 'Debug::NoLocking=1', 'install', '-y']
        r = subprocess.run(base + ['postfix'], capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr
        remv = [l.split()[1] for l in r.stdout.splitlines() if l.startswith('Remv')]
        assert 'exim4-daemon-light' in remv, 'installing postfix would not remove exim4:\n' + \
            r.stdout[-2000:]
        r = subprocess.run(base + ['--no-remove', 'postfix'], capture_output=True, text=True,
                           timeout=180)
        assert r.returncode != 0 and 'remove is disabled' in r.stderr, r.stdout + r.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert _digest('/var/lib/dpkg/status') == real_status, 'the real dpkg status changed'


# five simulated apt-get runs over the whole package list: 40-70 s on an idle
# machine, past 120 s in a CI run beside other builds (load 16-18)
test_install_deps_simulated_keeps_exim.timeout = 600
