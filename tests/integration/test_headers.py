"""Every header's include guard covers the whole header: the #ifndef /
#define pair comes first, its #endif last (relay/tls.h once closed its
guard in the middle, leaving half of it unguarded)."""
import glob
import os
import re

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))


def _directives(text):
    """the preprocessor lines of text outside comments, in order"""
    text = re.sub(r'/\*.*?\*/', '', text, flags=re.S)
    return [l.strip() for l in text.splitlines()
            if l.strip().startswith('#')]


def test_headers_include_guards(world):
    bad = []
    headers = []
    for d in ('relay', 'policy', 'spool'):
        headers += sorted(glob.glob(os.path.join(ROOT, d, '*.h')))
    assert len(headers) >= 10, headers
    for h in headers:
        name = os.path.relpath(h, ROOT)
        dirs = _directives(open(h, encoding='utf-8').read())
        if len(dirs) < 3 or not dirs[0].startswith('#ifndef ') or \
                dirs[1] != '#define ' + dirs[0].split()[1]:
            bad.append('%s: does not open with an include guard' % name)
            continue
        # the guard's #endif is the last directive and matches the
        # #ifndef: every #if* opened after it is closed before
        depth = 0
        for i, l in enumerate(dirs):
            if re.match(r'#\s*if', l):
                depth += 1
            elif re.match(r'#\s*endif', l):
                depth -= 1
                if depth == 0 and i != len(dirs) - 1:
                    bad.append('%s: include guard closed before the end '
                               '(directive %d of %d)' % (name, i + 1,
                                                         len(dirs)))
                    break
        else:
            if depth != 0:
                bad.append('%s: unbalanced #if/#endif' % name)
    assert bad == [], '\n'.join(bad)
