/*
 * client.c - the outbound SMTP client state machine (see client.h) and
 * its pure parts: the bounded multi-line reply parser and the DATA
 * encoder (CRLF-only line ends, dot-stuffing).  One struct client is one
 * TCP connection on the libev loop; everything it says to the owner goes
 * through one callback, always the last thing an event handler does.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "client.h"
#include "dns.h"
#include "tls.h"

/* ------------------------------------------------------------------ */
/* Reply parser */

/* client_line_end - length of the line at p (up to LF), or 0 if none */
static size_t
client_line_end(const char *p, size_t len)
{
	const char *lf = memchr(p, '\n', len);

	return lf == NULL ? 0 : (size_t)(lf - p) + 1;
}

/* client_cap_line - one EHLO keyword line into caps/size */
static void
client_cap_line(const char *t, size_t n, struct client_reply *out)
{
	char kw[32];
	size_t k = 0;

	while (k < n && k < sizeof(kw) - 1 && t[k] != ' ' && t[k] != '=') {
		kw[k] = (char)toupper((unsigned char)t[k]);
		k++;
	}
	kw[k] = '\0';
	if (strcmp(kw, "PIPELINING") == 0)
		out->caps |= CLIENT_CAP_PIPELINING;
	else if (strcmp(kw, "8BITMIME") == 0)
		out->caps |= CLIENT_CAP_8BITMIME;
	else if (strcmp(kw, "DSN") == 0)
		out->caps |= CLIENT_CAP_DSN;
	else if (strcmp(kw, "SMTPUTF8") == 0)
		out->caps |= CLIENT_CAP_SMTPUTF8;
	else if (strcmp(kw, "STARTTLS") == 0)
		out->caps |= CLIENT_CAP_STARTTLS;
	else if (strcmp(kw, "SIZE") == 0) {
		uint64_t v = 0;
		size_t i = k;

		out->caps |= CLIENT_CAP_SIZE;
		while (i < n && t[i] == ' ')
			i++;
		for (; i < n && isdigit((unsigned char)t[i]); i++) {
			if (v > UINT64_MAX / 10 - 10)
				break;
			v = v * 10 + (uint64_t)(t[i] - '0');
		}
		out->size = v;
	}
}

/* client_enh_parse - "x.y.z " at t of class cls: octets used, or 0 */
static size_t
client_enh_parse(const char *t, size_t n, int cls, char enh[12])
{
	size_t i = 0, part, digits;

	if (n < 5 || t[0] != '0' + cls || t[1] != '.')
		return 0;
	i = 2;
	for (part = 0; part < 2; part++) {
		digits = 0;
		while (i < n && isdigit((unsigned char)t[i]) && digits < 4) {
			i++;
			digits++;
		}
		if (digits == 0 || digits > 3)
			return 0;
		if (part == 0) {
			if (i >= n || t[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < n && t[i] != ' ')
		return 0;
	memcpy(enh, t, i);
	enh[i] = '\0';
	return i < n ? i + 1 : i;
}

int
client_reply_parse(const char *buf, size_t len, struct client_reply *out,
		   const char **why)
{
	size_t off = 0, tl = 0, ll, n, skip;
	int code = 0, c, nlines = 0, last;
	const char *p, *t;

	memset(out, 0, sizeof(*out));
	*why = "";
	for (;;) {
		p = buf + off;
		ll = client_line_end(p, len - off);
		if (ll == 0) {
			if (len - off >= CLIENT_LINE_MAX) {
				*why = "reply line too long";
				return -1;
			}
			return 0;
		}
		if (ll > CLIENT_LINE_MAX) {
			*why = "reply line too long";
			return -1;
		}
		n = ll - 1;	/* without LF */
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n < 3 || !isdigit((unsigned char)p[0]) ||
		    !isdigit((unsigned char)p[1]) ||
		    !isdigit((unsigned char)p[2])) {
			*why = "reply line without a code";
			return -1;
		}
		c = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
		if (c < 200 || c > 599) {
			*why = "reply code out of range";
			return -1;
		}
		if (nlines == 0)
			code = c;
		else if (c != code) {
			*why = "reply lines with different codes";
			return -1;
		}
		if (n == 3 || p[3] == ' ')
			last = 1;
		else if (p[3] == '-')
			last = 0;
		else {
			*why = "bad separator after the reply code";
			return -1;
		}
		if (++nlines > CLIENT_LINES_MAX) {
			*why = "too many reply lines";
			return -1;
		}
		t = n > 4 ? p + 4 : p + n;
		n = n > 4 ? n - 4 : 0;
		if (nlines == 1) {
			skip = client_enh_parse(t, n, code / 100, out->enh);
			t += skip;
			n -= skip;
		} else
			client_cap_line(t, n, out);
		/* join the text, printable ASCII only, bounded */
		if (tl > 0 && tl < sizeof(out->text) - 1 && n > 0)
			out->text[tl++] = ' ';
		for (size_t i = 0; i < n && tl < sizeof(out->text) - 1; i++) {
			unsigned char ch = (unsigned char)t[i];

			out->text[tl++] = (ch >= 32 && ch < 127) ? (char)ch
								 : '?';
		}
		out->text[tl] = '\0';
		off += ll;
		if (last)
			break;
	}
	out->code = code;
	out->nlines = nlines;
	return (int)off;
}

void
client_reply_result(const struct client_reply *rep, struct result *r)
{
	const char *enh = rep->enh;

	if (enh[0] == '\0')
		enh = rep->code >= 500 ? "5.0.0"
		    : rep->code >= 400 ? "4.0.0" : "2.0.0";
	result_set(r, rep->code, enh, "%s", rep->text);
}

/* ------------------------------------------------------------------ */
/* DATA encoder */

#define BODY_MIDLINE 0x01	/* not at the start of a line */
#define BODY_CR 0x02		/* the previous octet was a CR */

size_t
client_body_encode(int *state, const char *in, size_t len, char *out)
{
	size_t o = 0;
	int st = *state;

	for (size_t i = 0; i < len; i++) {
		char ch = in[i];

		if (ch == '\r') {
			out[o++] = '\r';
			out[o++] = '\n';
			st = BODY_CR;
		} else if (ch == '\n') {
			if (!(st & BODY_CR)) {
				out[o++] = '\r';
				out[o++] = '\n';
			}
			st = 0;
		} else {
			if (!(st & BODY_MIDLINE) && ch == '.')
				out[o++] = '.';
			out[o++] = ch;
			st = BODY_MIDLINE;
		}
	}
	*state = st;
	return o;
}

size_t
client_body_end(int *state, char *out)
{
	size_t o = 0;

	if (*state & BODY_MIDLINE) {
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
	CS_CONNECT,
	CS_GREETING,
	CS_EHLO,
	CS_HELO,
	CS_STARTTLS,
	CS_HANDSHAKE,
	CS_READY,
	CS_RSET,
	CS_TX,		/* MAIL, RCPT..., DATA replies */
	CS_BODY,	/* writing the message */
	CS_DOT,		/* waiting for the final reply */
	CS_EMPTYDOT,	/* 354 with no recipient: "." sent, reply ignored */
	CS_QUIT,
	CS_DEAD,
};

static const char *client_state_what[] = {
	"connect", "greeting", "EHLO", "HELO", "STARTTLS", "TLS handshake",
	"idle", "RSET",
	"MAIL/RCPT/DATA", "message body", "end of data", "end of data",
	"QUIT", "-",
};

struct client {
	struct ev_loop *loop;
	int fd;
	ev_io rio, wio;
	ev_timer timer;
	enum client_state state;
	client_cb cb;
	void *arg;
	char helo[POLICY_DOMAIN_MAX + 1];
	char mxhost[POLICY_DOMAIN_MAX + 1];
	char relay[POLICY_DOMAIN_MAX + 80];
	int tls;
	long connect_timeout, command_timeout, data_timeout;
	int caps;
	uint64_t maxsize;
	int ntx;		/* transactions started */

	char rbuf[4096];
	size_t rlen;
	char *wbuf;
	size_t wlen, woff, wcap;

	/* the transaction */
	struct client_tx *tx;
	int ri;			/* replies received in CS_TX */
	int sent;		/* commands sent in CS_TX */
	int mail_ok;
	int naccepted;
	uint32_t chunk;
	int bstate;
	struct result mailres;
	int local;		/* the failure being reported is ours */

	/* STARTTLS */
	const struct config *cfg;
	int no_starttls;
	struct dns_tlsa *tlsa;
	int ntlsa;
	SSL *ssl;
	int dane_armed;
	int tls_failed;
	int opportunistic;	/* may, or dane without TLSA: clear is ok */
	char tlsdesc[96];
};

static void client_read_cb(struct ev_loop *loop, ev_io *w, int revents);
static void client_write_cb(struct ev_loop *loop, ev_io *w, int revents);
static void client_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* client_close - stop watchers and close the socket */
static void
client_close(struct client *c)
{
	ev_io_stop(c->loop, &c->rio);
	ev_io_stop(c->loop, &c->wio);
	ev_timer_stop(c->loop, &c->timer);
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	c->ssl = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = CS_DEAD;
}

void
client_free(struct client *c)
{
	if (c == NULL)
		return;
	client_close(c);
	free(c->wbuf);
	free(c->tlsa);
	free(c);
}

/* client_arm - (re)start the timer for the current state */
static void
client_arm(struct client *c, long secs)
{
	ev_timer_stop(c->loop, &c->timer);
	ev_timer_set(&c->timer, (double)(secs > 0 ? secs : 300), 0.);
	ev_timer_start(c->loop, &c->timer);
}

/* client_wappend - queue octets for writing */
static int
client_wappend(struct client *c, const char *p, size_t n)
{
	if (c->woff > 0 && c->woff == c->wlen)
		c->woff = c->wlen = 0;
	if (c->wlen + n > c->wcap) {
		size_t ncap = c->wcap ? c->wcap : 4096;
		char *nb;

		while (ncap < c->wlen + n)
			ncap *= 2;
		if ((nb = realloc(c->wbuf, ncap)) == NULL)
			return -1;
		c->wbuf = nb;
		c->wcap = ncap;
	}
	memcpy(c->wbuf + c->wlen, p, n);
	c->wlen += n;
	return 0;
}

static int
client_printf(struct client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
client_printf(struct client *c, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -1;
	return client_wappend(c, line, (size_t)n);
}

/* client_fill_rest - every recipient without a result gets r */
static void
client_fill_rest(struct client *c, const struct result *r, int remote)
{
	struct client_tx *tx = c->tx;

	if (tx == NULL)
		return;
	for (int i = 0; i < tx->nrcpt; i++)
		if (tx->res[i].code == 0) {
			tx->res[i] = *r;
			tx->remote[i] = remote;
		}
}

/* client_fail - close and report; the last thing a handler does */
static void
client_fail(struct client *c, const struct result *r, int remote)
{
	client_fill_rest(c, r, remote);
	c->tx = NULL;
	client_close(c);
	c->cb(c->arg, c, CLIENT_FAILED, r);
}

/* client_fail_local - a local 4xx failure with a formatted reason */
static void
client_fail_local(struct client *c, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
client_fail_local(struct client *c, const char *enh, const char *fmt, ...)
{
	struct result r;
	va_list ap;

	r.code = 451;
	snprintf(r.enh, sizeof(r.enh), "%s", enh);
	va_start(ap, fmt);
	vsnprintf(r.text, sizeof(r.text), fmt, ap);
	va_end(ap);
	client_fail(c, &r, 0);
}

/* client_io_send - send or SSL_write; -1 with errno EAGAIN to wait */
static ssize_t
client_io_send(struct client *c, const char *p, size_t n)
{
	int r, e;

	if (c->ssl == NULL)
		return send(c->fd, p, n, MSG_NOSIGNAL);
	ERR_clear_error();
	r = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
	if (r > 0)
		return r;
	e = SSL_get_error(c->ssl, r);
	errno = (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
		    ? EAGAIN : EPIPE;
	return -1;
}

/* client_io_recv - recv or SSL_read; 0 EOF, -1 errno (EAGAIN: wait) */
static ssize_t
client_io_recv(struct client *c, char *p, size_t n)
{
	int r, e;

	if (c->ssl == NULL)
		return recv(c->fd, p, n, 0);
	ERR_clear_error();
	r = SSL_read(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
	if (r > 0)
		return r;
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_ZERO_RETURN)
		return 0;
	errno = (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
		    ? EAGAIN : ECONNRESET;
	return -1;
}

/* client_flush - write what is queued; 0 ok, -1 error (errno) */
static int
client_flush(struct client *c)
{
	while (c->woff < c->wlen) {
		ssize_t n = client_io_send(c, c->wbuf + c->woff,
					   c->wlen - c->woff);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				ev_io_start(c->loop, &c->wio);
				return 0;
			}
			return -1;
		}
		c->woff += (size_t)n;
	}
	c->woff = c->wlen = 0;
	ev_io_stop(c->loop, &c->wio);
	return 0;
}

struct client *
client_new(struct ev_loop *loop, const struct client_params *p, client_cb cb,
	   void *arg)
{
	struct client *c;
	char abuf[INET6_ADDRSTRLEN] = "?";
	int port = 0, fl;
	socklen_t slen;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->loop = loop;
	c->cb = cb;
	c->arg = arg;
	c->fd = -1;
	snprintf(c->helo, sizeof(c->helo), "%s", p->helo);
	snprintf(c->mxhost, sizeof(c->mxhost), "%s", p->mxhost);
	c->tls = p->tls;
	c->cfg = p->cfg;
	c->no_starttls = p->no_starttls;
	if (p->ntlsa > 0 && p->tlsa != NULL &&
	    (c->tlsa = calloc((size_t)p->ntlsa, sizeof(*c->tlsa))) != NULL) {
		memcpy(c->tlsa, p->tlsa, (size_t)p->ntlsa * sizeof(*c->tlsa));
		c->ntlsa = p->ntlsa;	/* data pointers: see queue.c */
	}
	c->opportunistic = c->tls == POLICY_TLS_MAY ||
			   (c->tls == POLICY_TLS_DANE && c->ntlsa == 0);
	c->connect_timeout = p->connect_timeout;
	c->command_timeout = p->command_timeout;
	c->data_timeout = p->data_timeout;
	if (p->addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)&p->addr;

		inet_ntop(AF_INET6, &s6->sin6_addr, abuf, sizeof(abuf));
		port = ntohs(s6->sin6_port);
		slen = sizeof(*s6);
	} else {
		const struct sockaddr_in *s4 = (const void *)&p->addr;

		inet_ntop(AF_INET, &s4->sin_addr, abuf, sizeof(abuf));
		port = ntohs(s4->sin_port);
		slen = sizeof(*s4);
	}
	snprintf(c->relay, sizeof(c->relay), "%s[%s]:%d", c->mxhost, abuf,
		 port);
	ev_init(&c->rio, client_read_cb);
	ev_init(&c->wio, client_write_cb);
	ev_init(&c->timer, client_timer_cb);
	c->rio.data = c->wio.data = c->timer.data = c;

	c->fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		goto fail;
	fl = fcntl(c->fd, F_GETFL);
	if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) < 0)
		goto fail;
	ev_io_set(&c->rio, c->fd, EV_READ);
	ev_io_set(&c->wio, c->fd, EV_WRITE);
	c->state = CS_CONNECT;
	if (connect(c->fd, (const struct sockaddr *)&p->addr, slen) < 0 &&
	    errno != EINPROGRESS) {
		/* report through the loop, never from inside client_new */
		int e = errno;

		ev_io_start(c->loop, &c->wio);
		c->woff = (size_t)e;	/* remembered for the write callback */
		c->wlen = (size_t)-1;
		client_arm(c, 1);
		return c;
	}
	ev_io_start(c->loop, &c->wio);
	client_arm(c, c->connect_timeout);
	return c;
fail:
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	return NULL;
}

int
client_usable(const struct client *c)
{
	return c->state == CS_READY;
}

void
client_set_cb(struct client *c, client_cb cb, void *arg)
{
	c->cb = cb;
	c->arg = arg;
}

const char *
client_relay(const struct client *c)
{
	return c->relay;
}

int
client_caps(const struct client *c)
{
	return c->caps;
}

const char *
client_tls(const struct client *c)
{
	return c->tlsdesc[0] ? c->tlsdesc : NULL;
}

int
client_tls_failed(const struct client *c)
{
	return c->tls_failed;
}

/* client_tls_start - after 220 to STARTTLS: 0 handshaking, -1 failed */
static int
client_tls_start(struct client *c, struct result *r)
{
	char err[200];

	if (c->rlen > 0) {
		/* octets after the 220 were sent in clear: injection */
		result_set(r, 451, "4.7.0", "%s sent data after its STARTTLS "
			   "reply", c->relay);
		return -1;
	}
	c->ssl = tls_client_new(c->cfg, c->fd, c->tls, c->mxhost, c->tlsa,
				c->ntlsa, &c->dane_armed, err, sizeof(err));
	if (c->ssl == NULL) {
		result_set(r, 451, "4.7.5", "TLS with %s: %s", c->relay, err);
		return -1;
	}
	c->state = CS_HANDSHAKE;
	return 0;
}

/*
 * client_tls_step - drive the handshake: -1 keep waiting, CLIENT_FAILED
 * with r set, or -2 when done and EHLO was queued.
 */
static int
client_tls_step(struct client *c, struct result *r)
{
	char err[200];
	int want = 0, hs;

	hs = tls_handshake_step(c->ssl, &want, err, sizeof(err));
	if (hs == 0) {
		ev_io_stop(c->loop, &c->wio);
		ev_io_stop(c->loop, &c->rio);
		if (want == TLS_WANT_WRITE)
			ev_io_start(c->loop, &c->wio);
		else
			ev_io_start(c->loop, &c->rio);
		return -1;
	}
	ev_io_stop(c->loop, &c->wio);
	ev_io_start(c->loop, &c->rio);
	if (hs < 0) {
		c->tls_failed = 1;
		c->local = 1;
		result_set(r, 451, "4.7.5", "TLS with %s failed: %s", c->relay,
			   err);
		return CLIENT_FAILED;
	}
	if (tls_client_verdict(c->ssl, c->tls, c->dane_armed, c->tlsdesc,
			       sizeof(c->tlsdesc), err, sizeof(err)) < 0) {
		c->local = 1;
		result_set(r, 451, "4.7.5", "TLS with %s: %s", c->relay, err);
		return CLIENT_FAILED;
	}
	c->state = CS_EHLO;
	c->caps = 0;
	if (client_printf(c, "EHLO %s\r\n", c->helo) < 0 ||
	    client_flush(c) < 0) {
		c->local = 1;
		result_set(r, 451, "4.4.2", "write to %s failed", c->relay);
		return CLIENT_FAILED;
	}
	client_arm(c, c->command_timeout);
	return -2;
}

/* client_quit_done - the polite close is over */
static void
client_quit_done(struct client *c)
{
	client_free(c);
}

void
client_quit(struct client *c)
{
	if (c->state != CS_READY) {
		client_free(c);
		return;
	}
	c->state = CS_QUIT;
	c->tx = NULL;
	if (client_printf(c, "QUIT\r\n") < 0 || client_flush(c) < 0) {
		client_free(c);
		return;
	}
	ev_io_start(c->loop, &c->rio);
	client_arm(c, 10);
}

/* client_cmd - command i of the transaction into c's write buffer */
static int
client_cmd(struct client *c, int i)
{
	struct client_tx *tx = c->tx;
	const struct spool_envelope *e = tx->env;
	char params[1024];
	size_t pl = 0;

	params[0] = '\0';
	if (i == 0) {
		if (c->caps & CLIENT_CAP_SIZE)
			pl += (size_t)snprintf(params + pl, sizeof(params) - pl,
				 " SIZE=%" PRIu64, e->size);
		if (e->body == SPOOL_BODY_8BITMIME)
			pl += (size_t)snprintf(params + pl, sizeof(params) - pl,
				 " BODY=8BITMIME");
		if (e->smtputf8)
			pl += (size_t)snprintf(params + pl, sizeof(params) - pl,
				 " SMTPUTF8");
		if (c->caps & CLIENT_CAP_DSN) {
			if (e->ret == SPOOL_RET_FULL)
				pl += (size_t)snprintf(params + pl,
				    sizeof(params) - pl, " RET=FULL");
			else if (e->ret == SPOOL_RET_HDRS)
				pl += (size_t)snprintf(params + pl,
				    sizeof(params) - pl, " RET=HDRS");
			if (e->envid != NULL && strlen(e->envid) < 200)
				pl += (size_t)snprintf(params + pl,
				    sizeof(params) - pl, " ENVID=%s", e->envid);
		}
		return client_printf(c, "MAIL FROM:<%s>%s\r\n", e->sender,
				     params);
	}
	if (i <= tx->nrcpt) {
		const struct spool_rcpt *r = &e->rcpt[tx->rcpt[i - 1]];

		if (c->caps & CLIENT_CAP_DSN) {
			if (r->notify & SPOOL_NOTIFY_NEVER)
				pl += (size_t)snprintf(params, sizeof(params),
						       " NOTIFY=NEVER");
			else if (r->notify != 0)
				pl += (size_t)snprintf(params, sizeof(params),
				    " NOTIFY=%s%s%s",
				    r->notify & SPOOL_NOTIFY_SUCCESS
					? "SUCCESS," : "",
				    r->notify & SPOOL_NOTIFY_FAILURE
					? "FAILURE," : "",
				    r->notify & SPOOL_NOTIFY_DELAY
					? "DELAY," : "");
			if (pl > 0 && params[pl - 1] == ',')
				params[--pl] = '\0';
			if (r->orcpt != NULL && strlen(r->orcpt) < 600)
				snprintf(params + pl, sizeof(params) - pl,
					 " ORCPT=%s", r->orcpt);
		}
		return client_printf(c, "RCPT TO:<%s>%s\r\n", r->address,
				     params);
	}
	return client_printf(c, "DATA\r\n");
}

/* client_tx_start - write MAIL (and, pipelining, RCPTs and DATA) */
static int
client_tx_start(struct client *c)
{
	int ncmd = c->tx->nrcpt + 2;

	c->state = CS_TX;
	c->ri = 0;
	c->sent = 0;
	if (c->caps & CLIENT_CAP_PIPELINING) {
		for (int i = 0; i < ncmd; i++)
			if (client_cmd(c, i) < 0)
				return -1;
		c->sent = ncmd;
	} else {
		if (client_cmd(c, 0) < 0)
			return -1;
		c->sent = 1;
	}
	client_arm(c, c->command_timeout);
	return client_flush(c);
}

int
client_send(struct client *c, struct client_tx *tx)
{
	const struct spool_envelope *e = tx->env;
	struct result r;
	int i;

	for (i = 0; i < tx->nrcpt; i++) {
		tx->res[i].code = 0;
		tx->remote[i] = 0;
	}
	r.code = 0;
	if (e->body != SPOOL_BODY_7BIT && !(c->caps & CLIENT_CAP_8BITMIME))
		result_set(&r, 554, "5.6.3", "%s does not support 8BITMIME",
			   c->relay);
	else if (e->body == SPOOL_BODY_BINARYMIME)
		result_set(&r, 554, "5.6.3",
			   "BINARYMIME content cannot be relayed to %s",
			   c->relay);
	else if (e->smtputf8 && !(c->caps & CLIENT_CAP_SMTPUTF8))
		result_set(&r, 553, "5.6.7", "%s does not support SMTPUTF8",
			   c->relay);
	else if ((c->caps & CLIENT_CAP_SIZE) && c->maxsize > 0 &&
		 e->size > c->maxsize)
		result_set(&r, 552, "5.3.4",
			   "message size %" PRIu64 " exceeds %s limit %" PRIu64,
			   e->size, c->relay, c->maxsize);
	if (r.code != 0) {
		for (i = 0; i < tx->nrcpt; i++)
			tx->res[i] = r;
		return -1;
	}
	c->tx = tx;
	c->mail_ok = 0;
	c->naccepted = 0;
	c->chunk = 0;
	c->bstate = 0;
	if (c->ntx++ > 0) {
		c->state = CS_RSET;
		if (client_printf(c, "RSET\r\n") < 0 || client_flush(c) < 0)
			goto fail;
		client_arm(c, c->command_timeout);
		return 0;
	}
	if (client_tx_start(c) < 0)
		goto fail;
	return 0;
fail:
	/* report through the loop: the timer fires at once */
	c->state = CS_DEAD;
	ev_io_stop(c->loop, &c->rio);
	ev_io_stop(c->loop, &c->wio);
	ev_timer_stop(c->loop, &c->timer);
	ev_timer_set(&c->timer, 0.001, 0.);
	ev_timer_start(c->loop, &c->timer);
	return 0;
}

/* client_body_more - queue the next chunk or the end; 1 more, 0 done */
static int
client_body_more(struct client *c)
{
	const void *data;
	size_t len;
	char *out;
	int r;

	r = spool_body_read(c->tx->spool, c->tx->env->id, c->chunk, &data,
			    &len);
	if (r < 0)
		return -1;
	if (r == 0) {
		char end[8];
		size_t n = client_body_end(&c->bstate, end);

		if (client_wappend(c, end, n) < 0)
			return -1;
		return 0;
	}
	c->chunk++;
	if ((out = malloc(2 * len + 1)) == NULL)
		return -1;
	len = client_body_encode(&c->bstate, data, len, out);
	r = client_wappend(c, out, len);
	free(out);
	return r < 0 ? -1 : 1;
}

/* client_body_pump - write the body while the socket takes it */
static int
client_body_pump(struct client *c)
{
	int r;

	while (c->state == CS_BODY) {
		if (c->woff < c->wlen) {
			if (client_flush(c) < 0)
				return -1;
			if (c->woff < c->wlen)
				return 0;	/* wait for writability */
		}
		r = client_body_more(c);
		if (r < 0) {
			errno = EIO;
			return -2;
		}
		if (r == 0) {
			c->state = CS_DOT;
			client_arm(c, c->data_timeout);
			return client_flush(c);
		}
		client_arm(c, c->data_timeout);
	}
	return 0;
}

/*
 * client_on_reply - one reply in the current state.  Returns the event to
 * report (CLIENT_*), or -1 to keep going.  *r is the result to report.
 */
static int
client_on_reply(struct client *c, const struct client_reply *rep,
		struct result *r)
{
	struct client_tx *tx = c->tx;
	int i;

	client_reply_result(rep, r);
	c->local = 0;
	switch (c->state) {
	case CS_GREETING:
		if (rep->code != 220)
			return CLIENT_FAILED;
		c->state = CS_EHLO;
		if (client_printf(c, "EHLO %s\r\n", c->helo) < 0)
			goto local;
		break;
	case CS_EHLO:
		if (rep->code == 250) {
			c->caps = rep->caps;
			c->maxsize = rep->size;
			if (c->ssl == NULL && (c->caps & CLIENT_CAP_STARTTLS) &&
			    !(c->no_starttls && c->opportunistic) &&
			    c->cfg != NULL) {
				c->state = CS_STARTTLS;
				if (client_printf(c, "STARTTLS\r\n") < 0)
					goto local;
				break;
			}
			goto ready;
		}
		if (rep->code == 421)
			return CLIENT_FAILED;
		c->state = CS_HELO;
		if (client_printf(c, "HELO %s\r\n", c->helo) < 0)
			goto local;
		break;
	case CS_HELO:
		if (rep->code != 250)
			return CLIENT_FAILED;
		c->caps = 0;
		goto ready;
	case CS_STARTTLS:
		if (rep->code != 220) {
			if (c->opportunistic)
				goto ready;	/* in clear, as allowed */
			return CLIENT_FAILED;
		}
		if (client_tls_start(c, r) < 0) {
			c->local = 1;
			return CLIENT_FAILED;
		}
		return -1;	/* the caller drives the handshake */
	case CS_RSET:
		if (rep->code != 250)
			return CLIENT_FAILED;
		if (client_tx_start(c) < 0)
			goto local;
		return -1;
	case CS_TX:
		if (c->ri == 0) {
			c->mail_ok = rep->code / 100 == 2;
			c->mailres = *r;
			if (!c->mail_ok)
				for (i = 0; i < tx->nrcpt; i++) {
					tx->res[i] = *r;
					tx->remote[i] = 1;
				}
		} else if (c->ri <= tx->nrcpt) {
			i = c->ri - 1;
			if (c->mail_ok) {
				tx->res[i] = *r;
				tx->remote[i] = 1;
				if (rep->code / 100 == 2) {
					tx->res[i].code = 0;	/* until the dot */
					c->naccepted++;
				}
			}
		} else {
			/* the DATA reply */
			if (rep->code == 354 && c->naccepted > 0) {
				c->state = CS_BODY;
				return -1;	/* pumped by the caller */
			}
			if (rep->code == 354) {
				c->state = CS_EMPTYDOT;
				if (client_printf(c, ".\r\n") < 0)
					goto local;
				break;
			}
			for (i = 0; i < tx->nrcpt; i++)
				if (tx->res[i].code == 0) {
					tx->res[i] = *r;
					tx->remote[i] = 1;
				}
			goto txdone;
		}
		c->ri++;
		if (c->ri < c->sent)
			return -1;	/* more pipelined replies to come */
		/* not pipelining: what next? */
		if (!c->mail_ok)
			goto txdone;
		if (c->ri == tx->nrcpt + 1 && c->naccepted == 0)
			goto txdone;
		if (client_cmd(c, c->ri) < 0)
			goto local;
		c->sent++;
		break;
	case CS_DOT:
		for (i = 0; i < tx->nrcpt; i++)
			if (tx->res[i].code == 0) {
				tx->res[i] = *r;
				tx->remote[i] = 1;
			}
		goto txdone;
	case CS_EMPTYDOT:
		goto txdone;
	default:
		return CLIENT_FAILED;
	}
	client_arm(c, c->command_timeout);
	if (client_flush(c) < 0) {
		result_set(r, 451, "4.4.2", "write to %s: %s", c->relay,
			   strerror(errno));
		c->local = 1;
		return CLIENT_FAILED;
	}
	return -1;
ready:
	c->state = CS_READY;
	ev_timer_stop(c->loop, &c->timer);
	if (!c->opportunistic && c->ssl == NULL) {
		result_set(r, 451, "4.7.5",
			   "TLS required but not available for %s", c->relay);
		c->local = 1;
		return CLIENT_FAILED;
	}
	return CLIENT_READY;
txdone:
	if (tx != NULL)
		for (i = 0; i < tx->nrcpt; i++)
			if (tx->res[i].code == 0) {
				tx->res[i] = c->mailres;
				tx->remote[i] = 1;
			}
	c->state = CS_READY;
	c->tx = NULL;
	ev_timer_stop(c->loop, &c->timer);
	return CLIENT_DONE;
local:
	result_set(r, 451, "4.3.0", "local error talking to %s", c->relay);
	c->local = 1;
	return CLIENT_FAILED;
}

/* client_report - deliver event ev; the last thing a handler does */
static void
client_report(struct client *c, int ev, struct result *r)
{
	if (ev == CLIENT_FAILED) {
		client_fail(c, r, !c->local);
		return;
	}
	c->cb(c->arg, c, ev, r);
}

static void
client_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct client *c = w->data;
	struct client_reply rep;
	struct result r;
	const char *why;
	ssize_t n;
	int used, ev = -1, got = 0;

	if (c->state == CS_QUIT) {
		char junk[512];

		n = client_io_recv(c, junk, sizeof(junk));
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0 || memchr(junk, '\n', (size_t)n) != NULL)
			client_quit_done(c);
		return;
	}
	if (c->state == CS_HANDSHAKE) {
		ev = client_tls_step(c, &r);
		if (ev == CLIENT_FAILED)
			client_report(c, ev, &r);
		return;
	}
	/* drain the socket (and OpenSSL's buffer) into rbuf */
	while (c->rlen < sizeof(c->rbuf)) {
		n = client_io_recv(c, c->rbuf + c->rlen,
				   sizeof(c->rbuf) - c->rlen);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			if (got)
				break;	/* parse what came first */
			client_fail_local(c, "4.4.2", "lost connection with "
					  "%s while waiting for %s reply",
					  c->relay,
					  client_state_what[c->state]);
			return;
		}
		c->rlen += (size_t)n;
		got = 1;
		if (c->ssl == NULL)
			break;
	}
	if (!got)
		return;
	while (c->rlen > 0) {
		used = client_reply_parse(c->rbuf, c->rlen, &rep, &why);
		if (used == 0)
			break;
		if (used < 0) {
			client_fail_local(c, "4.5.0", "protocol error from %s: %s",
					  c->relay, why);
			return;
		}
		memmove(c->rbuf, c->rbuf + used, c->rlen - (size_t)used);
		c->rlen -= (size_t)used;
		if (c->state == CS_READY || c->state == CS_BODY) {
			/* unsolicited: the server gave up on us */
			client_reply_result(&rep, &r);
			client_fail(c, &r, 1);
			return;
		}
		ev = client_on_reply(c, &rep, &r);
		if (c->state == CS_HANDSHAKE && ev < 0) {
			ev = client_tls_step(c, &r);
			if (ev == -2)
				ev = -1;
			break;
		}
		if (c->state == CS_BODY) {
			int pr = client_body_pump(c);

			if (pr == -2) {
				client_fail_local(c, "4.3.0", "cannot read the "
						  "message from the spool");
				return;
			}
			if (pr < 0) {
				client_fail_local(c, "4.4.2", "write to %s: %s",
						  c->relay, strerror(errno));
				return;
			}
		}
		if (ev >= 0)
			break;
	}
	if (ev >= 0)
		client_report(c, ev, &r);
}

static void
client_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct client *c = w->data;
	struct result r;
	int err = 0, pr;
	socklen_t el = sizeof(err);

	if (c->state == CS_CONNECT) {
		if (c->wlen == (size_t)-1)
			err = (int)c->woff;
		else if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			err = errno;
		c->wlen = c->woff = 0;
		if (err != 0) {
			client_fail_local(c, "4.4.1", "connect to %s: %s",
					  c->relay, strerror(err));
			return;
		}
		ev_io_stop(loop, &c->wio);
		ev_io_start(loop, &c->rio);
		c->state = CS_GREETING;
		client_arm(c, c->command_timeout);
		return;
	}
	if (c->state == CS_HANDSHAKE) {
		if (client_tls_step(c, &r) == CLIENT_FAILED)
			client_report(c, CLIENT_FAILED, &r);
		return;
	}
	if (c->state == CS_BODY) {
		pr = client_body_pump(c);
		if (pr == -2) {
			client_fail_local(c, "4.3.0",
					  "cannot read the message from the spool");
			return;
		}
	} else
		pr = client_flush(c);
	if (pr < 0)
		client_fail_local(c, "4.4.2", "write to %s: %s", c->relay,
				  strerror(errno));
}

static void
client_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct client *c = w->data;

	switch (c->state) {
	case CS_QUIT:
		client_quit_done(c);
		return;
	case CS_CONNECT:
		if (c->wlen == (size_t)-1) {
			client_fail_local(c, "4.4.1", "connect to %s: %s",
					  c->relay, strerror((int)c->woff));
			return;
		}
		client_fail_local(c, "4.4.1", "connect to %s: Connection "
				  "timed out", c->relay);
		return;
	case CS_DEAD:
		client_fail_local(c, "4.3.0", "local error talking to %s",
				  c->relay);
		return;
	default:
		client_fail_local(c, "4.4.2", "conversation with %s timed out "
				  "while waiting for %s reply", c->relay,
				  client_state_what[c->state]);
		return;
	}
}
