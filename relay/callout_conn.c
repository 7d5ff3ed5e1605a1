/*
 * callout_conn.c - one callout connection to a domain's primary: find
 * it (static route, or the MX hosts better than us, then A), connect
 * without blocking, read the greeting, EHLO (HELO after a refusal),
 * STARTTLS per the domain's tls, MAIL FROM:<>, one RCPT TO per question
 * taken from the destination's queue (RSET after CALLOUT_RCPTS_PER_TX),
 * QUIT.  Never DATA.  Every 2xx/5xx answer to a RCPT goes to the store
 * hook (the cache) even when its waiters are gone.
 *
 * Called by callout.c (callout_conn_new from the scheduler); calls dns,
 * tls.c, net.c (socket I/O), smtp_reply_parse/smtp_client_caps,
 * policy_mx_cut.
 */
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "callout_int.h"
#include "log.h"
#include "net.h"
#include "smtp_client.h"
#include "tls.h"

static void conn_next(struct callout_conn *c);

/* ------------------------------------------------------------------ */
/* connections */

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

static void
conn_free(struct callout_conn *c)
{
	struct callout_dest *d = c->dest;

	if (c->dq != NULL)
		dns_cancel(c->dq);
	ev_io_stop(backmxd.loop, &c->io);
	ev_timer_stop(backmxd.loop, &c->timer);
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	if (c->fd >= 0)
		close(c->fd);
	if (c->cur != NULL)
		c->cur->conn = NULL;
	if (c->setup)
		d->nsetup--;
	d->nconn--;
	free(c);
	callout_dest_kick(d);
}

void
callout_conn_fail(struct callout_conn *c, int dead, const char *fmt, ...)
{
	struct callout_dest *d = c->dest;
	struct result r;
	char why[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_info("callout: %s[%s]: %s", d->domain, c->peer[0] ? c->peer : "-",
	         why);
	result_set(&r, 451, "4.4.3", "primary of %s: %s", d->domain, why);
	if (c->cur != NULL) {
		struct callout_q *q = c->cur;

		c->cur = NULL;
		q->conn = NULL;
		callout_q_answer(q, &r);
	}
	if (dead) {
		callout_dest_dead(d, why);
		callout_dest_fail_queue(d, &r);
	} else if (c->setup)
		/* the primary answers but this cannot work (TLS policy,
		 * greeting, EHLO or MAIL FROM:<> refused): the waiting
		 * questions are answered now, not retried on a new
		 * connection until their deadline */
		callout_dest_fail_queue(d, &r);
	conn_free(c);
}

static int
conn_write(struct callout_conn *c, const char *fmt, ...)
{
	char buf[SMTP_REPLY_LINE_MAX + 64];
	va_list ap;
	ssize_t w;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= (int)sizeof(buf) - 2)
		return -1;
	buf[n++] = '\r';
	buf[n++] = '\n';
	/* a command line fits any socket buffer: one write, else error */
	w = net_write(c->fd, c->tls_on ? c->ssl : NULL, buf, (size_t)n, NULL);
	if (w != n)
		return -1;
	ev_timer_stop(backmxd.loop, &c->timer);
	ev_timer_set(&c->timer, (double)backmxd.cfg->callout_timeout, 0.);
	ev_timer_start(backmxd.loop, &c->timer);
	return 0;
}

static void
conn_send(struct callout_conn *c, enum conn_state st, const char *fmt,
          const char *arg)
{
	c->state = st;
	if (conn_write(c, fmt, arg) < 0)
		callout_conn_fail(c, 0, "write failed");
}

/* conn_answer - the reply to our RCPT for c->cur */
static void
conn_answer(struct callout_conn *c, const struct result *r)
{
	struct callout_q *q = c->cur;

	c->cur = NULL;
	if (q == NULL)
		return; /* its waiters gave up (deadline) */
	q->conn = NULL;
	log_info("callout: %s to=<%s>, relay=%s, %d %s %s, tls=%s",
	         c->dest->domain, q->address, c->peer, r->code, r->enh, r->text,
	         c->tls_on ? c->tls_desc : "none");
	/* cached even when every waiter is gone */
	if (callout_store_hook != NULL &&
	    (r->code / 100 == 2 || r->code / 100 == 5))
		callout_store_hook(c->dest->domain, q->address, r);
	callout_q_answer(q, r);
}

/* conn_next - after MAIL or a RCPT: the next question, or the end */
static void
conn_next(struct callout_conn *c)
{
	struct callout_q *q;

	if (c->probe_only) {
		conn_send(c, C_QUIT, "QUIT%s", "");
		return;
	}
	if (c->ntx >= CALLOUT_RCPTS_PER_TX && c->dest->qhead != NULL) {
		c->ntx = 0;
		conn_send(c, C_RSET, "RSET%s", "");
		return;
	}
	if ((q = callout_q_take(c->dest)) == NULL) {
		conn_send(c, C_QUIT, "QUIT%s", "");
		return;
	}
	if (q->address[0] == '\0') {
		/* a probe rides along: this connection answered */
		struct result r;

		result_set(&r, 250, "2.0.0", "primary answers");
		callout_q_answer(q, &r);
		conn_next(c);
		return;
	}
	c->cur = q;
	q->conn = c;
	c->ntx++;
	stats.verify_callouts++;
	conn_send(c, C_RCPT, "RCPT TO:<%s>", q->address);
}

static void
conn_start_tx(struct callout_conn *c)
{
	c->dest->last_ok = callout_now();
	c->dest->dead_until = 0; /* it answers: suspension over */
	if (c->setup) {
		c->setup = 0;
		c->dest->nsetup--;
	}
	if (c->probe_only || c->dest->qhead == NULL ||
	    c->dest->qhead->address[0] == '\0') {
		/* only probes waiting: the greeting was the answer */
		c->probe_only = 1;
		struct callout_q *q;
		struct result r;

		result_set(&r, 250, "2.0.0", "primary answers");
		while (c->dest->qhead != NULL &&
		       c->dest->qhead->address[0] == '\0' &&
		       (q = callout_q_take(c->dest)) != NULL)
			callout_q_answer(q, &r);
		if (c->dest->qhead != NULL) {
			c->probe_only = 0;
			conn_send(c, C_MAIL, "MAIL FROM:<>%s", "");
			return;
		}
		conn_send(c, C_QUIT, "QUIT%s", "");
		return;
	}
	c->ntx = 0;
	conn_send(c, C_MAIL, "MAIL FROM:<>%s", "");
}

/* conn_tls_wanted - STARTTLS now?  -1 required but not offered */
static int
conn_tls_wanted(struct callout_conn *c)
{
	int required = c->dest->tls == POLICY_TLS_ENCRYPT ||
	               c->dest->tls == POLICY_TLS_VERIFY;

	if (c->tls_on || c->tls_tried)
		return 0;
	if (!c->starttls_offered)
		return required ? -1 : 0;
	return 1;
}

static void
conn_after_ehlo(struct callout_conn *c)
{
	int t = conn_tls_wanted(c);

	if (t < 0) {
		callout_conn_fail(
		    c, 0, "STARTTLS required by tls %s but not offered",
		    c->dest->tls == POLICY_TLS_VERIFY ? "verify" : "encrypt");
		return;
	}
	if (t > 0) {
		c->tls_tried = 1;
		conn_send(c, C_STARTTLS, "STARTTLS%s", "");
		return;
	}
	conn_start_tx(c);
}

static void
conn_tls_step(struct callout_conn *c)
{
	char err[256], desc[64];
	int r, want = 0, policy;

	policy = c->dest->tls == POLICY_TLS_ENCRYPT ||
	                 c->dest->tls == POLICY_TLS_VERIFY
	             ? c->dest->tls
	             : POLICY_TLS_MAY;
	r = tls_handshake_step(c->ssl, &want, err, sizeof(err));
	if (r < 0) {
		callout_conn_fail(c, 0, "TLS handshake: %s", err);
		return;
	}
	if (r == 0) {
		ev_io_stop(backmxd.loop, &c->io);
		ev_io_set(&c->io, c->fd,
		          want == TLS_WANT_WRITE ? EV_WRITE : EV_READ);
		ev_io_start(backmxd.loop, &c->io);
		return;
	}
	if (tls_client_verdict(c->ssl, policy, 0, desc, sizeof(desc), err,
	                       sizeof(err)) < 0) {
		callout_conn_fail(c, 0, "TLS: %s", err);
		return;
	}
	c->tls_on = 1;
	snprintf(c->tls_desc, sizeof(c->tls_desc), "%s", desc);
	ev_io_stop(backmxd.loop, &c->io);
	ev_io_set(&c->io, c->fd, EV_READ);
	ev_io_start(backmxd.loop, &c->io);
	conn_send(c, C_EHLO, "EHLO %s", backmxd.cfg->hostname);
}

/* conn_reply - one complete reply in state c->state */
static void
conn_reply(struct callout_conn *c, const struct smtp_reply *rep,
           const char *buf)
{
	struct result r;
	int cls = rep->code / 100;

	smtp_reply_result(buf, rep, &r);
	switch (c->state) {
	case C_BANNER:
		if (cls != 2) {
			callout_conn_fail(c, 0, "greeting %d %s", r.code,
			                  r.text);
			return;
		}
		conn_send(c, C_EHLO, "EHLO %s", backmxd.cfg->hostname);
		return;
	case C_EHLO:
		if (cls != 2) {
			conn_send(c, C_HELO, "HELO %s", backmxd.cfg->hostname);
			return;
		}
		{
			unsigned long long size = 0;

			c->starttls_offered =
			    (smtp_client_caps(buf, rep, &size) &
			     SMTP_CAP_STARTTLS) != 0;
		}
		conn_after_ehlo(c);
		return;
	case C_HELO:
		if (cls != 2) {
			callout_conn_fail(c, 0, "HELO refused: %d %s", r.code,
			                  r.text);
			return;
		}
		c->starttls_offered = 0;
		conn_after_ehlo(c);
		return;
	case C_STARTTLS: {
		char err[256];
		int armed = 0,
		    policy = c->dest->tls == POLICY_TLS_ENCRYPT ||
		                     c->dest->tls == POLICY_TLS_VERIFY
		                 ? c->dest->tls
		                 : POLICY_TLS_MAY;

		if (cls != 2) {
			if (policy != POLICY_TLS_MAY) {
				callout_conn_fail(c, 0,
				                  "STARTTLS refused: %d %s",
				                  r.code, r.text);
				return;
			}
			conn_start_tx(c);
			return;
		}
		c->ssl = tls_client_new(backmxd.cfg, c->fd, policy, c->peer,
		                        NULL, 0, &armed, err, sizeof(err));
		if (c->ssl == NULL) {
			callout_conn_fail(c, 0, "TLS: %s", err);
			return;
		}
		c->state = C_TLS;
		c->inlen = 0;
		conn_tls_step(c);
		return;
	}
	case C_MAIL:
		if (cls != 2) {
			/* the primary refuses the null sender: it cannot be
			 * asked; treat as unknown, not as "no" */
			callout_conn_fail(c, 0, "MAIL FROM:<> refused: %d %s",
			                  r.code, r.text);
			return;
		}
		conn_next(c);
		return;
	case C_RCPT:
		if (cls == 2 || cls == 5)
			conn_answer(c, &r);
		else {
			struct result u;

			result_set(&u, 451, "4.4.3",
			           "primary of %s said %d "
			           "%s %s",
			           c->dest->domain, r.code, r.enh, r.text);
			conn_answer(c, &u);
		}
		conn_next(c);
		return;
	case C_RSET:
		if (cls != 2) {
			conn_send(c, C_QUIT, "QUIT%s", "");
			return;
		}
		conn_send(c, C_MAIL, "MAIL FROM:<>%s", "");
		return;
	case C_QUIT:
		conn_free(c);
		return;
	default:
		callout_conn_fail(c, 0, "unexpected reply");
		return;
	}
}

static void
conn_read(struct callout_conn *c)
{
	struct smtp_reply rep;
	const char *why = NULL;
	ssize_t n;

	n = net_read(c->fd, c->tls_on ? c->ssl : NULL, c->in + c->inlen,
	             sizeof(c->in) - c->inlen, NULL);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		if (c->state == C_QUIT) {
			conn_free(c);
			return;
		}
		callout_conn_fail(
		    c, c->state == C_BANNER, "connection closed in %s",
		    c->state == C_BANNER ? "greeting" : "dialogue");
		return;
	}
	c->inlen += (size_t)n;
	for (;;) {
		int used = smtp_reply_parse(c->in, c->inlen, &rep, &why);
		enum conn_state st = c->state;
		char copy[CALLOUT_IN_MAX];

		if (used < 0) {
			callout_conn_fail(c, 1, "garbage reply (%s)", why);
			return;
		}
		if (used == 0) {
			if (c->inlen >= sizeof(c->in)) {
				callout_conn_fail(c, 1, "reply too long");
				return;
			}
			return;
		}
		memcpy(copy, c->in, (size_t)used);
		memmove(c->in, c->in + used, c->inlen - (size_t)used);
		c->inlen -= (size_t)used;
		/* a reply we did not ask for (pipelining abuse) waits */
		if (st == C_TLS) {
			callout_conn_fail(c, 1,
			                  "reply during the TLS handshake");
			return;
		}
		conn_reply(c, &rep, copy);
		/* conn_reply may have freed c: it only returns into this
		 * loop when c lives and sent a new command */
		return;
	}
}

static void
conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct callout_conn *c = w->data;

	if (c->state == C_CONNECT) {
		int err = net_connect_result(c->fd);

		if (err != 0) {
			callout_conn_fail(c, 1, "connect: %s", strerror(err));
			return;
		}
		callout_stats.connections++;
		c->state = C_BANNER;
		ev_io_stop(loop, &c->io);
		ev_io_set(&c->io, c->fd, EV_READ);
		ev_io_start(loop, &c->io);
		return;
	}
	if (c->state == C_TLS) {
		conn_tls_step(c);
		return;
	}
	conn_read(c);
}

static void
conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct callout_conn *c = w->data;

	if (c->state == C_QUIT) {
		conn_free(c);
		return;
	}
	callout_conn_fail(c, 1, "timeout in %s",
	                  c->state == C_CONNECT   ? "connect"
	                  : c->state == C_BANNER  ? "greeting"
	                  : c->state == C_RESOLVE ? "DNS lookup"
	                                          : "dialogue");
}

static void
conn_connect(struct callout_conn *c)
{
	socklen_t sl = c->addr.ss_family == AF_INET6
	                   ? sizeof(struct sockaddr_in6)
	                   : sizeof(struct sockaddr_in);

	if (c->addr.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&c->addr)->sin6_port =
		    htons((uint16_t)c->dest->port);
	else
		((struct sockaddr_in *)&c->addr)->sin_port =
		    htons((uint16_t)c->dest->port);
	c->fd = socket(c->addr.ss_family,
	               SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		callout_conn_fail(c, 0, "socket: %s", strerror(errno));
		return;
	}
	c->state = C_CONNECT;
	if (connect(c->fd, (struct sockaddr *)&c->addr, sl) < 0 &&
	    errno != EINPROGRESS) {
		callout_conn_fail(c, 1, "connect: %s", strerror(errno));
		return;
	}
	ev_io_init(&c->io, conn_io_cb, c->fd, EV_WRITE);
	c->io.data = c;
	ev_io_start(backmxd.loop, &c->io);
	ev_timer_stop(backmxd.loop, &c->timer);
	ev_timer_set(&c->timer, (double)backmxd.cfg->callout_timeout, 0.);
	ev_timer_start(backmxd.loop, &c->timer);
}

static void conn_resolve_next(struct callout_conn *c);

static void
conn_addr_cb(void *arg, const struct dns_result *res)
{
	struct callout_conn *c = arg;

	c->dq = NULL;
	if (res->status == DNS_OK && res->n > 0) {
		c->addr = res->addr[0];
		snprintf(c->peer, sizeof(c->peer), "%.255s", c->names[c->ni]);
		conn_connect(c);
		return;
	}
	c->ni++;
	conn_resolve_next(c);
}

static void
conn_resolve_next(struct callout_conn *c)
{
	if (c->ni >= c->nnames) {
		callout_conn_fail(c, 1, "no address for the primary");
		return;
	}
	c->dq =
	    dns_query(backmxd.dns, c->names[c->ni], DNS_T_A, conn_addr_cb, c);
	if (c->dq == NULL)
		callout_conn_fail(c, 0, "DNS query failed");
}

static unsigned
callout_rnd(unsigned n)
{
	return n ? (unsigned)random() % n : 0;
}

static void
conn_mx_cb(void *arg, const struct dns_result *res)
{
	struct callout_conn *c = arg;
	struct policy_mx mx[16];
	int n = 0, i;
	enum policy_mx_verdict v;

	c->dq = NULL;
	if (res->status != DNS_OK) {
		callout_conn_fail(c, res->status == DNS_TEMPFAIL ? 0 : 1,
		                  "MX lookup: %s", dns_status_str(res->status));
		return;
	}
	for (i = 0; i < res->n && n < 16; i++)
		mx[n++] = res->mx[i];
	v = policy_mx_cut(backmxd.cfg->policy, mx, &n, callout_rnd);
	if (v != POLICY_MX_OK || n == 0) {
		callout_conn_fail(c, 0, "no primary MX better than us");
		return;
	}
	for (i = 0; i < n && c->nnames < CALLOUT_HOSTS_MAX; i++)
		snprintf(c->names[c->nnames++], sizeof(c->names[0]), "%.255s",
		         mx[i].host);
	conn_resolve_next(c);
}

/* callout_conn_new - a connection for d's queue; NULL when out of memory */
struct callout_conn *
callout_conn_new(struct callout_dest *d)
{
	struct callout_conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->dest = d;
	c->fd = -1;
	c->state = C_RESOLVE;
	ev_timer_init(&c->timer, conn_timer_cb,
	              (double)backmxd.cfg->callout_timeout, 0.);
	c->timer.data = c;
	ev_io_init(&c->io, conn_io_cb, -1, EV_READ);
	c->io.data = c;
	d->nconn++;
	c->setup = 1;
	d->nsetup++;
	ev_timer_start(backmxd.loop, &c->timer);
	if (d->is_static && d->literal) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&c->addr;
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&c->addr;

		if (inet_pton(AF_INET, d->host, &sin->sin_addr) == 1)
			sin->sin_family = AF_INET;
		else if (inet_pton(AF_INET6, d->host, &sin6->sin6_addr) == 1)
			sin6->sin6_family = AF_INET6;
		snprintf(c->peer, sizeof(c->peer), "[%.255s]", d->host);
		conn_connect(c);
	} else if (d->is_static) {
		snprintf(c->names[0], sizeof(c->names[0]), "%s", d->host);
		c->nnames = 1;
		conn_resolve_next(c);
	} else {
		c->dq =
		    dns_query(backmxd.dns, d->domain, DNS_T_MX, conn_mx_cb, c);
		if (c->dq == NULL) {
			callout_conn_fail(c, 0, "DNS query failed");
			return NULL;
		}
	}
	return c;
}
