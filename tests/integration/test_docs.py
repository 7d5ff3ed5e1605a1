"""Documentation and contrib files agree with the code and with themselves.

Tried: the three man pages render with man(1) (or groff) without a single
warning; every directive relay/config.c parses has its own entry in
backmx.conf(5), and so does every directive of the contract; every
backmxctl command of the contract has an entry in backmxctl(8); every
backmxd option in main.c's getopt string is in backmxd(8); `backmxd -t`
accepts contrib/demo.conf as `make run` uses it, and accepts
contrib/backmx.conf.example without warnings once its /etc/backmx files
exist (copied into a temporary directory with a real certificate and a
user that exists on this host).
"""
import os
import pwd
import re
import shutil
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BACKMXD = os.environ.get('BACKMXD', os.path.join(ROOT, 'build', 'backmxd'))
MAN = os.path.join(ROOT, 'man')
CONTRIB = os.path.join(ROOT, 'contrib')
PAGES = ['backmxd.8', 'backmxctl.8', 'backmx.conf.5']

# the contract (shared/spec/interface.md): what users and scripts touch
CONTRACT_GLOBAL = ['hostname', 'listen', 'spool', 'control', 'user', 'dns',
                   'tls_cert', 'tls_key', 'max_size', 'max_recipients',
                   'max_hops', 'max_clients', 'timeout', 'queue_lifetime',
                   'retry', 'etrn_allow', 'metrics']
CONTRACT_DOMAIN = ['recipients', 'route', 'tls', 'percent_hack']
CONTRACT_CTL = ['queue', 'show', 'flush', 'hold', 'release', 'delete',
                'bounce', 'stats', 'check-dns']


def _read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def _entries(page, macro):
    """Names given a tagged entry: `.It Ic NAME` / `.It Cm NAME`."""
    text = _read(os.path.join(MAN, page))
    return set(re.findall(r'^\.It %s (\S+)' % macro, text, re.M))


def _need_backmxd():
    if not os.access(BACKMXD, os.X_OK):
        raise AssertionError('backmxd not built: %s' % BACKMXD)


def test_docs_man_render(world):
    env = dict(os.environ, LC_ALL='C.UTF-8', MANWIDTH='80')
    for page in PAGES:
        path = os.path.join(MAN, page)
        assert os.path.exists(path), 'missing man page %s' % path
        if shutil.which('man'):
            cmd = ['man', '--warnings', '-E', 'UTF-8', '-l', path]
        else:
            cmd = ['groff', '-mandoc', '-ww', '-z', path]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env,
                           timeout=60)
        assert p.returncode == 0, '%s: exit %d: %s' % (page, p.returncode,
                                                        p.stderr)
        assert p.stderr.strip() == '', '%s renders with warnings:\n%s' % (
            page, p.stderr)
        if cmd[0] == 'man':
            assert len(p.stdout.splitlines()) > 50, '%s renders empty' % page


def _config_c_directives():
    """Directive names relay/config.c parses: the domain keyword table and
    every `strcmp(kw, "NAME")` of the global parser."""
    src = _read(os.path.join(ROOT, 'relay', 'config.c'))
    # directives parsed by config.c's hooks into relay/config_*.c
    import glob as _glob
    for extra in sorted(_glob.glob(os.path.join(ROOT, 'relay', 'config_*.c'))):
        src += _read(extra)
    m = re.search(r'config_domain_keywords\[\]\s*=\s*\{(.*?)\};', src, re.S)
    assert m, ('relay/config.c: cannot find the domain directive table '
               '(config_domain_keywords[]); update test_docs.py')
    domain = set(re.findall(r'"([a-z_]+)"', m.group(1)))
    glob = set(re.findall(r'strcmp\(\s*kw\s*,\s*"([a-z_]+)"\s*\)', src))
    assert len(glob) >= 15, ('relay/config.c: found only %d global '
                             'directives (strcmp(kw, "...")); the parser '
                             'changed shape, update test_docs.py' % len(glob))
    return glob, domain


def test_docs_conf_directives(world):
    glob, domain = _config_c_directives()
    documented = _entries('backmx.conf.5', 'Ic')
    missing = sorted((glob | domain | set(CONTRACT_GLOBAL) |
                      set(CONTRACT_DOMAIN)) - documented)
    assert not missing, ('directives without an entry (.It Ic NAME) in '
                         'man/backmx.conf.5: %s' % ', '.join(missing))
    # and nothing documented that the parser does not know (directives
    # parsed by a helper, relay/config_rcpt.c, count as known)
    helper = _read(os.path.join(ROOT, 'relay', 'config_rcpt.c'))
    known = set(re.findall(r'strcmp\(\s*kw\s*,\s*"([a-z_]+)"\s*\)',
                           helper))
    extra = sorted(documented - glob - domain - known)
    assert not extra, ('backmx.conf.5 documents directives config.c does '
                       'not parse: %s' % ', '.join(extra))


def test_docs_ctl_commands(world):
    documented = _entries('backmxctl.8', 'Cm')
    missing = [c for c in CONTRACT_CTL if c not in documented]
    assert not missing, ('backmxctl commands without an entry (.It Cm NAME) '
                         'in man/backmxctl.8: %s' % ', '.join(missing))
    text = _read(os.path.join(MAN, 'backmxctl.8'))
    for s in ('Fl Fl json', 'Fl c', 'Fl s', '"next_attempt"',
              '"last_error"', '.Sh EXIT STATUS'):
        assert s in text, 'backmxctl.8 does not document %r' % s


def test_docs_daemon_options(world):
    text = _read(os.path.join(MAN, 'backmxd.8'))
    main_c = os.path.join(ROOT, 'relay', 'main.c')
    opts = set('cftV')
    if os.path.exists(main_c):
        m = re.search(r'getopt\([^"]*"([^"]+)"\)', _read(main_c))
        if m:
            opts |= set(m.group(1).replace(':', '')) - set('h')
    for o in sorted(opts):
        assert re.search(r'^\.It Fl %s\b' % o, text, re.M), (
            'backmxd.8 has no entry for option -%s' % o)
    for s in ('Dv SIGHUP', 'Dv SIGTERM', 'Dv SIGINT', '.Sh RELIABILITY',
              'DB_RECOVER', '452 4.3.1', '.Sh FILES', '.Sh EXIT STATUS',
              '.Sh SEE ALSO', 'status=sent', 'from=<'):
        assert s in text, 'backmxd.8 does not document %r' % s


def _backmxd_t(conf, cwd):
    _need_backmxd()
    return subprocess.run([BACKMXD, '-t', '-c', conf], cwd=cwd,
                          capture_output=True, text=True, timeout=30)


def test_docs_demo_conf(world):
    # exactly as `make run` runs it: from the top of the tree
    p = _backmxd_t('contrib/demo.conf', ROOT)
    assert p.returncode == 0, 'backmxd -t contrib/demo.conf: exit %d:\n%s' % (
        p.returncode, p.stderr)
    assert 'warning' not in p.stderr, 'demo.conf warns:\n%s' % p.stderr


def test_docs_example_conf(world):
    d = tempfile.mkdtemp(prefix='backmx-doc-')
    try:
        text = _read(os.path.join(CONTRIB, 'backmx.conf.example'))
        me = pwd.getpwuid(os.getuid()).pw_name
        text = re.sub(r'^user\s+\S+', 'user ' + me, text, flags=re.M)
        names = set(re.findall(r'/etc/backmx/([\w.-]+)', text))
        text = text.replace('/etc/backmx/', d + '/')
        for name in names:
            src = os.path.join(CONTRIB, name)
            if name.endswith('.pem'):
                continue
            if os.path.exists(src) and name.endswith('.ldap'):
                # an ldap:FILE names its bind_pw file under /etc/backmx
                ldap = _read(src).replace('/etc/backmx/', d + '/')
                with open(os.path.join(d, name), 'w') as f:
                    f.write(ldap)
                for pw in re.findall(r'^bind_pw\s*=\s*(\S+)', ldap, re.M):
                    with open(pw, 'w') as f:
                        f.write('secret\n')
                    os.chmod(pw, 0o600)
            elif os.path.exists(src):
                shutil.copy(src, os.path.join(d, name))
            elif name.endswith('.rcpts'):
                with open(os.path.join(d, name), 'w') as f:
                    f.write('postmaster\ninfo\n')
        if any(n.endswith('.pem') for n in names):
            p = subprocess.run(
                ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
                 '-keyout', os.path.join(d, 'key.pem'),
                 '-out', os.path.join(d, 'cert.pem'), '-days', '30',
                 '-subj', '/CN=mx2.example.net'],
                capture_output=True, text=True, timeout=60)
            assert p.returncode == 0, 'openssl: %s' % p.stderr
        conf = os.path.join(d, 'backmx.conf')
        with open(conf, 'w') as f:
            f.write(text)
        p = _backmxd_t(conf, d)
        assert p.returncode == 0, (
            'backmxd -t contrib/backmx.conf.example: exit %d:\n%s' %
            (p.returncode, p.stderr))
        assert 'warning' not in p.stderr, (
            'backmx.conf.example warns:\n%s' % p.stderr)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_docs_systemd_unit(world):
    # the template's paths follow PREFIX: make writes BUILD/backmx.service
    tmpl = _read(os.path.join(CONTRIB, 'backmx.service.in'))
    assert '/usr/local/sbin' not in tmpl, 'backmx.service.in hard-codes /usr/local/sbin'
    out = os.path.join(world.build, 'unit-test')
    p = subprocess.run(['make', '-s', '-C', ROOT, 'BUILD=' + out, 'PREFIX=/opt/bx',
                        out + '/backmx.service'], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    text = _read(os.path.join(out, 'backmx.service'))
    shutil.rmtree(out, ignore_errors=True)
    for s in ('Type=notify',
              'ExecStartPre=/opt/bx/sbin/backmxd -t -c /etc/backmx/backmx.conf',
              'ExecStart=/opt/bx/sbin/backmxd -f ',
              'ExecReload=/opt/bx/sbin/backmxd -t ',
              'ExecReload=/bin/kill -HUP $MAINPID',
              'RuntimeDirectory=backmx', 'ReadWritePaths=/var/spool/backmx',
              'CAP_NET_BIND_SERVICE'):
        assert s in text, 'the generated backmx.service lacks %r' % s
    assert '@' not in text.replace('@system-service', ''), text
    # reload checks the configuration before the HUP
    assert text.index('ExecReload=/opt/bx/sbin/backmxd -t') < text.index('ExecReload=/bin/kill')
    # the paths in the unit are the defaults the man pages document
    conf = _read(os.path.join(MAN, 'backmx.conf.5'))
    assert '/var/spool/backmx' in conf and '/run/backmx/control.sock' in conf
