/*
 * tls.h - OpenSSL contexts for STARTTLS both ways.
 *
 * The inbound context is built from tls_cert/tls_key at start-up and
 * rebuilt on SIGHUP (a broken new pair is refused and the old one kept).
 * tls_server_ctx() is NULL when STARTTLS is not configured.
 */
#ifndef BACKMX_TLS_H
#define BACKMX_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "config.h"

int tls_server_init(const struct config *cfg, char *err, size_t errlen);
/* tls_server_reload - build a context from cfg; keep the old on error */
int tls_server_reload(const struct config *cfg);
SSL_CTX *tls_server_ctx(void);
/* tls_errstr - the OpenSSL error queue as one line (and cleared) */
const char *tls_errstr(void);

/* ------------------------------------------------------------------ */
/* shared non-blocking helpers */

#define TLS_WANT_READ 1
#define TLS_WANT_WRITE 2

/*
 * tls_handshake_step - drive SSL_do_handshake on a non-blocking socket:
 * 1 done, 0 call again when *want (TLS_WANT_*) is ready, -1 failed (err).
 */
int tls_handshake_step(SSL *ssl, int *want, char *err, size_t errlen);
/* tls_describe - "TLSv1.3 TLS_AES_256_GCM_SHA384" for logs/Received */
void tls_describe(SSL *ssl, char *buf, size_t len);

/* inbound: a server SSL on fd, or NULL (STARTTLS not configured / error) */
SSL *tls_server_new(int fd);

/* ------------------------------------------------------------------ */
/* outbound */

struct dns_tlsa;

/*
 * tls_client_new - an SSL for fd towards MX host `mxhost` under the
 * domain's policy (policy.h enum policy_tls).  For POLICY_TLS_VERIFY the
 * chain is verified against cfg->tls_ca or the system store and the name
 * checked against mxhost; for POLICY_TLS_DANE with usable TLSA records
 * (usages 2/3, from DNSSEC-secure data) OpenSSL's DANE verification is
 * armed.  *dane_armed tells whether at least one record was usable.
 */
SSL *tls_client_new(const struct config *cfg, int fd, int policy,
                    const char *mxhost, const struct dns_tlsa *tlsa, int ntlsa,
                    int *dane_armed, char *err, size_t errlen);
/*
 * tls_client_verdict - after the handshake: 0 when the policy is met,
 * -1 otherwise (err says why, e.g. "certificate verification failed:
 * hostname mismatch").  desc gets the log form: "TLSv1.3 verified",
 * "TLSv1.3 dane", "TLSv1.2 untrusted".
 */
int tls_client_verdict(SSL *ssl, int policy, int dane_armed, char *desc,
                       size_t desclen, char *err, size_t errlen);

#endif
