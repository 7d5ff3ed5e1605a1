/*
 * ldap_src.h - the `ldap:FILE` recipient source: OpenLDAP's libldap
 * used asynchronously on the daemon's loop (ldap_search_ext, then
 * ldap_result(timeout 0) when the connection's descriptor is readable).
 *
 * FILE, in the spirit of Postfix's ldap_table(5), "key = value" lines:
 *   server_host  = ldap://127.0.0.1:389   (ldap:// or ldaps:// URI, or
 *                                          host[:port])
 *   search_base  = ou=people,dc=example,dc=org
 *   query_filter = (mail=%s)              (%s address, %u local part,
 *                                          %d domain; RFC 4515-escaped)
 *   bind_dn      = cn=backmx,dc=example,dc=org     (optional)
 *   bind_pw      = /etc/backmx/ldap.pw    (a file, mode 0600/0640, owned
 *                                          by root or the backmx user)
 *   timeout      = 5s                     (per lookup and connect)
 *   start_tls    = yes                    (optional)
 *   tls_ca_cert_file = /etc/ssl/certs/x.pem (CA of the directory's
 *                                          certificate; default the
 *                                          system's)
 * One connection per FILE, opened on first use and after a failure
 * (at most once per timeout) by a worker thread (ldap_open.c), so the
 * loop never waits for a connect, StartTLS or bind; an entry found =
 * yes, none = no, any error = unknown.
 */
#ifndef BACKMX_LDAP_SRC_H
#define BACKMX_LDAP_SRC_H

#include <stddef.h>

#include "policy.h"

#define LDAP_FILTER_MAX 1024

/* the parsed FILE (ldap_conf.c) */
struct ldap_cfg {
	char uri[512];
	char base[512];
	char filter[512];
	char bind_dn[512];
	char bind_pw[256];
	char ca_file[512];
	int timeout;
	int start_tls;
};

/* ldap_conf_parse - 0, or -1 with "FILE:LINE: message"; user: owner
 * allowed for the bind_pw file besides root and ourselves */
int ldap_conf_parse(const char *file, struct ldap_cfg *c, const char *user,
                    char *err, size_t errlen);

struct ldap_src_req;
/* cb(arg, answer, why): why is a short text for logs when UNKNOWN */
typedef void (*ldap_src_cb)(void *arg, enum policy_answer a, const char *why);

/* ldap_src_lookup - NULL (no callback) when it cannot start */
struct ldap_src_req *ldap_src_lookup(const char *file, const char *address,
                                     ldap_src_cb cb, void *arg);
void ldap_src_cancel(struct ldap_src_req *q);
void ldap_src_shutdown(void);

struct config;
/*
 * ldap_src_configure - at start and after every reload: each ldap:FILE
 * of c is read (again).  A changed FILE replaces the definition and the
 * connection (lookups in flight are sent again); one that no longer
 * parses keeps the definition read before, logged at err; a FILE no
 * longer named closes its connection.
 */
void ldap_src_configure(const struct config *c);

/*
 * ldap_src_definition_id - a hash of FILE's server, base and filter as
 * now in use (0: FILE unusable): part of the cache key of an LDAP
 * answer, so a changed definition is never answered from the old one's
 * cache.
 */
unsigned long ldap_src_definition_id(const char *file);

/*
 * ldap_src_check_file - parse FILE as backmxd -t does: every key known,
 * server_host, search_base and query_filter present, the filter
 * expandable, the bind_pw file readable and not readable by others.
 * 0, or -1 with "FILE:LINE: message" in err.
 */
int ldap_src_check_file(const char *file, const char *user, char *err,
                        size_t errlen);

extern unsigned long long ldap_src_lookups, ldap_src_errors;

#endif
