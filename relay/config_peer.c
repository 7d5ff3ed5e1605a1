/*
 * config_peer.c - parsing and checking the mirrored-spool directives
 * (see config_peer.h).  The peer address and peer_listen are numeric
 * ADDR:PORT: the link must not depend on DNS, which may be what failed.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "config_peer.h"
#include "config_private.h"
#include "config_rcpt.h"

#define PEER_TAKEOVER_DEFAULT 600
#define PEER_ACK_TIMEOUT_DEFAULT 5

/* peer_conf_addr - numeric "ADDR:PORT" / "[v6]:PORT" into ss */
static int
peer_conf_addr(const char *v, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[128];
	int port, lit;

	if (strlen(v) >= 80 ||
	    config_parse_hostport(v, host, sizeof(host), &port, &lit, -1) < 0 ||
	    port <= 0 || port > 65535)
		return -1;
	return config_sockaddr(host, port, ss, len);
}

static struct config_peer *
peer_conf_get(struct config_ctx *x, struct config *c)
{
	if (c->peer == NULL) {
		if ((c->peer = calloc(1, sizeof(*c->peer))) == NULL) {
			config_msg(x, 1, "out of memory");
			return NULL;
		}
		c->peer->ack = PEER_ACK_PEER;
		c->peer->ack_timeout = PEER_ACK_TIMEOUT_DEFAULT;
		c->peer->takeover_after = PEER_TAKEOVER_DEFAULT;
	}
	return c->peer;
}

static void
peer_conf_file(struct config_ctx *x, char **dst, const char *kw, char **v,
               int nv)
{
	if (nv != 1) {
		config_msg(x, 1, "%s: expected one file name", kw);
		return;
	}
	if (*dst != NULL) {
		config_msg(x, 1, "%s: given twice", kw);
		return;
	}
	if ((*dst = config_path(x, v[0])) == NULL)
		config_msg(x, 1, "out of memory");
}

int
config_peer_global(struct config_ctx *x, struct config *c, const char *kw,
                   char **v, int nv)
{
	struct config_peer *p;

	if (strcmp(kw, "peer") != 0 && strncmp(kw, "peer_", 5) != 0 &&
	    strcmp(kw, "takeover_after") != 0)
		return 0;
	if (strcmp(kw, "peer") && strcmp(kw, "peer_listen") &&
	    strcmp(kw, "peer_cert") && strcmp(kw, "peer_key") &&
	    strcmp(kw, "peer_ca") && strcmp(kw, "peer_ack") &&
	    strcmp(kw, "takeover_after"))
		return 0;
	if ((p = peer_conf_get(x, c)) == NULL)
		return 1;
	if (!strcmp(kw, "peer")) {
		if (nv != 2) {
			config_msg(x, 1,
			           "peer: expected \"peer NAME "
			           "ADDR:PORT\"");
			return 1;
		}
		if (p->name[0] != '\0') {
			config_msg(x, 1, "peer: given twice (one peer only)");
			return 1;
		}
		if (!config_valid_hostname(v[0], 253)) {
			config_msg(x, 1, "peer: \"%s\" is not a host name",
			           v[0]);
			return 1;
		}
		if (peer_conf_addr(v[1], &p->addr, &p->addrlen) < 0) {
			config_msg(x, 1,
			           "peer: \"%s\" is not a numeric "
			           "ADDR:PORT",
			           v[1]);
			return 1;
		}
		for (size_t i = 0; v[0][i] && i + 1 < sizeof(p->name); i++)
			p->name[i] = tolower((unsigned char)v[0][i]);
		snprintf(p->addr_text, sizeof(p->addr_text), "%s", v[1]);
	} else if (!strcmp(kw, "peer_listen")) {
		if (nv != 1 ||
		    peer_conf_addr(v[0], &p->listen, &p->listenlen) < 0) {
			config_msg(x, 1,
			           "peer_listen: expected a numeric "
			           "ADDR:PORT");
			return 1;
		}
		if (p->have_listen) {
			config_msg(x, 1, "peer_listen: given twice");
			return 1;
		}
		p->have_listen = 1;
		snprintf(p->listen_text, sizeof(p->listen_text), "%s", v[0]);
	} else if (!strcmp(kw, "peer_cert")) {
		peer_conf_file(x, &p->cert, kw, v, nv);
	} else if (!strcmp(kw, "peer_key")) {
		peer_conf_file(x, &p->key, kw, v, nv);
	} else if (!strcmp(kw, "peer_ca")) {
		peer_conf_file(x, &p->ca, kw, v, nv);
	} else if (!strcmp(kw, "peer_ack")) {
		long d = nv == 2 ? config_parse_duration(v[1])
		                 : PEER_ACK_TIMEOUT_DEFAULT;

		if ((nv == 1 || nv == 2) && !strcmp(v[0], "peer")) {
			if (d < 1 || d > 600)
				config_msg(x, 1,
				           "peer_ack peer: \"%s\" is not a "
				           "duration from 1s to 10m",
				           v[1]);
			p->ack = PEER_ACK_PEER;
			if (d >= 1 && d <= 600)
				p->ack_timeout = d;
		} else if (nv == 1 && !strcmp(v[0], "local"))
			p->ack = PEER_ACK_LOCAL;
		else
			config_msg(x, 1,
			           "peer_ack: expected \"peer [TIMEOUT]\" "
			           "or \"local\"");
	} else {
		long d = nv == 1 ? config_parse_duration(v[0]) : -1;

		if (d <= 0)
			config_msg(x, 1,
			           "takeover_after: expected a "
			           "duration above 0 (10m)");
		else
			p->takeover_after = d;
	}
	return 1;
}

void
config_peer_end(struct config_ctx *x, struct config *c)
{
	struct config_peer *p = c->peer;

	if (p == NULL)
		return;
	if (p->name[0] == '\0')
		config_msg(x, 1,
		           "peer_*: given without \"peer NAME ADDR:PORT\"");
	if (!p->have_listen)
		config_msg(x, 1, "peer: needs peer_listen ADDR:PORT");
	if (p->cert == NULL || p->key == NULL || p->ca == NULL)
		config_msg(x, 1,
		           "peer: needs peer_cert, peer_key and peer_ca "
		           "(the link is mutually authenticated TLS)");
	if (p->have_listen && p->addrlen > 0 && p->addrlen == p->listenlen &&
	    !memcmp(&p->addr, &p->listen, p->addrlen))
		config_msg(x, 1,
		           "peer: the peer's address is our own "
		           "peer_listen");
	if (!strcasecmp(p->name, c->policy->hostname))
		config_msg(x, 0,
		           "peer: %s is our own hostname; each node "
		           "names the other",
		           p->name);
}

void
config_peer_free(struct config *c)
{
	if (c->peer == NULL)
		return;
	free(c->peer->cert);
	free(c->peer->key);
	free(c->peer->ca);
	free(c->peer);
	c->peer = NULL;
}

const char *
config_peer_ack_str(enum peer_ack_mode m)
{
	return m == PEER_ACK_LOCAL ? "local" : "peer";
}

static int peer_conf_diag(char *, size_t, const char *, ...)
    __attribute__((format(printf, 3, 4)));

static int
peer_conf_diag(char *diag, size_t len, const char *fmt, ...)
{
	size_t used = strlen(diag);
	va_list ap;

	if (used + 2 < len) {
		va_start(ap, fmt);
		vsnprintf(diag + used, len - used - 1, fmt, ap);
		va_end(ap);
		used = strlen(diag);
		diag[used] = '\n';
		diag[used + 1] = '\0';
	}
	return 1;
}

/* config_peer_check_files - -t: the files load and belong together */
int
config_peer_check_files(const struct config *c, char *diag, size_t len)
{
	const struct config_peer *p = c->peer;
	SSL_CTX *ctx;
	int nerr = 0;

	if (p == NULL || p->cert == NULL || p->key == NULL || p->ca == NULL)
		return 0;
	if ((ctx = SSL_CTX_new(TLS_method())) == NULL)
		return peer_conf_diag(diag, len, "%s: peer: no TLS context",
		                      c->path);
	if (SSL_CTX_use_certificate_chain_file(ctx, p->cert) != 1)
		nerr += peer_conf_diag(diag, len,
		                       "%s: peer_cert %s: cannot "
		                       "load a PEM certificate",
		                       c->path, p->cert);
	else if (SSL_CTX_use_PrivateKey_file(ctx, p->key, SSL_FILETYPE_PEM) !=
	             1 ||
	         SSL_CTX_check_private_key(ctx) != 1) {
		/* OpenSSL refuses the key of another certificate at load */
		FILE *fp = fopen(p->key, "r");
		EVP_PKEY *k =
		    fp ? PEM_read_PrivateKey(fp, NULL, NULL, NULL) : NULL;

		if (k != NULL)
			nerr += peer_conf_diag(diag, len,
			                       "%s: peer_key %s does not "
			                       "match peer_cert %s",
			                       c->path, p->key, p->cert);
		else
			nerr += peer_conf_diag(diag, len,
			                       "%s: peer_key %s: cannot "
			                       "load a PEM private key",
			                       c->path, p->key);
		EVP_PKEY_free(k);
		if (fp != NULL)
			fclose(fp);
	}
	if (SSL_CTX_load_verify_locations(ctx, p->ca, NULL) != 1)
		nerr += peer_conf_diag(diag, len,
		                       "%s: peer_ca %s: cannot "
		                       "load a PEM CA certificate",
		                       c->path, p->ca);
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return nerr;
}
