"""runner.py - run the integration tests inside the test namespace.

    runner.py --build BUILD [--results FILE] [--workdir DIR] [-k PATTERN]
              [--timeout SECONDS] [--durations FILE] [test_file.py ...]
    runner.py --plan N [--table FILE ...] [test_file.py ...]
    runner.py --merge-durations FILE [shard_durations ...]

Imports every tests/integration/test_*.py (or the files named), runs each
function test_*(world) in file order with a fresh world (sinks up and
empty), prints "PASS name (time)" or "FAIL name: reason" and appends the
same line to the results file.  After every test it stops every backmxd
the test started; for a failed test it prints their last log lines.
A test that runs longer than its timeout (120 s, or the function's
`timeout` attribute) is interrupted and fails.  -k PATTERN (a regular
expression) selects tests by "file::name".  Exit 1 when any test failed.
A file name without a directory is looked up in tests/integration/.

--durations FILE appends "test_file.py SECONDS" for every file run in full
(no -k).  --plan N splits the files (default: all) into N shards of about
equal total duration, greedy, longest first, by the duration tables (later
tables win; a file in none counts DEFAULT_DURATION), and prints one shard
per line (test_world.py first in its shard).  --merge-durations FILE
folds shard duration files into FILE (run.sh keeps BUILD/integration-durations,
so the next run balances by what this machine measured).
"""
import argparse
import glob
import importlib.util
import inspect
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

DEFAULT_TIMEOUT = 120
DEFAULT_DURATION = 20.0


class TestTimeout(BaseException):
    """Raised in the test by SIGALRM; BaseException so that a test's own
    `except Exception` does not swallow it."""


def _alarm(signum, frame):
    raise TestTimeout()


def _collect(files, pattern):
    import re
    rx = re.compile(pattern) if pattern else None
    tests, errors = [], []
    for path in files:
        modname = os.path.splitext(os.path.basename(path))[0]
        try:
            spec = importlib.util.spec_from_file_location(modname, path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[modname] = mod
            spec.loader.exec_module(mod)
        except BaseException as e:
            errors.append((modname, 'import failed: %s' %
                           traceback.format_exception_only(type(e), e)[-1].strip()))
            continue
        fns = [f for n, f in vars(mod).items()
               if n.startswith('test_') and inspect.isfunction(f)
               and f.__module__ == modname]
        fns.sort(key=lambda f: f.__code__.co_firstlineno)
        for f in fns:
            full = '%s::%s' % (modname, f.__name__)
            if rx and not rx.search(full):
                continue
            tests.append((modname, f))
    return tests, errors


def _all_files():
    # test_world.py first: when the world itself is broken, that is the
    # first failure to read
    return sorted(glob.glob(os.path.join(HERE, 'test_*.py')),
                  key=lambda f: (os.path.basename(f) != 'test_world.py', f))


def _resolve(files):
    out = []
    for f in files:
        if not os.path.exists(f) and os.path.exists(os.path.join(HERE, f)):
            f = os.path.join(HERE, f)
        out.append(f)
    return out


def _read_table(path, table):
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and not line.startswith('#'):
                    try:
                        table[parts[0]] = float(parts[1])
                    except ValueError:
                        pass
    except OSError:
        pass
    return table


def plan(n, files, tables):
    """greedy: longest file first onto the least loaded shard"""
    table = {}
    for t in tables:
        _read_table(t, table)
    dur = {f: table.get(os.path.basename(f), DEFAULT_DURATION) for f in files}
    shards = [[0.0, []] for _ in range(max(1, n))]
    for f in sorted(files, key=lambda f: (-dur[f], f)):
        s = min(shards, key=lambda s: s[0])
        s[0] += dur[f]
        s[1].append(f)
    out = []
    for total, fs in shards:
        if fs:
            fs.sort(key=lambda f: (os.path.basename(f) != 'test_world.py', f))
            out.append(fs)
    return out


def merge_durations(target, sources):
    table = _read_table(target, {})
    for s in sources:
        _read_table(s, table)
    tmp = target + '.tmp'
    with open(tmp, 'w') as f:
        f.write('# seconds per integration test file, measured by run.sh\n')
        for k in sorted(table):
            f.write('%s %.1f\n' % (k, table[k]))
    os.replace(tmp, target)


def _reason(e):
    if isinstance(e, TestTimeout):
        return 'timed out'
    text = str(e).strip()
    first = text.splitlines()[0] if text else ''
    name = type(e).__name__
    if isinstance(e, AssertionError):
        return first or 'assertion failed'
    return '%s: %s' % (name, first) if first else name


def _emit(results, line):
    print(line, flush=True)
    with open(results, 'a') as f:
        f.write(line + '\n')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--build', default='build')
    ap.add_argument('--results')
    ap.add_argument('--workdir')
    ap.add_argument('-k', dest='pattern')
    ap.add_argument('--timeout', type=int, default=DEFAULT_TIMEOUT)
    ap.add_argument('--durations')
    ap.add_argument('--plan', type=int)
    ap.add_argument('--table', action='append', default=[])
    ap.add_argument('--merge-durations')
    ap.add_argument('files', nargs='*')
    a = ap.parse_args()

    if a.merge_durations:
        merge_durations(a.merge_durations, a.files)
        return 0
    if a.plan:
        for fs in plan(a.plan, _resolve(a.files) or _all_files(), a.table):
            print(' '.join(fs))
        return 0

    import harness  # not needed to plan (aiosmtpd only in /usr/bin/python3)

    build = os.path.abspath(a.build)
    results = a.results or os.path.join(build, 'results')
    os.makedirs(os.path.dirname(results), exist_ok=True)
    workdir = a.workdir or tempfile.mkdtemp(prefix='backmx-it-')
    os.makedirs(workdir, exist_ok=True)
    files = _resolve(a.files) or _all_files()

    tests, errors = _collect(files, a.pattern)
    failed = 0
    for modname, why in errors:
        _emit(results, 'FAIL %s: %s' % (modname, why))
        failed += 1
    if not tests:
        if not errors:
            print('integration: no tests selected', flush=True)
        return 1 if failed else 0

    try:
        world = harness.World(build, workdir)
    except BaseException as e:
        _emit(results, 'FAIL integration-world: sinks did not start: %s' % _reason(e))
        traceback.print_exc()
        return 1

    signal.signal(signal.SIGALRM, _alarm)
    current = {'name': None, 'deadline': None}

    def watchdog():
        # a test stuck where SIGALRM cannot reach it (a C call that
        # retries EINTR): kill the daemons to unblock it, then give up.
        while True:
            time.sleep(1)
            d = current['deadline']
            if d is None:
                continue
            over = time.monotonic() - d
            if over > 10:
                world.kill_all()
            if over > 60:
                _emit(results, 'FAIL %s: hung past its timeout; runner aborted'
                      % current['name'])
                os._exit(1)
    threading.Thread(target=watchdog, daemon=True).start()

    file_time = {}
    for modname, fn in tests:
        name = fn.__name__
        limit = int(getattr(fn, 'timeout', a.timeout))
        err = None
        tb = ''
        t0 = time.monotonic()
        try:
            world.begin(name)
            current['name'] = name
            current['deadline'] = t0 + limit
            signal.alarm(limit)
            try:
                fn(world)
            finally:
                signal.alarm(0)
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            err = e
            tb = traceback.format_exc()
        current['deadline'] = time.monotonic() + 60
        counts = [(s.name, len(s.messages())) for s in world.sinks.values()]
        problems, logs = world.cleanup()
        current['deadline'] = None
        dt = time.monotonic() - t0
        file_time[modname] = file_time.get(modname, 0.0) + dt
        if err is None and not problems:
            _emit(results, 'PASS %s (%.1fs)' % (name, dt))
            # a passed test's spools and logs are not needed: free the
            # disk now (replicated spools take ~150 MB each), unless
            # BACKMX_IT_KEEP_PASSED asks to keep them for reading.
            if not os.environ.get('BACKMX_IT_KEEP_PASSED'):
                for d, _tail in logs:
                    shutil.rmtree(d, ignore_errors=True)
            continue
        failed += 1
        if err is not None:
            reason = _reason(err)
            if isinstance(err, TestTimeout):
                reason = 'timed out after %ds' % limit
        else:
            reason = problems[0]
        reason = ' '.join(reason.split())[:300]
        _emit(results, 'FAIL %s: %s' % (name, reason))
        if tb:
            print('    ' + tb.rstrip().replace('\n', '\n    '))
        for p in problems:
            print('    problem: %s' % p)
        for d, tail in logs:
            print('    --- backmxd log (%s), last lines:' % d)
            for line in tail.splitlines():
                print('    | ' + line)
        print('    sinks: ' + ', '.join('%s %d message(s)' % c for c in counts))
        sys.stdout.flush()

    world.close()
    if a.durations and not a.pattern:
        with open(a.durations, 'a') as f:
            for modname, t in file_time.items():
                f.write('%s.py %.1f\n' % (modname, t))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
