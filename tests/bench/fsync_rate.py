"""fsync_rate.py DIR - the physical limit line: 4 KiB appends with an
fdatasync after each, and with one fdatasync per 100 appends."""
import os
import sys
import time

d = sys.argv[1]
path = os.path.join(d, 'fsync-probe')
buf = b'x' * 4096
for per in (1, 100):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    n = 0
    t0 = time.time()
    while time.time() - t0 < 2.0:
        for _ in range(per):
            os.write(fd, buf)
            n += 1
        os.fdatasync(fd)
    el = time.time() - t0
    os.close(fd)
    print('append 4 KiB + fdatasync every %3d: %8.0f records/s (%.0f syncs/s)' % (per, n / el, n / per / el))
os.unlink(path)
