/*
 * tls.c - OpenSSL contexts: the inbound STARTTLS context (TLS 1.2+,
 * certificate and key from the config, rebuilt on SIGHUP).  Called by
 * main.c and smtpd_cmd.c (STARTTLS).
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdio.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509v3.h>

#include "dns.h"
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

/* ------------------------------------------------------------------ */
/* shared non-blocking helpers */

int
tls_handshake_step(SSL *ssl, int *want, char *err, size_t errlen)
{
	int r = SSL_do_handshake(ssl);

	if (r == 1)
		return 1;
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
		*want = TLS_WANT_READ;
		return 0;
	case SSL_ERROR_WANT_WRITE:
		*want = TLS_WANT_WRITE;
		return 0;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() == 0) {
			snprintf(err, errlen, "TLS handshake: connection %s",
			         r == 0 ? "closed by peer" : "error");
			return -1;
		}
		/* FALLTHROUGH */
	default:
		snprintf(err, errlen, "TLS handshake: %s", tls_errstr());
		return -1;
	}
}

void
tls_describe(SSL *ssl, char *buf, size_t len)
{
	snprintf(buf, len, "%s %s", SSL_get_version(ssl),
	         SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
}

SSL *
tls_server_new(int fd)
{
	SSL *ssl;
	int on = 1;

	if (tls_server == NULL || (ssl = SSL_new(tls_server)) == NULL)
		return NULL;
	/*
	 * No Nagle once TLS starts: the session tickets OpenSSL sends after
	 * the handshake are small records the client does not answer, so
	 * with Nagle our reply to the EHLO that follows waited for the
	 * client's delayed ACK (40 ms on Linux) on every connection.  Our
	 * replies are whole (smtpd_flush writes each batch once), so this
	 * adds no small segments otherwise.
	 */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	if (SSL_set_fd(ssl, fd) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	SSL_set_accept_state(ssl);
	return ssl;
}

/* ------------------------------------------------------------------ */
/* outbound */

static SSL_CTX *tls_client;
static char *tls_client_ca; /* CA file the context was built with */

static SSL_CTX *
tls_client_ctx(const struct config *cfg, char *err, size_t errlen)
{
	const char *ca = cfg->tls_ca;

	if (tls_client != NULL && ((ca == NULL && tls_client_ca == NULL) ||
	                           (ca != NULL && tls_client_ca != NULL &&
	                            strcmp(ca, tls_client_ca) == 0)))
		return tls_client;
	SSL_CTX_free(tls_client);
	free(tls_client_ca);
	tls_client_ca = ca != NULL ? strdup(ca) : NULL;
	tls_client = SSL_CTX_new(TLS_client_method());
	if (tls_client == NULL) {
		snprintf(err, errlen, "TLS: %s", tls_errstr());
		return NULL;
	}
	SSL_CTX_set_min_proto_version(tls_client, TLS1_2_VERSION);
	SSL_CTX_set_mode(tls_client, SSL_MODE_ENABLE_PARTIAL_WRITE |
	                                 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if ((ca != NULL &&
	     SSL_CTX_load_verify_locations(tls_client, ca, NULL) != 1) ||
	    (ca == NULL && SSL_CTX_set_default_verify_paths(tls_client) != 1)) {
		snprintf(err, errlen, "TLS CA %s: %s", ca ? ca : "(system)",
		         tls_errstr());
		SSL_CTX_free(tls_client);
		tls_client = NULL;
		return NULL;
	}
	if (SSL_CTX_dane_enable(tls_client) <= 0) {
		snprintf(err, errlen, "TLS DANE: %s", tls_errstr());
		SSL_CTX_free(tls_client);
		tls_client = NULL;
		return NULL;
	}
	/* we judge the result ourselves after the handshake (may/encrypt
	 * accept any certificate; verify/dane do not) */
	SSL_CTX_set_verify(tls_client, SSL_VERIFY_NONE, NULL);
	return tls_client;
}

SSL *
tls_client_new(const struct config *cfg, int fd, int policy, const char *mxhost,
               const struct dns_tlsa *tlsa, int ntlsa, int *dane_armed,
               char *err, size_t errlen)
{
	SSL_CTX *ctx = tls_client_ctx(cfg, err, errlen);
	SSL *ssl;

	*dane_armed = 0;
	if (ctx == NULL)
		return NULL;
	if ((ssl = SSL_new(ctx)) == NULL || SSL_set_fd(ssl, fd) != 1) {
		snprintf(err, errlen, "TLS: %s", tls_errstr());
		SSL_free(ssl);
		return NULL;
	}
	SSL_set_connect_state(ssl);
	if (mxhost != NULL && mxhost[0] != '\0' && mxhost[0] != '[')
		SSL_set_tlsext_host_name(ssl, mxhost);
	if (policy == POLICY_TLS_DANE && ntlsa > 0) {
		if (SSL_dane_enable(ssl, mxhost) <= 0) {
			snprintf(err, errlen, "TLS DANE: %s", tls_errstr());
			SSL_free(ssl);
			return NULL;
		}
		SSL_dane_set_flags(ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
		for (int i = 0; i < ntlsa; i++) {
			const struct dns_tlsa *t = &tlsa[i];

			if (t->usage != 2 && t->usage != 3)
				continue; /* PKIX usages: unusable */
			if (SSL_dane_tlsa_add(ssl, t->usage, t->selector,
			                      t->mtype, t->data, t->len) > 0)
				*dane_armed = 1;
		}
		ERR_clear_error();
	} else if (policy == POLICY_TLS_VERIFY) {
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (SSL_set1_host(ssl, mxhost) != 1) {
			snprintf(err, errlen, "TLS: bad host name %s", mxhost);
			SSL_free(ssl);
			return NULL;
		}
	}
	return ssl;
}

int
tls_client_verdict(SSL *ssl, int policy, int dane_armed, char *desc,
                   size_t desclen, char *err, size_t errlen)
{
	long v = SSL_get_verify_result(ssl);
	const char *ver = SSL_get_version(ssl);

	if (dane_armed) {
		if (v == X509_V_OK &&
		    SSL_get0_dane_authority(ssl, NULL, NULL) >= 0) {
			snprintf(desc, desclen, "%s dane", ver);
			return 0;
		}
		snprintf(desc, desclen, "%s untrusted", ver);
		snprintf(err, errlen, "DANE verification failed: %s",
		         X509_verify_cert_error_string(v));
		return -1;
	}
	if (v == X509_V_OK && SSL_get0_peer_certificate(ssl) != NULL &&
	    policy == POLICY_TLS_VERIFY) {
		snprintf(desc, desclen, "%s verified", ver);
		return 0;
	}
	if (policy == POLICY_TLS_VERIFY) {
		snprintf(desc, desclen, "%s untrusted", ver);
		snprintf(err, errlen, "certificate verification failed: %s",
		         SSL_get0_peer_certificate(ssl) == NULL
		             ? "no certificate"
		             : X509_verify_cert_error_string(v));
		return -1;
	}
	snprintf(desc, desclen, "%s %s", ver,
	         v == X509_V_OK ? "trusted" : "untrusted");
	return 0;
}
