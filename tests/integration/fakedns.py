"""fakedns.py - a controllable DNS forwarder for the test world.

FakeDNS(port) is a real UDP DNS server on 127.0.0.1:PORT (a thread of
the runner) that backmxd uses as its `dns` server.  Queries for names at
or under one of its zones get what the test set for that zone:

    pass      relayed to nsd (127.0.0.1:53): the real answer
    nxdomain  NXDOMAIN, with the zone's SOA (TTL 1) in the authority
    servfail  SERVFAIL
    drop      no answer at all (a timeout)

Every other name is relayed to nsd.  `queries` counts the questions seen
per zone.  Used by test_dns_temp.py.
"""
import socket
import struct
import threading

UPSTREAM = ('127.0.0.1', 53)
MODES = ('pass', 'nxdomain', 'servfail', 'drop')


def _qname(pkt):
    """(name lowercased without the dot, offset after the question)"""
    i, labels = 12, []
    while True:
        n = pkt[i]
        i += 1
        if n == 0:
            break
        if n & 0xc0:
            raise ValueError('compressed question')
        labels.append(pkt[i:i + n].decode('ascii', 'replace').lower())
        i += n
    return '.'.join(labels), i + 4


def _wire(name):
    out = b''
    for label in name.split('.'):
        if label:
            out += bytes([len(label)]) + label.encode('ascii')
    return out + b'\0'


class FakeDNS:
    def __init__(self, port, zones):
        self.port = port
        self.modes = dict((z, 'pass') for z in zones)
        self.queries = dict((z, 0) for z in zones)
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(('127.0.0.1', port))
        self._sock.settimeout(0.2)
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def server(self):
        return '127.0.0.1:%d' % self.port

    def set_mode(self, zone, mode):
        assert mode in MODES, mode
        with self._lock:
            self.modes[zone] = mode

    def close(self):
        self._stop = True
        self._thread.join(5)
        self._sock.close()

    def _zone_of(self, name):
        for z in self.modes:
            if name == z or name.endswith('.' + z):
                return z
        return None

    def _run(self):
        while not self._stop:
            try:
                pkt, peer = self._sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self._answer(pkt, peer)
            except Exception:     # a bad packet must not stop the server
                pass

    def _answer(self, pkt, peer):
        name, qend = _qname(pkt)
        zone = self._zone_of(name)
        mode = 'pass'
        if zone is not None:
            with self._lock:
                mode = self.modes[zone]
                self.queries[zone] += 1
        if mode == 'drop':
            return
        if mode == 'pass':
            up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            up.settimeout(2)
            try:
                up.sendto(pkt, UPSTREAM)
                ans, _ = up.recvfrom(65535)
            except OSError:
                return
            finally:
                up.close()
            self._sock.sendto(ans, peer)
            return
        qid, flags = struct.unpack('!HH', pkt[:4])
        rd = flags & 0x0100
        question = pkt[12:qend]
        if mode == 'servfail':
            hdr = struct.pack('!HHHHHH', qid, 0x8080 | rd | 2, 1, 0, 0, 0)
            self._sock.sendto(hdr + question, peer)
            return
        # nxdomain: authoritative "no", the zone's SOA for negative caching
        soa = (_wire('ns.' + zone) + _wire('hostmaster.' + zone) +
               struct.pack('!IIIII', 1, 3600, 600, 86400, 1))
        rr = _wire(zone) + struct.pack('!HHIH', 6, 1, 1, len(soa)) + soa
        hdr = struct.pack('!HHHHHH', qid, 0x8480 | rd | 3, 1, 0, 1, 0)
        self._sock.sendto(hdr + question + rr, peer)
