#!/usr/bin/python3
"""aptsim.py - a simulated Debian host for contrib/install-deps (test_install_safety.py).

    aptsim.py make DIR [DROP...]   DIR/status: a copy of /var/lib/dpkg/status
                                   with exim4-daemon-light (and its exim4
                                   Depends) installed, postfix and DROP absent;
                                   DIR/apt-get and DIR/dpkg-query wrappers
    aptsim.py apt DIR ARGS...      the apt-get wrapper: `apt-get -s -o
                                   Dir::State::status=DIR/status ARGS`
    aptsim.py query DIR ARGS...    the dpkg-query wrapper (--admindir=DIR)

Nothing on the machine changes: apt-get only simulates (-s) against the
copy, `update` and `download` are logged and refused, and the packages a
simulated install would add ("Inst" lines) are marked installed in the
copy only, so install-deps' check after the install sees them.  Every
apt-get call goes to DIR/calls, its simulated output to DIR/sim.log.
"""
import os
import re
import subprocess
import sys

HERE = os.path.abspath(__file__)
EXIM = ['exim4-daemon-light', 'exim4-base', 'exim4-config']
DROP_FIELDS = re.compile(r'(Filename|Size|MD5sum|SHA256|SHA1|Description-md5|Tag|Section|'
                         r'Priority):')


def _stanzas(text):
    return [s for s in text.split('\n\n') if s.strip()]


def _show(pkgs):
    """{name: apt-cache stanza} of the candidate versions of PKGS"""
    r = subprocess.run(['apt-cache', 'show', '--no-all-versions'] + sorted(pkgs),
                       capture_output=True, text=True)
    out = {}
    for s in _stanzas(r.stdout):
        m = re.match(r'Package: (\S+)', s)
        if m and m.group(1) not in out:
            out[m.group(1)] = s
    return out


def _deps(stanza):
    """the first alternative of every Depends/Pre-Depends of STANZA"""
    out = []
    for m in re.finditer(r'(?m)^(?:Pre-)?Depends: (.*)$', stanza):
        for dep in m.group(1).split(','):
            out.append(dep.split('|')[0].strip().split()[0].split(':')[0])
    return out


def _candidates(pkgs):
    """{name: candidate version} (apt-cache policy, one call)"""
    r = subprocess.run(['apt-cache', 'policy'] + sorted(pkgs), capture_output=True, text=True)
    return dict(re.findall(r'(?m)^(\S+?)(?::\w+)?:\n\s+Installed: .*\n\s+Candidate: (\S+)',
                           r.stdout))


def make(d, drop):
    """DROP is narrowed to what apt can put back as it was: packages whose
    installed version is apt's candidate and that no package kept in the
    copy depends on; the ones dropped are written to DIR/dropped."""
    os.makedirs(d, exist_ok=True)
    stanzas = {}
    other = []
    for s in _stanzas(open('/var/lib/dpkg/status').read()):
        m = re.match(r'Package: (\S+)', s)
        if m and 'Status: install ok installed' in s:
            stanzas[m.group(1)] = s
        else:
            other.append(s)
    ver = {p: re.search(r'(?m)^Version: (\S+)', s).group(1) for p, s in stanzas.items()
           if re.search(r'(?m)^Version: ', s)}
    cand = _candidates([p for p in drop if p in stanzas])
    drop = {p for p in drop if p in stanzas and cand.get(p) == ver.get(p)}
    drop.discard('postfix')
    while True:
        needed = set()
        for p, s in stanzas.items():
            if p not in drop and p != 'postfix':
                needed.update(_deps(s))
        if not drop & needed:
            break
        drop -= needed
    keep = [s for p, s in stanzas.items() if p not in drop and p != 'postfix'] + other
    names = set(p for p in stanzas if p not in drop and p != 'postfix')
    todo = set(EXIM)
    while todo:
        shown = _show(todo - names)
        if 'exim4-daemon-light' in todo and 'exim4-daemon-light' not in shown:
            sys.exit('aptsim: apt-cache does not know exim4-daemon-light')
        todo = set()
        for p, raw in shown.items():
            if p in names:
                continue
            lines = [l for l in raw.split('\n') if not DROP_FIELDS.match(l)]
            lines.insert(1, 'Status: install ok installed')
            keep.append('\n'.join(lines))
            names.add(p)
            todo.update(x for x in _deps(raw) if x not in names)
    with open(os.path.join(d, 'status'), 'w') as f:
        f.write('\n\n'.join(keep) + '\n')
    with open(os.path.join(d, 'dropped'), 'w') as f:
        f.write(''.join(p + '\n' for p in sorted(drop)))
    for name, sub in (('apt-get', 'apt'), ('dpkg-query', 'query')):
        path = os.path.join(d, name)
        with open(path, 'w') as f:
            f.write('#!/bin/sh\nexec /usr/bin/python3 %s %s %s "$@"\n' % (HERE, sub, d))
        os.chmod(path, 0o755)
    open(os.path.join(d, 'calls'), 'w').close()
    open(os.path.join(d, 'sim.log'), 'w').close()


def _mark_installed(d, pkgs):
    path = os.path.join(d, 'status')
    with open(path, 'a') as f:
        for p in pkgs:
            f.write('\nPackage: %s\nStatus: install ok installed\nVersion: 0\n'
                    'Architecture: all\nMaintainer: aptsim\nDescription: simulated\n' % p)


def apt(d, args):
    with open(os.path.join(d, 'calls'), 'a') as f:
        f.write(' '.join(args) + '\n')
    if not args or args[0] in ('update', 'download', 'source'):
        sys.stderr.write('aptsim: apt-get %s refused (simulation only)\n' % ' '.join(args))
        return 0 if args and args[0] == 'update' else 1
    r = subprocess.run(['apt-get', '-s', '-o', 'Dir::State::status=%s/status' % d,
                        '-o', 'Debug::NoLocking=1'] + args, capture_output=True, text=True)
    with open(os.path.join(d, 'sim.log'), 'a') as f:
        f.write('$ apt-get -s %s (rc %d)\n%s%s' % (' '.join(args), r.returncode,
                                                   r.stdout, r.stderr))
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    if r.returncode == 0:
        _mark_installed(d, re.findall(r'(?m)^Inst (\S+)', r.stdout))
    return r.returncode


def main(argv):
    if len(argv) >= 2 and argv[0] == 'make':
        make(argv[1], argv[2:])
        return 0
    if len(argv) >= 2 and argv[0] == 'apt':
        return apt(argv[1], argv[2:])
    if len(argv) >= 2 and argv[0] == 'query':
        os.execvp('dpkg-query', ['dpkg-query', '--admindir=%s' % argv[1]] + argv[2:])
    sys.stderr.write(__doc__)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
