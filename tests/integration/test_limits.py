"""Per-client limits: client_limit (concurrent sessions per address) and
client_rate (new sessions per window), 421 4.7.0 and close when over,
another address unaffected, counted in stats and metrics; the address a
PROXY header carries is the one counted; dnsbl_allow is exempt.
"""
import socket
import time

from test_proxy import Conn, v2, EXTRA as PROXY_EXTRA

ADDR = ('127.0.0.3', 25)


def _open(source):
    s = socket.socket()
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(ADDR)
    f = s.makefile('rb')
    return s, f.readline().decode()


def test_limits_client_limit(world):
    b = world.backmx(extra='client_limit 20\n')
    held = []
    for i in range(20):
        s, line = _open('127.0.0.11')
        assert line.startswith('220'), (i, line)
        held.append(s)
    s, line = _open('127.0.0.11')
    assert line.startswith('421 4.7.0'), line
    assert s.recv(100) == b''           # and closed
    s.close()
    s, line = _open('127.0.0.12')       # another address: served
    assert line.startswith('220'), line
    s.close()
    b.wait_log(r'reject: CONNECT from unknown\[127\.0\.0\.11\]: 421 [^\n]*filter=client_limit')
    # one ends, one more is allowed
    held.pop().close()
    for _ in range(50):
        s, line = _open('127.0.0.11')
        if line.startswith('220'):
            break
        s.close()
        time.sleep(0.05)
    assert line.startswith('220'), line
    held.append(s)
    st = b.ctl('stats').stdout
    assert any(l.split()[0] == 'refused_client_limit' and int(l.split()[1]) >= 1
               for l in st.splitlines() if l.strip()), st
    for s in held:
        s.close()


def test_limits_client_rate(world):
    b = world.backmx(extra='client_rate 5/m\n', metrics='127.0.0.3:9425')
    for i in range(5):
        s, line = _open('127.0.0.13')
        assert line.startswith('220'), (i, line)
        s.close()
    s, line = _open('127.0.0.13')
    assert line.startswith('421 4.7.0'), line
    s.close()
    s, line = _open('127.0.0.14')
    assert line.startswith('220'), line
    s.close()
    b.wait_log(r'reject: CONNECT from unknown\[127\.0\.0\.13\]: 421 [^\n]*filter=client_rate')
    import urllib.request
    text = urllib.request.urlopen('http://127.0.0.3:9425/metrics',
                                  timeout=5).read().decode()
    assert 'backmx_refused_total{reason="client_rate"} 1' \
        in text, text[:2000]


def test_limits_proxied_address_and_allow(world):
    b = world.backmx(extra=PROXY_EXTRA + 'client_limit 2\n'
                     'dnsbl_allow 198.51.100.0/24\n')
    held = []
    for i in range(2):
        c = Conn()
        c.send(v2(src='192.0.2.50'))
        assert c.reply().startswith('220')
        held.append(c)
    c = Conn()
    c.send(v2(src='192.0.2.50'))
    assert c.reply().startswith('421 4.7.0')
    # same proxy, another carried client: served
    c = Conn()
    c.send(v2(src='192.0.2.51'))
    assert c.reply().startswith('220')
    held.append(c)
    # dnsbl_allow: never limited
    for i in range(4):
        c = Conn()
        c.send(v2(src='198.51.100.7'))
        assert c.reply().startswith('220')
        held.append(c)
    b.wait_log(r'reject: CONNECT from unknown\[192\.0\.2\.50\]: 421 [^\n]*filter=client_limit')
    for c in held:
        c.close()
