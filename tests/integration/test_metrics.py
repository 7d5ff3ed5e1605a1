"""The Prometheus endpoint and `backmxctl stats` against the real daemon.

Tried: a scrape with curl parses as Prometheus text (HELP and TYPE before
every family, `name{labels} value` samples) and its numbers equal those
of `backmxctl stats --json`; counters move with traffic (sessions,
accepted, refused by reason); wrong paths, methods and garbage get
404/405/400 and the daemon keeps serving.
"""
import json
import re
import smtplib
import socket
import subprocess
import time

ADDR = '127.0.0.3'
PORT = 9425
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? '
                    r'(-?[0-9.eE+]+|NaN|[+-]Inf)$')


def _scrape():
    r = subprocess.run(['curl', '-s', '-S', '-i', '--max-time', '10',
                        'http://%s:%d/metrics' % (ADDR, PORT)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.replace('\r\n', '\n').partition('\n\n')
    assert head.startswith('HTTP/1.1 200'), head
    assert re.search(r'(?im)^content-type: text/plain; version=0\.0\.4',
                     head), head
    return body


def _parse(text):
    """Prometheus text format 0.0.4: {(name, labels): value}; checks that
    each family has HELP and TYPE before its samples."""
    typed, helped, samples = {}, set(), {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith('# HELP '):
            helped.add(line.split()[2])
            continue
        if line.startswith('# TYPE '):
            _, _, name, kind = line.split()
            assert kind in ('counter', 'gauge', 'histogram'), line
            assert name not in typed, 'TYPE twice: ' + line
            typed[name] = kind
            continue
        assert not line.startswith('#'), line
        m = SAMPLE.match(line)
        assert m, 'not a Prometheus sample: %r' % line
        name = m.group(1)
        fam = re.sub(r'_(bucket|sum|count)$', '', name)
        if fam != name and typed.get(fam) == 'histogram':
            key = (name, m.group(3) or '')
            assert key not in samples, 'sample twice: ' + line
            samples[key] = float(m.group(4))
            continue
        assert name in typed and name in helped, 'no HELP/TYPE for ' + name
        if typed[name] == 'counter':
            assert name.endswith('_total'), name
        key = (name, m.group(3) or '')
        assert key not in samples, 'sample twice: ' + line
        samples[key] = float(m.group(4))
    return samples


def _stats(b):
    r = b.ctl('stats', '--json')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout
    return json.loads(lines[0])


def _expected(st):
    """stats --json keys -> metric samples."""
    out = {}
    for k, v in st.items():
        if not isinstance(v, int):
            continue
        if k.startswith('refused_'):
            out[('backmx_refused_total', 'reason="%s"' % k[8:])] = v
        elif k in ('sessions_active', 'deliveries_active', 'spool_messages',
                   'spool_bytes'):
            out[('backmx_' + k, '')] = v
        elif k == 'milter_latency_ms':     # shown in seconds
            out[('backmx_milter_wait_seconds_total', '')] = v / 1000.0
        elif k == 'oldest_message_age':
            out[('backmx_oldest_message_age_seconds', '')] = v
        else:
            out[('backmx_%s_total' % k, '')] = v
    return out


def test_metrics_match_stats(world):
    world.sinks['primary'].set_mode('down')
    b = world.backmx(retry='1h', metrics='%s:%d' % (ADDR, PORT))
    s = b.smtp()
    s.sendmail('a@sender.example', ['alice@backup.example'],
               b'Subject: m1\r\n\r\nhello\r\n')
    try:
        s.sendmail('a@sender.example', ['x@elsewhere.example'],
                   b'Subject: m2\r\n\r\nhello\r\n')
    except smtplib.SMTPException:
        pass
    s.quit()
    time.sleep(1)
    samples = _parse(_scrape())
    for name in ('backmx_sessions_total', 'backmx_accepted_total',
                 'backmx_delivered_total', 'backmx_deferred_total',
                 'backmx_bounced_total', 'backmx_percent_hack_total',
                 'backmx_etrn_total', 'backmx_spool_messages',
                 'backmx_spool_bytes', 'backmx_oldest_message_age_seconds'):
        assert (name, '') in samples, name
    assert ('backmx_refused_total', 'reason="relay"') in samples
    st = _stats(b)
    exp = _expected(st)
    for key, v in exp.items():
        assert key in samples, 'stats has %s, metrics lacks it' % (key,)
        if key[0] == 'backmx_oldest_message_age_seconds':
            assert abs(samples[key] - v) <= 2, (key, samples[key], v)
        else:
            assert samples[key] == v, (key, samples[key], v)
    assert samples[('backmx_accepted_total', '')] == 1
    assert samples[('backmx_refused_total', 'reason="relay"')] >= 1
    assert samples[('backmx_spool_messages', '')] == 1
    assert samples[('backmx_spool_bytes', '')] > 0
    assert st['domains']['backup.example']['messages'] == 1, st['domains']


def test_stats_counters_move(world):
    world.sinks['primary'].set_mode('down')
    b = world.backmx(retry='1h')
    before = _stats(b)
    s = b.smtp()
    s.sendmail('a@sender.example', ['alice@backup.example'],
               b'Subject: c1\r\n\r\nhello\r\n')
    code, _ = s.docmd('MAIL FROM:<a@sender.example>')
    assert code == 250
    code, _ = s.docmd('RCPT TO:<x@elsewhere.example>')
    assert code == 550
    code, _ = s.docmd('RCPT TO:<nobody@backup.example>')
    assert code == 550
    s.docmd('RSET')
    s.quit()
    time.sleep(2)
    after = _stats(b)
    assert after['sessions'] >= before['sessions'] + 1, (before, after)
    assert after['accepted'] == before['accepted'] + 1, (before, after)
    assert after['accepted_bytes'] > before['accepted_bytes']
    assert after['refused_relay'] == before['refused_relay'] + 1
    assert after['refused_user'] == before['refused_user'] + 1
    assert after['spool_messages'] == 1
    assert after['deferred'] >= 1, after      # the primary is down
    r = b.ctl('stats')
    assert r.returncode == 0
    assert re.search(r'(?m)^accepted\s+1$', r.stdout), r.stdout
    assert re.search(r'(?m)^domain backup\.example\s', r.stdout), r.stdout


def _raw(req):
    s = socket.create_connection((ADDR, PORT), timeout=10)
    s.sendall(req)
    data = b''
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data


def test_metrics_http_errors(world):
    b = world.backmx(metrics='%s:%d' % (ADDR, PORT))
    assert _raw(b'GET /other HTTP/1.0\r\n\r\n').startswith(
        b'HTTP/1.0 404')
    assert _raw(b'POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n').startswith(
        b'HTTP/1.1 405')
    assert _raw(b'garbage\r\n\r\n').startswith(b'HTTP/1.0 400')
    assert _raw(b'GET /metrics HTTP/2.0\r\n\r\n').startswith(b'HTTP/1.0 400')
    assert _raw(b'GET /metrics HTTP/1.1\r\n' + b'X: ' + b'a' * 10000 +
                b'\r\n\r\n').startswith(b'HTTP/1.0 400')
    head = _raw(b'HEAD /metrics HTTP/1.0\r\n\r\n')
    assert head.startswith(b'HTTP/1.0 200') and head.endswith(b'\r\n\r\n')
    ok = _raw(b'GET /metrics?x=1 HTTP/1.0\r\n\r\n')
    assert ok.startswith(b'HTTP/1.0 200') and b'backmx_sessions_total' in ok
    # a silent client does not block others
    idle = socket.create_connection((ADDR, PORT), timeout=10)
    _parse(_scrape())
    idle.close()
    assert b.running()


def test_metrics_per_domain_promtool(world):
    """Per-domain outcomes, TLS outcomes, the queue gauges and the
    residence and latency histograms move with real deliveries; promtool
    (Prometheus's own checker) finds the page clean."""
    p, st = world.sinks['primary'], world.sinks['static']
    st.set_mode('down')
    b = world.backmx(retry='1h', metrics='%s:%d' % (ADDR, PORT))
    s = b.smtp()
    s.sendmail('a@sender.example', ['alice@backup.example'],
               b'Subject: d1\r\n\r\nhello\r\n')
    s.sendmail('a@sender.example', ['alice@static.example'],
               b'Subject: d2\r\n\r\nhello\r\n')
    s.sendmail('a@sender.example', ['bob@static.example'],
               b'Subject: d3\r\n\r\nhello\r\n')
    s.quit()
    p.wait_messages(1, timeout=15)
    b.wait_log(r'to=<bob@static.example>.*status=deferred', timeout=15)
    time.sleep(0.5)
    text = _scrape()
    samples = _parse(text)
    dom = 'backmx_domain_recipients_total'
    assert samples[(dom, 'domain="backup.example",status="sent"')] == 1
    assert samples[(dom, 'domain="backup.example",status="deferred"')] == 0
    assert samples[(dom, 'domain="static.example",status="deferred"')] == 2
    assert samples[(dom, 'domain="static.example",status="sent"')] == 0
    tls = 'backmx_domain_tls_total'
    assert samples[(tls, 'domain="backup.example",tls="none"')] == 1
    assert samples[(tls, 'domain="backup.example",tls="verified"')] == 0
    # the queue gauges: one sample per configured domain
    q = 'backmx_domain_queue_messages'
    assert samples[(q, 'domain="static.example"')] == 2, text
    assert samples[(q, 'domain="backup.example"')] == 0, text
    age = samples[('backmx_domain_oldest_message_age_seconds',
                   'domain="static.example"')]
    assert 0 <= age < 60, age
    assert samples[('backmx_domain_oldest_message_age_seconds',
                    'domain="backup.example"')] == 0
    assert samples[('backmx_domain_queue_scan_age_seconds', '')] == 0
    # residence: final outcomes only (the deferred ones are not final)
    h = 'backmx_queue_residence_seconds'
    lb = 'domain="backup.example"'
    assert samples[(h + '_count', lb)] == 1, text
    assert samples[(h + '_bucket', lb + ',le="+Inf"')] == 1
    assert samples[(h + '_bucket', lb + ',le="60"')] == 1
    assert samples[(h + '_sum', lb)] < 60
    assert (h + '_count', 'domain="static.example"') not in samples or \
        samples[(h + '_count', 'domain="static.example"')] == 0
    # latency: the attempt that reached the primary, none for the
    # deferrals that reached no server (static is down)
    h = 'backmx_delivery_latency_seconds'
    assert samples[(h + '_count', lb)] == 1, text
    assert samples[(h + '_bucket', lb + ',le="+Inf"')] == 1
    assert samples[(h + '_bucket', lb + ',le="60"')] == 1
    assert 0 <= samples[(h + '_sum', lb)] < 60
    assert (h + '_count', 'domain="static.example"') not in samples or \
        samples[(h + '_count', 'domain="static.example"')] == 0
    # the types as Prometheus sees them
    types = dict(re.findall(r'^# TYPE (\S+) (\S+)$', text, re.M))
    assert types['backmx_queue_residence_seconds'] == 'histogram'
    assert types['backmx_delivery_latency_seconds'] == 'histogram'
    assert types['backmx_domain_queue_messages'] == 'gauge'
    assert types['backmx_domain_oldest_message_age_seconds'] == 'gauge'
    r = subprocess.run(['promtool', 'check', 'metrics'], input=text,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, 'promtool: %s%s' % (r.stdout, r.stderr)
    assert r.stdout.strip() == '' and r.stderr.strip() == '', \
        'promtool lint: %s%s' % (r.stdout, r.stderr)
    # a delivery moves them: the static destination comes back
    st.set_mode('up')
    f = b.ctl('flush')
    assert f.returncode == 0, f.stderr
    st.wait_messages(2, timeout=20)
    b.wait_log(r'to=<bob@static.example>.*status=sent', timeout=15)
    time.sleep(0.5)
    samples = _parse(_scrape())
    assert samples[(q, 'domain="static.example"')] == 0
    assert samples[('backmx_domain_oldest_message_age_seconds',
                    'domain="static.example"')] == 0
    assert samples[(dom, 'domain="static.example",status="sent"')] == 2
    assert samples[('backmx_queue_residence_seconds_count',
                    'domain="static.example"')] == 2
    assert samples[('backmx_delivery_latency_seconds_count',
                    'domain="static.example"')] >= 1


def test_metrics_queue_background_pass(world):
    """Above the scrape-time limit (lowered to 0 by
    BACKMXD_TEST_METRICS_SYNC_MAX) the per-domain queue gauges come from
    a background pass: the first scrape has none yet and starts it, the
    next shows its counts and how old they are; the daemon keeps
    serving."""
    import os
    world.sinks['primary'].set_mode('down')
    world.sinks['static'].set_mode('down')
    os.environ['BACKMXD_TEST_METRICS_SYNC_MAX'] = '0'
    try:
        b = world.backmx(retry='1h', metrics='%s:%d' % (ADDR, PORT))
    finally:
        del os.environ['BACKMXD_TEST_METRICS_SYNC_MAX']
    s = b.smtp()
    for rc in (['alice@backup.example'], ['bob@backup.example'],
               ['alice@static.example', 'carol@backup.example']):
        s.sendmail('a@sender.example', rc, b'Subject: q\r\n\r\nhello\r\n')
    s.quit()
    b.wait_log(r'to=<alice@static.example>.*status=deferred', timeout=15)
    first = _parse(_scrape())
    q = 'backmx_domain_queue_messages'
    assert (q, 'domain="backup.example"') not in first, first
    deadline = time.time() + 10
    while True:
        samples = _parse(_scrape())
        if (q, 'domain="backup.example"') in samples:
            break
        assert time.time() < deadline, 'the background pass never finished'
        time.sleep(0.2)
    assert samples[(q, 'domain="backup.example"')] == 3, samples
    assert samples[(q, 'domain="static.example"')] == 1, samples
    assert 0 <= samples[('backmx_domain_queue_scan_age_seconds', '')] < 15
    assert samples[('backmx_spool_messages', '')] == 3
    assert b.running()


def test_metrics_grafana_dashboard(world):
    """contrib/grafana/backmx.json: valid JSON, every PromQL expression
    parses (promtool check rules) and names only metrics the page has."""
    import os
    path = os.path.join(world.root, 'contrib', 'grafana', 'backmx.json')
    with open(path) as f:
        dash = json.load(f)
    exprs = [t['expr'] for p in dash['panels'] for t in p['targets']]
    assert exprs
    rules = os.path.join(world.workdir, 'dashboard-rules.yml')
    with open(rules, 'w') as f:
        f.write('groups:\n- name: dashboard\n  rules:\n')
        for i, e in enumerate(exprs):
            e = e.replace('$domain', '.*')
            f.write('  - record: dashboard:expr%d\n    expr: %s\n'
                    % (i, json.dumps(e)))
    r = subprocess.run(['promtool', 'check', 'rules', rules],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    b = world.backmx(metrics='%s:%d' % (ADDR, PORT))
    families = set(re.findall(r'^# TYPE (\S+)', _scrape(), re.M))
    for e in exprs:
        for name in re.findall(r'\b(backmx_[a-z_]+)', e):
            base = re.sub(r'_(bucket|sum|count)$', '', name)
            assert base in families, (name, e)
    # the per-domain families issue 17 asks for each have a panel
    used = set(re.sub(r'_(bucket|sum|count)$', '', n)
               for e in exprs for n in re.findall(r'\b(backmx_[a-z_]+)', e))
    for fam in ('backmx_domain_queue_messages',
                'backmx_domain_oldest_message_age_seconds',
                'backmx_delivery_latency_seconds',
                'backmx_queue_residence_seconds',
                'backmx_domain_tls_total',
                'backmx_domain_recipients_total'):
        assert fam in used, 'no panel shows ' + fam
