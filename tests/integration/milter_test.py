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
anything else CONTINUE.  postmaster@... is rejected at RCPT.
Each message's macros and what the milter saw go to LOGFILE, a JSON line
per message.
"""
import json
import sys

import Milter

LOG = sys.argv[2]


class TestMilter(Milter.Base):
    def __init__(self):
        self.id = Milter.uniqueID()
        self.subject = ''
        self.headers = []
        self.bodydata = b''
        self.rcpts = []
        self.macros = {}

    def _grab(self, *names):
        for n in names:
            v = self.getsymval(n)
            if v is not None:
                self.macros[n] = v

    @Milter.noreply
    def connect(self, hostname, family, hostaddr):
        self.connect_addr = hostaddr
        self._grab('j', '{daemon_name}', '{if_name}', '{client_addr}',
                   '{client_name}', '{client_port}')
        return Milter.CONTINUE

    def hello(self, helo):
        self.helo = helo
        self._grab('{tls_version}')
        return Milter.CONTINUE

    def envfrom(self, f, *args):
        self.mail_from = f
        self._grab('i', '{mail_addr}', '{auth_authen}')
        return Milter.CONTINUE

    def envrcpt(self, to, *args):
        self._grab('{rcpt_addr}')
        if to.lower().startswith('<postmaster@'):
            self.setreply('550', '5.1.1', 'refused by the test milter')
            return Milter.REJECT
        self.rcpts.append(to)
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
                'action': action, 'subject': self.subject,
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
