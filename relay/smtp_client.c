/*
 * smtp_client.c - outbound ESMTP state machine on the libev loop: one
 * connection to one address (forward.c picks the addresses), greeting,
 * EHLO/HELO, STARTTLS (tls.c), pipelined MAIL/RCPT/DATA with replies
 * matched by counting, the body streamed from the spool with CRLF-only
 * line endings and dot-stuffing (we are never "server A" of a smuggling
 * attack), per-recipient results, RSET between transactions, QUIT.
 * Socket reads and writes go through client_io_read/client_io_write only.
 */
#include <errno.h>
#include <stdarg.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <fcntl.h>
#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "dns.h"
#include "smtp_client.h"
#include "tls.h"

/* ------------------------------------------------------------------ */
/* Reply parser */

int
smtp_reply_parse(const char *buf, size_t len, struct smtp_reply *out,
		 const char **why)
{
	size_t pos = 0;
	const char *dummy;

	if (why == NULL)
		why = &dummy;
	out->code = 0;
	out->nlines = 0;
	for (;;) {
		const char *lf;
		size_t avail = len - pos, llen, tend;
		int code;

		lf = memchr(buf + pos, '\n', avail < SMTP_REPLY_LINE_MAX
						     ? avail
						     : SMTP_REPLY_LINE_MAX);
		if (lf == NULL) {
			if (avail >= SMTP_REPLY_LINE_MAX) {
				*why = "reply line too long";
				return -1;
			}
			return 0;
		}
		llen = (size_t)(lf - (buf + pos));	/* without LF */
		tend = llen;
		if (tend > 0 && buf[pos + tend - 1] == '\r')
			tend--;
		if (tend < 3 || buf[pos] < '2' || buf[pos] > '5' ||
		    buf[pos + 1] < '0' || buf[pos + 1] > '5' ||
		    buf[pos + 2] < '0' || buf[pos + 2] > '9') {
			*why = "malformed reply code";
			return -1;
		}
		code = (buf[pos] - '0') * 100 + (buf[pos + 1] - '0') * 10 +
		       (buf[pos + 2] - '0');
		if (out->nlines > 0 && code != out->code) {
			*why = "reply code changes within a multi-line reply";
			return -1;
		}
		if (tend > 3 && buf[pos + 3] != ' ' && buf[pos + 3] != '-') {
			*why = "malformed reply separator";
			return -1;
		}
		if (out->nlines >= SMTP_REPLY_LINES_MAX) {
			*why = "too many reply lines";
			return -1;
		}
		out->code = code;
		out->line[out->nlines].off = pos + (tend > 3 ? 4 : 3);
		out->line[out->nlines].len = tend > 3 ? tend - 4 : 0;
		out->nlines++;
		pos += llen + 1;
		if (tend <= 3 || buf[pos - llen - 1 + 3] == ' ')
			return (int)pos;
	}
}

void
smtp_reply_result(const char *buf, const struct smtp_reply *rep,
		  struct result *r)
{
	size_t o = 0, i, k;
	const char *t;
	size_t tl;

	memset(r, 0, sizeof(*r));
	r->code = rep->code;
	if (rep->nlines == 0)
		return;
	t = buf + rep->line[0].off;
	tl = rep->line[0].len;
	/* enhanced code "c.sss.ddd" of the same class as the reply */
	if (tl >= 5 && t[0] == '0' + rep->code / 100 && t[1] == '.') {
		k = 2;
		while (k < tl && k < 6 && t[k] >= '0' && t[k] <= '9')
			k++;
		if (k > 2 && k < tl && t[k] == '.') {
			size_t m = ++k;

			while (k < tl && k < m + 3 && t[k] >= '0' &&
			       t[k] <= '9')
				k++;
			if (k > m && (k == tl || t[k] == ' ') &&
			    k < sizeof(r->enh)) {
				memcpy(r->enh, t, k);
				r->enh[k] = '\0';
				t += k;
				tl -= k;
				while (tl > 0 && *t == ' ')
					t++, tl--;
			}
		}
	}
	for (i = 0; i < (size_t)rep->nlines; i++) {
		const char *s = i == 0 ? t : buf + rep->line[i].off;
		size_t sl = i == 0 ? tl : rep->line[i].len;

		/* later lines repeat the enhanced code: drop it */
		if (i > 0 && r->enh[0] != '\0' &&
		    sl >= strlen(r->enh) &&
		    !memcmp(s, r->enh, strlen(r->enh))) {
			s += strlen(r->enh);
			sl -= strlen(r->enh);
			while (sl > 0 && *s == ' ')
				s++, sl--;
		}
		if (i > 0 && o > 0 && o + 1 < sizeof(r->text))
			r->text[o++] = ' ';
		for (k = 0; k < sl && o + 1 < sizeof(r->text); k++) {
			unsigned char ch = (unsigned char)s[k];

			r->text[o++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
		}
	}
	r->text[o] = '\0';
}

int
smtp_client_caps(const char *buf, const struct smtp_reply *rep,
		 unsigned long long *size)
{
	int caps = 0, i;

	*size = 0;
	for (i = 1; i < rep->nlines; i++) {	/* line 0 is the greeting */
		char kw[32];
		const char *s = buf + rep->line[i].off;
		size_t l = rep->line[i].len, k = 0;

		while (k < l && k + 1 < sizeof(kw) && s[k] != ' ') {
			kw[k] = s[k];
			k++;
		}
		kw[k] = '\0';
		if (!strcasecmp(kw, "PIPELINING"))
			caps |= SMTP_CAP_PIPELINING;
		else if (!strcasecmp(kw, "8BITMIME"))
			caps |= SMTP_CAP_8BITMIME;
		else if (!strcasecmp(kw, "DSN"))
			caps |= SMTP_CAP_DSN;
		else if (!strcasecmp(kw, "SMTPUTF8"))
			caps |= SMTP_CAP_SMTPUTF8;
		else if (!strcasecmp(kw, "STARTTLS"))
			caps |= SMTP_CAP_STARTTLS;
		else if (!strcasecmp(kw, "SIZE")) {
			unsigned long long v = 0;

			caps |= SMTP_CAP_SIZE;
			while (k < l && s[k] == ' ')
				k++;
			for (; k < l && s[k] >= '0' && s[k] <= '9'; k++) {
				if (v > 1000000000000000ULL)
					break;
				v = v * 10 + (unsigned)(s[k] - '0');
			}
			*size = v;
		}
	}
	return caps;
}

/* ------------------------------------------------------------------ */
/* Body transformation */

#define BODY_MID 0x01		/* not at the beginning of a line */
#define BODY_AFTER_CR 0x02	/* CRLF already sent for a CR */

size_t
smtp_client_body_encode(int *state, const char *in, size_t len, char *out)
{
	size_t i, o = 0;
	int st = *state;

	for (i = 0; i < len; i++) {
		char ch = in[i];

		if ((st & BODY_AFTER_CR) && ch == '\n') {
			st &= ~BODY_AFTER_CR;
			continue;
		}
		st &= ~BODY_AFTER_CR;
		if (ch == '\r' || ch == '\n') {
			out[o++] = '\r';
			out[o++] = '\n';
			st = ch == '\r' ? BODY_AFTER_CR : 0;
			continue;
		}
		if (!(st & BODY_MID) && ch == '.')
			out[o++] = '.';
		out[o++] = ch;
		st |= BODY_MID;
	}
	*state = st;
	return o;
}

size_t
smtp_client_body_end(int *state, char *out)
{
	size_t o = 0;

	if (*state & BODY_MID) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	memcpy(out + o, ".\r\n", 3);
	*state = 0;
	return o + 3;
}

/* ------------------------------------------------------------------ */
/* Client state machine */

enum client_state {
	C_CONNECT,
	C_GREETING,
	C_EHLO,
	C_HELO,
	C_STARTTLS,
	C_HANDSHAKE,
	C_IDLE,
	C_TX,		/* waiting for replies to RSET/MAIL/RCPT/DATA */
	C_BODY,		/* sending the body */
	C_DOT,		/* waiting for the reply to the final dot */
	C_QUIT,
	C_DEAD,
};

enum cmd_kind { CMD_RSET, CMD_MAIL, CMD_RCPT, CMD_DATA };

#define IBUF_SIZE (SMTP_REPLY_LINE_MAX * SMTP_REPLY_LINES_MAX + 1024)
#define OBUF_LOW (64 * 1024)	/* refill the body below this */

struct smtp_client {
	struct ev_loop *loop;
	enum client_state state;
	int fd;
	ev_io io;
	ev_timer timer;
	int io_events;
	SSL *ssl;
	int ssl_want;		/* TLS_WANT_* from the last SSL call */
	int dane_armed;
	char tls_desc[64];
	int tls_policy;
	struct dns_tlsa *tlsa;	/* DANE: our copy of the records */
	int ntlsa;
	int no_starttls;	/* MAY retried in clear */
	int tls_failed;		/* the connect phase failed in TLS */
	long connect_timeout, command_timeout, data_timeout;
	char helo[POLICY_DOMAIN_MAX + 1];
	char mxhost[POLICY_DOMAIN_MAX + 1];
	char relay[POLICY_DOMAIN_MAX + 80];
	char addrtext[INET6_ADDRSTRLEN];
	int port;
	struct sockaddr_storage addr;
	const struct config *cfg;	/* only during smtp_client_new */
	char *tls_ca;			/* copy for outbound verification */

	int caps;
	unsigned long long max_size;
	int ehlo_done_tls;	/* EHLO after STARTTLS done */
	int need_rset;

	char ibuf[IBUF_SIZE];
	size_t ilen;
	char rbuf[IBUF_SIZE];	/* the reply being handled */
	char *obuf;
	size_t olen, ooff, ocap;

	/* transaction */
	struct smtp_client_tx *tx;
	enum cmd_kind *cmds;
	int ncmd, nsent, nreplied;
	int rcpt_base;		/* index of the first RCPT in cmds */
	int accepted;		/* RCPTs accepted */
	int mail_failed;
	struct result mail_res;
	int discard_dot;	/* sent a lone dot: its reply means nothing */
	uint32_t chunk;
	int body_state;
	int body_done;
	const char *phase;	/* for "while ..." texts */

	smtp_client_cb cb;
	void *arg;
	ev_tstamp t_new, t_ready;	/* for delays=: connection setup */
	int uses;			/* transactions started (conn_use=) */
};

static void client_io_cb(struct ev_loop *, ev_io *, int);
void smtp_client_free(struct smtp_client *);
static void client_timer_cb(struct ev_loop *, ev_timer *, int);

static void
client_watch(struct smtp_client *c)
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

static void
client_timeout(struct smtp_client *c, long secs)
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

/*
 * client_io_read / client_io_write - the only two places that touch the
 * socket: >0 octets, 0 EOF (read only), -1 with errno (EAGAIN: retry
 * when ready).
 */
static ssize_t
client_io_read(struct smtp_client *c, void *buf, size_t len)
{
	int r, e;

	if (c->ssl == NULL)
		return read(c->fd, buf, len);
	c->ssl_want = 0;
	r = SSL_read(c->ssl, buf, (int)len);
	if (r > 0)
		return r;
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		c->ssl_want = e == SSL_ERROR_WANT_READ ? TLS_WANT_READ
						       : TLS_WANT_WRITE;
		errno = EAGAIN;
		return -1;
	}
	if (e == SSL_ERROR_ZERO_RETURN)
		return 0;
	ERR_clear_error();
	errno = EIO;
	return -1;
}

static ssize_t
client_io_write(struct smtp_client *c, const void *buf, size_t len)
{
	int r, e;

	if (c->ssl == NULL)
		return send(c->fd, buf, len, MSG_NOSIGNAL);
	c->ssl_want = 0;
	r = SSL_write(c->ssl, buf, (int)len);
	if (r > 0)
		return r;
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		c->ssl_want = e == SSL_ERROR_WANT_READ ? TLS_WANT_READ
						       : TLS_WANT_WRITE;
		errno = EAGAIN;
		return -1;
	}
	ERR_clear_error();
	errno = EIO;
	return -1;
}

static int
client_out_reserve(struct smtp_client *c, size_t more)
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
		size_t ncap = c->ocap ? c->ocap : 4096;
		char *nb;

		while (ncap < c->olen + more)
			ncap *= 2;
		if ((nb = realloc(c->obuf, ncap)) == NULL)
			return -1;
		c->obuf = nb;
		c->ocap = ncap;
	}
	return 0;
}

static void
client_printf(struct smtp_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
client_printf(struct smtp_client *c, const char *fmt, ...)
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
	if (client_out_reserve(c, (size_t)n + 2) < 0)
		return;		/* the timeout will catch it */
	memcpy(c->obuf + c->olen, line, (size_t)n + 2);
	c->olen += (size_t)n + 2;
}

/* client_fail - the connection is over: tell the owner (last action) */
static void
client_fail(struct smtp_client *c, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
client_fail(struct smtp_client *c, const char *enh, const char *fmt, ...)
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
	client_fail(c, "4.4.2", "lost connection with %s while %s", c->relay,
		    c->phase);
}

static void
client_send_ehlo(struct smtp_client *c)
{
	c->state = C_EHLO;
	c->phase = "performing the EHLO handshake";
	client_printf(c, "EHLO %s", c->helo);
	client_timeout(c, c->command_timeout);
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
	int want_tls = c->ssl == NULL && (c->caps & SMTP_CAP_STARTTLS) &&
		       !c->no_starttls;

	if (c->ssl == NULL && client_tls_required(c) &&
	    !(c->caps & SMTP_CAP_STARTTLS)) {
		client_fail(c, "4.7.4", "TLS is required, but was not offered "
			    "by host %s", c->relay);
		return 1;
	}
	if (want_tls) {
		c->state = C_STARTTLS;
		c->phase = "sending STARTTLS";
		client_printf(c, "STARTTLS");
		client_timeout(c, c->command_timeout);
		return 0;
	}
	client_ready(c);
	return 1;
}

static void
client_tx_finish(struct smtp_client *c, const struct result *last)
{
	struct smtp_client_tx *tx = c->tx;
	struct result r = *last;
	int i;

	for (i = 0; i < tx->nrcpt; i++)
		if (tx->res[i].code == 0) {
			tx->res[i] = r;
			if (tx->remote != NULL)
				tx->remote[i] = 1;
		}
	free(c->cmds);
	c->cmds = NULL;
	c->tx = NULL;
	c->need_rset = 1;
	c->state = C_IDLE;
	c->phase = "idle";
	ev_timer_stop(c->loop, &c->timer);
	c->cb(c->arg, c, &r);
}

/* xtext - encode s for a DSN parameter when it is not valid xtext */
static void
client_xtext(const char *s, char *out, size_t outlen)
{
	size_t o = 0;

	if (policy_xtext_valid(s, strlen(s))) {
		snprintf(out, outlen, "%s", s);
		return;
	}
	for (; *s != '\0' && o + 4 < outlen; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch < '!' || ch > '~' || ch == '+' || ch == '=')
			o += (size_t)snprintf(out + o, outlen - o, "+%02X", ch);
		else
			out[o++] = (char)ch;
	}
	out[o] = '\0';
}

static void
client_send_cmd(struct smtp_client *c, int i)
{
	const struct smtp_client_tx *tx = c->tx;
	const struct spool_envelope *e = tx->env;
	char params[1200], x[800];
	size_t o = 0;

	params[0] = '\0';
	switch (c->cmds[i]) {
	case CMD_RSET:
		client_printf(c, "RSET");
		break;
	case CMD_MAIL:
		if (c->caps & SMTP_CAP_SIZE)
			o += (size_t)snprintf(params + o, sizeof(params) - o,
					      " SIZE=%llu",
					      (unsigned long long)e->size);
		if (e->body != SPOOL_BODY_7BIT)
			o += (size_t)snprintf(params + o, sizeof(params) - o,
					      " BODY=8BITMIME");
		if (e->smtputf8)
			o += (size_t)snprintf(params + o, sizeof(params) - o,
					      " SMTPUTF8");
		if (c->caps & SMTP_CAP_DSN) {
			if (e->ret == SPOOL_RET_FULL)
				o += (size_t)snprintf(params + o,
						      sizeof(params) - o,
						      " RET=FULL");
			else if (e->ret == SPOOL_RET_HDRS)
				o += (size_t)snprintf(params + o,
						      sizeof(params) - o,
						      " RET=HDRS");
			if (e->envid != NULL && e->envid[0] != '\0') {
				client_xtext(e->envid, x, sizeof(x));
				snprintf(params + o, sizeof(params) - o,
					 " ENVID=%s", x);
			}
		}
		client_printf(c, "MAIL FROM:<%s>%s", e->sender, params);
		break;
	case CMD_RCPT: {
		const struct spool_rcpt *r =
		    &e->rcpt[tx->rcpt[i - c->rcpt_base]];

		if ((c->caps & SMTP_CAP_DSN) && r->notify != 0) {
			int n = r->notify;

			if (n & SPOOL_NOTIFY_NEVER)
				o += (size_t)snprintf(params, sizeof(params),
						      " NOTIFY=NEVER");
			else
				o += (size_t)snprintf(
				    params, sizeof(params), " NOTIFY=%s%s%s%s%s",
				    n & SPOOL_NOTIFY_SUCCESS ? "SUCCESS" : "",
				    (n & SPOOL_NOTIFY_SUCCESS) &&
					    (n & (SPOOL_NOTIFY_FAILURE |
						  SPOOL_NOTIFY_DELAY))
					? ","
					: "",
				    n & SPOOL_NOTIFY_FAILURE ? "FAILURE" : "",
				    (n & SPOOL_NOTIFY_FAILURE) &&
					    (n & SPOOL_NOTIFY_DELAY)
					? ","
					: "",
				    n & SPOOL_NOTIFY_DELAY ? "DELAY" : "");
		}
		if ((c->caps & SMTP_CAP_DSN) && r->orcpt != NULL) {
			client_xtext(r->orcpt, x, sizeof(x));
			snprintf(params + o, sizeof(params) - o, " ORCPT=%s",
				 x);
		}
		client_printf(c, "RCPT TO:<%s>%s", r->address, params);
		break;
	}
	case CMD_DATA:
		client_printf(c, "DATA");
		break;
	}
	c->nsent = i + 1;
}

/* client_send_more - send what may go now: all when pipelining */
static void
client_send_more(struct smtp_client *c)
{
	if (c->caps & SMTP_CAP_PIPELINING) {
		while (c->nsent < c->ncmd)
			client_send_cmd(c, c->nsent);
	} else if (c->nsent == c->nreplied && c->nsent < c->ncmd)
		client_send_cmd(c, c->nsent);
	client_timeout(c, c->command_timeout);
}

/* client_body_fill - move body chunks into the output buffer */
static int
client_body_fill(struct smtp_client *c)
{
	while (!c->body_done && c->olen - c->ooff < OBUF_LOW) {
		const void *data;
		size_t len;
		int r;

		r = spool_body_read(c->tx->spool, c->tx->env->id, c->chunk,
				    &data, &len);
		if (r < 0)
			return -1;
		if (r == 0) {
			if (client_out_reserve(c, 8) < 0)
				return -1;
			c->olen += smtp_client_body_end(&c->body_state,
							c->obuf + c->olen);
			c->body_done = 1;
			break;
		}
		c->chunk++;
		if (client_out_reserve(c, 2 * len + 2) < 0)
			return -1;
		c->olen += smtp_client_body_encode(&c->body_state, data, len,
						   c->obuf + c->olen);
	}
	return 0;
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
			client_fail(c, r.enh[0] ? r.enh : "4.4.0",
				    "host %s refused to talk to me: %d %s",
				    c->relay, r.code, r.text);
			return 1;
		}
		client_send_ehlo(c);
		return 0;
	case C_EHLO:
		if (cls == 5 && !c->ehlo_done_tls && c->ssl == NULL) {
			c->state = C_HELO;
			client_printf(c, "HELO %s", c->helo);
			client_timeout(c, c->command_timeout);
			return 0;
		}
		if (cls != 2) {
			client_fail(c, "4.4.0", "host %s said: %d %s (in reply "
				    "to EHLO)", c->relay, r.code, r.text);
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
			client_fail(c, "4.4.0", "host %s said: %d %s (in reply "
				    "to HELO)", c->relay, r.code, r.text);
			return 1;
		}
		c->caps = 0;
		return client_after_ehlo(c);
	case C_STARTTLS: {
		char err[256];

		if (cls != 2) {
			if (!client_tls_required(c)) {
				client_ready(c);	/* opportunistic */
				return 1;
			}
			client_fail(c, "4.7.4", "host %s refused STARTTLS: %d %s",
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
			c->ssl = tls_client_new(&tmp, c->fd, c->tls_policy,
						c->mxhost, c->tlsa, c->ntlsa,
						&c->dane_armed, err,
						sizeof(err));
		}
		if (c->ssl == NULL) {
			c->tls_failed = 1;
			client_fail(c, "4.7.5", "%s", err);
			return 1;
		}
		c->state = C_HANDSHAKE;
		c->phase = "performing the TLS handshake";
		client_timeout(c, c->command_timeout);
		return 0;
	}
	case C_TX: {
		int i = c->nreplied++;
		enum cmd_kind k = c->cmds[i];

		if (k == CMD_MAIL && cls != 2) {
			c->mail_failed = 1;
			c->mail_res = r;
		} else if (k == CMD_RCPT) {
			struct result *rr = &c->tx->res[i - c->rcpt_base];

			if (c->mail_failed)
				*rr = c->mail_res;
			else if (cls == 2)
				c->accepted++;
			else
				*rr = r;
			if (rr->code != 0 && c->tx->remote != NULL)
				c->tx->remote[i - c->rcpt_base] = 1;
		} else if (k == CMD_DATA) {
			if (rep->code == 354 &&
			    (c->accepted == 0 || c->mail_failed)) {
				/* RFC 2920: a lone dot ends the empty data */
				client_printf(c, ".");
				c->discard_dot = 1;
				c->state = C_DOT;
				c->phase = "sending the end of data";
				client_timeout(c, c->data_timeout);
				return 0;
			}
			if (rep->code == 354) {
				c->state = C_BODY;
				c->phase = "sending message body";
				c->chunk = 0;
				c->body_state = 0;
				c->body_done = 0;
				if (client_body_fill(c) < 0) {
					client_fail(c, "4.3.0", "cannot read "
						    "the message from the "
						    "spool");
					return 1;
				}
				client_timeout(c, c->command_timeout);
				return 0;
			}
			if (c->mail_failed)
				r = c->mail_res;
			else if (cls == 2) {
				/* only the reply to the dot delivers */
				client_fail(c, "4.5.0", "host %s said %d %s in "
					    "reply to DATA", c->relay, r.code,
					    r.text);
				return 1;
			}
			client_tx_finish(c, &r);
			return 1;
		}
		if (c->nreplied == c->ncmd)
			return 0;	/* not reached: DATA is last */
		if (!(c->caps & SMTP_CAP_PIPELINING)) {
			/* without pipelining, stop early when pointless */
			if (c->mail_failed) {
				client_tx_finish(c, &c->mail_res);
				return 1;
			}
			if (c->cmds[c->nreplied] == CMD_DATA &&
			    c->accepted == 0) {
				client_tx_finish(c, &r);
				return 1;
			}
			client_send_more(c);
		}
		return 0;
	}
	case C_DOT:
		if (c->discard_dot) {
			c->discard_dot = 0;
			client_tx_finish(c, c->mail_failed ? &c->mail_res : &r);
			return 1;
		}
		client_tx_finish(c, &r);
		return 1;
	case C_QUIT:
		smtp_client_free(c);
		return 1;
	default:
		/* a reply nobody asked for (421 while idle, ...) */
		client_fail(c, "4.4.2", "host %s said: %d %s (unexpected "
			    "reply)", c->relay, r.code, r.text);
		return 1;
	}
}

static void
client_connected(struct smtp_client *c)
{
	int err = 0;
	socklen_t el = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
		err = errno;
	if (err != 0) {
		client_fail(c, "4.4.1", "connect to %s: %s", c->relay,
			    strerror(err));
		return;
	}
	c->state = C_GREETING;
	c->phase = "receiving the initial server greeting";
	client_timeout(c, c->command_timeout);
	client_watch(c);
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
			client_fail(c, "4.7.5", "TLS with %s: %s", c->relay,
				    err);
			return;
		}
		if (r == 0) {
			c->ssl_want = want;
			client_watch(c);
			return;
		}
		c->ssl_want = 0;
		if (tls_client_verdict(c->ssl, c->tls_policy, c->dane_armed,
				       desc, sizeof(desc), err,
				       sizeof(err)) < 0) {
			c->tls_failed = 1;
			client_fail(c, "4.7.5", "TLS with %s: %s", c->relay,
				    err);
			return;
		}
		snprintf(c->tls_desc, sizeof(c->tls_desc), "%s", desc);
		c->ehlo_done_tls = 1;
		c->caps = 0;
		client_send_ehlo(c);
	}

	/* write what is pending */
	while (c->olen > c->ooff) {
		ssize_t n = client_io_write(c, c->obuf + c->ooff,
					    c->olen - c->ooff);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			client_lost(c);
			return;
		}
		c->ooff += (size_t)n;
		if (c->state == C_BODY)
			client_timeout(c, c->command_timeout);
		if (c->state == C_BODY && client_body_fill(c) < 0) {
			client_fail(c, "4.3.0",
				    "cannot read the message from the spool");
			return;
		}
	}
	if (c->state == C_BODY && c->body_done && c->olen == c->ooff) {
		c->state = C_DOT;
		c->phase = "sending the end of data";
		client_timeout(c, c->data_timeout);
	}

	/* read and handle complete replies */
	for (;;) {
		ssize_t n;
		const char *why;
		struct smtp_reply rep;
		int used;

		while ((used = smtp_reply_parse(c->ibuf, c->ilen, &rep,
						&why)) > 0) {
			int done;

			if (c->state == C_BODY) {
				/* a reply before we finished the body */
				struct result r;

				smtp_reply_result(c->ibuf, &rep, &r);
				client_fail(c, "4.4.2", "host %s said %d %s "
					    "while %s", c->relay, r.code,
					    r.text, c->phase);
				return;
			}
			/*
			 * Consume the reply before acting on it: the owner
			 * may start the next transaction from the callback,
			 * and an unconsumed reply would shift every later
			 * reply by one.
			 */
			memcpy(c->rbuf, c->ibuf, (size_t)used);
			memmove(c->ibuf, c->ibuf + used, c->ilen - (size_t)used);
			c->ilen -= (size_t)used;
			done = client_reply(c, &rep);
			if (done)
				return;	/* c may be gone */
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
			client_fail(c, "4.5.0", "host %s: %s while %s", c->relay,
				    why, c->phase);
			return;
		}
		if (c->ilen == sizeof(c->ibuf)) {
			client_fail(c, "4.5.0", "host %s: reply too long",
				    c->relay);
			return;
		}
		n = client_io_read(c, c->ibuf + c->ilen,
				   sizeof(c->ibuf) - c->ilen);
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
	client_watch(c);
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
		client_fail(c, "4.4.1", "connect to %s: Connection timed out",
			    c->relay);
	else
		client_fail(c, "4.4.2", "conversation with %s timed out while "
			    "%s", c->relay, c->phase);
}

/* client_start_cb - deliver a failed connect(2) outside smtp_client_new */
static void
client_start_fail_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct smtp_client *c = w->data;

	client_fail(c, "4.4.1", "connect to %s: %s", c->relay, c->phase);
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
	c->connect_timeout = p->cfg->connect_timeout > 0
				 ? p->cfg->connect_timeout : 30;
	c->command_timeout = p->cfg->command_timeout > 0
				 ? p->cfg->command_timeout : 300;
	c->data_timeout = p->cfg->data_timeout > 0 ? p->cfg->data_timeout
						   : 600;
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
	client_timeout(c, c->connect_timeout);
	c->io_events = 0;
	client_watch(c);
	return c;
}

int
smtp_client_send(struct smtp_client *c, struct smtp_client_tx *tx)
{
	const struct spool_envelope *e = tx->env;
	struct result fail;
	int i, n = 0;

	c->uses++;
	memset(tx->res, 0, sizeof(*tx->res) * (size_t)tx->nrcpt);
	if (tx->remote != NULL)
		memset(tx->remote, 0, sizeof(*tx->remote) * (size_t)tx->nrcpt);
	fail.code = 0;
	if ((c->caps & SMTP_CAP_SIZE) && c->max_size > 0 &&
	    e->size > c->max_size)
		result_set(&fail, 552, "5.3.4", "message size %llu exceeds "
			   "size limit %llu of server %s",
			   (unsigned long long)e->size, c->max_size, c->relay);
	else if (e->body == SPOOL_BODY_BINARYMIME)
		result_set(&fail, 554, "5.6.3", "binary content cannot be "
			   "relayed over DATA to %s", c->relay);
	else if (e->body == SPOOL_BODY_8BITMIME &&
		 !(c->caps & SMTP_CAP_8BITMIME))
		result_set(&fail, 554, "5.6.3", "8-bit content, but server %s "
			   "does not support 8BITMIME", c->relay);
	else if (e->smtputf8 && !(c->caps & SMTP_CAP_SMTPUTF8))
		result_set(&fail, 553, "5.6.7", "message needs SMTPUTF8, but "
			   "server %s does not support it", c->relay);
	if (fail.code != 0) {
		for (i = 0; i < tx->nrcpt; i++)
			tx->res[i] = fail;
		return -1;
	}
	c->cmds = calloc((size_t)tx->nrcpt + 3, sizeof(*c->cmds));
	if (c->cmds == NULL) {
		result_set(&fail, 451, "4.3.0", "out of memory");
		for (i = 0; i < tx->nrcpt; i++)
			tx->res[i] = fail;
		return -1;
	}
	if (c->need_rset)
		c->cmds[n++] = CMD_RSET;
	c->cmds[n++] = CMD_MAIL;
	c->rcpt_base = n;
	for (i = 0; i < tx->nrcpt; i++)
		c->cmds[n++] = CMD_RCPT;
	c->cmds[n++] = CMD_DATA;
	c->ncmd = n;
	c->nsent = c->nreplied = 0;
	c->accepted = 0;
	c->mail_failed = 0;
	c->discard_dot = 0;
	c->tx = tx;
	c->state = C_TX;
	c->phase = "sending MAIL FROM";
	client_send_more(c);
	client_watch(c);
	return 0;
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
	client_printf(c, "QUIT");
	client_timeout(c, c->command_timeout < 30 ? c->command_timeout : 30);
	client_watch(c);
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
	*setup = c->uses == 0 && c->t_ready >= c->t_new ? c->t_ready - c->t_new
							: 0;
}
