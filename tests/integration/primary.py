"""A primary MX that knows its users, for the callout tests.

A small threaded SMTP server (not aiosmtpd: it must also be able to answer
garbage, tarpit and accept everything).  It records every command it gets,
so a test can count callouts (RCPT TO lines) and check that DATA never
came.  Modes: 'up' (known users 250, others 550 5.1.1), 'catchall' (250 to
every RCPT), 'tempfail' (451 to RCPT), 'garbage' (a banner, then nonsense),
'tarpit' (a banner, then silence), 'down' (not listening: refused).
"""
import socket
import threading
import time


class Primary:
    def __init__(self, address, port=25, users=('bob',), domain=None):
        self.address = address
        self.port = port
        self.users = set(u.lower() for u in users)
        self.domain = domain
        self.mode = 'up'
        self.delay = 0.0
        self.commands = []      # (time, line)
        self.connections = 0
        self.lock = threading.Lock()
        self.sock = None
        self.stopping = False
        self.set_mode('up')

    # -- control
    def set_mode(self, mode):
        self.mode = mode
        if mode == 'down':
            self._close()
        elif self.sock is None:
            self._listen()

    def close(self):
        self.stopping = True
        self._close()

    def rcpts(self):
        with self.lock:
            return [l[8:].strip() for _, l in self.commands
                    if l.upper().startswith('RCPT TO:')]

    def verbs(self):
        with self.lock:
            return [l.split(' ', 1)[0].split(':', 1)[0].upper()
                    for _, l in self.commands]

    # -- server
    def _listen(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.address, self.port))
        s.listen(64)
        self.sock = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _close(self):
        s, self.sock = self.sock, None
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self, s):
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _serve(self, c):
        f = c.makefile('rb')
        mode = self.mode

        def out(text):
            try:
                c.sendall(text.encode() + b'\r\n')
            except OSError:
                pass
        try:
            out('220 primary.test ESMTP')
            while True:
                line = f.readline()
                if not line:
                    return
                line = line.decode('latin-1').rstrip('\r\n')
                with self.lock:
                    self.commands.append((time.time(), line))
                verb = line.split(' ', 1)[0].split(':', 1)[0].upper()
                if mode == 'garbage':
                    out('hello there, this is not SMTP')
                    continue
                if mode == 'tarpit':
                    time.sleep(60)
                    return
                if self.delay:
                    time.sleep(self.delay)
                if verb == 'EHLO':
                    out('250-primary.test\r\n250 PIPELINING')
                elif verb in ('HELO', 'NOOP', 'RSET'):
                    out('250 ok')
                elif verb == 'MAIL':
                    out('250 2.1.0 ok')
                elif verb == 'RCPT':
                    addr = line[8:].strip().strip('<>')
                    local = addr.rsplit('@', 1)[0].lower()
                    if mode == 'tempfail':
                        out('451 4.3.0 try later')
                    elif mode == 'catchall' or local in self.users:
                        out('250 2.1.5 ok')
                    else:
                        out('550 5.1.1 <%s>: no such user here' % addr)
                elif verb == 'DATA':
                    out('554 5.5.1 no DATA in a callout test')
                elif verb == 'QUIT':
                    out('221 bye')
                    return
                else:
                    out('502 5.5.2 what')
        finally:
            try:
                c.close()
            except OSError:
                pass
