"""count_sent.py LOG N READYFILE [TIMEOUT] - follow backmxd's log (its
stderr in -f mode) from its current end and time the delivery lines
("status=sent"): prints "first=T1 nth=TN seen=K" where T1 and TN are the
wall-clock times (time.time()) of the first delivery and of the read
that brought the count to N or more (K, the count then), or of the last
one seen if fewer than N arrived within TIMEOUT seconds
(default 600) or within 60 s without any new delivery.  Writes READYFILE
once it follows the log, so the caller can start the flush after it."""
import os
import sys
import time

log, n, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3]
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 600.0

f = open(log, 'rb')
f.seek(0, os.SEEK_END)
open(ready, 'w').write('ok\n')
seen = 0
first = last = None
rest = b''
t0 = last_progress = time.time()
while seen < n:
    chunk = f.read(1 << 20)
    now = time.time()
    if not chunk:
        if now - t0 > timeout or now - last_progress > 60:
            break
        time.sleep(0.01)
        continue
    lines = (rest + chunk).split(b'\n')
    rest = lines.pop()
    k = sum(1 for line in lines if b'status=sent' in line)
    if k:
        seen += k
        last = now
        last_progress = now
        if first is None:
            first = now
print('first=%.3f nth=%.3f seen=%d' % (first or 0, last or 0, seen))
