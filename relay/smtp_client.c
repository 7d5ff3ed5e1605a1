/*
 * smtp_client.c - outbound ESMTP connection on the libev loop: one
 * connection to one address (fwd_route.c picks the addresses), greeting,
 * EHLO/HELO, STARTTLS (tls.c) and the policy's verdict, the event
 * handler that writes obuf and reads replies, timeouts, QUIT.  Replies
 * of a transaction go to smtp_client_tx.c; reply parsing and the body
 * transformation are smtp_reply.c's.  Socket reads and writes go
 * through net.c (net_read/net_write) only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "dns.h"
#include "net.h"
#include "smtp_client_int.h"
#include "tls.h"

static void client_io_cb(struct ev_loop *, ev_io *, int);
static void client_timer_cb(struct ev_loop *, ev_timer *, int);

void
smtp_client_watch(struct smtp_client *c)
{
	int ev = EV_READ;

	if (c->state == C_CONNECT || c->olen > c->ooff ||
	    c->ssl_want == TLS_WANT_WRITE)
		ev |= EV_WRITE;
	if (c->state == C_DEAD)
		ev = 0;
	if (ev == c->io_events)
		return;
	ev_io_stop(c->loop, &c->io);
	c->io_events = ev;
	if (ev != 0) {
		ev_io_set(&c->io, c->fd, ev);
		ev_io_start(c->loop, &c->io);
	}
}

void
smtp_client_timeout(struct smtp_client *c, long secs)
{
	ev_timer_stop(c->loop, &c->timer);
	ev_timer_set(&c->timer, (ev_tstamp)(secs > 0 ? secs : 300), 0.);
	ev_timer_start(c->loop, &c->timer);
}

static void
client_close(struct smtp_client *c)
{
	ev_io_stop(c->loop, &c->io);
	ev_timer_stop(c->loop, &c->timer);
	c->io_events = 0;
	if (c->ssl != NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = C_DEAD;
}

int
smtp_client_out_reserve(struct smtp_client *c, size_t more)
{
	if (c->ooff > 0 && c->ooff == c->olen)
		c->ooff = c->olen = 0;
	if (c->olen + more <= c->ocap)
		return 0;
	if (c->ooff > 0) {
		memmove(c->obuf, c->obuf + c->ooff, c->olen - c->ooff);
		c->olen -= c->ooff;
		c->ooff = 0;
		if (c->olen + more <= c->ocap)
			return 0;
	}
	{
		char *nb = net_grow(c->obuf, &c->ocap, c->olen + more, 4096, 0);

		if (nb == NULL)
			return -1;
		c->obuf = nb;
	}
	return 0;
}

void
smtp_client_printf(struct smtp_client *c, const char *fmt, ...)
{
	va_list ap;
	char line[2048];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		n = (int)strlen(line);
	memcpy(line + n, "\r\n", 2);
	if (smtp_client_out_reserve(c, (size_t)n + 2) < 0)
		return; /* the timeout will catch it */
	memcpy(c->obuf + c->olen, line, (size_t)n + 2);
	c->olen += (size_t)n + 2;
}

void
smtp_client_fail(struct smtp_client *c, const char *enh, const char *fmt, ...)
{
	struct result r;
	va_list ap;
	char text[sizeof(r.text)];
	int i;

	if (c->state == C_QUIT) {
		/* the owner let go at QUIT: no callback any more */
		smtp_client_free(c);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	result_set(&r, 451, enh, "%s", text);
	client_close(c);
	if (c->tx != NULL) {
		struct smtp_client_tx *tx = c->tx;

		/* recipients without a final answer get the failure; a
		 * dropped connection after the dot may mean a duplicate,
		 * never a loss */
		for (i = 0; i < tx->nrcpt; i++)
			if (tx->res[i].code == 0 ||
			    tx->res[i].code / 100 == 2) {
				tx->res[i] = r;
				if (tx->remote != NULL)
					tx->remote[i] = 0;
			}
		c->tx = NULL;
	}
	c->cb(c->arg, c, &r);
}

static void
client_lost(struct smtp_client *c)
{
	smtp_client_fail(c, "4.4.2", "lost connection with %s while %s",
	                 c->relay, c->phase);
}

static void
client_send_ehlo(struct smtp_client *c)
{
	c->state = C_EHLO;
	c->phase = "performing the EHLO handshake";
	smtp_client_printf(c, "EHLO %s", c->helo);
	smtp_client_timeout(c, c->command_timeout);
}

/* client_ready - connect phase over: tell the owner */
static void
client_ready(struct smtp_client *c)
{
	struct result r;

	c->state = C_IDLE;
	c->phase = "idle";
	c->t_ready = ev_now(c->loop);
	ev_timer_stop(c->loop, &c->timer);
	result_set(&r, 250, "2.0.0", "ready");
	c->cb(c->arg, c, &r);
}

/*
 * client_tls_required - may this connection go on in clear?  MAY never
 * requires TLS; DANE only with TLSA records (RFC 7672 2.2: usable
 * records make authenticated TLS mandatory, none is opportunistic).
 */
static int
client_tls_required(const struct smtp_client *c)
{
	switch (c->tls_policy) {
	case POLICY_TLS_ENCRYPT:
	case POLICY_TLS_VERIFY:
		return 1;
	case POLICY_TLS_DANE:
		return c->ntlsa > 0;
	default:
		return 0;
	}
}

/*
 * client_after_ehlo - STARTTLS or ready; returns 1 when the owner was
 * called back (c may be gone then: never look at it again)
 */
static int
client_after_ehlo(struct smtp_client *c)
{
	int want_tls =
	    c->ssl == NULL && (c->caps & SMTP_CAP_STARTTLS) && !c->no_starttls;

	if (c->ssl == NULL && client_tls_required(c) &&
	    !(c->caps & SMTP_CAP_STARTTLS)) {
		smtp_client_fail(c, "4.7.4",
		                 "TLS is required, but was not offered "
		                 "by host %s",
		                 c->relay);
		return 1;
	}
	if (want_tls) {
		c->state = C_STARTTLS;
		c->phase = "sending STARTTLS";
		smtp_client_printf(c, "STARTTLS");
		smtp_client_timeout(c, c->command_timeout);
		return 0;
	}
	client_ready(c);
	return 1;
}

/* client_reply - one reply arrived; returns 1 when a callback was made */
static int
client_reply(struct smtp_client *c, const struct smtp_reply *rep)
{
	struct result r;
	int cls = rep->code / 100;

	smtp_reply_result(c->rbuf, rep, &r);
	switch (c->state) {
	case C_GREETING:
		if (cls != 2) {
			smtp_client_fail(c, r.enh[0] ? r.enh : "4.4.0",
			                 "host %s refused to talk to me: %d %s",
			                 c->relay, r.code, r.text);
			return 1;
		}
		client_send_ehlo(c);
		return 0;
	case C_EHLO:
		if (cls == 5 && !c->ehlo_done_tls && c->ssl == NULL) {
			c->state = C_HELO;
			smtp_client_printf(c, "HELO %s", c->helo);
			smtp_client_timeout(c, c->command_timeout);
			return 0;
		}
		if (cls != 2) {
			smtp_client_fail(c, "4.4.0",
			                 "host %s said: %d %s (in reply "
			                 "to EHLO)",
			                 c->relay, r.code, r.text);
			return 1;
		}
		c->caps = smtp_client_caps(c->rbuf, rep, &c->max_size);
		if (c->ssl != NULL) {
			client_ready(c);
			return 1;
		}
		return client_after_ehlo(c);
	case C_HELO:
		if (cls != 2) {
			smtp_client_fail(c, "4.4.0",
			                 "host %s said: %d %s (in reply "
			                 "to HELO)",
			                 c->relay, r.code, r.text);
			return 1;
		}
		c->caps = 0;
		return client_after_ehlo(c);
	case C_STARTTLS: {
		char err[256];

		if (cls != 2) {
			if (!client_tls_required(c)) {
				client_ready(c); /* opportunistic */
				return 1;
			}
			smtp_client_fail(c, "4.7.4",
			                 "host %s refused STARTTLS: %d %s",
			                 c->relay, r.code, r.text);
			return 1;
		}
		/*
		 * Anything the server sent after its 220 was sent in clear
		 * and must not be read as if it came over TLS (the client
		 * side of CVE-2011-0411).
		 */
		{
			struct config tmp;

			memset(&tmp, 0, sizeof(tmp));
			tmp.tls_ca = c->tls_ca;
			c->ssl = tls_client_new(
			    &tmp, c->fd, c->tls_policy, c->mxhost, c->tlsa,
			    c->ntlsa, &c->dane_armed, err, sizeof(err));
		}
		if (c->ssl == NULL) {
			c->tls_failed = 1;
			smtp_client_fail(c, "4.7.5", "%s", err);
			return 1;
		}
		c->state = C_HANDSHAKE;
		c->phase = "performing the TLS handshake";
		smtp_client_timeout(c, c->command_timeout);
		return 0;
	}
	case C_TX:
	case C_DOT:
		return smtp_client_tx_reply(c, rep, &r);
	case C_QUIT:
		smtp_client_free(c);
		return 1;
	default:
		/* a reply nobody asked for (421 while idle, ...) */
		smtp_client_fail(c, "4.4.2",
		                 "host %s said: %d %s (unexpected "
		                 "reply)",
		                 c->relay, r.code, r.text);
		return 1;
	}
}

static void
client_connected(struct smtp_client *c)
{
	int err = net_connect_result(c->fd);

	if (err != 0) {
		smtp_client_fail(c, "4.4.1", "connect to %s: %s", c->relay,
		                 strerror(err));
		return;
	}
	c->state = C_GREETING;
	c->phase = "receiving the initial server greeting";
	smtp_client_timeout(c, c->command_timeout);
	smtp_client_watch(c);
}

static void
client_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct smtp_client *c = w->data;

	if (c->state == C_CONNECT) {
		client_connected(c);
		return;
	}
again:
	if (c->state == C_HANDSHAKE) {
		char err[256], desc[64];
		int want = 0, r;

		r = tls_handshake_step(c->ssl, &want, err, sizeof(err));
		if (r < 0) {
			c->tls_failed = 1;
			smtp_client_fail(c, "4.7.5", "TLS with %s: %s",
			                 c->relay, err);
			return;
		}
		if (r == 0) {
			c->ssl_want = want;
			smtp_client_watch(c);
			return;
		}
		c->ssl_want = 0;
		if (tls_client_verdict(c->ssl, c->tls_policy, c->dane_armed,
		                       desc, sizeof(desc), err,
		                       sizeof(err)) < 0) {
			c->tls_failed = 1;
			smtp_client_fail(c, "4.7.5", "TLS with %s: %s",
			                 c->relay, err);
			return;
		}
		snprintf(c->tls_desc, sizeof(c->tls_desc), "%s", desc);
		c->ehlo_done_tls = 1;
		c->caps = 0;
		client_send_ehlo(c);
	}

	/* write what is pending */
	while (c->olen > c->ooff) {
		ssize_t n = net_write(c->fd, c->ssl, c->obuf + c->ooff,
		                      c->olen - c->ooff, &c->ssl_want);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			client_lost(c);
			return;
		}
		c->ooff += (size_t)n;
		if (c->state == C_BODY)
			smtp_client_timeout(c, c->command_timeout);
		if (c->state == C_BODY && smtp_client_body_fill(c) < 0) {
			smtp_client_fail(
			    c, "4.3.0",
			    "cannot read the message from the spool");
			return;
		}
	}
	if (c->state == C_BODY && c->body_done && c->olen == c->ooff) {
		c->state = C_DOT;
		c->phase = "sending the end of data";
		smtp_client_timeout(c, c->data_timeout);
	}

	/* read and handle complete replies */
	for (;;) {
		ssize_t n;
		const char *why;
		struct smtp_reply rep;
		int used;

		while ((used = smtp_reply_parse(c->ibuf, c->ilen, &rep, &why)) >
		       0) {
			int done;

			if (c->state == C_BODY) {
				/* a reply before we finished the body */
				struct result r;

				smtp_reply_result(c->ibuf, &rep, &r);
				smtp_client_fail(c, "4.4.2",
				                 "host %s said %d %s "
				                 "while %s",
				                 c->relay, r.code, r.text,
				                 c->phase);
				return;
			}
			/*
			 * Consume the reply before acting on it: the owner
			 * may start the next transaction from the callback,
			 * and an unconsumed reply would shift every later
			 * reply by one.
			 */
			memcpy(c->rbuf, c->ibuf, (size_t)used);
			memmove(c->ibuf, c->ibuf + used,
			        c->ilen - (size_t)used);
			c->ilen -= (size_t)used;
			done = client_reply(c, &rep);
			if (done)
				return; /* c may be gone */
			if (c->state == C_HANDSHAKE) {
				/*
				 * Anything the server sent after its 220 came
				 * in clear and must not be taken as if it came
				 * over TLS (client side of CVE-2011-0411).
				 */
				c->ilen = 0;
				goto again;
			}
		}
		if (used < 0) {
			smtp_client_fail(c, "4.5.0", "host %s: %s while %s",
			                 c->relay, why, c->phase);
			return;
		}
		if (c->ilen == sizeof(c->ibuf)) {
			smtp_client_fail(c, "4.5.0", "host %s: reply too long",
			                 c->relay);
			return;
		}
		n = net_read(c->fd, c->ssl, c->ibuf + c->ilen,
		             sizeof(c->ibuf) - c->ilen, &c->ssl_want);
		if (n == 0) {
			if (c->state == C_QUIT) {
				smtp_client_free(c);
				return;
			}
			client_lost(c);
			return;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			if (c->state == C_QUIT) {
				smtp_client_free(c);
				return;
			}
			client_lost(c);
			return;
		}
		c->ilen += (size_t)n;
	}
	smtp_client_watch(c);
}

static void
client_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct smtp_client *c = w->data;

	if (c->state == C_QUIT) {
		smtp_client_free(c);
		return;
	}
	if (c->state == C_CONNECT)
		smtp_client_fail(c, "4.4.1",
		                 "connect to %s: Connection timed out",
		                 c->relay);
	else
		smtp_client_fail(c, "4.4.2",
		                 "conversation with %s timed out while "
		                 "%s",
		                 c->relay, c->phase);
}

/* client_start_cb - deliver a failed connect(2) outside smtp_client_new */
static void
client_start_fail_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct smtp_client *c = w->data;

	smtp_client_fail(c, "4.4.1", "connect to %s: %s", c->relay, c->phase);
}

/*
 * client_tlsa_copy - the records and their data in one allocation: the
 * caller's DNS result is gone long before STARTTLS
 */
static int
client_tlsa_copy(struct smtp_client *c, const struct dns_tlsa *t, int n)
{
	size_t sz = (size_t)n * sizeof(*t), off;
	uint8_t *data;
	int i;

	for (i = 0; i < n; i++)
		sz += t[i].len;
	if ((c->tlsa = malloc(sz)) == NULL)
		return -1;
	data = (uint8_t *)(c->tlsa + n);
	for (i = 0, off = 0; i < n; i++) {
		c->tlsa[i] = t[i];
		memcpy(data + off, t[i].data, t[i].len);
		c->tlsa[i].data = data + off;
		off += t[i].len;
	}
	c->ntlsa = n;
	return 0;
}

struct smtp_client *
smtp_client_new(struct ev_loop *loop, const struct smtp_client_params *p,
                smtp_client_cb cb, void *arg)
{
	struct smtp_client *c;
	socklen_t sl;
	int r;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->loop = loop;
	c->fd = -1;
	c->cb = cb;
	c->t_new = ev_now(loop);
	c->arg = arg;
	c->tls_policy = p->tls;
	c->no_starttls = p->tls == POLICY_TLS_MAY && p->no_starttls;
	if (p->tls == POLICY_TLS_DANE && p->ntlsa > 0 &&
	    client_tlsa_copy(c, p->tlsa, p->ntlsa) < 0) {
		free(c);
		return NULL;
	}
	c->connect_timeout =
	    p->cfg->connect_timeout > 0 ? p->cfg->connect_timeout : 30;
	c->command_timeout =
	    p->cfg->command_timeout > 0 ? p->cfg->command_timeout : 300;
	c->data_timeout = p->cfg->data_timeout > 0 ? p->cfg->data_timeout : 600;
	/* without the copy, verification would silently fall back to the
	 * system CA store: no client at all (the caller defers) */
	if (p->cfg->tls_ca != NULL &&
	    (c->tls_ca = strdup(p->cfg->tls_ca)) == NULL) {
		free(c->tlsa);
		free(c);
		return NULL;
	}
	snprintf(c->helo, sizeof(c->helo), "%s", p->helo);
	snprintf(c->mxhost, sizeof(c->mxhost), "%s", p->mxhost);
	c->addr = p->addr;
	if (p->addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)&p->addr;

		inet_ntop(AF_INET6, &s6->sin6_addr, c->addrtext,
		          sizeof(c->addrtext));
		c->port = ntohs(s6->sin6_port);
		sl = sizeof(*s6);
	} else {
		const struct sockaddr_in *s4 = (const void *)&p->addr;

		inet_ntop(AF_INET, &s4->sin_addr, c->addrtext,
		          sizeof(c->addrtext));
		c->port = ntohs(s4->sin_port);
		sl = sizeof(*s4);
	}
	snprintf(c->relay, sizeof(c->relay), "%s[%s]:%d", c->mxhost,
	         c->addrtext, c->port);
	ev_io_init(&c->io, client_io_cb, -1, EV_READ);
	c->io.data = c;
	ev_timer_init(&c->timer, client_timer_cb, 1., 0.);
	c->timer.data = c;
	c->state = C_CONNECT;
	c->phase = "connecting";

	c->fd = socket(p->addr.ss_family,
	               SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd >= 0)
		r = connect(c->fd, (const struct sockaddr *)&p->addr, sl);
	else
		r = -1;
	if (r < 0 && errno != EINPROGRESS) {
		/* report through a zero timer: never inside the call */
		c->phase = strerror(errno);
		ev_timer_init(&c->timer, client_start_fail_cb, 0., 0.);
		c->timer.data = c;
		ev_timer_start(loop, &c->timer);
		return c;
	}
	smtp_client_timeout(c, c->connect_timeout);
	c->io_events = 0;
	smtp_client_watch(c);
	return c;
}

void
smtp_client_set_cb(struct smtp_client *c, smtp_client_cb cb, void *arg)
{
	c->cb = cb;
	c->arg = arg;
}

int
smtp_client_usable(const struct smtp_client *c)
{
	return c != NULL && c->state == C_IDLE;
}

const char *
smtp_client_relay(const struct smtp_client *c)
{
	return c->relay;
}

const char *
smtp_client_tls(const struct smtp_client *c)
{
	return c->ssl != NULL && c->tls_desc[0] ? c->tls_desc : NULL;
}

int
smtp_client_tls_failed(const struct smtp_client *c)
{
	return c->tls_failed;
}

int
smtp_client_has(const struct smtp_client *c, int cap)
{
	return (c->caps & cap) != 0;
}

void
smtp_client_quit(struct smtp_client *c)
{
	if (c == NULL)
		return;
	if (c->state != C_IDLE) {
		smtp_client_free(c);
		return;
	}
	c->state = C_QUIT;
	c->phase = "quitting";
	smtp_client_printf(c, "QUIT");
	smtp_client_timeout(c,
	                    c->command_timeout < 30 ? c->command_timeout : 30);
	smtp_client_watch(c);
}

void
smtp_client_free(struct smtp_client *c)
{
	if (c == NULL)
		return;
	client_close(c);
	free(c->cmds);
	free(c->obuf);
	free(c->tls_ca);
	free(c->tlsa);
	free(c);
}

void
smtp_client_times(const struct smtp_client *c, double *setup, int *use)
{
	*use = c->uses + 1;
	*setup =
	    c->uses == 0 && c->t_ready >= c->t_new ? c->t_ready - c->t_new : 0;
}
