"""session_latency.py HOST PORT M - M fresh SMTP sessions one after the
other: connect, banner, EHLO, QUIT (up to the 221 reply), each timed.
Prints "ok=K median_ms=X max_ms=Y" and the single latencies; exits 1 if
any session failed (refused, closed, or no answer within 30 s)."""
import socket
import statistics
import sys
import time

host, port, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def reply(sock, f):
    """read one complete SMTP reply; its code"""
    while True:
        line = f.readline()
        if not line:
            raise RuntimeError('connection closed')
        if len(line) >= 4 and line[3:4] == b' ':
            return line[:3]


lat, errors = [], []
for i in range(m):
    t0 = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=30) as s:
            f = s.makefile('rb')
            if reply(s, f) != b'220':
                raise RuntimeError('no 220 banner')
            s.sendall(b'EHLO probe.example\r\n')
            if reply(s, f) != b'250':
                raise RuntimeError('EHLO refused')
            s.sendall(b'QUIT\r\n')
            if reply(s, f) != b'221':
                raise RuntimeError('QUIT refused')
        lat.append((time.monotonic() - t0) * 1000)
    except (OSError, RuntimeError) as e:
        errors.append(str(e))
    time.sleep(0.05)
if lat:
    print('ok=%d median_ms=%.1f max_ms=%.1f' % (len(lat), statistics.median(lat), max(lat)))
    print('latencies_ms=' + ','.join('%.1f' % x for x in lat))
else:
    print('ok=0 median_ms=nan max_ms=nan')
for e in errors[:3]:
    sys.stderr.write('session_latency: %s\n' % e)
sys.exit(1 if errors else 0)
