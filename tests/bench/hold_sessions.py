"""hold_sessions.py HOST PORT N READYFILE - open N SMTP sessions, read the
banner, send EHLO, read its reply, then hold them open until killed.
Writes READYFILE once every session is established."""
import selectors
import socket
import sys
import time

host, port, n, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
socks = []


def read_reply(s):
    buf = b''
    deadline = time.time() + 30
    while time.time() < deadline:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError('closed')
        buf += chunk
        lines = buf.split(b'\r\n')
        for line in lines[:-1]:
            if len(line) >= 4 and line[3:4] == b' ':
                return buf
    raise RuntimeError('timeout')


for i in range(n):
    s = socket.create_connection((host, port), timeout=30)
    read_reply(s)
    s.sendall(b'EHLO hold.example\r\n')
    read_reply(s)
    socks.append(s)
open(ready, 'w').write('%d\n' % len(socks))
while True:
    time.sleep(3600)
