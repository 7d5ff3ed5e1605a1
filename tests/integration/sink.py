"""sink.py - the integration world's SMTP servers ("sinks").

Each Sink is a real SMTP server (aiosmtpd, as packaged by Debian) on
ADDRESS:25 inside the test namespace, its asyncio loop in a thread of the
runner.  It records every message it accepts (envelope, MAIL and RCPT
parameters exactly as sent, the data bytes, the peer and the HELO name) in
memory and as files in its directory (N.eml + N.json), and can be switched
between modes:

    up        accept everything
    down      not listening: connections are refused
    tempfail  451 to MAIL, RCPT and DATA
    permfail  550 5.1.1 to RCPT

It advertises SIZE, 8BITMIME, SMTPUTF8, PIPELINING and DSN and accepts the
DSN parameters (RET, ENVID on MAIL; NOTIFY, ORCPT on RCPT); aiosmtpd alone
refuses unknown parameters and upper-cases the ones it keeps, so MAIL and
RCPT are handled here.  Optionally (set_tls) it offers STARTTLS.
Per test (undone by reset): rcpt_replies maps a lower-case address to the
reply its RCPT gets (e.g. '450 4.2.1 busy'), rcpt_log lists every RCPT
received as (time, address, reply code), and dsn = False stops offering
DSN.
"""
import json
import os
import re
import ssl
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, syntax

MODES = ('up', 'down', 'tempfail', 'permfail')
SIZE_LIMIT = 200 * 1024 * 1024

_XTEXT = re.compile(r'^(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*$')


def _param_error(verb, key, value):
    """Check one MAIL/RCPT parameter; return an error reply or None."""
    k = key.upper()
    if verb == 'MAIL':
        if k == 'SIZE':
            if value is None or not value.isdigit():
                return '501 5.5.4 SIZE needs a number'
            if int(value) > SIZE_LIMIT:
                return '552 5.3.4 message size exceeds fixed maximum'
            return None
        if k == 'BODY':
            if (value or '').upper() not in ('7BIT', '8BITMIME'):
                return '501 5.5.4 BODY is 7BIT or 8BITMIME'
            return None
        if k == 'SMTPUTF8':
            return None if value is None else '501 5.5.4 SMTPUTF8 takes no value'
        if k == 'RET':
            if (value or '').upper() not in ('FULL', 'HDRS'):
                return '501 5.5.4 RET is FULL or HDRS'
            return None
        if k == 'ENVID':
            if not value or len(value) > 100 or not _XTEXT.match(value):
                return '501 5.5.4 bad ENVID'
            return None
        if k == 'AUTH':
            return None
    else:
        if k == 'NOTIFY':
            v = (value or '').upper().split(',')
            if v == ['NEVER']:
                return None
            if not v or any(x not in ('SUCCESS', 'FAILURE', 'DELAY') for x in v):
                return '501 5.5.4 bad NOTIFY'
            return None
        if k == 'ORCPT':
            if not value or ';' not in value or len(value) > 500:
                return '501 5.5.4 bad ORCPT'
            t, x = value.split(';', 1)
            if not t or not _XTEXT.match(x):
                return '501 5.5.4 bad ORCPT'
            return None
    return '555 5.5.4 %s parameter %s not recognized' % (verb, key)


def _split_params(text):
    out = []
    for p in text.split():
        if '=' in p:
            k, v = p.split('=', 1)
        else:
            k, v = p, None
        out.append((p, k, v))
    return out


class _SinkSMTP(SMTP):
    """aiosmtpd's server with our MAIL/RCPT (raw parameters, DSN)."""

    def __init__(self, sink, *args, **kwargs):
        self.sink = sink
        super().__init__(*args, **kwargs)

    @syntax('MAIL FROM: <address>', extended=' [SP <mail-parameters>]')
    async def smtp_MAIL(self, arg):
        if await self.check_helo_needed():
            return
        syntaxerr = '501 5.5.4 Syntax: MAIL FROM: <address> [SP <mail-parameters>]'
        arg = self._strip_command_keyword('FROM:', arg) if arg else None
        if arg is None:
            return await self.push(syntaxerr)
        if arg.startswith('<>'):
            address, params = '', arg[2:]      # the null sender
        else:
            address, params = self._getaddr(arg)
        if address is None:
            return await self.push('553 5.1.3 malformed address')
        if getattr(self.envelope, '_sink_has_mail', False):
            return await self.push('503 5.5.1 nested MAIL command')
        if not self.session.extended_smtp and params:
            return await self.push(syntaxerr)
        raw = []
        for p, k, v in _split_params(params or ''):
            err = _param_error('MAIL', k, v)
            if not err and not self.sink.dsn and k.upper() in ('RET', 'ENVID'):
                err = '555 5.5.4 MAIL parameter %s not recognized' % k
            if err:
                return await self.push(err)
            raw.append(p)
        if self.sink.mode == 'tempfail':
            return await self.push('451 4.3.0 sink %s: tempfail' % self.sink.name)
        self.envelope.mail_from = address
        self.envelope.mail_options = list(raw)
        self.envelope._sink_has_mail = True
        self.envelope._sink_rcpt_options = []
        self.envelope.smtp_utf8 = any(p.upper() == 'SMTPUTF8' for p in raw)
        await self.push('250 2.1.0 OK')

    @syntax('RCPT TO: <address>', extended=' [SP <mail-parameters>]')
    async def smtp_RCPT(self, arg):
        if await self.check_helo_needed():
            return
        if not getattr(self.envelope, '_sink_has_mail', False):
            return await self.push('503 5.5.1 need MAIL command')
        syntaxerr = '501 5.5.4 Syntax: RCPT TO: <address> [SP <mail-parameters>]'
        arg = self._strip_command_keyword('TO:', arg) if arg else None
        if arg is None:
            return await self.push(syntaxerr)
        address, params = self._getaddr(arg)
        if address is None:
            return await self.push('553 5.1.3 malformed address')
        if not address:
            return await self.push(syntaxerr)
        if not self.session.extended_smtp and params:
            return await self.push(syntaxerr)
        raw = []
        for p, k, v in _split_params(params or ''):
            err = _param_error('RCPT', k, v)
            if not err and not self.sink.dsn:
                err = '555 5.5.4 RCPT parameter %s not recognized' % k
            if err:
                return await self.push(err)
            raw.append(p)
        mode = self.sink.mode
        reply = self.sink.rcpt_replies.get(address.lower())
        if reply is None and mode == 'tempfail':
            reply = '451 4.3.0 sink %s: tempfail' % self.sink.name
        self.sink.rcpt_log.append((time.time(), address.lower(),
                                   int(reply[:3]) if reply else 250))
        if reply is not None:
            return await self.push(reply)
        if mode == 'permfail':
            return await self.push('550 5.1.1 <%s>: sink %s: no such user'
                                   % (address, self.sink.name))
        self.envelope.rcpt_tos.append(address)
        self.envelope.rcpt_options.extend(raw)
        self.envelope._sink_rcpt_options.append(list(raw))
        await self.push('250 2.1.5 OK')


class _Handler:
    def __init__(self, sink):
        self.sink = sink

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        out = [r for r in responses if not r.endswith(' HELP')]
        last = out.pop() if out and out[-1].startswith('250 ') else None
        if last:
            out.append('250-' + last[4:])
        for ext in ('PIPELINING', 'DSN', 'ENHANCEDSTATUSCODES'):
            if ext != 'DSN' or self.sink.dsn:
                out.append('250-' + ext)
        out.append('250 HELP')
        return out

    async def handle_DATA(self, server, session, envelope):
        if self.sink.mode == 'tempfail':
            return '451 4.3.0 sink %s: tempfail' % self.sink.name
        n = self.sink._record(session, envelope)
        return '250 2.0.0 OK queued as sink-%s-%d' % (self.sink.name, n)


class _Controller(Controller):
    def __init__(self, sink, **kw):
        self.sink = sink
        super().__init__(_Handler(sink), hostname=sink.address, port=sink.port,
                         **kw)

    def factory(self):
        return _SinkSMTP(self.sink, self.handler, **self.SMTP_kwargs)


class Sink:
    """One SMTP sink; see the module comment."""

    def __init__(self, name, address, port=25, directory=None):
        self.name = name
        self.address = address
        self.port = port
        self.dir = directory
        self.mode = 'up'
        self.tls_context = None
        self.banner_name = name
        self.rcpt_replies = {}
        self.rcpt_log = []
        self.dsn = True
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._messages = []
        self._count = 0
        self._controller = None
        if self.dir:
            os.makedirs(self.dir, exist_ok=True)

    # -- life cycle
    def _start(self):
        if self._controller is not None:
            return
        kw = dict(data_size_limit=SIZE_LIMIT, enable_SMTPUTF8=True,
                  decode_data=False, server_hostname=self.banner_name,
                  ident='sink-%s' % self.name, timeout=120, ready_timeout=10)
        if self.tls_context is not None:
            kw['tls_context'] = self.tls_context
        c = _Controller(self, **kw)
        last = None
        for _ in range(50):
            try:
                c.start()
                break
            except OSError as e:     # address still in use right after stop
                last = e
                try:
                    c.stop(no_assert=True)
                except Exception:
                    pass
                c = _Controller(self, **kw)
                time.sleep(0.1)
        else:
            raise AssertionError('sink %s: cannot listen on %s:%d: %s'
                                 % (self.name, self.address, self.port, last))
        self._controller = c

    def _stop(self):
        c, self._controller = self._controller, None
        if c is not None:
            c.stop(no_assert=True)

    def set_mode(self, mode):
        """'up' | 'down' (refuses connections) | 'tempfail' | 'permfail'"""
        if mode not in MODES:
            raise ValueError('sink mode %r: not one of %s' % (mode, MODES))
        self.mode = mode
        if mode == 'down':
            self._stop()
        else:
            self._start()

    def set_tls(self, cert=None, key=None):
        """Offer STARTTLS with cert/key (PEM files); no arguments: stop
        offering it.  Restarts the listener."""
        if cert:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cert, key)
            self.tls_context = ctx
        else:
            self.tls_context = None
        if self._controller is not None:
            self._stop()
            self._start()

    def close(self):
        self._stop()

    # -- records
    def _record(self, session, envelope):
        data = envelope.original_content
        if data is None:
            data = envelope.content or b''
        if isinstance(data, str):
            data = data.encode('utf-8', 'surrogateescape')
        m = {
            'mail_from': envelope.mail_from,
            'mail_options': list(envelope.mail_options or []),
            'rcpt_tos': list(envelope.rcpt_tos),
            'rcpt_options': [list(o) for o in
                             getattr(envelope, '_sink_rcpt_options', [])],
            'data': bytes(data),
            'peer': session.peer[0] if session.peer else None,
            'peer_port': session.peer[1] if session.peer else None,
            'helo': session.host_name,
            'tls': bool(getattr(session, 'ssl', None)),
            'time': time.time(),
        }
        with self._cond:
            self._count += 1
            n = self._count
            self._messages.append(m)
            self._cond.notify_all()
        if self.dir:
            base = os.path.join(self.dir, '%d' % n)
            with open(base + '.eml', 'wb') as f:
                f.write(m['data'])
            meta = dict(m)
            del meta['data']
            meta['size'] = len(m['data'])
            with open(base + '.json', 'w') as f:
                json.dump(meta, f, indent=1)
        return n

    def messages(self):
        with self._lock:
            return list(self._messages)

    def clear(self):
        with self._lock:
            self._messages = []

    def wait_messages(self, n, timeout=10):
        """Wait until at least n messages are recorded; return them all.
        AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        'sink %s: %d message(s) after %gs, wanted %d'
                        % (self.name, len(self._messages), timeout, n))
                self._cond.wait(min(left, 0.5))
            return list(self._messages)

    def reset(self):
        """Back to the state every test starts in: up, no TLS, empty."""
        if self.tls_context is not None:
            self.tls_context = None
            self._stop()
        self.set_mode('up')
        self.clear()
        self.rcpt_replies = {}
        self.rcpt_log = []
        self.dsn = True
