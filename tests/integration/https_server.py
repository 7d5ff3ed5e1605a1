#!/usr/bin/python3
"""https_server.py - the MTA-STS policy host of the test world.

    https_server.py --cert mta-sts.pem --key mta-sts.key \\
        [--listen 127.0.0.7:443] [--ready FILE] [--log FILE] [--chunked] \\
        (--policy FILE | --redirect URL | --status CODE | --hang)

Serves GET /.well-known/mta-sts.txt over HTTPS (TLS 1.2+) with the
certificate given (certs.sh's mta-sts.pem names mta-sts.sts.example,
mta-sts.backup.example and mta-sts.dane.example):

  --policy FILE    200 with FILE's octets, Content-Length (or chunked with
                   --chunked), Content-Type text/plain
  --redirect URL   301 with Location: URL (a client must not follow it)
  --status CODE    CODE (e.g. 404, 500) with a short body
  --hang           accept, handshake, read the request, never answer
                   (for the client's timeout)

Any other path gets 404.  Each request is logged as one line "HOST PATH
STATUS" to --log (default stderr), so a test can check the Host header and
count fetches.  When listening, the pid is written to --ready (a test
waits for the file).  SIGTERM stops it.  Run it inside the test network
namespace (127.0.0.7 is on lo there); port 443 needs root, which the
integration run has.
"""
import argparse
import http.server
import os
import signal
import socketserver
import ssl
import sys
import threading
import time

PATH = '/.well-known/mta-sts.txt'


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'backmx-test-https'

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):      # quiet: we log our own line
        pass

    def _log(self, status):
        line = '%s %s %s\n' % (self.headers.get('Host', '-'), self.path,
                               status)
        with self.server.log_lock:
            self.server.log.write(line)
            self.server.log.flush()

    def _send(self, status, body=b'', headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        chunked = self.server.opts.chunked and status == 200
        if chunked:
            self.send_header('Transfer-Encoding', 'chunked')
        else:
            self.send_header('Content-Length', str(len(body)))
        self.send_header('Connection', 'close')
        self.end_headers()
        if chunked:
            # two chunks (when there is enough) so the client reassembles
            half = len(body) // 2
            for part in (body[:half], body[half:]):
                if part:
                    self.wfile.write(b'%x\r\n%s\r\n' % (len(part), part))
            self.wfile.write(b'0\r\n\r\n')
        else:
            self.wfile.write(body)
        self.close_connection = True
        self._log(status)

    def do_GET(self):
        o = self.server.opts
        if o.hang:
            self._log('hang')
            time.sleep(3600)
            return
        if self.path != PATH:
            self._send(404, b'not found\n', [('Content-Type', 'text/plain')])
        elif o.redirect:
            self._send(301, b'moved\n', [('Location', o.redirect),
                                         ('Content-Type', 'text/plain')])
        elif o.status:
            self._send(o.status, b'status %d\n' % o.status,
                       [('Content-Type', 'text/plain')])
        else:
            with open(o.policy, 'rb') as f:
                body = f.read()
            self._send(200, body, [('Content-Type', 'text/plain')])


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def finish_request(self, request, client_address):
        # the handshake in the request's thread: a client that never
        # speaks TLS must not block the accept loop
        request.settimeout(30)
        try:
            request.do_handshake()
        except (OSError, ssl.SSLError) as e:
            with self.log_lock:
                self.log.write('- - handshake-failed %s\n' % e)
                self.log.flush()
            return
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        pass            # client went away: nothing to report


def main():
    ap = argparse.ArgumentParser(description='MTA-STS policy HTTPS server')
    ap.add_argument('--cert', required=True)
    ap.add_argument('--key', required=True)
    ap.add_argument('--listen', default='127.0.0.7:443')
    ap.add_argument('--ready')
    ap.add_argument('--log')
    ap.add_argument('--chunked', action='store_true')
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument('--policy')
    g.add_argument('--redirect')
    g.add_argument('--status', type=int)
    g.add_argument('--hang', action='store_true')
    o = ap.parse_args()

    host, _, port = o.listen.rpartition(':')
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(o.cert, o.key)

    srv = Server((host.strip('[]'), int(port)), Handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True,
                                 do_handshake_on_connect=False)
    srv.opts = o
    srv.log = open(o.log, 'a') if o.log else sys.stderr
    srv.log_lock = threading.Lock()

    def stop(signum, frame):
        threading.Thread(target=srv.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    if o.ready:
        tmp = o.ready + '.tmp'
        with open(tmp, 'w') as f:
            f.write('%d\n' % os.getpid())
        os.rename(tmp, o.ready)
    srv.serve_forever(poll_interval=0.2)
    srv.server_close()


if __name__ == '__main__':
    main()
