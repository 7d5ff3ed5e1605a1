"""Installing backmx on an operator's machine.

contrib/install-deps against fake apt-get/dpkg-query/dpkg-deb (a state
file of installed packages, every call logged): on a host whose MTA is
exim4 it installs with --no-remove only, never names postfix, unpacks
Postfix's smtp-source/smtp-sink privately, and `make run` asks for build
packages only.  Then the Debian package: dpkg-buildpackage on the tree,
lintian, dpkg -i, backmxd -t on the packaged config, the man pages, the
unit, dpkg -r / --purge.
"""
import os
import re
import shutil
import subprocess
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
DEPS = os.path.join(ROOT, 'contrib', 'install-deps')

FAKE_DPKG_QUERY = r'''#!/usr/bin/python3
# dpkg-query -W -f=FMT [PKG...] over the state file: "pkg provides"
import os, sys
state = os.environ['FAKE_STATE']
inst = {}
for line in open(state):
    f = line.split()
    if f:
        inst[f[0]] = ' '.join(f[1:])
args = sys.argv[1:]
fmt = [a for a in args if a.startswith('-f=')][0][3:]
pkgs = [a for a in args if not a.startswith('-')]
out = []
for p in (pkgs or sorted(inst)):
    if p in inst:
        out.append(fmt.replace('${Package}', p).replace('${db:Status-Status}', 'installed')
                   .replace('${Provides}', inst[p]).replace('\\n', '\n'))
    else:
        sys.stderr.write('dpkg-query: no packages found matching %s\n' % p)
sys.stdout.write(''.join(out))
sys.exit(1 if pkgs and len(out) < len(pkgs) else 0)
'''

FAKE_APT_GET = r'''#!/usr/bin/python3
# apt-get update | install ... | download PKG, logged; install without
# --no-remove of a package conflicting with the MTA removes it, as apt would
import os, sys
log = open(os.environ['FAKE_LOG'], 'a')
log.write(' '.join(sys.argv[1:]) + '\n')
state = os.environ['FAKE_STATE']
args = sys.argv[1:]
if args[0] == 'download':
    open('%s_3.7.11-0+deb12u1_amd64.deb' % args[1], 'w').write('fake deb\n')
elif args[0] == 'install':
    pkgs = [a for a in args[1:] if not a.startswith('-')]
    inst = [l for l in open(state) if l.strip()]
    mta = [l for l in inst if 'mail-transport-agent' in l]
    if 'postfix' in pkgs and mta:
        if '--no-remove' in args:
            sys.stderr.write('E: Packages need to be removed but remove is disabled.\n')
            sys.exit(100)
        inst = [l for l in inst if l not in mta]
    with open(state, 'w') as f:
        f.writelines(inst)
        for p in pkgs:
            f.write('%s %s\n' % (p, 'mail-transport-agent' if p == 'postfix' else ''))
'''

FAKE_DPKG_DEB = r'''#!/bin/sh
# dpkg-deb -x DEB DIR: a smtp-source/smtp-sink that say who they are
echo "dpkg-deb $*" >> "$FAKE_LOG"
[ "$1" = -x ] || exit 2
mkdir -p "$3/usr/sbin" "$3/usr/lib/postfix"
for t in smtp-source smtp-sink; do
	printf '#!/bin/sh\necho unpacked-%s "$LD_LIBRARY_PATH" "$@"\n' $t > "$3/usr/sbin/$t"
	chmod 0755 "$3/usr/sbin/$t"
done
'''


def _pkgs_of(var):
    """The packages contrib/install-deps puts in VAR (BUILD_PKGS ...)."""
    r = subprocess.run(['sh', '-c', 'eval "$(sed -n "1,/^mode=/p" %s | grep -v ^mode=)"; echo $%s'
                        % (DEPS, var)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


class FakeHost:
    """A directory with fake tools and a package state for install-deps."""

    def __init__(self, installed):
        self.dir = tempfile.mkdtemp(prefix='backmx-deps-')
        self.state = os.path.join(self.dir, 'state')
        self.log = os.path.join(self.dir, 'log')
        self.build = os.path.join(self.dir, 'build')
        self.archives = os.path.join(self.dir, 'archives')
        os.mkdir(self.archives)
        with open(self.state, 'w') as f:
            for p in installed:
                f.write(p + '\n')
        open(self.log, 'w').close()
        for name, text in (('dpkg-query', FAKE_DPKG_QUERY), ('apt-get', FAKE_APT_GET),
                           ('dpkg-deb', FAKE_DPKG_DEB)):
            path = os.path.join(self.dir, name)
            with open(path, 'w') as f:
                f.write(text)
            os.chmod(path, 0o755)

    def run(self, mode):
        env = dict(os.environ, FAKE_STATE=self.state, FAKE_LOG=self.log,
                   APT_GET=os.path.join(self.dir, 'apt-get'),
                   DPKG_QUERY=os.path.join(self.dir, 'dpkg-query'),
                   DPKG_DEB=os.path.join(self.dir, 'dpkg-deb'),
                   APT_ARCHIVES=self.archives,
                   POLICY_RC_D=os.path.join(self.dir, 'policy-rc.d'), NO_SERVICE_STOP='1')
        return subprocess.run(['sh', DEPS, mode, self.build], env=env,
                              capture_output=True, text=True, timeout=60)

    def calls(self):
        return [l.split() for l in open(self.log).read().splitlines()]

    def installed(self):
        return [l.split()[0] for l in open(self.state) if l.strip()]

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


EXIM = 'exim4-daemon-light mail-transport-agent'


def test_deps_build_only_no_remove(world):
    """make/make run on an exim4 host: build packages only, --no-remove."""
    build = _pkgs_of('BUILD_PKGS')
    assert 'libsystemd-dev' in build, build
    h = FakeHost([EXIM] + [p for p in build if p != 'libsystemd-dev'])
    try:
        r = h.run('build')
        assert r.returncode == 0, r.stdout + r.stderr
        calls = h.calls()
        installs = [c for c in calls if c[0] == 'install']
        assert installs == [['install', '-y', '--no-remove', '--no-install-recommends',
                             'libsystemd-dev']], calls
        # apt-get update before the first install (a fresh machine has no lists)
        assert calls.index(['update']) < calls.index(installs[0]), calls
        assert not any('postfix' in c for c in calls), calls
        assert 'exim4-daemon-light' in h.installed()
        assert not os.path.exists(os.path.join(h.build, 'postfix-tools'))
        # everything present: no apt-get at all
        open(h.log, 'w').close()
        r = h.run('build')
        assert r.returncode == 0 and h.calls() == [], (r.stderr, h.calls())
    finally:
        h.close()


def test_deps_test_keeps_exim(world):
    """make check on an exim4 host: test tools installed with --no-remove,
    postfix never installed, smtp-source/smtp-sink unpacked into BUILD."""
    test = _pkgs_of('TEST_PKGS')
    assert 'postfix' not in test, test
    assert {'pflogsumm', 'fail2ban', 'debhelper', 'lintian', 'dpkg-dev', 'fakeroot'} <= set(test)
    h = FakeHost([EXIM] + _pkgs_of('BUILD_PKGS'))
    try:
        r = h.run('test')
        assert r.returncode == 0, r.stdout + r.stderr
        calls = h.calls()
        for c in calls:
            if c[0] == 'install':
                assert '--no-remove' in c, c
                assert 'postfix' not in c, c
        assert ['download', 'postfix'] in calls, calls
        assert any(c[:2] == ['dpkg-deb', '-x'] for c in calls), calls
        inst = h.installed()
        assert 'exim4-daemon-light' in inst and 'postfix' not in inst, inst
        assert set(test) <= set(inst), set(test) - set(inst)
        tools = os.path.join(h.build, 'postfix-tools')
        out = subprocess.run([os.path.join(tools, 'smtp-source'), '-m', '1'],
                             capture_output=True, text=True).stdout
        assert out.startswith('unpacked-smtp-source ') and '/usr/lib/postfix' in out, out
        out = subprocess.run([os.path.join(tools, 'smtp-sink')],
                             capture_output=True, text=True).stdout
        assert out.startswith('unpacked-smtp-sink'), out
        # second run: nothing to do, no apt-get
        open(h.log, 'w').close()
        r = h.run('test')
        assert r.returncode == 0 and h.calls() == [], (r.stderr, h.calls())
    finally:
        h.close()


def test_deps_bench_refuses_beside_other_mta(world):
    """make bench wants a real Postfix: with exim4 installed it says so and
    installs nothing that would replace it; without an MTA it installs
    postfix with --no-remove."""
    base = _pkgs_of('BUILD_PKGS') + _pkgs_of('TEST_PKGS') + _pkgs_of('PFTOOLS_PKGS')
    h = FakeHost([EXIM] + base)
    try:
        r = h.run('bench')
        assert r.returncode == 1, r.stdout + r.stderr
        assert 'exim4-daemon-light' in r.stderr and 'would remove it' in r.stderr, r.stderr
        assert not any(c[0] == 'install' for c in h.calls()), h.calls()
        assert 'exim4-daemon-light' in h.installed()
    finally:
        h.close()
    h = FakeHost(base)
    try:
        r = h.run('bench')
        assert r.returncode == 0, r.stdout + r.stderr
        installs = [c for c in h.calls() if c[0] == 'install']
        assert installs == [['install', '-y', '--no-remove', '--no-install-recommends',
                             'postfix']], h.calls()
    finally:
        h.close()


def test_make_run_asks_build_deps_only(world):
    """make, make run and make install ask for build packages; make check
    for test packages; make bench for bench."""
    def dry(target):
        r = subprocess.run(['make', '-n', '-C', ROOT, target, 'BUILD=/nonexistent-build'],
                           capture_output=True, text=True, timeout=60)
        return r.stdout
    out = dry('run')
    assert 'install-deps build' in out and 'install-deps test' not in out, out
    out = dry('install')
    assert 'install-deps test' not in out and 'install-deps bench' not in out, out
    out = dry('check')
    assert 'install-deps test' in out, out
    out = dry('bench')
    assert 'install-deps bench' in out, out


def _run(cmd, timeout=600, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def test_package_build_install_remove(world):
    """dpkg-buildpackage -us -uc -b (reusing build/), lintian without
    errors, dpkg -i: binaries, man pages, unit, sysusers, conffile, the
    backmx user and its spool; backmxd -t accepts the packaged config,
    which accepts no mail; dpkg -r keeps the spool, --purge removes it."""
    for tool in ('dpkg-buildpackage', 'lintian', 'dh', 'fakeroot'):
        assert shutil.which(tool), '%s missing: sh contrib/install-deps test' % tool
    st = _run(['dpkg-query', '-W', '-f=${db:Status-Status}', 'backmx'])
    assert st.stdout.strip() != 'installed', \
        'a backmx package is installed on this machine already: not replacing it'
    parent = os.path.dirname(ROOT)
    out = os.path.join(world.build, 'deb')
    os.makedirs(out, exist_ok=True)
    ver = re.search(r'^backmx \(([^)]+)\)', open(os.path.join(ROOT, 'debian', 'changelog')).read()).group(1)
    r = _run(['dpkg-buildpackage', '-us', '-uc', '-b'], cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert not re.search(r'^(cc|clang) ', r.stdout, re.M), 'dpkg-buildpackage compiled again'
    names = ['backmx_%s_amd64.deb' % ver, 'backmx_%s_amd64.buildinfo' % ver,
             'backmx_%s_amd64.changes' % ver, 'backmx-dbgsym_%s_amd64.deb' % ver]
    for n in names:
        if os.path.exists(os.path.join(parent, n)):
            shutil.move(os.path.join(parent, n), os.path.join(out, n))
    deb = os.path.join(out, names[0])
    assert os.path.exists(deb), os.listdir(out)

    r = _run(['lintian', '--fail-on', 'error', deb])
    assert r.returncode == 0, 'lintian: ' + r.stdout + r.stderr
    assert not re.search(r'^E: ', r.stdout, re.M), r.stdout

    files = _run(['dpkg-deb', '-c', deb]).stdout
    for f in ('./usr/sbin/backmxd', './usr/sbin/backmxctl', './etc/backmx/backmx.conf',
              './lib/systemd/system/backmx.service', './usr/lib/sysusers.d/backmx.conf',
              './usr/lib/tmpfiles.d/backmx.conf', './usr/share/man/man8/backmxd.8.gz',
              './usr/share/man/man8/backmxctl.8.gz', './usr/share/man/man5/backmx.conf.5.gz'):
        assert re.search(r' %s$' % re.escape(f), files, re.M), '%s not in the package:\n%s' % (f, files)
    d = tempfile.mkdtemp(prefix='backmx-deb-')
    try:
        assert _run(['dpkg-deb', '-e', deb, d]).returncode == 0
        conff = open(os.path.join(d, 'conffiles')).read().split()
        assert '/etc/backmx/backmx.conf' in conff, conff
    finally:
        shutil.rmtree(d, ignore_errors=True)

    spool_existed = os.path.exists('/var/spool/backmx')
    assert not spool_existed or not os.listdir('/var/spool/backmx'), \
        '/var/spool/backmx holds a spool already: not installing over it'
    installed = False
    try:
        r = _run(['dpkg', '-i', deb])
        assert r.returncode == 0, 'dpkg -i: ' + r.stdout + r.stderr
        installed = True
        pw = _run(['getent', 'passwd', 'backmx']).stdout
        assert pw.startswith('backmx:'), 'no backmx user after install'
        uid = int(pw.split(':')[2])
        s = os.stat('/var/spool/backmx')
        assert s.st_uid == uid and (s.st_mode & 0o777) == 0o700, (s.st_uid, oct(s.st_mode))
        unit = open('/lib/systemd/system/backmx.service').read()
        assert 'ExecStart=/usr/sbin/backmxd -f -c /etc/backmx/backmx.conf' in unit, unit
        assert 'Type=notify' in unit
        # the packaged configuration passes -t, and accepts no domain's mail
        r = _run(['/usr/sbin/backmxd', '-t', '-c', '/etc/backmx/backmx.conf'])
        assert r.returncode == 0, 'backmxd -t on the packaged config: ' + r.stdout + r.stderr
        conf = open('/etc/backmx/backmx.conf').read()
        doms = re.findall(r'^\s*domain\s+(\S+)', conf, re.M)
        assert doms and all(x.endswith('.invalid') for x in doms), doms
        assert open('/etc/backmx/unconfigured.rcpts').read().strip() == ''
        # the man pages are installed and render
        for page, sec in (('backmxd', 8), ('backmxctl', 8), ('backmx.conf', 5)):
            path = '/usr/share/man/man%d/%s.%d.gz' % (sec, page, sec)
            assert os.path.exists(path), path
            if shutil.which('man'):
                r = _run(['man', '-P', 'cat', '-l', path], env=dict(os.environ, MANWIDTH='80'))
                assert r.returncode == 0 and 'NAME' in r.stdout, r.stderr[:500]
        # remove: the spool (queued mail) stays; purge: it goes
        open('/var/spool/backmx/queued-mail-marker', 'w').close()
        r = _run(['dpkg', '-r', 'backmx'])
        assert r.returncode == 0, 'dpkg -r: ' + r.stdout + r.stderr
        assert not os.path.exists('/usr/sbin/backmxd')
        assert os.path.exists('/var/spool/backmx/queued-mail-marker'), 'dpkg -r removed the spool'
        assert os.path.exists('/etc/backmx/backmx.conf'), 'dpkg -r removed the conffile'
        r = _run(['dpkg', '--purge', 'backmx'])
        assert r.returncode == 0, 'dpkg --purge: ' + r.stdout + r.stderr
        installed = False
        assert not os.path.exists('/var/spool/backmx'), 'purge left the spool'
        assert not os.path.exists('/etc/backmx/backmx.conf'), 'purge left the conffile'
    finally:
        if installed:
            _run(['dpkg', '--purge', 'backmx'])
test_package_build_install_remove.timeout = 600


def test_make_install_prefix_destdir(world):
    """make install PREFIX=/opt/bmx SYSCONFDIR=/opt/bmx/etc DESTDIR=D: the
    set the package ships (binaries, the three man pages, the unit with
    paths following the prefix, sysusers.d, tmpfiles.d, the safe config
    and its empty recipient list, the example), nothing compiled again;
    a second install keeps an edited config."""
    dest = tempfile.mkdtemp(prefix='destdir-', dir=world.workdir)
    args = ['make', '-s', 'install', 'BUILD=' + world.build, 'PREFIX=/opt/bmx',
            'SYSCONFDIR=/opt/bmx/etc', 'DESTDIR=' + dest]
    r = _run(args, cwd=world.root)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert not re.search(r'^(cc|clang) ', r.stdout, re.M), 'make install compiled again'
    root = os.path.join(dest, 'opt', 'bmx')
    found = sorted(os.path.relpath(os.path.join(d, f), root)
                   for d, _, fs in os.walk(dest) for f in fs)
    want = sorted(['sbin/backmxd', 'sbin/backmxctl',
                   'share/man/man8/backmxd.8', 'share/man/man8/backmxctl.8',
                   'share/man/man5/backmx.conf.5',
                   'lib/systemd/system/backmx.service',
                   'lib/sysusers.d/backmx.conf', 'lib/tmpfiles.d/backmx.conf',
                   'share/doc/backmx/backmx.conf.example',
                   'etc/backmx/backmx.conf', 'etc/backmx/unconfigured.rcpts'])
    assert found == want, found
    for b in ('backmxd', 'backmxctl'):
        assert os.stat(os.path.join(root, 'sbin', b)).st_mode & 0o111, b
    unit = open(os.path.join(root, 'lib/systemd/system/backmx.service')).read()
    assert 'ExecStart=/opt/bmx/sbin/backmxd -f -c /opt/bmx/etc/backmx/backmx.conf' in unit, unit
    assert 'ExecReload=/opt/bmx/sbin/backmxd -t -c /opt/bmx/etc/backmx/backmx.conf' in unit, unit
    assert 'Type=notify' in unit
    assert '@SBINDIR@' not in unit and '@SYSCONFDIR@' not in unit, unit
    body = '\n'.join(l for l in unit.splitlines() if not l.startswith('#'))
    assert '/usr/local' not in body, body
    su = open(os.path.join(root, 'lib/sysusers.d/backmx.conf')).read()
    assert re.search(r'^u\s+backmx\b', su, re.M), su
    conf = os.path.join(root, 'etc/backmx/backmx.conf')
    assert open(conf).read() == open(os.path.join(world.root, 'contrib',
                                                  'backmx.conf.package')).read()
    assert os.path.getsize(os.path.join(root, 'etc/backmx/unconfigured.rcpts')) == 0
    # the installed backmxctl runs (and finds its man page's commands)
    r = _run([os.path.join(root, 'sbin', 'backmxctl'), '--help'])
    assert r.returncode == 0 and 'check-dns' in r.stdout, r.stdout + r.stderr
    # another prefix gets its own paths (the unit is not a stale build file)
    dest2 = tempfile.mkdtemp(prefix='destdir-', dir=world.workdir)
    r = _run(['make', '-s', 'install', 'BUILD=' + world.build, 'PREFIX=/srv/other',
              'DESTDIR=' + dest2], cwd=world.root)
    assert r.returncode == 0, r.stderr[-2000:]
    unit2 = open(os.path.join(dest2, 'srv/other/lib/systemd/system/backmx.service')).read()
    assert 'ExecStart=/srv/other/sbin/backmxd -f -c /etc/backmx/backmx.conf' in unit2, unit2
    # an edited config survives a second install
    with open(conf, 'a') as f:
        f.write('# edited by the operator\n')
    r = _run(args, cwd=world.root)
    assert r.returncode == 0, r.stderr[-2000:]
    assert open(conf).read().endswith('# edited by the operator\n')
