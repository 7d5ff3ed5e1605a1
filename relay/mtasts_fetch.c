/*
 * mtasts_fetch.c - the MTA-STS policy fetch on the libev loop: a
 * non-blocking connect to the address the caller resolved, TLS with SNI
 * and the WebPKI name check for mta-sts.<domain> (tls.c's handshake
 * helper), one GET, no redirects, the response parsed by mtasts.c's
 * mtasts_http_response and the policy by mtasts_parse_policy.  Socket
 * I/O through net.c.  Called by fwd_tls.c and checkdns_tls.c; one callback
 * per fetch, never inside mtasts_fetch_start.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "mtasts.h"
#include "net.h"
#include "tls.h"

/* ------------------------------------------------------------------ */
/* the fetch */

enum mtasts_state {
	MTASTS_CONNECT,
	MTASTS_HANDSHAKE,
	MTASTS_WRITE,
	MTASTS_READ,
};

/* room for the header, a full body and chunk framing */
#define MTASTS_BUF_MAX (MTASTS_HEAD_MAX + MTASTS_BODY_MAX + 8192)

struct mtasts_fetch {
	struct ev_loop *loop;
	ev_io io;
	ev_timer timer;
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	enum mtasts_state state;
	double timeout;
	char host[MTASTS_NAME_MAX + 1]; /* mta-sts.<domain> */
	char req[MTASTS_NAME_MAX + 160];
	size_t reqlen, reqoff;
	char *buf;
	size_t len;
	char *body;
	char err[256]; /* set before start returns: fail soon */
	mtasts_fetch_cb cb;
	void *arg;
};

static void mtasts_fetch_io_cb(struct ev_loop *loop, ev_io *w, int revents);

static void
mtasts_fetch_free(struct mtasts_fetch *f)
{
	if (f == NULL)
		return;
	ev_io_stop(f->loop, &f->io);
	ev_timer_stop(f->loop, &f->timer);
	if (f->ssl != NULL)
		SSL_free(f->ssl);
	SSL_CTX_free(f->ctx);
	if (f->fd >= 0)
		close(f->fd);
	free(f->buf);
	free(f->body);
	free(f);
}

void
mtasts_fetch_cancel(struct mtasts_fetch *f)
{
	mtasts_fetch_free(f);
}

/* mtasts_fetch_done - call back once, then free */
static void
mtasts_fetch_done(struct mtasts_fetch *f, const struct mtasts_policy *p,
                  const char *err)
{
	ev_io_stop(f->loop, &f->io);
	ev_timer_stop(f->loop, &f->timer);
	f->cb(f->arg, p, err);
	mtasts_fetch_free(f);
}

static void
mtasts_fetch_fail(struct mtasts_fetch *f, const char *fmt, const char *what)
{
	char err[320];

	snprintf(err, sizeof(err), fmt, what);
	ERR_clear_error();
	mtasts_fetch_done(f, NULL, err);
}

/* mtasts_fetch_want - wait for fd readable/writable per TLS_WANT_* */
static void
mtasts_fetch_want(struct mtasts_fetch *f, int want)
{
	int ev = want == TLS_WANT_WRITE ? EV_WRITE : EV_READ;

	if (ev_is_active(&f->io) && f->io.events == ev)
		return;
	ev_io_stop(f->loop, &f->io);
	ev_io_set(&f->io, f->fd, ev);
	ev_io_start(f->loop, &f->io);
}

static void
mtasts_fetch_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct mtasts_fetch *f = w->data;
	char err[64];

	if (f->err[0] != '\0') {
		mtasts_fetch_done(f, NULL, f->err);
		return;
	}
	snprintf(err, sizeof(err), "timeout after %.0f s", f->timeout);
	mtasts_fetch_done(f, NULL, err);
}

/* mtasts_fetch_tls - the SSL object for the policy host */
static int
mtasts_fetch_tls(struct mtasts_fetch *f)
{
	if ((f->ssl = SSL_new(f->ctx)) == NULL ||
	    SSL_set_fd(f->ssl, f->fd) != 1)
		return -1;
	SSL_set_connect_state(f->ssl);
	if (SSL_set_tlsext_host_name(f->ssl, f->host) != 1)
		return -1;
	SSL_set_hostflags(f->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (SSL_set1_host(f->ssl, f->host) != 1)
		return -1;
	SSL_set_verify(f->ssl, SSL_VERIFY_PEER, NULL);
	return 0;
}

/* mtasts_fetch_read - read what there is; 1 finished (f freed), 0 wait */
static int
mtasts_fetch_read(struct mtasts_fetch *f)
{
	char err[256];
	size_t bodylen;
	ssize_t n;
	int eof = 0, rc, want;

	for (;;) {
		if (f->len == MTASTS_BUF_MAX) {
			mtasts_fetch_fail(f, "%s", "response too large");
			return 1;
		}
		n = net_read(f->fd, f->ssl, f->buf + f->len,
		             MTASTS_BUF_MAX - f->len, &want);
		if (n > 0) {
			f->len += (size_t)n;
			continue;
		}
		if (n == 0)
			eof = 1; /* close_notify: a clean end */
		else if (errno == EAGAIN)
			mtasts_fetch_want(f, want);
		else
			/*
			 * closed without close_notify: fine for a body
			 * whose length is known, a truncation otherwise
			 */
			eof = -1;
		break;
	}
	rc = mtasts_http_response(f->buf, f->len, eof == 1, f->body,
	                          MTASTS_BODY_MAX, &bodylen, err, sizeof(err));
	if (rc == 0 && eof == -1) {
		mtasts_fetch_fail(f, "%s", "connection closed early");
		return 1;
	}
	if (rc < 0) {
		mtasts_fetch_fail(f, "%s", err);
		return 1;
	}
	if (rc == 1) {
		struct mtasts_policy p;
		char perr[256];

		if (mtasts_parse_policy(f->body, bodylen, &p, perr,
		                        sizeof(perr)) != 0)
			mtasts_fetch_fail(f, "bad policy: %s", perr);
		else
			mtasts_fetch_done(f, &p, NULL);
		return 1;
	}
	return 0;
}

static void
mtasts_fetch_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct mtasts_fetch *f = w->data;
	char err[256];
	int want = TLS_WANT_READ, r;

	switch (f->state) {
	case MTASTS_CONNECT: {
		int e = net_connect_result(f->fd);

		if (e != 0) {
			mtasts_fetch_fail(f, "connect: %s", strerror(e));
			return;
		}
		if (mtasts_fetch_tls(f) != 0) {
			mtasts_fetch_fail(f, "TLS: %s", tls_errstr());
			return;
		}
		f->state = MTASTS_HANDSHAKE;
	}
		/* FALLTHROUGH */
	case MTASTS_HANDSHAKE:
		r = tls_handshake_step(f->ssl, &want, err, sizeof(err));
		if (r < 0) {
			long v = SSL_get_verify_result(f->ssl);

			if (v != X509_V_OK)
				mtasts_fetch_fail(
				    f, "certificate verification failed: %s",
				    X509_verify_cert_error_string(v));
			else
				mtasts_fetch_fail(f, "%s", err);
			return;
		}
		if (r == 0) {
			mtasts_fetch_want(f, want);
			return;
		}
		/* SSL_VERIFY_PEER failed the handshake otherwise; be sure */
		if (SSL_get_verify_result(f->ssl) != X509_V_OK ||
		    SSL_get0_peer_certificate(f->ssl) == NULL) {
			mtasts_fetch_fail(f, "%s", "certificate not verified");
			return;
		}
		f->state = MTASTS_WRITE;
		/* FALLTHROUGH */
	case MTASTS_WRITE:
		while (f->reqoff < f->reqlen) {
			ssize_t n = net_write(f->fd, f->ssl, f->req + f->reqoff,
			                      f->reqlen - f->reqoff, &want);

			if (n > 0) {
				f->reqoff += (size_t)n;
				continue;
			}
			if (errno == EAGAIN)
				mtasts_fetch_want(f, want);
			else
				mtasts_fetch_fail(f, "send: %s", net_error());
			return;
		}
		f->state = MTASTS_READ;
		/* FALLTHROUGH */
	case MTASTS_READ:
		mtasts_fetch_read(f);
		return;
	}
}

/* mtasts_fetch_soon - fail from the loop, not from inside start */
static void
mtasts_fetch_soon(struct mtasts_fetch *f, const char *fmt, const char *what)
{
	snprintf(f->err, sizeof(f->err), fmt, what);
	ERR_clear_error();
	ev_timer_stop(f->loop, &f->timer);
	ev_timer_set(&f->timer, 0., 0.);
	ev_timer_start(f->loop, &f->timer);
}

struct mtasts_fetch *
mtasts_fetch_start(struct ev_loop *loop, const char *domain,
                   const struct sockaddr *sa, socklen_t salen,
                   const char *cafile, double timeout, mtasts_fetch_cb cb,
                   void *arg, char *err, size_t errlen)
{
	struct mtasts_fetch *f;
	struct sockaddr_storage ss;
	size_t dn = strlen(domain);

	if (dn > 0 && domain[dn - 1] == '.')
		dn--;
	if (!mtasts_valid_name(domain, dn) || dn + 8 > MTASTS_NAME_MAX) {
		snprintf(err, errlen, "MTA-STS: bad domain name");
		return NULL;
	}
	if (salen > sizeof(ss) ||
	    (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)) {
		snprintf(err, errlen, "MTA-STS: bad address");
		return NULL;
	}
	if ((f = calloc(1, sizeof(*f))) == NULL ||
	    (f->buf = malloc(MTASTS_BUF_MAX)) == NULL ||
	    (f->body = malloc(MTASTS_BODY_MAX)) == NULL) {
		if (f != NULL)
			free(f->buf);
		free(f);
		snprintf(err, errlen, "MTA-STS: out of memory");
		return NULL;
	}
	f->loop = loop;
	f->fd = -1;
	f->cb = cb;
	f->arg = arg;
	f->timeout = timeout;
	snprintf(f->host, sizeof(f->host), "mta-sts.%.*s", (int)dn, domain);
	for (char *c = f->host; *c != '\0'; c++)
		*c = tolower((unsigned char)*c);
	f->reqlen = snprintf(f->req, sizeof(f->req),
	                     "GET /.well-known/mta-sts.txt HTTP/1.1\r\n"
	                     "Host: %s\r\n"
	                     "User-Agent: backmx\r\n"
	                     "Accept: text/plain\r\n"
	                     "Connection: close\r\n\r\n",
	                     f->host);
	ev_init(&f->io, mtasts_fetch_io_cb);
	f->io.data = f;
	ev_timer_init(&f->timer, mtasts_fetch_timer_cb, timeout, 0.);
	f->timer.data = f;
	ev_timer_start(loop, &f->timer);

	f->ctx = SSL_CTX_new(TLS_client_method());
	if (f->ctx == NULL) {
		mtasts_fetch_soon(f, "TLS: %s", tls_errstr());
		return f;
	}
	SSL_CTX_set_min_proto_version(f->ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(f->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	                             SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (cafile != NULL
	        ? SSL_CTX_load_verify_locations(f->ctx, cafile, NULL) != 1
	        : SSL_CTX_set_default_verify_paths(f->ctx) != 1) {
		mtasts_fetch_soon(f, "CA file %s unusable",
		                  cafile ? cafile : "(system)");
		return f;
	}

	memcpy(&ss, sa, salen);
	if (ss.ss_family == AF_INET &&
	    ((struct sockaddr_in *)&ss)->sin_port == 0)
		((struct sockaddr_in *)&ss)->sin_port = htons(443);
	else if (ss.ss_family == AF_INET6 &&
	         ((struct sockaddr_in6 *)&ss)->sin6_port == 0)
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(443);
	f->fd =
	    socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (f->fd < 0) {
		mtasts_fetch_soon(f, "socket: %s", strerror(errno));
		return f;
	}
	if (connect(f->fd, (struct sockaddr *)&ss, salen) != 0 &&
	    errno != EINPROGRESS) {
		mtasts_fetch_soon(f, "connect: %s", strerror(errno));
		return f;
	}
	f->state = MTASTS_CONNECT;
	mtasts_fetch_want(f, TLS_WANT_WRITE);
	return f;
}
