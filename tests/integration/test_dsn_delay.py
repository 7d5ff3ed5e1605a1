"""Delay warnings (RFC 3464 Action: delayed) after delay_warning, once per
message and remembered across a restart, honouring NOTIFY; "relayed"
reports (RFC 3461 5.2.2) when the primary does not offer DSN and the
sender asked NOTIFY=SUCCESS; none when the primary offers DSN."""
import email
import email.policy
import re
import time

SENDER = 'someone@sender.example'


def _send(b, rcpts, subject, sender=SENDER, mail_options=(),
          rcpt_options=()):
    s = b.smtp()
    data = ('From: %s\r\nSubject: %s\r\nMessage-ID: <%s@sender.example>'
            '\r\n\r\nbody of %s\r\n' % (sender or 'x@y', subject,
                                         subject.replace(' ', '.'),
                                         subject)).encode()
    s.sendmail(sender, rcpts, data, mail_options=list(mail_options),
               rcpt_options=list(rcpt_options))
    s.quit()


def _report(m):
    """Parse a DSN with the email module: (message, per-message fields,
    per-recipient groups, returned part)."""
    assert m['mail_from'] == '', m['mail_from']
    assert m['rcpt_tos'] == [SENDER], m['rcpt_tos']
    msg = email.message_from_bytes(m['data'], policy=email.policy.compat32)
    assert msg.get_content_type() == 'multipart/report', \
        msg.get_content_type()
    assert msg.get_param('report-type') == 'delivery-status'
    assert msg['Auto-Submitted'] == 'auto-replied'
    parts = msg.get_payload()
    assert len(parts) == 3, [p.get_content_type() for p in parts]
    assert parts[0].get_content_type() == 'text/plain'
    assert parts[1].get_content_type() == 'message/delivery-status'
    groups = parts[1].get_payload()
    per_msg = groups[0]
    assert per_msg['Reporting-MTA'] == 'dns; mx2.test.example', \
        per_msg.items()
    assert per_msg['Arrival-Date'], per_msg.items()
    return msg, per_msg, groups[1:], parts[2]


def _subject_of(returned):
    """the Subject of the returned message or header"""
    if returned.get_content_type() == 'message/rfc822':
        return returned.get_payload()[0]['Subject']
    hdr = email.message_from_string(returned.get_payload(),
                                    policy=email.policy.compat32)
    return hdr['Subject']


def test_dsn_delay_warning_once(world):
    """primary temporarily failing, delay_warning 2s: one delayed DSN
    (multipart/report, Action: delayed, Status 4.x.x with the last error,
    Will-Retry-Until), not sent again on later retries nor after a
    restart; the message is delivered when the primary is back."""
    p = world.sinks['primary']
    bs = world.sinks['bounce']
    p.set_mode('tempfail')
    b = world.backmx(retry='1s', delay_warning='2s', queue_lifetime='1h')
    _send(b, ['alice@backup.example'], 'delayed one')
    msgs = bs.wait_messages(1, timeout=15)
    msg, per_msg, rcpts, returned = _report(msgs[0])
    assert 'Delayed Mail' in msg['Subject'], msg['Subject']
    assert len(rcpts) == 1, rcpts
    r = rcpts[0]
    assert r['Final-Recipient'] == 'rfc822; alice@backup.example', r.items()
    assert r['Action'] == 'delayed', r.items()
    assert re.match(r'4\.\d{1,3}\.\d{1,3}$', r['Status']), r['Status']
    assert '451' in (r['Diagnostic-Code'] or ''), r.items()
    assert r['Will-Retry-Until'], r.items()
    # headers only (no RET=FULL): the original's header is there
    assert returned.get_content_type() == 'text/rfc822-headers'
    assert _subject_of(returned) == 'delayed one'
    b.wait_log(r'sender delay notification: ', timeout=5)
    # retries go on (retry 1s): still one warning
    n = len(re.findall(r'status=deferred', b.log_text()))
    end = time.time() + 10
    while time.time() < end and \
            len(re.findall(r'status=deferred', b.log_text())) < n + 2:
        time.sleep(0.2)
    assert len(re.findall(r'status=deferred', b.log_text())) >= n + 2
    time.sleep(0.5)
    assert len(bs.messages()) == 1, len(bs.messages())
    # the spool remembers it across a restart
    b.stop()
    b.start()
    n = len(re.findall(r'status=deferred', b.log_text()))
    end = time.time() + 10
    while time.time() < end and \
            len(re.findall(r'status=deferred', b.log_text())) < n + 2:
        time.sleep(0.2)
    time.sleep(0.5)
    assert len(bs.messages()) == 1, [m['data'][:300] for m in bs.messages()]
    p.set_mode('up')
    got = p.wait_messages(1, timeout=15)
    assert len(got) == 1
    time.sleep(1)
    assert len(bs.messages()) == 1


def test_dsn_delay_warning_notify(world):
    """NOTIFY=NEVER, NOTIFY=FAILURE (no DELAY), a null sender: no warning;
    NOTIFY=DELAY and no NOTIFY at all (FAILURE,DELAY): one each."""
    p = world.sinks['primary']
    bs = world.sinks['bounce']
    p.set_mode('tempfail')
    b = world.backmx(retry='1s', delay_warning='2s')
    _send(b, ['alice@backup.example'], 'notify never',
          rcpt_options=['NOTIFY=NEVER'])
    _send(b, ['alice@backup.example'], 'notify failure',
          rcpt_options=['NOTIFY=FAILURE'])
    _send(b, ['alice@backup.example'], 'null sender', sender='')
    _send(b, ['alice@backup.example'], 'notify delay',
          rcpt_options=['NOTIFY=DELAY'])
    _send(b, ['alice@backup.example'], 'notify default')
    msgs = bs.wait_messages(2, timeout=15)
    time.sleep(3)       # past delay_warning for all five, retries going on
    msgs = bs.messages()
    subjects = sorted(_subject_of(_report(m)[3]) for m in msgs)
    assert subjects == ['notify default', 'notify delay'], subjects
    for m in msgs:
        assert _report(m)[2][0]['Action'] == 'delayed'


def test_dsn_delay_warning_per_domain(world):
    """delay_warning in a domain block wins over the global one: 0 there
    turns it off for that domain only."""
    p = world.sinks['primary']
    st = world.sinks['static']
    bs = world.sinks['bounce']
    p.set_mode('tempfail')
    st.set_mode('tempfail')
    b = world.backmx(retry='1s', delay_warning='2s', domains='''
domain backup.example { recipients %(dir)s/backup.rcpts  route mx
                        delay_warning 0 }
domain static.example { recipients %(dir)s/backup.rcpts
                        route [127.0.0.5]:25  delay_warning 1s }
''')
    _send(b, ['alice@backup.example'], 'domain off')
    _send(b, ['alice@static.example'], 'domain on')
    msgs = bs.wait_messages(1, timeout=10)
    time.sleep(3)
    subjects = [_subject_of(_report(m)[3]) for m in bs.messages()]
    assert subjects == ['domain on'], subjects


def test_dsn_relayed_when_primary_lacks_dsn(world):
    """The primary does not offer DSN, the sender asked NOTIFY=SUCCESS:
    delivered without DSN parameters (the primary would refuse them),
    and the sender gets Action: relayed with Status 2.x.x."""
    p = world.sinks['primary']
    bs = world.sinks['bounce']
    p.dsn = False
    b = world.backmx()
    _send(b, ['alice@backup.example', 'bob@backup.example'], 'relayed one',
          mail_options=['RET=HDRS', 'ENVID=QQ314159'],
          rcpt_options=['NOTIFY=SUCCESS,FAILURE'])
    got = p.wait_messages(1, timeout=10)
    assert got[0]['mail_options'] == [] or all(
        not o.upper().startswith(('RET=', 'ENVID='))
        for o in got[0]['mail_options']), got[0]['mail_options']
    assert got[0]['rcpt_options'] == [[], []], got[0]['rcpt_options']
    msgs = bs.wait_messages(1, timeout=10)
    msg, per_msg, rcpts, returned = _report(msgs[0])
    assert per_msg['Original-Envelope-Id'] == 'QQ314159', per_msg.items()
    assert sorted(r['Final-Recipient'] for r in rcpts) == [
        'rfc822; alice@backup.example', 'rfc822; bob@backup.example']
    for r in rcpts:
        assert r['Action'] == 'relayed', r.items()
        assert re.match(r'2\.\d{1,3}\.\d{1,3}$', r['Status']), r['Status']
        assert r['Remote-MTA'] == 'dns; mx1.test.example', r.items()
    assert _subject_of(returned) == 'relayed one'
    time.sleep(1)
    assert len(bs.messages()) == 1


def test_dsn_relayed_not_when_primary_offers_dsn(world):
    """The primary offers DSN: NOTIFY/ORCPT/ENVID/RET are passed on and no
    report comes from us (the primary reports the delivery)."""
    p = world.sinks['primary']
    bs = world.sinks['bounce']
    b = world.backmx()
    _send(b, ['alice@backup.example'], 'passed on',
          mail_options=['RET=HDRS', 'ENVID=QQ271828'],
          rcpt_options=['NOTIFY=SUCCESS', 'ORCPT=rfc822;alice@backup.example'])
    got = p.wait_messages(1, timeout=10)
    assert 'RET=HDRS' in got[0]['mail_options'], got[0]['mail_options']
    assert 'ENVID=QQ271828' in got[0]['mail_options']
    opts = got[0]['rcpt_options'][0]
    assert 'NOTIFY=SUCCESS' in opts, opts
    assert any(o.upper().startswith('ORCPT=') for o in opts), opts
    time.sleep(1.5)
    assert bs.messages() == []
    # and NOTIFY=SUCCESS to a DSN-less primary with NOTIFY=NEVER: none
    p.dsn = False
    _send(b, ['alice@backup.example'], 'never relayed',
          rcpt_options=['NOTIFY=NEVER'])
    p.wait_messages(2, timeout=10)
    time.sleep(1.5)
    assert bs.messages() == []
