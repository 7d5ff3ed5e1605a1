/*
 * mtasts.c - MTA-STS (RFC 8461) text formats, pure and bounded (fuzzed
 * in tests/fuzz/fuzz_mtasts.c): the _mta-sts TXT record, the policy file,
 * MX pattern matching and the HTTP response that carries the policy.
 * Every parser is total: bad input is an error string, never a crash.
 * Called by fwd_tls.c, mtasts_fetch.c (the response) and mtasts_cache.c
 * (policies re-parsed at load); calls only libc.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mtasts.h"

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
int
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
