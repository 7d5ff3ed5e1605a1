"""Two mirrored backmx nodes for the tests of issue 18 (test_peer*.py).

Node A is the usual instance (mx2.test.example on 127.0.0.3:25), its
peer certificate peera.test.example; node B listens on 127.0.0.50:25 with
peerb.test.example.  Each has peer_listen on its own address, port 4225.
"""
import os

# mirror.example: MX 10 mx1 (the primary sink), MX 20 mx2 (node A) and
# MX 20 mx2b (node B), MX 30 mx3 (the decoy)
DOMAINS = ('domain mirror.example {\n\trecipients %(dir)s/backup.rcpts\n'
           '\troute mx\n}\n')
RCPT = 'alice@mirror.example'

A_ADDR, B_ADDR = '127.0.0.3', '127.0.0.50'
PEER_PORT = 4225


def peer_conf(world, me, other, my_addr, other_addr, ack='peer',
              takeover='1h', cert=None, key=None, ca=None):
    c = world.certs
    return '\n'.join([
        'peer %s.test.example %s:%d' % (other, other_addr, PEER_PORT),
        'peer_listen %s:%d' % (my_addr, PEER_PORT),
        'peer_cert %s' % (cert or os.path.join(c, me + '.pem')),
        'peer_key %s' % (key or os.path.join(c, me + '.key')),
        'peer_ca %s' % (ca or os.path.join(c, 'ca.pem')),
        'peer_ack %s' % ack,
        'takeover_after %s' % takeover,
    ]) + '\n'


def node_a(world, start=True, extra='', **kw):
    kw.setdefault('domains', DOMAINS)
    conf = peer_conf(world, 'peera', 'peerb', A_ADDR, B_ADDR,
                     **{k: kw.pop(k) for k in list(kw)
                        if k in ('ack', 'takeover', 'cert', 'key', 'ca')})
    return world.backmx(start=start, extra=conf + extra, **kw)


def node_b(world, start=True, extra='', **kw):
    kw.setdefault('domains', DOMAINS)
    conf = peer_conf(world, 'peerb', 'peera', B_ADDR, A_ADDR,
                     **{k: kw.pop(k) for k in list(kw)
                        if k in ('ack', 'takeover', 'cert', 'key', 'ca')})
    kw.setdefault('hostname', 'mx2b.test.example')
    kw.setdefault('listen', ['%s:25' % B_ADDR])
    return world.backmx(start=start, extra=conf + extra, **kw)


def wait_linked(a, b, timeout=15):
    """Both connections up, as both nodes log them."""
    for n in (a, b):
        n.wait_log(r'peer: own-spool link to \S+ \(\S+\) up', timeout)
        n.wait_log(r'peer: replica link from \S+ \(\S+\) up', timeout)
