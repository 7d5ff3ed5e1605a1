"""DNSBL at connect: the client address (IPv4 reversed octets, IPv6
nibbles) looked up in each `dnsbl` zone served by the harness's nsd
(zones/bl.example.zone, zones/wl.example.zone).  Listed: 554 5.7.1 with
the zone and its TXT; not listed or outside the answer filter: served;
a zone whose server fails (not served: REFUSED/SERVFAIL) never blocks;
dnsbl_allow is never looked up; answers are cached; the address a PROXY
header carries is the one looked up.
"""
import socket
import time

from test_proxy import Conn, v2, EXTRA as PROXY_EXTRA

ADDR = ('127.0.0.3', 25)


def _greeting(source):
    s = socket.socket()
    s.settimeout(15)
    s.bind((source, 0))
    s.connect(ADDR)
    f = s.makefile('rb')
    line = f.readline().decode()
    rest = b''
    if not line.startswith('220'):
        rest = s.recv(100)      # closed after the refusal
    else:
        s.sendall(b'QUIT\r\n')
        f.readline()
    s.close()
    return line.strip(), rest


def _stat(b, name):
    for l in b.ctl('stats').stdout.splitlines():
        p = l.split()
        if len(p) == 2 and p[0] == name:
            return int(p[1])
    raise AssertionError('no %s in stats' % name)


def test_dnsbl_listed_refused_clean_accepted(world):
    p = world.sinks['primary']
    b = world.backmx(extra='dnsbl bl.example=127.0.0.[2..11]\n'
                           'dnsbl wl.example\n')
    line, rest = _greeting('127.0.0.20')
    assert line == ('554 5.7.1 Service unavailable; client [127.0.0.20] '
                    'blocked using bl.example; Listed for testing, see '
                    'http://bl.example/q?127.0.0.20'), line
    assert rest == b''
    b.wait_log(r'NOQUEUE: reject: CONNECT from unknown\[127\.0\.0\.20\]: 554 5\.7\.1 '
               r'.*filter=dnsbl')
    # second zone, no TXT
    line, _ = _greeting('127.0.0.22')
    assert line == ('554 5.7.1 Service unavailable; client [127.0.0.22] '
                    'blocked using wl.example'), line
    # listed at 127.0.0.1, outside the filter of bl.example; not in wl
    line, _ = _greeting('127.0.0.21')
    assert line.startswith('220'), line
    # clean client: mail goes through
    s = socket.socket()
    s.bind(('127.0.0.23', 0))
    s.close()
    import smtplib
    c = smtplib.SMTP(timeout=15, source_address=('127.0.0.23', 0))
    c.connect(*ADDR)
    c.ehlo('clean.example')
    c.sendmail('a@sender.example', ['alice@backup.example'],
               b'Subject: clean\r\n\r\nhello\r\n')
    c.quit()
    p.wait_messages(1, timeout=15)
    assert _stat(b, 'dnsbl_rejected') == 2
    assert _stat(b, 'dnsbl_accepted') >= 2


def test_dnsbl_cached(world):
    b = world.backmx(extra='dnsbl bl.example=127.0.0.[2..11]\n')
    line, _ = _greeting('127.0.0.20')
    assert line.startswith('554 5.7.1'), line
    assert 'filter=dnsbl (cached)' not in b.log_text()
    # the second time the cached answer (TTL 300) decides, no query
    line, _ = _greeting('127.0.0.20')
    assert line.startswith('554 5.7.1'), line
    b.wait_log(r'CONNECT from unknown\[127\.0\.0\.20\]: 554 .*filter=dnsbl \(cached\)')
    assert _stat(b, 'dnsbl_rejected') == 2


def test_dnsbl_cache_ttl_and_zone_metrics(world):
    """a cached answer lives for its TTL only (127.0.0.24: 2 s), then the
    zone is asked again; each zone's answers are counted per zone"""
    import subprocess
    b = world.backmx(extra='dnsbl bl.example=127.0.0.[2..11]\n'
                     'dnsbl wl.example\n', metrics='127.0.0.3:9427')
    line, _ = _greeting('127.0.0.24')
    assert line.startswith('554 5.7.1'), line
    line, _ = _greeting('127.0.0.24')
    assert line.startswith('554 5.7.1'), line
    b.wait_log(r'CONNECT from unknown\[127\.0\.0\.24\]: 554 .*filter=dnsbl \(cached\)')
    time.sleep(4)               # past the 2 s TTL
    line, _ = _greeting('127.0.0.24')
    assert line.startswith('554 5.7.1'), line
    lines = [l for l in b.log_text().splitlines()
             if 'CONNECT from unknown[127.0.0.24]: 554' in l]
    assert len(lines) == 3, lines
    assert [l.endswith('filter=dnsbl (cached)') for l in lines] == \
        [False, True, False], lines
    line, _ = _greeting('127.0.0.30')       # clean in both zones
    assert line.startswith('220'), line
    r = subprocess.run(['curl', '-s', '--max-time', '10',
                        'http://127.0.0.3:9427/metrics'],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = r.stdout
    assert 'backmx_dnsbl_answers_total{zone="bl.example",answer="listed"} 3' \
        in m, m
    # clean: 127.0.0.30 (and the harness's probe from 127.0.0.1)
    import re
    n = re.search(r'backmx_dnsbl_answers_total\{zone="bl\.example",'
                  r'answer="clean"\} (\d+)', m)
    assert n and int(n.group(1)) >= 1, m
    assert 'backmx_dnsbl_answers_total{zone="wl.example",answer="clean"} ' \
        in m, m
    pt = subprocess.run(['promtool', 'check', 'metrics'], input=m,
                        capture_output=True, text=True, timeout=30)
    assert pt.returncode == 0, pt.stdout + pt.stderr


def test_dnsbl_failure_never_blocks(world):
    p = world.sinks['primary']
    # down.example is not served at all: the resolver gets REFUSED and
    # answers SERVFAIL; the listed address must still be let in
    b = world.backmx(extra='dnsbl down.example\n')
    line, _ = _greeting('127.0.0.20')
    assert line.startswith('220'), line
    b.wait_log(r'dnsbl: 20\.0\.0\.127\.down\.example: .*not blocking')
    import smtplib
    c = smtplib.SMTP(timeout=15, source_address=('127.0.0.20', 0))
    c.connect(*ADDR)
    c.sendmail('a@sender.example', ['alice@backup.example'],
               b'Subject: through\r\n\r\nhello\r\n')
    c.quit()
    p.wait_messages(1, timeout=15)
    assert _stat(b, 'dnsbl_tempfailed') >= 1


def test_dnsbl_allow_not_looked_up(world):
    b = world.backmx(extra='dnsbl bl.example\ndnsbl_allow 127.0.0.20\n')
    line, _ = _greeting('127.0.0.20')
    assert line.startswith('220'), line
    assert 'bl.example' not in b.log_text()


def test_dnsbl_proxied_address(world):
    b = world.backmx(extra=PROXY_EXTRA + 'dnsbl bl.example=127.0.0.[2..11]\n')
    c = Conn()
    c.send(v2(src='192.0.2.99'))
    r = c.reply()
    assert r.startswith('554 5.7.1 Service unavailable; client [192.0.2.99] '
                        'blocked using bl.example'), r
    c = Conn()
    c.send(b'PROXY TCP6 2001:db8::99 ::1 1234 25\r\n')
    r = c.reply()
    assert r.startswith('554 5.7.1 Service unavailable; client [2001:db8::99]'), r
    c = Conn()
    c.send(v2(src='192.0.2.98'))
    assert c.reply().startswith('220')
    # the same v2 header from a host not in proxy_allow: dropped
    c = Conn(source='127.0.0.10')
    c.send(v2(src='192.0.2.99'))
    assert c.dropped()
