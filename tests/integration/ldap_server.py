"""A real slapd for the LDAP recipient tests: a slapd.conf and an mdb
database generated under the test's directory, loaded from LDIF with
slapadd, served on ldap://ADDR:389 inside the netns.

certs: the test CA directory (certs.sh): slapd offers StartTLS with
ldap.pem (IP 127.0.0.10).  require_tls: every operation but StartTLS
needs TLS (security tls=1).  require_bind: only BIND_DN (password
BIND_PW) may read the people; an anonymous search finds nothing."""
import os
import shutil
import socket
import subprocess
import time

SCHEMA = '/etc/ldap/schema'
BIND_DN = 'cn=backmx,dc=example,dc=org'
BIND_PW = 's3cret-pw'


class Slapd:
    def __init__(self, directory, address='127.0.0.10', port=389,
                 suffix='dc=example,dc=org', people=('dave',), certs=None,
                 require_tls=False, require_bind=False):
        for tool in ('slapd', 'slapadd'):
            if not (shutil.which(tool) or os.path.exists('/usr/sbin/' + tool)):
                raise AssertionError('%s not installed (TEST_PKGS: slapd '
                                     'ldap-utils)' % tool)
        self.dir = directory
        self.address, self.port, self.suffix = address, port, suffix
        os.makedirs(os.path.join(directory, 'db'), exist_ok=True)
        self.conf = os.path.join(directory, 'slapd.conf')
        glob = ''
        if certs:
            glob += ('TLSCACertificateFile %s/ca.pem\n'
                     'TLSCertificateFile %s/ldap.pem\n'
                     'TLSCertificateKeyFile %s/ldap.key\n'
                     % (certs, certs, certs))
        if require_tls:
            glob += 'security tls=1\n'
        acl = ''
        if require_bind:
            acl = ('access to attrs=userPassword by anonymous auth '
                   'by * none\n'
                   'access to * by dn.exact="%s" read by * none\n' % BIND_DN)
        with open(self.conf, 'w') as f:
            f.write('include %s/core.schema\ninclude %s/cosine.schema\n'
                    'include %s/inetorgperson.schema\n'
                    'pidfile %s/slapd.pid\nmodulepath /usr/lib/ldap\n'
                    '%smoduleload back_mdb\ndatabase mdb\nsuffix "%s"\n'
                    'rootdn "cn=admin,%s"\nrootpw secret\ndirectory %s/db\n'
                    'maxsize 10485760\n%s'
                    % (SCHEMA, SCHEMA, SCHEMA, directory, glob, suffix,
                       suffix, directory, acl))
        ldif = ['dn: %s\nobjectClass: dcObject\nobjectClass: organization\n'
                'o: example\ndc: example\n' % suffix,
                'dn: ou=people,%s\nobjectClass: organizationalUnit\n'
                'ou: people\n' % suffix,
                'dn: %s\nobjectClass: organizationalRole\n'
                'objectClass: simpleSecurityObject\ncn: backmx\n'
                'userPassword: %s\n' % (BIND_DN, BIND_PW)]
        for u in people:
            ldif.append('dn: uid=%s,ou=people,%s\nobjectClass: inetOrgPerson'
                        '\nuid: %s\ncn: %s\nsn: %s\nmail: %s@ldap.example\n'
                        % (u, suffix, u, u, u, u))
        path = os.path.join(directory, 'data.ldif')
        with open(path, 'w') as f:
            f.write('\n'.join(ldif))
        r = subprocess.run(['slapadd', '-f', self.conf, '-l', path],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        self.proc = None

    def start(self):
        url = 'ldap://%s:%d/' % (self.address, self.port)
        self.proc = subprocess.Popen(['slapd', '-f', self.conf, '-h', url,
                                      '-d', '0'],
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection((self.address, self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError('slapd did not start')

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
