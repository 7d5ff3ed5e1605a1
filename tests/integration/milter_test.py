#!/usr/bin/python3
"""A small milter on Debian's python3-milter for test_milter.py.

usage: milter_test.py PORT LOGFILE [ADDR]

What it does is chosen by the message's Subject:
  reject      554 5.7.1 (via setreply) at end of message
  tempfail    TEMPFAIL at end of message
  discard     DISCARD
  quarantine  quarantine("held by the test milter"), then CONTINUE
  modify      add, insert, change and delete header fields, add
              bob@backup.example, delete carol@backup.example, replace body
  accept      ACCEPT at the first header (nothing else is seen)
  chgfrom     change the envelope sender to changed@sender.example
anything else CONTINUE.

Refusals at the earlier stages, chosen by trigger addresses and names:
  connect   client 127.0.0.66: 554 5.7.1 (setreply); 127.0.0.67: TEMPFAIL;
            127.0.0.68: 421 4.7.0 (setreply)
  helo      reject.helo.example: 550 5.7.1 (setreply)
  mail      <reject-mail@...>: 553 5.7.1 (setreply); <tempfail-mail@...>:
            TEMPFAIL; <discard-mail@...>: DISCARD
  rcpt      <postmaster@...>: 550 5.1.1 (setreply); <tempfail-rcpt@...>:
            TEMPFAIL; <bob@backup.example>: ACCEPT (nothing more of it)
  data      sender <reject-data@...>: 554 5.7.1 (setreply)
  die       RCPT <die-rcpt@...>: the milter process exits
  Subject slow-progress: SMFIR_PROGRESS every 0.25s for a minute
Each message's macros and what the milter saw go to LOGFILE, a JSON line
per message; each event refused early, each SMFIC_ABORT and each close
get a line too ('action': 'connect-reject', 'abort', 'close', ...), all
with the connection's number ('conn': one per milter connection).
"""
import json
import os
import sys
import time

import Milter

LOG = sys.argv[2]


class TestMilter(Milter.Base):
    def __init__(self):
        self.id = Milter.uniqueID()
        self.macros = {}
        self.messages = 0
        self._reset()

    def _reset(self):
        """a new transaction on the same connection"""
        self.subject = ''
        self.headers = []
        self.bodydata = b''
        self.rcpts = []
        self.mail_from = None

    def _event(self, action, **kw):
        with open(LOG, 'a') as f:
            d = {'action': action, 'conn': self.id}
            d.update(kw)
            f.write(json.dumps(d) + '\n')

    def _grab(self, *names):
        for n in names:
            v = self.getsymval(n)
            if v is not None:
                self.macros[n] = v

    def connect(self, hostname, family, hostaddr):
        self.connect_addr = hostaddr
        self._grab('j', '{daemon_name}', '{if_name}', '{client_addr}',
                   '{client_name}', '{client_port}')
        addr = hostaddr[0] if hostaddr else ''
        if addr == '127.0.0.66':
            self._event('connect-reject', addr=addr)
            self.setreply('554', '5.7.1', 'connect refused by the test milter')
            return Milter.REJECT
        if addr == '127.0.0.67':
            self._event('connect-tempfail', addr=addr)
            return Milter.TEMPFAIL
        if addr == '127.0.0.68':
            self._event('connect-421', addr=addr)
            self.setreply('421', '4.7.0', 'test milter closing')
            return Milter.TEMPFAIL
        self._event('connect', addr=addr)
        return Milter.CONTINUE

    def hello(self, helo):
        self.helo = helo
        self._grab('{tls_version}')
        if helo == 'reject.helo.example':
            self._event('helo-reject', helo=helo)
            self.setreply('550', '5.7.1', 'helo refused by the test milter')
            return Milter.REJECT
        return Milter.CONTINUE

    def envfrom(self, f, *args):
        self._reset()
        self.mail_from = f
        self._grab('i', '{mail_addr}', '{auth_authen}')
        fl = f.lower()
        if fl.startswith('<reject-mail@'):
            self._event('mail-reject', mail_from=f)
            self.setreply('553', '5.7.1', 'sender refused by the test milter')
            return Milter.REJECT
        if fl.startswith('<tempfail-mail@'):
            self._event('mail-tempfail', mail_from=f)
            return Milter.TEMPFAIL
        if fl.startswith('<discard-mail@'):
            self._event('mail-discard', mail_from=f)
            return Milter.DISCARD
        return Milter.CONTINUE

    def envrcpt(self, to, *args):
        self._grab('{rcpt_addr}')
        tl = to.lower()
        if tl.startswith('<postmaster@'):
            self._event('rcpt-reject', rcpt=to)
            self.setreply('550', '5.1.1', 'refused by the test milter')
            return Milter.REJECT
        if tl.startswith('<tempfail-rcpt@'):
            self._event('rcpt-tempfail', rcpt=to)
            return Milter.TEMPFAIL
        if tl.startswith('<die-rcpt@'):
            self._event('rcpt-die', rcpt=to)
            os._exit(3)
        self.rcpts.append(to)
        if tl == '<bob@backup.example>':
            self._log('rcpt-accept')
            return Milter.ACCEPT
        return Milter.CONTINUE

    def data(self):
        if (self.mail_from or '').lower().startswith('<reject-data@'):
            self._event('data-reject', mail_from=self.mail_from)
            self.setreply('554', '5.7.1', 'data refused by the test milter')
            return Milter.REJECT
        return Milter.CONTINUE

    def abort(self):
        self._event('abort', mail_from=self.mail_from)
        return Milter.CONTINUE

    def close(self):
        self._event('close')
        return Milter.CONTINUE

    def header(self, name, value):
        self.headers.append([name, value])
        if name.lower() == 'subject':
            self.subject = value.strip().lower()
            if self.subject == 'accept':
                self._log('accepted')
                return Milter.ACCEPT
        return Milter.CONTINUE

    def eoh(self):
        return Milter.CONTINUE

    def body(self, chunk):
        self.bodydata += chunk
        return Milter.CONTINUE

    def _log(self, action):
        with open(LOG, 'a') as f:
            f.write(json.dumps({
                'action': action, 'conn': self.id, 'subject': self.subject,
                'macros': self.macros, 'rcpts': self.rcpts,
                'headers': self.headers,
                'body': self.bodydata.decode('latin-1'),
                'helo': getattr(self, 'helo', None),
                'mail_from': getattr(self, 'mail_from', None)}) + '\n')

    def eom(self):
        self._grab('i')
        s = self.subject
        self._log(s or 'continue')
        if s == 'reject':
            self.setreply('554', '5.7.1', 'python milter says no')
            return Milter.REJECT
        if s == 'tempfail':
            return Milter.TEMPFAIL
        if s == 'slow-progress':
            # SMFIR_PROGRESS forever: the MTA must give up on its own
            for _ in range(240):
                self.progress()
                time.sleep(0.25)
            return Milter.CONTINUE
        if s == 'discard':
            return Milter.DISCARD
        if s == 'quarantine':
            self.quarantine('held by the test milter')
            return Milter.CONTINUE
        if s == 'chgfrom':
            self.chgfrom('<changed@sender.example>')
            return Milter.CONTINUE
        if s == 'modify':
            self.addheader('X-Added', 'by the test milter')
            self.addheader('X-First', 'inserted at the top', 0)
            self.chgheader('Subject', 1, 'modified by the milter')
            self.chgheader('X-Remove', 1, None)
            self.addrcpt('<bob@backup.example>')
            self.delrcpt('<carol@backup.example>')
            self.replacebody(b'the body the milter wrote\r\n')
        return Milter.CONTINUE


def main():
    Milter.factory = TestMilter
    Milter.set_flags(Milter.ADDHDRS + Milter.CHGHDRS + Milter.ADDRCPT +
                     Milter.DELRCPT + Milter.CHGBODY + Milter.QUARANTINE +
                     Milter.CHGFROM)
    addr = sys.argv[3] if len(sys.argv) > 3 else '127.0.0.7'
    Milter.runmilter('backmxtest', 'inet:%s@%s' % (sys.argv[1], addr), 30)


if __name__ == '__main__':
    main()
