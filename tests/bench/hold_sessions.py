"""hold_sessions.py HOST PORT N READYFILE - open N SMTP sessions, read the
banner, send EHLO, read its reply, then hold them open until killed.

Non-blocking sockets on one selector (epoll), at most PARALLEL
handshakes in flight, so N can be 10 000 and more (the caller raises
RLIMIT_NOFILE above N).  Writes READYFILE once every session is
established (or has failed): "ESTABLISHED FAILED SECONDS", and the
reason of the first failure on stderr.  Exits 1 when no session
could be held at all."""
import errno
import os
import selectors
import socket
import sys
import time

PARALLEL = 256
DEADLINE = 600          # seconds for the whole ramp-up
HANDSHAKE_TIMEOUT = 60  # seconds for one session's banner + EHLO

host, port, n, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

CONNECTING, BANNER, EHLO = 0, 1, 2


class Sess:
    __slots__ = ('sock', 'state', 'buf', 'start')

    def __init__(self, sock):
        self.sock = sock
        self.state = CONNECTING
        self.buf = b''
        self.start = time.monotonic()


def reply_done(buf):
    """True when buf holds a complete (last line 'NNN ') SMTP reply."""
    lines = buf.split(b'\r\n')
    for line in lines[:-1]:
        if len(line) >= 4 and line[3:4] == b' ':
            return True
    return False


sel = selectors.DefaultSelector()
held = []
failed = 0
first_error = None
started = 0
inflight = 0
t0 = time.monotonic()


def fail(s, why):
    global failed, inflight, first_error
    try:
        sel.unregister(s.sock)
    except (KeyError, ValueError):
        pass
    s.sock.close()
    failed += 1
    inflight -= 1
    if first_error is None:
        first_error = why


def start_one():
    global started, inflight
    started += 1
    sock = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET,
                         socket.SOCK_STREAM)
    sock.setblocking(False)
    err = sock.connect_ex((host, port))
    s = Sess(sock)
    inflight += 1
    if err not in (0, errno.EINPROGRESS):
        fail(s, 'connect: %s' % os.strerror(err))
        return
    sel.register(sock, selectors.EVENT_WRITE, s)


while (started < n or inflight > 0) and time.monotonic() - t0 < DEADLINE:
    while started < n and inflight < PARALLEL:
        start_one()
    now = time.monotonic()
    for key, ev in sel.select(timeout=1.0):
        s = key.data
        if s.state == CONNECTING:
            err = s.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                fail(s, 'connect: %s' % os.strerror(err))
                continue
            s.state = BANNER
            sel.modify(s.sock, selectors.EVENT_READ, s)
            continue
        try:
            chunk = s.sock.recv(4096)
        except BlockingIOError:
            continue
        except OSError as e:
            fail(s, 'recv: %s' % e)
            continue
        if not chunk:
            fail(s, 'closed by the server after %r' % s.buf[-200:])
            continue
        s.buf += chunk
        if not reply_done(s.buf):
            continue
        if not s.buf.startswith(b'2'):
            fail(s, 'refused: %r' % s.buf[-200:])
            continue
        if s.state == BANNER:
            s.state = EHLO
            s.buf = b''
            # a 20-byte command always fits an empty socket buffer
            s.sock.send(b'EHLO hold.example\r\n')
        else:
            sel.unregister(s.sock)
            held.append(s.sock)
            inflight -= 1
    # handshakes that take too long
    if now - t0 > 1:
        for key in list(sel.get_map().values()):
            s = key.data
            if now - s.start > HANDSHAKE_TIMEOUT:
                fail(s, 'timeout in state %d' % s.state)

elapsed = time.monotonic() - t0
failed = n - len(held)      # failed, never started or still in flight
if first_error is not None:
    sys.stderr.write('hold_sessions: %d of %d failed, first: %s\n'
                     % (failed, n, first_error))
with open(ready + '.tmp', 'w') as f:
    f.write('%d %d %.2f\n' % (len(held), failed, elapsed))
os.rename(ready + '.tmp', ready)
if not held:
    sys.exit(1)
# hold; count sessions the server closes in READYFILE.dropped
for sock in list(sel.get_map().values()):
    sock.fileobj.close()
sel.close()
sel = selectors.DefaultSelector()
for sock in held:
    sel.register(sock, selectors.EVENT_READ)
dropped = 0
while True:
    for key, ev in sel.select():
        try:
            chunk = key.fileobj.recv(4096)
        except OSError:
            chunk = b''
        if not chunk:
            sel.unregister(key.fileobj)
            key.fileobj.close()
            dropped += 1
            with open(ready + '.dropped', 'w') as f:
                f.write('%d\n' % dropped)
