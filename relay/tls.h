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

#endif
