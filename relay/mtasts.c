/*
 * mtasts.c - MTA-STS (RFC 8461): parsers for the _mta-sts TXT record, the
 * policy file and the HTTP response carrying it; MX pattern matching; the
 * policy fetch (non-blocking connect, TLS with SNI and WebPKI name check,
 * one GET, no redirects) on the libev loop; an in-memory policy cache.
 * Called by forward.c; uses tls.c's handshake helper.  Every parser is
 * bounded and total: bad input is an error string, never a crash.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "mtasts.h"
#include "tls.h"

#define MTASTS_WSP(c) ((c) == ' ' || (c) == '\t')

/* mtasts_keychar - RFC 8461 sts-ext-name / sts-policy-ext-name octets */
static int
mtasts_keychar(int c, int first)
{
	if (isascii(c) && isalnum(c))
		return 1;
	return !first && (c == '_' || c == '-' || c == '.');
}

/* mtasts_valid_key - (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".") */
static int
mtasts_valid_key(const char *s, size_t n)
{
	if (n == 0 || n > 32)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!mtasts_keychar((unsigned char)s[i], i == 0))
			return 0;
	return 1;
}

/*
 * mtasts_valid_name - an LDH domain name of A-labels: labels 1-63 octets
 * of letters, digits and inner hyphens, at most MTASTS_NAME_MAX in all,
 * no trailing dot.
 */
static int
mtasts_valid_name(const char *s, size_t n)
{
	size_t lab = 0;

	if (n == 0 || n > MTASTS_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i];

		if (c == '.') {
			if (lab == 0 || s[i - 1] == '-')
				return 0;
			lab = 0;
			continue;
		}
		if (!(isascii(c) && (isalnum(c) || c == '-')))
			return 0;
		if (c == '-' && lab == 0)
			return 0;
		if (++lab > 63)
			return 0;
	}
	return lab > 0 && s[n - 1] != '-';
}

/* ------------------------------------------------------------------ */
/* the TXT record */

/* mtasts_txt_fields - the fields after "v=STSv1"; 0 ok, -1 invalid */
static int
mtasts_txt_fields(const char *txt, char *id, size_t idlen)
{
	const char *p = txt;
	int haveid = 0;

	if (strncmp(p, "v=STSv1", 7) != 0)
		return -1;
	p += 7;
	for (;;) {
		const char *k, *v;
		size_t kn, vn;

		while (MTASTS_WSP(*p))
			p++;
		if (*p == '\0')
			break;
		if (*p++ != ';')
			return -1;
		while (MTASTS_WSP(*p))
			p++;
		if (*p == '\0')
			break; /* a trailing delimiter is allowed */
		for (k = p; *p != '\0' && *p != '='; p++)
			;
		kn = p - k;
		if (*p != '=' || !mtasts_valid_key(k, kn))
			return -1;
		v = ++p;
		/* value: %x21-3A / %x3C / %x3E-7E */
		while (*p > 0x20 && *p < 0x7f && *p != ';' && *p != '=')
			p++;
		vn = p - v;
		if (vn == 0)
			return -1;
		if (kn == 2 && memcmp(k, "id", 2) == 0) {
			if (haveid || vn > MTASTS_ID_MAX)
				return -1;
			for (size_t i = 0; i < vn; i++)
				if (!isascii((unsigned char)v[i]) ||
				    !isalnum((unsigned char)v[i]))
					return -1;
			if (vn + 1 > idlen)
				return -1;
			memcpy(id, v, vn);
			id[vn] = '\0';
			haveid = 1;
		}
		if (*p != '\0' && *p != ';' && !MTASTS_WSP(*p))
			return -1;
	}
	return haveid ? 0 : -1;
}

int
mtasts_parse_txt(const char *txt, char *id, size_t idlen)
{
	if (idlen == 0)
		return -1;
	id[0] = '\0';
	if (txt == NULL || mtasts_txt_fields(txt, id, idlen) != 0) {
		id[0] = '\0';
		return -1;
	}
	return 0;
}

int
mtasts_txt_select(char *const *txt, int n, char *id, size_t idlen)
{
	int found = -1;

	if (idlen > 0)
		id[0] = '\0';
	for (int i = 0; i < n; i++) {
		if (txt[i] == NULL || strncmp(txt[i], "v=STSv1", 7) != 0)
			continue;
		if (found >= 0)
			return -1; /* more than one: no policy */
		found = i;
	}
	if (found < 0)
		return -1;
	return mtasts_parse_txt(txt[found], id, idlen);
}

/* ------------------------------------------------------------------ */
/* the policy file */

const char *
mtasts_mode_str(enum mtasts_mode m)
{
	switch (m) {
	case MTASTS_MODE_ENFORCE:
		return "enforce";
	case MTASTS_MODE_TESTING:
		return "testing";
	case MTASTS_MODE_NONE:
		return "none";
	}
	return "?";
}

/* mtasts_policy_field - one "key: value" line; 0 or -1 with err */
static int
mtasts_policy_field(const char *k, size_t kn, const char *v, size_t vn,
                    struct mtasts_policy *out, unsigned *seen, char *err,
                    size_t errlen)
{
	enum { SEEN_VERSION = 1, SEEN_MODE = 2, SEEN_MAXAGE = 4 };

#define KEY(s) (kn == sizeof(s) - 1 && memcmp(k, s, kn) == 0)
#define VAL(s) (vn == sizeof(s) - 1 && memcmp(v, s, vn) == 0)
	if (KEY("mx")) {
		const char *name = v;
		size_t nn = vn;

		if (out->nmx >= MTASTS_MAX_MX) {
			snprintf(err, errlen, "more than %d mx patterns",
			         MTASTS_MAX_MX);
			return -1;
		}
		if (nn >= 2 && name[0] == '*' && name[1] == '.') {
			name += 2;
			nn -= 2;
		}
		if (!mtasts_valid_name(name, nn)) {
			snprintf(err, errlen, "bad mx pattern \"%.*s\"",
			         (int)(vn > 64 ? 64 : vn), v);
			return -1;
		}
		for (size_t i = 0; i < vn; i++)
			out->mx[out->nmx][i] = tolower((unsigned char)v[i]);
		out->mx[out->nmx][vn] = '\0';
		out->nmx++;
	} else if (KEY("version")) {
		if (*seen & SEEN_VERSION)
			return 0; /* the first occurrence wins */
		*seen |= SEEN_VERSION;
		if (!VAL("STSv1")) {
			snprintf(err, errlen, "unsupported version");
			return -1;
		}
	} else if (KEY("mode")) {
		if (*seen & SEEN_MODE)
			return 0;
		*seen |= SEEN_MODE;
		if (VAL("enforce"))
			out->mode = MTASTS_MODE_ENFORCE;
		else if (VAL("testing"))
			out->mode = MTASTS_MODE_TESTING;
		else if (VAL("none"))
			out->mode = MTASTS_MODE_NONE;
		else {
			snprintf(err, errlen, "bad mode");
			return -1;
		}
	} else if (KEY("max_age")) {
		long n = 0;

		if (*seen & SEEN_MAXAGE)
			return 0;
		*seen |= SEEN_MAXAGE;
		if (vn > 10)
			goto badage;
		for (size_t i = 0; i < vn; i++) {
			if (v[i] < '0' || v[i] > '9')
				goto badage;
			n = n * 10 + (v[i] - '0');
		}
		if (n > MTASTS_MAX_AGE)
			goto badage;
		out->max_age = n;
	}
	/* other keys: extensions, ignored */
	return 0;
badage:
	snprintf(err, errlen, "bad max_age (0-%ld seconds)", MTASTS_MAX_AGE);
	return -1;
#undef KEY
#undef VAL
}

int
mtasts_parse_policy(const char *body, size_t len, struct mtasts_policy *out,
                    char *err, size_t errlen)
{
	size_t at = 0, lineno = 0;
	unsigned seen = 0;

	memset(out, 0, sizeof(*out));
	if (len > MTASTS_BODY_MAX) {
		snprintf(err, errlen, "policy larger than %d octets",
		         MTASTS_BODY_MAX);
		return -1;
	}
	while (at < len) {
		const char *l = body + at, *nl, *k, *v;
		size_t n, kn, vn, i;
		char why[160];

		lineno++;
		nl = memchr(l, '\n', len - at);
		n = nl != NULL ? (size_t)(nl - l) : len - at;
		at += n + (nl != NULL);
		if (n > 0 && l[n - 1] == '\r')
			n--;
		for (i = 0; i < n; i++) {
			unsigned char c = l[i];

			if ((c < 0x20 && c != '\t') || c == 0x7f) {
				snprintf(err, errlen,
				         "line %zu: control character", lineno);
				return -1;
			}
		}
		while (n > 0 && MTASTS_WSP(l[n - 1]))
			n--;
		while (n > 0 && MTASTS_WSP(l[0])) {
			l++;
			n--;
		}
		if (n == 0)
			continue; /* tolerated: blank lines */
		k = l;
		v = memchr(l, ':', n);
		if (v == NULL || !mtasts_valid_key(k, v - k)) {
			snprintf(err, errlen, "line %zu: not \"key: value\"",
			         lineno);
			return -1;
		}
		kn = v - k;
		v++;
		vn = n - kn - 1;
		while (vn > 0 && MTASTS_WSP(v[0])) {
			v++;
			vn--;
		}
		if (vn == 0) {
			snprintf(err, errlen, "line %zu: empty value", lineno);
			return -1;
		}
		if (mtasts_policy_field(k, kn, v, vn, out, &seen, why,
		                        sizeof(why)) != 0) {
			snprintf(err, errlen, "line %zu: %s", lineno, why);
			return -1;
		}
	}
	if (!(seen & 1)) {
		snprintf(err, errlen, "no version: STSv1");
		return -1;
	}
	if (!(seen & 2)) {
		snprintf(err, errlen, "no mode");
		return -1;
	}
	if (!(seen & 4)) {
		snprintf(err, errlen, "no max_age");
		return -1;
	}
	if (out->mode != MTASTS_MODE_NONE && out->nmx == 0) {
		snprintf(err, errlen, "no mx patterns");
		return -1;
	}
	return 0;
}

int
mtasts_mx_match(const struct mtasts_policy *p, const char *mxhost)
{
	size_t n = strlen(mxhost);

	if (n > 0 && mxhost[n - 1] == '.')
		n--;
	if (n == 0 || n > MTASTS_NAME_MAX)
		return 0;
	for (int i = 0; i < p->nmx && i < MTASTS_MAX_MX; i++) {
		const char *pat = p->mx[i];
		size_t pn = strnlen(pat, sizeof(p->mx[i]) - 1);
		const char *dot;

		if (pn >= 2 && pat[0] == '*' && pat[1] == '.') {
			/* one leftmost label, then ".suffix" */
			pat += 1;
			pn -= 1;
			dot = memchr(mxhost, '.', n);
			if (dot == NULL || dot == mxhost ||
			    (size_t)(mxhost + n - dot) != pn)
				continue;
			if (strncasecmp(dot, pat, pn) == 0)
				return 1;
		} else if (pn == n && strncasecmp(mxhost, pat, n) == 0)
			return 1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* the HTTP response */

/* mtasts_http_line - the next line of buf from *at, CR stripped; NULL if
 * no complete line yet */
static const char *
mtasts_http_line(const char *buf, size_t len, size_t *at, size_t *n)
{
	const char *l = buf + *at, *nl = memchr(l, '\n', len - *at);

	if (nl == NULL)
		return NULL;
	*n = nl - l;
	*at += *n + 1;
	if (*n > 0 && l[*n - 1] == '\r')
		(*n)--;
	return l;
}

/* mtasts_http_chunked - decode; 0 more, 1 done, -1 error */
static int
mtasts_http_chunked(const char *buf, size_t len, size_t at, int eof, char *body,
                    size_t bodymax, size_t *bodylen, char *err, size_t errlen)
{
	size_t out = 0;

	for (;;) {
		const char *l;
		size_t n, size = 0, i;

		if ((l = mtasts_http_line(buf, len, &at, &n)) == NULL)
			goto more;
		for (i = 0; i < n && isxdigit((unsigned char)l[i]); i++) {
			int c = tolower((unsigned char)l[i]);

			size = size * 16 + (c <= '9' ? c - '0' : c - 'a' + 10);
			if (size > bodymax || size > MTASTS_BODY_MAX)
				goto toobig;
		}
		if (i == 0 || (i < n && l[i] != ';' && !MTASTS_WSP(l[i]))) {
			snprintf(err, errlen, "bad chunk size line");
			return -1;
		}
		if (size == 0) {
			/* trailers up to the empty line */
			while ((l = mtasts_http_line(buf, len, &at, &n)) !=
			       NULL)
				if (n == 0) {
					*bodylen = out;
					return 1;
				}
			goto more;
		}
		if (out + size > bodymax || out + size > MTASTS_BODY_MAX)
			goto toobig;
		if (len - at < size + 1)
			goto more;
		memcpy(body + out, buf + at, size);
		out += size;
		at += size;
		if (buf[at] == '\r') {
			if (len - at < 2)
				goto more;
			at++;
		}
		if (buf[at] != '\n') {
			snprintf(err, errlen, "chunk not followed by CRLF");
			return -1;
		}
		at++;
	}
more:
	if (eof) {
		snprintf(err, errlen, "connection closed inside a chunk");
		return -1;
	}
	return 0;
toobig:
	snprintf(err, errlen, "policy larger than %d octets", MTASTS_BODY_MAX);
	return -1;
}

int
mtasts_http_response(const char *buf, size_t len, int eof, char *body,
                     size_t bodymax, size_t *bodylen, char *err, size_t errlen)
{
	const char *l, *end;
	size_t at = 0, n, clen = 0;
	int status, haveclen = 0, chunked = 0;
	char location[128] = "";

	*bodylen = 0;
	/* the whole header first */
	for (end = buf; (end = memchr(end, '\n', len - (end - buf))) != NULL;
	     end++) {
		size_t rest = len - (end - buf) - 1;

		if (rest >= 1 && end[1] == '\n')
			break;
		if (rest >= 2 && end[1] == '\r' && end[2] == '\n')
			break;
	}
	if (end == NULL) {
		if (len > MTASTS_HEAD_MAX) {
			snprintf(err, errlen, "HTTP header too long");
			return -1;
		}
		if (eof) {
			snprintf(err, errlen,
			         len == 0 ? "empty response"
			                  : "truncated response");
			return -1;
		}
		return 0;
	}
	if ((size_t)(end - buf) > MTASTS_HEAD_MAX) {
		snprintf(err, errlen, "HTTP header too long");
		return -1;
	}
	l = mtasts_http_line(buf, len, &at, &n);
	if (n < 12 ||
	    (memcmp(l, "HTTP/1.1 ", 9) != 0 &&
	     memcmp(l, "HTTP/1.0 ", 9) != 0) ||
	    !isdigit((unsigned char)l[9]) || !isdigit((unsigned char)l[10]) ||
	    !isdigit((unsigned char)l[11]) || (n > 12 && l[12] != ' ')) {
		snprintf(err, errlen, "not an HTTP/1.x response");
		return -1;
	}
	status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
	for (;;) {
		const char *v;
		size_t kn, vn;

		l = mtasts_http_line(buf, len, &at, &n);
		if (l == NULL || n == 0)
			break;
		if ((v = memchr(l, ':', n)) == NULL) {
			snprintf(err, errlen, "bad HTTP header line");
			return -1;
		}
		kn = v - l;
		v++;
		vn = n - kn - 1;
		while (vn > 0 && MTASTS_WSP(*v)) {
			v++;
			vn--;
		}
		while (vn > 0 && MTASTS_WSP(v[vn - 1]))
			vn--;
		if (kn == 14 && strncasecmp(l, "Content-Length", kn) == 0) {
			size_t c = 0;

			if (vn == 0 || vn > 9)
				goto badlen;
			for (size_t i = 0; i < vn; i++) {
				if (!isdigit((unsigned char)v[i]))
					goto badlen;
				c = c * 10 + (v[i] - '0');
			}
			if (haveclen && c != clen)
				goto badlen;
			haveclen = 1;
			clen = c;
		} else if (kn == 17 &&
		           strncasecmp(l, "Transfer-Encoding", kn) == 0) {
			if (vn != 7 || strncasecmp(v, "chunked", 7) != 0) {
				snprintf(err, errlen,
				         "unsupported Transfer-Encoding");
				return -1;
			}
			chunked = 1;
		} else if (kn == 8 && strncasecmp(l, "Location", kn) == 0) {
			snprintf(location, sizeof(location), " to %.*s",
			         (int)(vn > 100 ? 100 : vn), v);
			for (char *c = location; *c != '\0'; c++)
				if (!isprint((unsigned char)*c))
					*c = '?';
		}
	}
	if (status != 200) {
		if (status >= 300 && status < 400)
			snprintf(err, errlen, "HTTP %d redirect%s not followed",
			         status, location);
		else
			snprintf(err, errlen, "HTTP status %d", status);
		return -1;
	}
	if (chunked && haveclen) {
		snprintf(err, errlen,
		         "both Content-Length and Transfer-Encoding");
		return -1;
	}
	if (chunked)
		return mtasts_http_chunked(buf, len, at, eof, body, bodymax,
		                           bodylen, err, errlen);
	if (haveclen) {
		if (clen > MTASTS_BODY_MAX || clen > bodymax) {
			snprintf(err, errlen, "policy larger than %d octets",
			         MTASTS_BODY_MAX);
			return -1;
		}
		if (len - at < clen) {
			if (eof) {
				snprintf(err, errlen, "truncated body");
				return -1;
			}
			return 0;
		}
		memcpy(body, buf + at, clen);
		*bodylen = clen;
		return 1;
	}
	/* delimited by the close */
	if (len - at > MTASTS_BODY_MAX || len - at > bodymax) {
		snprintf(err, errlen, "policy larger than %d octets",
		         MTASTS_BODY_MAX);
		return -1;
	}
	if (!eof)
		return 0;
	memcpy(body, buf + at, len - at);
	*bodylen = len - at;
	return 1;
badlen:
	snprintf(err, errlen, "bad Content-Length");
	return -1;
}

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
	int r, eof = 0, rc;

	for (;;) {
		if (f->len == MTASTS_BUF_MAX) {
			mtasts_fetch_fail(f, "%s", "response too large");
			return 1;
		}
		r = SSL_read(f->ssl, f->buf + f->len, MTASTS_BUF_MAX - f->len);
		if (r > 0) {
			f->len += r;
			continue;
		}
		switch (SSL_get_error(f->ssl, r)) {
		case SSL_ERROR_WANT_READ:
			mtasts_fetch_want(f, TLS_WANT_READ);
			break;
		case SSL_ERROR_WANT_WRITE:
			mtasts_fetch_want(f, TLS_WANT_WRITE);
			break;
		case SSL_ERROR_ZERO_RETURN:
			eof = 1; /* close_notify: a clean end */
			break;
		default:
			/*
			 * closed without close_notify: fine for a body
			 * whose length is known, a truncation otherwise
			 */
			eof = -1;
			break;
		}
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
		int e = 0;
		socklen_t el = sizeof(e);

		if (getsockopt(f->fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0)
			e = errno;
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
			r = SSL_write(f->ssl, f->req + f->reqoff,
			              f->reqlen - f->reqoff);
			if (r > 0) {
				f->reqoff += r;
				continue;
			}
			switch (SSL_get_error(f->ssl, r)) {
			case SSL_ERROR_WANT_READ:
				mtasts_fetch_want(f, TLS_WANT_READ);
				return;
			case SSL_ERROR_WANT_WRITE:
				mtasts_fetch_want(f, TLS_WANT_WRITE);
				return;
			default:
				mtasts_fetch_fail(f, "send: %s",
				                  ERR_peek_error() != 0
				                      ? tls_errstr()
				                      : strerror(errno));
				return;
			}
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

/* ------------------------------------------------------------------ */
/* the cache: a small array, linear search; the domains are the
 * configured ones, so it stays small.  Past MTASTS_CACHE_MAX the oldest
 * entry is dropped. */

#define MTASTS_CACHE_MAX 4096

struct mtasts_cache_entry {
	char domain[MTASTS_NAME_MAX + 1];
	char id[MTASTS_ID_MAX + 1];
	time_t fetched;
	struct mtasts_policy policy;
};

struct mtasts_cache {
	struct mtasts_cache_entry *e;
	int n, cap;
};

struct mtasts_cache *
mtasts_cache_new(void)
{
	return calloc(1, sizeof(struct mtasts_cache));
}

void
mtasts_cache_free(struct mtasts_cache *c)
{
	if (c == NULL)
		return;
	free(c->e);
	free(c);
}

/* mtasts_cache_key - lower case, no trailing dot; -1 when too long */
static int
mtasts_cache_key(const char *domain, char *key)
{
	size_t n = strlen(domain);

	if (n > 0 && domain[n - 1] == '.')
		n--;
	if (n == 0 || n > MTASTS_NAME_MAX)
		return -1;
	for (size_t i = 0; i < n; i++)
		key[i] = tolower((unsigned char)domain[i]);
	key[n] = '\0';
	return 0;
}

static struct mtasts_cache_entry *
mtasts_cache_find(struct mtasts_cache *c, const char *key)
{
	for (int i = 0; i < c->n; i++)
		if (strcmp(c->e[i].domain, key) == 0)
			return &c->e[i];
	return NULL;
}

const struct mtasts_policy *
mtasts_cache_get(struct mtasts_cache *c, const char *domain, const char *txt_id,
                 time_t now, int *refetch)
{
	char key[MTASTS_NAME_MAX + 1];
	struct mtasts_cache_entry *e;
	int dummy;

	if (refetch == NULL)
		refetch = &dummy;
	*refetch = 1;
	if (c == NULL || mtasts_cache_key(domain, key) != 0 ||
	    (e = mtasts_cache_find(c, key)) == NULL)
		return NULL;
	if (now >= e->fetched + e->policy.max_age || now < e->fetched - 300)
		return NULL; /* expired (or the clock went back far) */
	*refetch = (txt_id != NULL && strcmp(txt_id, e->id) != 0) ||
	           now >= e->fetched + MTASTS_REFRESH;
	return &e->policy;
}

int
mtasts_cache_put(struct mtasts_cache *c, const char *domain, const char *id,
                 const struct mtasts_policy *p, time_t now)
{
	char key[MTASTS_NAME_MAX + 1];
	struct mtasts_cache_entry *e;

	if (mtasts_cache_key(domain, key) != 0 || id == NULL ||
	    strlen(id) > MTASTS_ID_MAX)
		return -1;
	if ((e = mtasts_cache_find(c, key)) == NULL) {
		if (c->n == MTASTS_CACHE_MAX) {
			int old = 0;

			for (int i = 1; i < c->n; i++)
				if (c->e[i].fetched < c->e[old].fetched)
					old = i;
			e = &c->e[old];
		} else {
			if (c->n == c->cap) {
				int cap = c->cap ? c->cap * 2 : 8;
				void *ne =
				    reallocarray(c->e, cap, sizeof(*c->e));

				if (ne == NULL)
					return -1;
				c->e = ne;
				c->cap = cap;
			}
			e = &c->e[c->n++];
		}
	}
	memcpy(e->domain, key, sizeof(key));
	snprintf(e->id, sizeof(e->id), "%s", id);
	e->fetched = now;
	e->policy = *p;
	return 0;
}

void
mtasts_cache_remove(struct mtasts_cache *c, const char *domain)
{
	char key[MTASTS_NAME_MAX + 1];
	struct mtasts_cache_entry *e;

	if (c == NULL || mtasts_cache_key(domain, key) != 0 ||
	    (e = mtasts_cache_find(c, key)) == NULL)
		return;
	*e = c->e[--c->n];
}

/*
 * The cache on disk (RFC 8461 5: a policy is kept for max_age, across
 * restarts too, so an attacker who blocks the fetch after a restart
 * cannot downgrade).  A text file, one entry after another:
 *
 *   domain ID FETCHED LEN\n  then LEN octets of the policy in RFC format
 *
 * Loading re-parses every policy with mtasts_parse_policy(), so a damaged
 * file loses entries, never trust.  Saving writes a temporary file,
 * fsyncs and renames it over the old one.
 */
int
mtasts_cache_save(const struct mtasts_cache *c, const char *path)
{
	char tmp[4096], text[MTASTS_MAX_MX * (MTASTS_NAME_MAX + 8) + 128];
	FILE *f;
	int fd, ok = 1;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -1;
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) <
	    0)
		return -1;
	if ((f = fdopen(fd, "w")) == NULL) {
		close(fd);
		unlink(tmp);
		return -1;
	}
	for (int i = 0; c != NULL && i < c->n; i++) {
		const struct mtasts_cache_entry *e = &c->e[i];
		size_t n = 0;

		n += (size_t)snprintf(text + n, sizeof(text) - n,
		                      "version: STSv1\nmode: %s\n",
		                      mtasts_mode_str(e->policy.mode));
		for (int j = 0; j < e->policy.nmx; j++)
			n += (size_t)snprintf(text + n, sizeof(text) - n,
			                      "mx: %s\n", e->policy.mx[j]);
		n += (size_t)snprintf(text + n, sizeof(text) - n,
		                      "max_age: %ld\n", e->policy.max_age);
		if (n >= sizeof(text))
			continue;
		if (fprintf(f, "%s %s %lld %zu\n", e->domain, e->id,
		            (long long)e->fetched, n) < 0 ||
		    fwrite(text, 1, n, f) != n)
			ok = 0;
	}
	if (fflush(f) != 0 || fsync(fileno(f)) != 0)
		ok = 0;
	if (fclose(f) != 0)
		ok = 0;
	if (!ok || rename(tmp, path) != 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

int
mtasts_cache_load(struct mtasts_cache *c, const char *path, time_t now)
{
	char line[512], domain[MTASTS_NAME_MAX + 2], id[MTASTS_ID_MAX + 2];
	char *text = NULL, err[128];
	long long fetched;
	size_t len;
	FILE *f;
	int n = 0;

	if ((f = fopen(path, "re")) == NULL)
		return errno == ENOENT ? 0 : -1;
	if ((text = malloc(MTASTS_BODY_MAX)) == NULL) {
		fclose(f);
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		struct mtasts_policy p;

		if (sscanf(line, "%254s %33s %lld %zu", domain, id, &fetched,
		           &len) != 4 ||
		    len == 0 || len > MTASTS_BODY_MAX ||
		    strlen(id) > MTASTS_ID_MAX || fread(text, 1, len, f) != len)
			break; /* out of step: the rest cannot be trusted */
		if (mtasts_parse_policy(text, len, &p, err, sizeof(err)) != 0 ||
		    fetched > (long long)now + 300 ||
		    (long long)now >= fetched + p.max_age)
			continue; /* damaged or expired: skip it */
		if (mtasts_cache_put(c, domain, id, &p, (time_t)fetched) == 0)
			n++;
	}
	free(text);
	fclose(f);
	return n;
}
