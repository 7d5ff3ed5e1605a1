#!/usr/bin/env python3
"""circles.py - import circles of the tree, for a reader planning a clean-up.

Run from the top after `make all`:  python3 tests/tools/circles.py [--ignore SYM ...]
Function level: which object of build/obj/*/ calls which (nm: undefined
symbols matched to the file that defines them); prints the layer
violations (policy/ or spool/ calling relay/, policy/ calling spool/) and
every circle (strongly connected set of files) with the symbols on each
edge.  Include level: cycles among the tree's own headers.  --ignore drops
a symbol (e.g. the global `backmxd`) to see what circles remain without
it.  Not run by make check; it reads, never writes.
"""
import glob, os, re, subprocess, sys
ignore = set()
args = sys.argv[1:]
while args[:1] == ['--ignore'] and len(args) > 1:
    ignore.add(args[1]); args = args[2:]
objs = sorted(glob.glob('build/obj/*/*.o'))
defs, undefs = {}, {}
for o in objs:
    name = os.path.relpath(o, 'build/obj')[:-2]
    out = subprocess.run(['nm', o], capture_output=True, text=True).stdout
    d, u = set(), set()
    for line in out.splitlines():
        p = line.split()
        if len(p) == 2 and p[0] == 'U': u.add(p[1])
        elif len(p) == 3 and p[1] in 'TDBR': d.add(p[2])
    defs[name], undefs[name] = d, u
owner = {}
for n, d in defs.items():
    for s in d: owner.setdefault(s, n)
edges = {}
for n, u in undefs.items():
    for s in u:
        if s in owner and owner[s] != n and s not in ignore:
            edges.setdefault(n, {}).setdefault(owner[s], []).append(s)
# layer violations
for n, t in sorted(edges.items()):
    for m, syms in sorted(t.items()):
        if n.split('/')[0] in ('policy', 'spool') and m.split('/')[0] == 'relay':
            print('LAYER %s -> %s: %s' % (n, m, ' '.join(sorted(syms))))
        if n.split('/')[0] == 'policy' and m.split('/')[0] == 'spool':
            print('LAYER %s -> %s: %s' % (n, m, ' '.join(sorted(syms))))
# strongly connected components (Tarjan)
idx, low, st, on, sccs, c = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def visit(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in edges.get(v, {}):
        if w not in idx: visit(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(sorted(comp))
for v in sorted(defs):
    if v not in idx: visit(v)
for comp in sccs:
    print('CIRCLE (%d files): %s' % (len(comp), ' '.join(comp)))
    for a in comp:
        for b in comp:
            if b in edges.get(a, {}):
                print('   %s -> %s: %s' % (a, b, ' '.join(sorted(edges[a][b])[:4])))
# include cycles among project headers
inc = {}
for f in glob.glob('*/*.[ch]'):
    for line in open(f, errors='replace'):
        m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
        if m: inc.setdefault(os.path.basename(f), set()).add(m.group(1))
def cyc(v, path, seen):
    for w in inc.get(v, ()):
        if w in path: print('INCLUDE CYCLE:', ' -> '.join(path[path.index(w):] + [w])); continue
        if w not in seen: seen.add(w); cyc(w, path + [w], seen)
for h in sorted(x for x in inc if x.endswith('.h')): cyc(h, [h], set())
