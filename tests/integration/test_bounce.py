"""Bounces: a permanent failure at the primary produces one RFC 3464 DSN
at the sender domain's MX (sink 'bounce'); none for a null sender; the
queue lifetime produces one with 4.4.7/5.4.7; a null MX domain bounces
with 5.1.10; NOTIFY=NEVER is honoured."""
import email
import email.policy
import time

SENDER = 'someone@sender.example'


def _send(b, rcpts, subject, sender=SENDER, mail_options=(),
          rcpt_options=()):
    s = b.smtp()
    data = ('From: %s\r\nSubject: %s\r\n\r\nbody of %s\r\n'
            % (sender or 'x@y', subject, subject)).encode()
    s.sendmail(sender, rcpts, data, mail_options=list(mail_options),
               rcpt_options=list(rcpt_options))
    s.quit()


def _report(m):
    """Parse a DSN; return (message, per-message fields, recipients)."""
    assert m['mail_from'] == '', m['mail_from']
    msg = email.message_from_bytes(m['data'], policy=email.policy.compat32)
    assert msg.get_content_type() == 'multipart/report', msg.get_content_type()
    assert msg.get_param('report-type') == 'delivery-status'
    assert msg['Auto-Submitted'] == 'auto-replied'
    parts = msg.get_payload()
    assert parts[0].get_content_type() == 'text/plain'
    assert parts[1].get_content_type() == 'message/delivery-status'
    groups = parts[1].get_payload()
    per_msg = groups[0]
    assert per_msg['Reporting-MTA'] == 'dns; mx2.test.example', per_msg.items()
    return msg, per_msg, groups[1:], parts


def test_bounce_permfail(world):
    p, bs = world.sinks['primary'], world.sinks['bounce']
    p.set_mode('permfail')
    b = world.backmx()
    _send(b, ['alice@backup.example'], 'permfail',
          rcpt_options=['ORCPT=rfc822;alice@backup.example'],
          mail_options=['ENVID=env42'])
    m = bs.wait_messages(1, timeout=20)[0]
    assert m['rcpt_tos'] == [SENDER]
    msg, per_msg, rcpts, parts = _report(m)
    assert per_msg['Original-Envelope-Id'] == 'env42'
    assert len(rcpts) == 1
    r = rcpts[0]
    assert r['Final-Recipient'] == 'rfc822; alice@backup.example'
    assert r['Original-Recipient'] == 'rfc822; alice@backup.example'
    assert r['Action'] == 'failed'
    assert r['Status'] == '5.1.1', r['Status']
    assert r['Remote-MTA'] == 'dns; mx1.test.example'
    assert r['Diagnostic-Code'].startswith('smtp; 550 5.1.1'), r.items()
    assert parts[2].get_content_type() in ('message/rfc822',
                                           'text/rfc822-headers')
    b.wait_log(r'status=bounced')


def test_bounce_null_sender_none(world):
    p, bs = world.sinks['primary'], world.sinks['bounce']
    p.set_mode('permfail')
    b = world.backmx()
    _send(b, ['alice@backup.example'], 'null sender', sender='')
    b.wait_log(r'status=bounced', timeout=15)
    b.wait_log(r'no bounce: null sender', timeout=5)
    time.sleep(2)
    assert bs.messages() == []


def test_bounce_notify_never(world):
    p, bs = world.sinks['primary'], world.sinks['bounce']
    p.set_mode('permfail')
    b = world.backmx()
    s = b.smtp()
    s.sendmail(SENDER, ['alice@backup.example'], b'Subject: x\r\n\r\nx\r\n',
               rcpt_options=['NOTIFY=NEVER'])
    s.quit()
    b.wait_log(r'no bounce', timeout=15)
    time.sleep(1)
    assert bs.messages() == []


def test_bounce_expiry(world):
    p, bs = world.sinks['primary'], world.sinks['bounce']
    p.set_mode('down')
    b = world.backmx(retry='1s', queue_lifetime='3s')
    _send(b, ['alice@backup.example'], 'expiry')
    m = bs.wait_messages(1, timeout=30)[0]
    msg, per_msg, rcpts, parts = _report(m)
    assert rcpts[0]['Status'] in ('4.4.7', '5.4.7'), rcpts[0]['Status']
    assert rcpts[0]['Action'] == 'failed'
    assert parts[2].get_payload()  # the original comes back


def test_bounce_nullmx(world):
    bs = world.sinks['bounce']
    b = world.backmx()
    _send(b, ['x@nullmx.example'], 'nullmx')
    m = bs.wait_messages(1, timeout=20)[0]
    msg, per_msg, rcpts, parts = _report(m)
    assert rcpts[0]['Status'] == '5.1.10'
    assert rcpts[0]['Final-Recipient'] == 'rfc822; x@nullmx.example'


def test_bounce_allocation_failure_kept(world):
    """The allocations of a bounce fail (BACKMXD_TEST_BOUNCE_ENOMEM: the
    next 3 fail): the message is not removed with its bounce lost; it
    stays queued, the bounce is tried again on the retry step and
    arrives, then the message is removed."""
    import json
    import os
    p = world.sinks['primary']
    bs = world.sinks['bounce']
    p.set_mode('permfail')
    os.environ['BACKMXD_TEST_BOUNCE_ENOMEM'] = '3'
    try:
        b = world.backmx(retry='3s')
    finally:
        del os.environ['BACKMXD_TEST_BOUNCE_ENOMEM']
    _send(b, ['alice@backup.example'], 'enomem')
    b.wait_log(r'cannot queue the bounce: out of memory', timeout=10)
    r = b.ctl('queue', '--json')
    assert r.returncode == 0, r.stderr
    q = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    assert len(q) == 1, q
    assert q[0]['recipients'][0]['state'] == 'failed', q
    assert bs.messages() == []
    msgs = bs.wait_messages(1, timeout=15)
    msg, per_msg, rcpts, parts = _report(msgs[0])
    assert rcpts[0]['Action'] == 'failed'
    assert rcpts[0]['Status'] == '5.1.1', rcpts[0].items()
    b.wait_log(r'removed', timeout=10)
    time.sleep(1)
    assert len(bs.messages()) == 1
