"""Recipients the primary knows: `recipients FILE callout`, the verify
cache (verify.db in the spool), verify_down and accept_when (relay/callout.c,
relay/rcpt_verify.c, spool/verify.c, policy/recipients.c).

The primary is tests/integration/primary.py on 127.0.0.9:25, reached by a
static route, knowing bob only; the recipient file lists alice.  The world's
MX primary sink (127.0.0.2) is used for the route-mx and catch-all case.
"""
import json
import os
import socket
import time

from primary import Primary

PRIMARY = '127.0.0.9'


def _domains(extra='', down='accept-known', name='verify.example',
             sources='%(dir)s/verify.rcpts callout'):
    return ('domain %s {\n recipients %s\n route [%s]:25\n'
            ' verify_cache 30d 1h\n verify_down %s\n%s}\n'
            % (name, sources, PRIMARY, down, extra))


def _start(world, domains=None, **kw):
    b = world.backmx(start=False, domains=domains or _domains(),
                     retry='1h', **kw)
    with open(b.dir + '/verify.rcpts', 'w') as f:
        f.write('alice\n')
    b.start()
    return b


def _rcpt(b, addr, sender='s@sender.example'):
    s = b.smtp()
    s.mail(sender)
    code, msg = s.rcpt(addr)
    s.quit()
    return code, msg.decode()


def _primary(users=('bob',)):
    return Primary(PRIMARY, users=users)


def _stats(b):
    r = b.ctl('stats', '--json')
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[0])


def test_callout_known_unknown_cached(world):
    p = _primary()
    try:
        b = _start(world)
        code, msg = _rcpt(b, 'bob@verify.example')
        assert code == 250, (code, msg)
        assert p.rcpts() == ['<bob@verify.example>'], p.rcpts()
        assert 'DATA' not in p.verbs(), p.verbs()
        assert p.verbs()[:2] == ['EHLO', 'MAIL'], p.verbs()
        # ghost: every source says no -> 550 5.1.1, echoing the primary
        s = b.smtp()
        s.mail('s@sender.example')
        code, msg = s.rcpt('ghost@verify.example')
        assert code == 550 and b'5.1.1' in msg, (code, msg)
        assert b'no such user here' in msg, msg
        code, _ = s.docmd('DATA')
        assert code == 554, code
        s.quit()
        q = b.ctl('queue', '--json')
        assert q.returncode == 0 and q.stdout.strip() == '', q.stdout
        # within the TTL: from the cache, no second callout
        for addr in ('bob@verify.example', 'BOB@verify.example',
                     'ghost@verify.example'):
            code, msg = _rcpt(b, addr)
            assert code == (250 if 'ob' in addr.lower() else 550), (addr, code)
        assert p.rcpts() == ['<bob@verify.example>',
                             '<ghost@verify.example>'], p.rcpts()
        # a listed recipient never costs a callout
        assert _rcpt(b, 'alice@verify.example')[0] == 250
        assert len(p.rcpts()) == 2
        st = _stats(b)
        assert st['verify_callouts'] == 2, st
        assert st['verify_hits'] >= 3, st
        assert st['verify_valid'] >= 2 and st['verify_invalid'] >= 2, st
        # backmxctl verify shows the cached answer and its age
        r = b.ctl('verify', 'bob@verify.example')
        assert r.returncode == 0, r.stderr
        assert 'cache callout: valid, 250' in r.stdout, r.stdout
        assert 'fresh' in r.stdout and 'verdict: 250' in r.stdout, r.stdout
        r = b.ctl('verify', 'nobody@not-ours.example')
        assert r.returncode != 0 and '5.7.1' in (r.stdout + r.stderr), r
        # --now asks the primary again
        r = b.ctl('verify', 'ghost@verify.example', '--now')
        assert r.returncode == 0 and 'verdict: 550' in r.stdout, r.stdout
        assert len(p.rcpts()) == 3, p.rcpts()
        m = b.ctl('stats')
        assert 'verify_callouts' in m.stdout
    finally:
        p.close()


def test_callout_pipelined_rcpts_wait_in_order(world):
    """The session reads no further command while a callout runs: the
    replies of pipelined RCPTs come back in order."""
    p = _primary()
    p.delay = 0.3
    try:
        b = _start(world)
        c = socket.create_connection(('127.0.0.3', 25), timeout=20)
        f = c.makefile('rb')
        assert f.readline().startswith(b'220')
        c.sendall(b'EHLO client.example\r\n')
        while True:
            line = f.readline()
            if line[3:4] == b' ':
                break
        c.sendall(b'MAIL FROM:<s@sender.example>\r\n'
                  b'RCPT TO:<bob@verify.example>\r\n'
                  b'RCPT TO:<ghost@verify.example>\r\n'
                  b'RCPT TO:<alice@verify.example>\r\n'
                  b'RSET\r\nQUIT\r\n')
        codes = [f.readline()[:3] for _ in range(6)]
        assert codes == [b'250', b'250', b'550', b'250', b'250', b'221'], codes
        c.close()
    finally:
        p.close()


def test_callout_concurrent_share_one_question(world):
    p = _primary()
    p.delay = 1.0
    try:
        b = _start(world)
        socks = []
        for _ in range(3):
            s = b.smtp()
            s.mail('s@sender.example')
            s.putcmd('RCPT', 'TO:<bob@verify.example>')
            socks.append(s)
        for s in socks:
            code, _ = s.getreply()
            assert code == 250, code
        assert p.rcpts() == ['<bob@verify.example>'], p.rcpts()
    finally:
        p.close()


def test_callout_primary_down_accept_known_and_tempfail(world):
    p = _primary()
    try:
        domains = (_domains() +
                   _domains(name='strict.example', down='tempfail'))
        b = _start(world, domains=domains)
        assert _rcpt(b, 'bob@verify.example')[0] == 250
        assert _rcpt(b, 'bob@strict.example')[0] == 250
        p.set_mode('down')
        # never seen: unknown -> 450 4.4.3, never 250
        code, msg = _rcpt(b, 'carol@verify.example')
        assert code == 450 and '4.4.3' in msg, (code, msg)
        # the cached yes is fresh: still 250 (no callout needed)
        assert _rcpt(b, 'bob@verify.example')[0] == 250
        # listed in the file: 250 whatever the primary does
        assert _rcpt(b, 'alice@strict.example')[0] == 250
        # tempfail: everything not listed -> 450, carol and ghost too
        code, msg = _rcpt(b, 'carol@strict.example')
        assert code == 450 and '4.4.3' in msg, (code, msg)
        b.wait_log(r'callout: primary of verify\.example suspended')
        # suspended: further unknowns are answered at once
        t = time.time()
        for i in range(5):
            assert _rcpt(b, 'x%d@verify.example' % i)[0] == 450
        assert time.time() - t < 5
        assert b.log_text().count('suspended for') <= 3, b.log_tail()
    finally:
        p.close()


def test_callout_stale_yes_used_while_primary_down(world):
    p = _primary()
    try:
        domains = (_domains(extra=' verify_cache 2s 1h\n') +
                   _domains(name='strict.example', down='tempfail',
                            extra=' verify_cache 2s 1h\n'))
        b = world.backmx(start=False, domains=domains.replace(
            ' verify_cache 30d 1h\n', ''), retry='1h')
        with open(b.dir + '/verify.rcpts', 'w') as f:
            f.write('alice\n')
        b.start()
        assert _rcpt(b, 'bob@verify.example')[0] == 250
        assert _rcpt(b, 'bob@strict.example')[0] == 250
        p.set_mode('down')
        time.sleep(2.5)         # the positive TTL ran out
        code, msg = _rcpt(b, 'bob@verify.example')
        assert code == 250, (code, msg)        # stale yes, primary down
        code, msg = _rcpt(b, 'bob@strict.example')
        assert code == 450, (code, msg)        # tempfail: no stale yes
        assert _stats(b)['verify_stale'] >= 1
    finally:
        p.close()


def test_callout_cache_survives_restart(world):
    p = _primary()
    try:
        b = _start(world)
        assert _rcpt(b, 'bob@verify.example')[0] == 250
        assert _rcpt(b, 'ghost@verify.example')[0] == 550
        assert b.stop() == 0
        p.set_mode('down')
        b.start()
        assert _rcpt(b, 'bob@verify.example')[0] == 250
        assert _rcpt(b, 'ghost@verify.example')[0] == 550
        assert _rcpt(b, 'carol@verify.example')[0] == 450
        b.kill9()
        b.start()
        assert _rcpt(b, 'bob@verify.example')[0] == 250
        assert len(p.rcpts()) == 2, p.rcpts()
    finally:
        p.close()


def test_accept_when_primary_down(world):
    """accept_when primary-down from what the daemon sees, no restart: a
    probe says up (451 4.7.1, one probe a minute however many RCPTs); a
    failed delivery to the same primary (other.example shares the route)
    says down (250); a delivery that reaches it again says up (451)."""
    p = _primary(users=('alice', 'bob'))
    try:
        b = _start(world, domains=_domains(
            extra=' accept_when primary-down\n',
            sources='%(dir)s/verify.rcpts') +
            'domain other.example {\n recipients %%(dir)s/verify.rcpts\n'
            ' route [%s]:25\n}\n' % PRIMARY)
        code, msg = _rcpt(b, 'alice@verify.example')
        assert code == 451 and '4.7.1' in msg, (code, msg)
        # a probe, not a callout: no RCPT reached the primary
        assert p.rcpts() == [] and p.connections == 1, p.connections
        for _ in range(3):
            code, _ = _rcpt(b, 'ghost@verify.example')
            assert code == 451, code     # primary up: nothing is taken here
        assert p.connections == 1, p.connections    # no new probe
        st = _stats(b)
        assert st['accept_when_refused'] >= 4, st
        # the primary goes away; mail for other.example finds it so
        p.set_mode('down')
        s = b.smtp()
        s.mail('s@sender.example')
        assert s.rcpt('alice@other.example')[0] == 250
        assert s.data(b'Subject: t\r\n\r\nbody\r\n')[0] == 250
        s.quit()
        b.wait_log(r'to=<alice@other\.example>.*status=deferred')
        b.wait_log(r'callout: primary of verify\.example does not answer '
                   r'\(a delivery\)')
        s = b.smtp()
        s.mail('s@sender.example')
        code, msg = s.rcpt('alice@verify.example')
        assert code == 250, (code, msg)
        code, _ = s.data(b'Subject: t\r\n\r\nbody\r\n')
        assert code == 250
        s.quit()
        st = _stats(b)
        assert st['accept_when_accepted'] >= 1, st
        b.wait_log(r'accept_when primary-down: primary of verify\.example '
                   r'is down')
        # back: the flushed deliveries reach it, and that is news enough
        p.set_mode('up')
        n = p.connections
        r = b.ctl('flush')
        assert r.returncode == 0, r.stderr
        b.wait_log(r'to=<alice@verify\.example>.*status=bounced')
        b.wait_log(r'callout: primary of verify\.example answers \(a '
                   r'delivery reached it\)')
        code, msg = _rcpt(b, 'bob@verify.example')
        assert code == 451 and '4.7.1' in msg, (code, msg)
        assert 'RCPT TO:<alice@verify.example>' in \
            ' '.join('RCPT TO:' + r for r in p.rcpts())
        assert p.connections >= n + 1
    finally:
        p.close()


def test_callout_bad_primaries(world):
    p = _primary()
    try:
        b = _start(world, callout_timeout='2s')
        # garbage: a clear 450, never 250
        p.set_mode('garbage')
        code, msg = _rcpt(b, 'g1@verify.example')
        assert code == 450 and '4.4.3' in msg, (code, msg)
        b.wait_log(r'garbage reply')
        b.stop()
        # tarpit: the client waits about callout_timeout, then 450
        p.set_mode('tarpit')
        b.start()
        t = time.time()
        code, msg = _rcpt(b, 't1@verify.example')
        took = time.time() - t
        assert code == 450 and took < 6, (code, msg, took)
        b.stop()
        # catch-all: every address is "valid" -- callouts verify nothing
        p.set_mode('catchall')
        b.start()
        assert _rcpt(b, 'anything@verify.example')[0] == 250
        # 4xx from the primary: unknown
        p.set_mode('tempfail')
        code, msg = _rcpt(b, 'tf@verify.example')
        assert code == 450, (code, msg)
        # bad addresses never reach the primary
        n = len(p.rcpts())
        s = b.smtp()
        s.mail('s@sender.example')
        code, _ = s.rcpt('%s@verify.example' % ('x' * 65))
        assert code in (501, 553), code
        code, _ = s.docmd('RCPT TO:<a\x00b@verify.example>')
        assert code == 500, code
        code, _ = s.rcpt('a(b)*c@verify.example')
        assert code // 100 in (4, 5), code
        s.quit()
        assert len(p.rcpts()) <= n + 1, p.rcpts()
    finally:
        p.close()


def test_callout_route_mx(world):
    """route mx: the callout goes to the MX better than us (the world's
    primary sink at 127.0.0.2); the sink accepts everything (catch-all)."""
    domains = ('domain backup.example {\n recipients %(dir)s/backup.rcpts '
               'callout\n route mx\n}\n')
    b = world.backmx(domains=domains, retry='1h')
    code, msg = _rcpt(b, 'zed@backup.example')
    assert code == 250, (code, msg)
    b.wait_log(r'callout: backup\.example to=<zed@backup\.example>, '
               r'relay=mx1\.test\.example')
    world.sinks['primary'].set_mode('permfail')
    code, msg = _rcpt(b, 'yves@backup.example')
    assert code == 550, (code, msg)
    assert world.sinks['decoy'].messages() == []


def test_callout_config_errors(world):
    b = world.backmx(start=False, domains=(
        'domain v.example {\n recipients callout\n verify_cache 30d\n'
        ' verify_down maybe\n accept_when sometimes\n}\n'
        'domain w.example {\n recipients ldap:/nonexistent.ldap\n}\n'),
        callout_timeout='90s')
    import subprocess
    r = subprocess.run([world.backmxd, '-t', '-c', b.conf_path],
                       capture_output=True, text=True, timeout=30)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    for want in ('verify_cache: expected two durations',
                 'verify_down: expected accept-known or tempfail',
                 'accept_when: expected always or primary-down',
                 'callout_timeout', '/nonexistent.ldap'):
        assert want in out, (want, out)


def test_callout_limit_one_connection_many_addresses(world):
    """callout_limit 1: four sessions asking four different addresses at
    once share one connection to the primary, which gets the four RCPTs in
    turn (never two connections, never DATA); callout_rate 1: a new
    connection within the minute waits, bounded by callout_timeout, and
    the RCPT gets 450 4.4.3 without a second connection."""
    p = _primary(users=('bob', 'carl'))
    p.delay = 0.1
    try:
        b = _start(world, callout_limit='1', callout_rate='1',
                   callout_timeout='4s')
        socks = []
        for who in ('bob', 'ghost', 'carl', 'dora'):
            s = b.smtp()
            s.mail('s@sender.example')
            s.putcmd('RCPT', 'TO:<%s@verify.example>' % who)
            socks.append(s)
        codes = [s.getreply()[0] for s in socks]
        for s in socks:
            s.quit()
        assert codes == [250, 550, 250, 550], codes
        assert p.connections == 1, p.connections
        assert sorted(p.rcpts()) == ['<bob@verify.example>',
                                     '<carl@verify.example>',
                                     '<dora@verify.example>',
                                     '<ghost@verify.example>'], p.rcpts()
        assert 'DATA' not in p.verbs(), p.verbs()
        # the connection is gone (QUIT); one more a minute is allowed
        deadline = time.time() + 5
        while p.verbs()[-1:] != ['QUIT'] and time.time() < deadline:
            time.sleep(0.05)
        t = time.time()
        code, msg = _rcpt(b, 'erik@verify.example')
        took = time.time() - t
        assert code == 450 and '4.4.3' in msg, (code, msg)
        assert 3 < took < 8, took        # waited for callout_timeout
        assert p.connections == 1, p.connections
        # the cached answers still count, no connection needed
        assert _rcpt(b, 'bob@verify.example')[0] == 250
        assert p.connections == 1, p.connections
    finally:
        p.close()


def test_callout_tls_per_domain(world):
    """A callout speaks TLS as the domain's tls says: `tls verify` against
    the primary sink with mx1's certificate (test CA) -> STARTTLS, the
    name checked, logged with tls=; `tls encrypt` at a primary that does
    not offer STARTTLS -> no RCPT in clear, 450 4.4.3."""
    sink = world.sinks['primary']
    sink.set_tls(os.path.join(world.certs, 'mx1.pem'),
                 os.path.join(world.certs, 'mx1.key'))
    p = _primary()
    try:
        domains = ('domain backup.example {\n recipients %(dir)s/backup.rcpts '
                   'callout\n route mx\n tls verify\n}\n' +
                   _domains(extra=' tls encrypt\n'))
        b = _start(world, domains=domains,
                   tls_ca=os.path.join(world.certs, 'ca.pem'))
        code, msg = _rcpt(b, 'zed@backup.example')
        assert code == 250, (code, msg)
        line = b.wait_log(r'callout: backup\.example to=<zed@backup\.example>'
                          r', relay=mx1\.test\.example[^\n]*, tls=([^\n]*)')
        assert line.group(1).startswith('TLSv1.'), line.group(0)
        assert 'verified' in line.group(1), line.group(0)
        assert [r for r in sink.rcpt_log if r[1] == 'zed@backup.example'], \
            sink.rcpt_log
        # the threaded primary offers no STARTTLS: encrypt refuses it,
        # at once (not after callout_timeout) and with one connection
        t = time.time()
        code, msg = _rcpt(b, 'bob@verify.example')
        took = time.time() - t
        assert code == 450 and '4.4.3' in msg, (code, msg)
        b.wait_log(r'STARTTLS required by tls encrypt but not offered')
        assert p.rcpts() == [], p.rcpts()
        assert took < 5 and p.connections == 1, (took, p.connections)
    finally:
        p.close()
