/*
 * peer.c - the mutually authenticated TLS link to the mirror node (see
 * peer.h): the peer_listen socket, the connection we dial with its
 * reconnect backoff, the handshake and name check, the HELLO exchange,
 * framed reads and queued writes (socket I/O through net.c), and
 * liveness (PING each second, a connection silent for PEER_DEAD seconds
 * is closed).
 *
 * Why two connections and not one: each carries exactly one replication
 * group, so BDB's messages need no group tag, and neither side has to
 * win a race for who dials: each dials for its own spool.
 *
 * Refusals (no certificate, one not from peer_ca, a name other than
 * `peer NAME`, a bad HELLO or frame) are logged at warning with the
 * client address and counted; they never reach spool/.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "backmxd.h"
#include "config_peer.h"
#include "fdpause.h"
#include "log.h"
#include "net.h"
#include "peer.h"
#include "tls.h"

#define PEER_PENDING_MAX 4 /* unauthenticated inbound connections */
#define PEER_HANDSHAKE_TIMEOUT 10.0
#define PEER_PING 1.0
#define PEER_DEAD 6.0
#define PEER_BACKOFF_MIN 0.2
#define PEER_BACKOFF_MAX 10.0
/* a refused or unreachable dial costs nothing: retried at least this
 * often, so a peer that starts comes up at once */
#define PEER_BACKOFF_REFUSED 1.0
#define PEER_OUT_MAX (64u * 1024 * 1024)
#define PEER_READ_CHUNK (64 * 1024)

enum peer_state {
	PEER_CONNECTING, /* outbound: TCP connect under way */
	PEER_HANDSHAKE,
	PEER_HELLO, /* TLS up, waiting for the peer's HELLO */
	PEER_UP,
};

struct peer_conn {
	int fd;
	SSL *ssl;
	ev_io io;
	ev_timer timer;
	enum peer_state state;
	int outbound;
	int ch;   /* PEER_CH_* once known */
	int want; /* TLS_WANT_* of the last SSL call */
	uint8_t *in;
	size_t inlen, incap;
	uint8_t *out;
	size_t outhead, outlen, outcap;
	double last_rx, last_tx;
	uint64_t incarnation; /* from the peer's HELLO */
	char addr[80];
	struct peer_conn *next; /* pending list */
};

static const struct config_peer *peer_cfg; /* start-up copy */
static char peer_name[256], peer_self[256];
static SSL_CTX *peer_ctx;
static int peer_lfd = -1;
static ev_io peer_accept_io;
static struct fdpause peer_accept_pause;
static ev_timer peer_redial;
static double peer_backoff = PEER_BACKOFF_MIN;
static struct peer_conn *peer_chan[2]; /* PEER_CH_OWN, PEER_CH_REPLICA */
static struct peer_conn *peer_pending;
static int peer_npending;
static const struct peer_handlers *peer_h;
static double peer_heard;
static struct peer_link_stats peer_st;
static struct config_peer peer_cfg_copy;
static int peer_started;
static uint64_t peer_own_incarnation;

static void peer_conn_cb(struct ev_loop *, ev_io *, int);
static void peer_timer_cb(struct ev_loop *, ev_timer *, int);
static void peer_dial(void);

int
peer_enabled(void)
{
	return peer_ctx != NULL;
}

const struct peer_link_stats *
peer_stats(void)
{
	return &peer_st;
}

double
peer_last_heard(void)
{
	return peer_heard;
}

int
peer_up(int ch)
{
	return ch >= 0 && ch < 2 && peer_chan[ch] != NULL &&
	       peer_chan[ch]->state == PEER_UP;
}

void
peer_set_incarnation(uint64_t inc)
{
	peer_own_incarnation = inc;
}

uint64_t
peer_incarnation(int ch)
{
	return peer_up(ch) ? peer_chan[ch]->incarnation : 0;
}

size_t
peer_queued(int ch)
{
	return peer_up(ch) ? peer_chan[ch]->outlen : 0;
}

/* peer_addr_str - "ADDR" of sa */
static void
peer_addr_str(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	const void *a =
	    ss->ss_family == AF_INET6
	        ? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
	        : (const void *)&((const struct sockaddr_in *)ss)->sin_addr;

	if (inet_ntop(ss->ss_family, a, buf, len) == NULL)
		snprintf(buf, len, "unknown");
}

/* peer_ctx_new - one context for both directions: our certificate,
 * peer_ca as the only trust, a certificate required from the other end */
static SSL_CTX *
peer_ctx_new(const struct config_peer *p, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());

	if (ctx == NULL) {
		snprintf(err, errlen, "peer: TLS context: %s", tls_errstr());
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (SSL_CTX_use_certificate_chain_file(ctx, p->cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, p->key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "peer_cert %s / peer_key %s: %s", p->cert,
		         p->key, tls_errstr());
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_load_verify_locations(ctx, p->ca, NULL) != 1) {
		snprintf(err, errlen, "peer_ca %s: %s", p->ca, tls_errstr());
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_verify(
	    ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_verify_depth(ctx, 4);
	return ctx;
}

int
peer_open(const struct config *cfg, char *err, size_t errlen)
{
	const struct config_peer *p = cfg->peer;
	int on = 1;

	if (p == NULL)
		return 0;
	peer_cfg_copy = *p; /* the strings are not used after start */
	peer_cfg = &peer_cfg_copy;
	snprintf(peer_name, sizeof(peer_name), "%s", p->name);
	snprintf(peer_self, sizeof(peer_self), "%s", cfg->hostname);
	if ((peer_ctx = peer_ctx_new(p, err, errlen)) == NULL)
		return -1;
	peer_lfd = socket(p->listen.ss_family,
	                  SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (peer_lfd < 0) {
		snprintf(err, errlen, "peer_listen %s: socket: %s",
		         p->listen_text, strerror(errno));
		return -1;
	}
	setsockopt(peer_lfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	/* bound now (before the privilege drop), listening only from
	 * peer_start: while this node opens its spools a peer's dial is
	 * refused at once and retried within PEER_BACKOFF_REFUSED, instead
	 * of waiting in the backlog for a handshake that times out */
	if (bind(peer_lfd, (const struct sockaddr *)&p->listen, p->listenlen) <
	    0) {
		snprintf(err, errlen, "peer_listen %s: %s", p->listen_text,
		         strerror(errno));
		close(peer_lfd);
		peer_lfd = -1;
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* connections */

static struct peer_conn *
peer_conn_new(int fd, int outbound)
{
	struct peer_conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->fd = fd;
	c->outbound = outbound;
	c->ch = outbound ? PEER_CH_OWN : PEER_CH_REPLICA;
	c->last_rx = c->last_tx = ev_now(backmxd.loop);
	ev_io_init(&c->io, peer_conn_cb, fd, EV_READ);
	c->io.data = c;
	ev_timer_init(&c->timer, peer_timer_cb, PEER_PING, PEER_PING);
	c->timer.data = c;
	ev_timer_start(backmxd.loop, &c->timer);
	return c;
}

static void
peer_pending_remove(struct peer_conn *c)
{
	for (struct peer_conn **pp = &peer_pending; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			peer_npending--;
			return;
		}
}

/* peer_redial_after - the next dial after a failed one (refused: the
 * TCP connect failed), backoff doubling from PEER_BACKOFF_MIN */
static void
peer_redial_after(int refused)
{
	double t = peer_backoff;

	if (refused && t > PEER_BACKOFF_REFUSED)
		t = PEER_BACKOFF_REFUSED;
	ev_timer_stop(backmxd.loop, &peer_redial);
	ev_timer_set(&peer_redial, t, 0);
	ev_timer_start(backmxd.loop, &peer_redial);
	peer_backoff = peer_backoff * 2 > PEER_BACKOFF_MAX ? PEER_BACKOFF_MAX
	                                                   : peer_backoff * 2;
}

/* peer_close - end c; why is logged (NULL: quietly) */
static void
peer_close(struct peer_conn *c, const char *why)
{
	int was_up = c->state == PEER_UP;

	if (why != NULL)
		log_at(__FILE__, was_up ? LOG_WARNING : LOG_INFO, NULL,
		       "peer: %s link %s %s closed: %s",
		       c->ch == PEER_CH_OWN ? "own-spool" : "replica",
		       c->outbound ? "to" : "from", c->addr, why);
	ev_io_stop(backmxd.loop, &c->io);
	ev_timer_stop(backmxd.loop, &c->timer);
	if (c->ssl != NULL) {
		if (c->state >= PEER_HELLO)
			SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	close(c->fd);
	if (peer_chan[c->ch] == c)
		peer_chan[c->ch] = NULL;
	else if (!c->outbound)
		peer_pending_remove(c);
	free(c->in);
	free(c->out);
	if (c->outbound && peer_started && !backmxd.stopping)
		peer_redial_after(c->state == PEER_CONNECTING);
	if (was_up && peer_h != NULL && peer_h->down != NULL)
		peer_h->down(c->ch);
	free(c);
}

/* peer_refuse - an inbound connection that did not prove to be the peer */
static void
peer_refuse(struct peer_conn *c, const char *why)
{
	peer_st.refused++;
	log_warn("peer: refused connection from %s: %s", c->addr, why);
	peer_close(c, NULL);
}

static void
peer_events(struct peer_conn *c)
{
	int ev = EV_READ;

	if (c->state == PEER_CONNECTING || c->want == TLS_WANT_WRITE ||
	    (c->state >= PEER_HELLO && c->outlen > 0))
		ev |= EV_WRITE;
	if (c->state == PEER_CONNECTING)
		ev = EV_WRITE;
	if (ev_is_active(&c->io) && c->io.events == ev)
		return;
	ev_io_stop(backmxd.loop, &c->io);
	ev_io_set(&c->io, c->fd, ev);
	ev_io_start(backmxd.loop, &c->io);
}

/* peer_queue - append the pieces to c's output; -1 when over the cap */
static int
peer_queue(struct peer_conn *c, const void *p1, size_t l1, const void *p2,
           size_t l2, const void *p3, size_t l3)
{
	size_t need = l1 + l2 + l3;

	if (c->outlen + need > PEER_OUT_MAX)
		return -1;
	if (c->outhead > 0 && c->outhead + c->outlen + need > c->outcap) {
		memmove(c->out, c->out + c->outhead, c->outlen);
		c->outhead = 0;
	}
	if (c->outhead + c->outlen + need > c->outcap) {
		uint8_t *n = net_grow(c->out, &c->outcap,
		                      c->outhead + c->outlen + need, 65536, 0);

		if (n == NULL)
			return -1;
		c->out = n;
	}
	uint8_t *w = c->out + c->outhead + c->outlen;

	if (l1)
		memcpy(w, p1, l1);
	if (l2)
		memcpy(w + l1, p2, l2);
	if (l3)
		memcpy(w + l1 + l2, p3, l3);
	c->outlen += need;
	peer_st.frames_out++;
	return 0;
}

int
peer_send(int ch, const void *hdr, size_t hlen, const void *a, size_t alen,
          const void *b, size_t blen)
{
	struct peer_conn *c;

	if (!peer_up(ch)) {
		peer_st.dropped++;
		return -1;
	}
	c = peer_chan[ch];
	if (peer_queue(c, hdr, hlen, a, alen, b, blen) < 0) {
		peer_st.dropped++;
		return -1;
	}
	peer_events(c);
	return 0;
}

/* peer_flush - write what is queued; -1 when the connection failed */
static int
peer_flush(struct peer_conn *c)
{
	while (c->outlen > 0) {
		ssize_t n = net_write(
		    c->fd, c->ssl, c->out + c->outhead,
		    c->outlen > (1u << 30) ? (1u << 30) : c->outlen, &c->want);

		if (n <= 0)
			return errno == EAGAIN ? 0 : -1;
		c->want = 0;
		c->outhead += n;
		c->outlen -= n;
		peer_st.bytes_out += n;
		c->last_tx = ev_now(backmxd.loop);
	}
	c->outhead = 0;
	return 0;
}

/* peer_hello_send - our HELLO: our name and the channel as the dialer
 * sees it (the dialer's own spool) */
static int
peer_hello_send(struct peer_conn *c)
{
	uint8_t hdr[PEER_FRAME_FIXED];
	int n =
	    peer_frame_hello(hdr, c->outbound ? PEER_CH_OWN : PEER_CH_REPLICA,
	                     c->outbound ? peer_own_incarnation : 0, peer_self);

	if (n < 0)
		return -1;
	return peer_queue(c, hdr, n, NULL, 0, NULL, 0);
}

/* peer_authenticated - the handshake is done: verified chain and name
 * (OpenSSL checked both, the host being set on the SSL) */
static int
peer_authenticated(struct peer_conn *c)
{
	X509 *x = SSL_get_peer_certificate(c->ssl);
	long v = SSL_get_verify_result(c->ssl);

	if (x == NULL) {
		if (!c->outbound)
			peer_refuse(c, "no client certificate");
		else
			peer_close(c, "the peer sent no certificate");
		return -1;
	}
	X509_free(x);
	if (v != X509_V_OK) {
		char why[256];

		snprintf(why, sizeof(why), "certificate: %s",
		         X509_verify_cert_error_string(v));
		if (!c->outbound)
			peer_refuse(c, why);
		else
			peer_close(c, why);
		return -1;
	}
	return 0;
}

/* peer_promote - a HELLO arrived on c: it is now the channel's link */
static int
peer_promote(struct peer_conn *c, const struct peer_frame *f)
{
	struct peer_conn *old;
	char buf[64];

	/* the dialer always speaks for its own spool */
	if (f->channel != (c->outbound ? PEER_CH_REPLICA : PEER_CH_OWN)) {
		if (!c->outbound)
			peer_refuse(c, "HELLO for the wrong channel");
		else
			peer_close(c, "HELLO for the wrong channel");
		return -1;
	}
	if (!c->outbound) {
		peer_pending_remove(c);
		/* a new inbound link replaces an old one: the peer
		 * restarted, or the old one is half open */
		if ((old = peer_chan[c->ch]) != NULL)
			peer_close(old, "replaced by a new connection");
	}
	peer_chan[c->ch] = c;
	c->state = PEER_UP;
	c->incarnation = f->incarnation;
	if (c->outbound)
		peer_backoff = PEER_BACKOFF_MIN;
	peer_st.connects++;
	tls_describe(c->ssl, buf, sizeof(buf));
	log_info("peer: %s link %s %s (%s) up, %s",
	         c->ch == PEER_CH_OWN ? "own-spool" : "replica",
	         c->outbound ? "to" : "from", peer_name, c->addr, buf);
	if (peer_h != NULL && peer_h->up != NULL)
		peer_h->up(c->ch);
	return 0;
}

/* peer_read - read and dispatch frames; -1 when c was closed */
static int
peer_read(struct peer_conn *c)
{
	char err[128];
	int got = 0;

	for (;;) {
		size_t used, off = 0;
		struct peer_frame f;
		ssize_t n;
		int r, want;

		if (c->incap - c->inlen < PEER_READ_CHUNK) {
			size_t cap =
			    c->incap ? c->incap * 2 : 2 * PEER_READ_CHUNK;
			uint8_t *nb;

			if (cap >
			    PEER_FRAME_MAX + PEER_FRAME_HDR + PEER_READ_CHUNK)
				cap = PEER_FRAME_MAX + PEER_FRAME_HDR +
				      PEER_READ_CHUNK;
			if (cap <= c->incap) {
				peer_close(c, "input buffer full");
				return -1;
			}
			if ((nb = realloc(c->in, cap)) == NULL) {
				peer_close(c, "out of memory");
				return -1;
			}
			c->in = nb;
			c->incap = cap;
		}
		n = net_read(c->fd, c->ssl, c->in + c->inlen,
		             c->incap - c->inlen, &want);
		if (n < 0 && errno == EAGAIN) {
			/* nothing now; TLS may wait for the socket to be
			 * writable */
			c->want = want == TLS_WANT_WRITE ? TLS_WANT_WRITE : 0;
			break;
		}
		if (n <= 0) {
			peer_close(c,
			           n == 0 ? "closed by the peer" : net_error());
			return -1;
		}
		peer_st.bytes_in += n;
		c->inlen += n;
		c->last_rx = ev_now(backmxd.loop);
		while ((r = peer_frame_parse(c->in + off, c->inlen - off, &f,
		                             &used, err, sizeof(err))) == 1) {
			off += used;
			peer_st.frames_in++;
			if (c->state == PEER_UP)
				peer_heard = c->last_rx;
			if (c->state == PEER_HELLO) {
				if (f.type != PEER_F_HELLO) {
					if (!c->outbound)
						peer_refuse(c,
						            "no HELLO first");
					else
						peer_close(c, "no HELLO first");
					return -1;
				}
				if (peer_promote(c, &f) < 0)
					return -1;
				peer_heard = c->last_rx;
				continue;
			}
			if (f.type == PEER_F_HELLO) {
				peer_st.proto_errors++;
				peer_close(c, "a second HELLO");
				return -1;
			}
			if (f.type == PEER_F_PING)
				continue;
			got = 1;
			if (peer_h != NULL && peer_h->frame != NULL &&
			    peer_h->frame(c->ch, &f) < 0) {
				peer_close(c, "replication error");
				return -1;
			}
		}
		if (r < 0) {
			peer_st.proto_errors++;
			if (c->state != PEER_UP && !c->outbound) {
				peer_refuse(c, err);
				return -1;
			}
			peer_close(c, err);
			return -1;
		}
		if (off > 0) {
			memmove(c->in, c->in + off, c->inlen - off);
			c->inlen -= off;
		}
	}
	if (got && peer_h != NULL && peer_h->batch_end != NULL)
		peer_h->batch_end(c->ch);
	return 0;
}

static void
peer_conn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct peer_conn *c = w->data;
	char err[256];
	int r, want = 0;

	if (c->state == PEER_CONNECTING) {
		int e = net_connect_result(c->fd);

		if (e != 0) {
			log_debug("peer: connect to %s: %s", c->addr,
			          strerror(e));
			peer_close(c, NULL);
			return;
		}
		c->state = PEER_HANDSHAKE;
	}
	if (c->state == PEER_HANDSHAKE) {
		r = tls_handshake_step(c->ssl, &want, err, sizeof(err));
		if (r < 0) {
			long v = SSL_get_verify_result(c->ssl);
			char why[400];

			if (v != X509_V_OK)
				snprintf(why, sizeof(why),
				         "%s (certificate: %s)", err,
				         X509_verify_cert_error_string(v));
			else
				snprintf(why, sizeof(why), "%s", err);
			if (!c->outbound)
				peer_refuse(c, why);
			else
				peer_close(c, why);
			return;
		}
		if (r == 0) {
			c->want = want;
			ev_io_stop(loop, &c->io);
			ev_io_set(&c->io, c->fd,
			          want == TLS_WANT_WRITE ? EV_WRITE : EV_READ);
			ev_io_start(loop, &c->io);
			return;
		}
		c->want = 0;
		if (peer_authenticated(c) < 0)
			return;
		c->state = PEER_HELLO;
		if (peer_hello_send(c) < 0) {
			peer_close(c, "cannot queue HELLO");
			return;
		}
	}
	if (peer_read(c) < 0)
		return;
	if (peer_flush(c) < 0) {
		peer_close(c, "write failed");
		return;
	}
	peer_events(c);
}

static void
peer_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct peer_conn *c = w->data;
	double now = ev_now(loop);
	uint8_t hdr[PEER_FRAME_HDR];

	if (c->state < PEER_UP) {
		if (now - c->last_rx >= PEER_HANDSHAKE_TIMEOUT) {
			if (!c->outbound)
				peer_refuse(c, "no TLS handshake and HELLO "
				               "within 10s");
			else
				peer_close(c, "handshake timed out");
		}
		return;
	}
	if (now - c->last_rx >= PEER_DEAD) {
		peer_close(c, "peer silent");
		return;
	}
	if (now - c->last_tx >= PEER_PING * 0.9 && c->outlen == 0) {
		peer_queue(c, hdr, peer_frame_ping(hdr), NULL, 0, NULL, 0);
		if (peer_flush(c) < 0) {
			peer_close(c, "write failed");
			return;
		}
		peer_events(c);
	}
}

/* ------------------------------------------------------------------ */
/* accepting and dialing */

static void
peer_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct peer_conn *c;
		int fd, on = 1;

		fd = accept4(peer_lfd, (struct sockaddr *)&ss, &sl,
		             SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			fdpause_after(loop, &peer_accept_pause, errno);
			return;
		}
		if (peer_npending >= PEER_PENDING_MAX ||
		    (c = peer_conn_new(fd, 0)) == NULL) {
			char a[64];

			peer_addr_str(&ss, a, sizeof(a));
			peer_st.refused++;
			log_warn("peer: refused connection from %s: too many "
			         "unauthenticated connections",
			         a);
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
		peer_addr_str(&ss, c->addr, sizeof(c->addr));
		c->next = peer_pending;
		peer_pending = c;
		peer_npending++;
		c->state = PEER_HANDSHAKE;
		if ((c->ssl = SSL_new(peer_ctx)) == NULL ||
		    SSL_set_fd(c->ssl, fd) != 1 ||
		    X509_VERIFY_PARAM_set1_host(SSL_get0_param(c->ssl),
		                                peer_name, 0) != 1) {
			peer_refuse(c, "TLS setup failed");
			continue;
		}
		X509_VERIFY_PARAM_set_hostflags(
		    SSL_get0_param(c->ssl),
		    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		SSL_set_accept_state(c->ssl);
		ev_io_start(loop, &c->io);
	}
}

/* peer_dial - open the connection for our own spool's stream, from our
 * peer_listen address (the peer sees the address it expects) */
static void
peer_dial(void)
{
	const struct config_peer *p = peer_cfg;
	struct sockaddr_storage src = p->listen;
	struct peer_conn *c;
	int fd, on = 1;

	if (peer_chan[PEER_CH_OWN] != NULL || backmxd.stopping)
		return;
	fd = socket(p->addr.ss_family,
	            SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto retry;
	if (src.ss_family == p->addr.ss_family) {
		if (src.ss_family == AF_INET)
			((struct sockaddr_in *)&src)->sin_port = 0;
		else
			((struct sockaddr_in6 *)&src)->sin6_port = 0;
		/* a wildcard peer_listen binds nothing in particular */
		bind(fd, (struct sockaddr *)&src, p->listenlen);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	if (connect(fd, (const struct sockaddr *)&p->addr, p->addrlen) < 0 &&
	    errno != EINPROGRESS) {
		close(fd);
		goto retry;
	}
	if ((c = peer_conn_new(fd, 1)) == NULL) {
		close(fd);
		goto retry;
	}
	snprintf(c->addr, sizeof(c->addr), "%s", p->addr_text);
	peer_chan[PEER_CH_OWN] = c;
	c->state = PEER_CONNECTING;
	if ((c->ssl = SSL_new(peer_ctx)) == NULL ||
	    SSL_set_fd(c->ssl, fd) != 1 ||
	    X509_VERIFY_PARAM_set1_host(SSL_get0_param(c->ssl), peer_name, 0) !=
	        1) {
		peer_close(c, "TLS setup failed");
		return;
	}
	SSL_set_tlsext_host_name(c->ssl, peer_name);
	SSL_set_connect_state(c->ssl);
	peer_events(c);
	return;
retry:
	peer_redial_after(1);
}

static void
peer_redial_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	peer_dial();
}

void
peer_start(const struct peer_handlers *h)
{
	if (peer_ctx == NULL)
		return;
	peer_h = h;
	peer_started = 1;
	if (listen(peer_lfd, 16) < 0)
		log_err("peer: peer_listen %s: listen: %m; the peer cannot "
		        "reach us (our own link is dialed all the same)",
		        peer_cfg->listen_text);
	ev_io_init(&peer_accept_io, peer_accept_cb, peer_lfd, EV_READ);
	fdpause_init(&peer_accept_pause, &peer_accept_io, "peer");
	ev_io_start(backmxd.loop, &peer_accept_io);
	ev_timer_init(&peer_redial, peer_redial_cb, 0, 0);
	log_info("peer: mirroring with %s at %s, listening on %s, "
	         "peer_ack %s, takeover_after %lds",
	         peer_name, peer_cfg->addr_text, peer_cfg->listen_text,
	         config_peer_ack_str(peer_cfg->ack), peer_cfg->takeover_after);
	peer_dial();
}

void
peer_shutdown(void)
{
	if (peer_ctx == NULL)
		return;
	peer_started = 0;
	ev_timer_stop(backmxd.loop, &peer_redial);
	if (peer_lfd >= 0) {
		ev_io_stop(backmxd.loop, &peer_accept_io);
		fdpause_stop(backmxd.loop, &peer_accept_pause);
		close(peer_lfd);
		peer_lfd = -1;
	}
	for (int ch = 0; ch < 2; ch++)
		if (peer_chan[ch] != NULL) {
			/* what is queued (acks, the last records) goes out */
			peer_flush(peer_chan[ch]);
			peer_close(peer_chan[ch], NULL);
		}
	while (peer_pending != NULL)
		peer_close(peer_pending, NULL);
}
