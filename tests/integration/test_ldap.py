"""The ldap:FILE recipient source against a real slapd (ldap_server.py):
dave is in the directory, not in any file; slapd stopped: verify_down."""
import os

from ldap_server import Slapd
from primary import Primary


def test_ldap_found_no_callout_then_down(world):
    d = os.path.join(world.workdir, 'slapd')
    slapd = Slapd(d)
    slapd.start()
    p = Primary('127.0.0.9', users=('bob',))
    try:
        b = world.backmx(start=False, retry='1h', domains=(
            'domain ldap.example {\n recipients ldap:%(dir)s/x.ldap callout'
            '\n route [127.0.0.9]:25\n}\n'))
        with open(os.path.join(b.dir, 'x.ldap'), 'w') as f:
            f.write('server_host = ldap://127.0.0.10:389\n'
                    'search_base = ou=people,dc=example,dc=org\n'
                    'query_filter = (mail=%s)\ntimeout = 2s\n')
        b.start()
        s = b.smtp()
        s.mail('s@sender.example')
        assert s.rcpt('dave@ldap.example')[0] == 250
        # metacharacters are escaped: no match, then the callout says no
        code, _ = s.rcpt('*@ldap.example')
        assert code == 550, code
        assert s.rcpt('bob@ldap.example')[0] == 250    # callout
        s.quit()
        assert '<dave@ldap.example>' not in p.rcpts(), p.rcpts()
        assert '<bob@ldap.example>' in p.rcpts()
        slapd.stop()
        p.set_mode('down')
        s = b.smtp()
        s.mail('s@sender.example')
        code, msg = s.rcpt('erin@ldap.example')
        assert code == 450 and b'4.4.3' in msg, (code, msg)
        s.quit()
    finally:
        slapd.stop()
        p.close()
