/*
 * tls.c - OpenSSL contexts: the inbound STARTTLS context (TLS 1.2+,
 * certificate and key from the config, rebuilt on SIGHUP).  Called by
 * main.c and smtp_server.c.
 */
#include <openssl/err.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "tls.h"

static SSL_CTX *tls_server;

const char *
tls_errstr(void)
{
	static char buf[256];
	unsigned long e = ERR_get_error();

	if (e == 0)
		return "unknown TLS error";
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return buf;
}

/* tls_server_build - a server context for cfg, or NULL with err set */
static SSL_CTX *
tls_server_build(const struct config *cfg, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		snprintf(err, errlen, "TLS: %s", tls_errstr());
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
				 SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
			      SSL_MODE_ENABLE_PARTIAL_WRITE |
			      SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
		snprintf(err, errlen, "tls_cert %s: %s", cfg->tls_cert,
			 tls_errstr());
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) !=
		    1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "tls_key %s: %s", cfg->tls_key,
			 tls_errstr());
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

int
tls_server_init(const struct config *cfg, char *err, size_t errlen)
{
	if (cfg->tls_cert == NULL)
		return 0;
	tls_server = tls_server_build(cfg, err, errlen);
	return tls_server == NULL ? -1 : 0;
}

int
tls_server_reload(const struct config *cfg)
{
	char err[512];
	SSL_CTX *ctx;

	if (cfg->tls_cert == NULL) {
		SSL_CTX_free(tls_server);
		tls_server = NULL;
		return 0;
	}
	if ((ctx = tls_server_build(cfg, err, sizeof(err))) == NULL) {
		log_err("%s", err);
		return -1;
	}
	/* sessions in progress hold their own SSL references */
	SSL_CTX_free(tls_server);
	tls_server = ctx;
	return 0;
}

SSL_CTX *
tls_server_ctx(void)
{
	return tls_server;
}
