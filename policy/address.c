/*
 * address.c - RFC 5321 path syntax: path parsing, local-part comparison
 * keys, xtext checks.  Syntax only: it looks nothing up (the RCPT
 * decision on top of it is rcpt_gate.c's).
 *
 * relay/smtpd_cmd.c calls policy_parse_path for MAIL FROM; rcpt_gate.c
 * calls it for RCPT TO and uses the helpers of address.h.  Both return a
 * struct result to reply with.  Quoted local parts are kept exactly as
 * sent and never dequoted for routing: only the comparison key unquotes.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "address.h"
#include "policy.h"

/* ------------------------------------------------------------------ */
/* character classes */

/* atext of RFC 5322 3.2.3, the octets of a Dot-string atom */
static int
addr_atext(unsigned char c)
{
	if (isalnum(c))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* qtextSMTP of RFC 5321 4.1.2 */
static int
addr_qtext(unsigned char c)
{
	return c == 32 || c == 33 || (c >= 35 && c <= 91) ||
	       (c >= 93 && c <= 126);
}

/* addr_utf8_len - length of the well-formed UTF-8 sequence at s (RFC 3629:
 * no overlongs, no surrogates, at most U+10FFFF), 0 when malformed */
static size_t
addr_utf8_len(const unsigned char *s, size_t n)
{
	size_t need, i;
	unsigned lo = 0x80, hi = 0xbf;

	if (n == 0)
		return 0;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		need = 1;
	else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		need = 2;
		if (s[0] == 0xe0)
			lo = 0xa0;
		else if (s[0] == 0xed)
			hi = 0x9f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		need = 3;
		if (s[0] == 0xf0)
			lo = 0x90;
		else if (s[0] == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (n < need + 1)
		return 0;
	for (i = 1; i <= need; i++) {
		if (s[i] < lo || s[i] > hi)
			return 0;
		lo = 0x80;
		hi = 0xbf;
	}
	return need + 1;
}

/* addr_dot_string - Dot-string: atoms of atext joined by single dots;
 * utf8 lets octets >= 0x80 count as atext (RFC 6531) */
int
addr_dot_string(const char *s, size_t n, int utf8)
{
	size_t i, atom = 0;

	if (n == 0)
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char c = s[i];

		if (c == '.') {
			if (atom == 0)
				return 0;
			atom = 0;
		} else if (addr_atext(c) || (utf8 && c >= 0x80))
			atom++;
		else
			return 0;
	}
	return atom > 0;
}

/* addr_domain_syntax - sub-domain *("." sub-domain), Let-dig [Ldh-str],
 * labels of at most 63 octets; utf8 admits U-labels */
int
addr_domain_syntax(const char *s, size_t n, int utf8)
{
	size_t i, label = 0;

	if (n == 0 || n > POLICY_DOMAIN_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char c = s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (c == '-') {
			if (label == 0)
				return 0;
		} else if (!isalnum(c) && !(utf8 && c >= 0x80))
			return 0;
		if (++label > 63)
			return 0;
	}
	return label > 0 && s[n - 1] != '-';
}

/* addr_literal_syntax - the inside of "[...]": IPv4, "IPv6:" addr, or a
 * General-address-literal (tag ":" 1*dcontent) */
static int
addr_literal_syntax(const char *s, size_t n)
{
	char buf[64];
	unsigned char a[16];
	size_t i, tag;

	if (n == 0 || n >= sizeof(buf))
		return 0;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (n > 5 && strncasecmp(buf, "IPv6:", 5) == 0)
		return inet_pton(AF_INET6, buf + 5, a) == 1;
	if (strspn(buf, "0123456789.") == n)
		return inet_pton(AF_INET, buf, a) == 1;
	for (tag = 0;
	     tag < n && (isalnum((unsigned char)buf[tag]) || buf[tag] == '-');
	     tag++)
		;
	if (tag == 0 || tag == n || buf[tag] != ':' || buf[tag - 1] == '-' ||
	    tag + 1 == n)
		return 0;
	for (i = tag + 1; i < n; i++) {
		unsigned char c = buf[i];

		if (!((c >= 33 && c <= 90) || (c >= 94 && c <= 126)))
			return 0;
	}
	return 1;
}

/* ------------------------------------------------------------------ */
/* local-part comparison keys */

int
policy_local_canon(const char *local, char *out, size_t outlen)
{
	char dec[POLICY_LOCAL_MAX * 2 + 3];
	size_t n, i, o = 0;
	int ascii = 1;

	if (local == NULL || outlen == 0)
		return -1;
	n = strlen(local);
	if (n > 0 && local[0] == '"') {
		/* decode the quoted-string, then re-quote only if needed */
		if (n < 2 || local[n - 1] != '"')
			return -1;
		for (i = 1; i < n - 1; i++) {
			unsigned char c = local[i];

			if (c == '\\') {
				if (i + 1 >= n - 1)
					return -1;
				c = local[++i];
				if (c < 32 || c == 127)
					return -1;
			} else if (c == '"' || (!addr_qtext(c) && c < 0x80))
				return -1;
			if (o + 1 >= sizeof(dec))
				return -1;
			dec[o++] = c;
		}
		dec[o] = '\0';
		if (o > POLICY_LOCAL_MAX)
			return -1;
		if (addr_dot_string(dec, o, 1)) {
			if (o + 1 > outlen)
				return -1;
			memcpy(out, dec, o + 1);
		} else {
			size_t w = 0;

			if (outlen < 3)
				return -1;
			out[w++] = '"';
			for (i = 0; i < o; i++) {
				if (dec[i] == '"' || dec[i] == '\\') {
					if (w + 1 >= outlen)
						return -1;
					out[w++] = '\\';
				}
				if (w + 1 >= outlen)
					return -1;
				out[w++] = dec[i];
			}
			if (w + 2 > outlen)
				return -1;
			out[w++] = '"';
			out[w] = '\0';
		}
	} else {
		if (n > POLICY_LOCAL_MAX || !addr_dot_string(local, n, 1) ||
		    n + 1 > outlen)
			return -1;
		memcpy(out, local, n + 1);
	}
	for (i = 0; out[i]; i++)
		if ((unsigned char)out[i] >= 0x80)
			ascii = 0;
	/* RFC 5321 2.4 lets the receiver fold case; we only do it for
	 * ASCII, where "case" has one meaning */
	if (ascii)
		for (i = 0; out[i]; i++)
			out[i] = tolower((unsigned char)out[i]);
	return 0;
}

/* ------------------------------------------------------------------ */
/* path parsing */

/* addr_join - dst = a b c; -1 (dst empty) if it does not fit */
int
addr_join(char *dst, size_t dstlen, const char *a, const char *b, const char *c)
{
	size_t la = strlen(a), lb = strlen(b), lc = strlen(c);

	if (la + lb + lc + 1 > dstlen) {
		if (dstlen > 0)
			dst[0] = '\0';
		return -1;
	}
	memcpy(dst, a, la);
	memcpy(dst + la, b, lb);
	memcpy(dst + la + lb, c, lc + 1);
	return 0;
}

/* addr_parse_domain - domain or address literal in s[0..n); fills the
 * domain fields of out when out != NULL; returns 0 or -1 with res set */
static int
addr_parse_domain(const char *s, size_t n, int utf8, struct policy_path *out,
                  struct result *res)
{
	size_t i;

	if (n == 0) {
		result_set(res, 501, "5.1.3",
		           "Bad address syntax: domain "
		           "missing");
		return -1;
	}
	if (n > POLICY_DOMAIN_MAX) {
		result_set(res, 501, "5.1.3",
		           "Bad address syntax: domain longer than %d octets",
		           POLICY_DOMAIN_MAX);
		return -1;
	}
	if (s[0] == '[') {
		if (n < 3 || s[n - 1] != ']' ||
		    !addr_literal_syntax(s + 1, n - 2)) {
			result_set(res, 501, "5.1.3",
			           "Bad address syntax: bad address literal");
			return -1;
		}
	} else if (!addr_domain_syntax(s, n, utf8)) {
		result_set(res, 501, "5.1.3",
		           "Bad address syntax: bad domain name");
		return -1;
	}
	if (out != NULL) {
		memcpy(out->domain, s, n);
		out->domain[n] = '\0';
		for (i = 0; i < n; i++)
			out->domain_lc[i] = tolower((unsigned char)s[i]);
		out->domain_lc[n] = '\0';
		out->literal = s[0] == '[';
	}
	return 0;
}

/* addr_find_close - index of the ">" that ends the path (outside quotes),
 * checking octets on the way; returns 0 or -1 with res set */
static int
addr_find_close(const char *s, size_t len, int flags, size_t *close, int *utf8,
                struct result *res)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i, k;
	int q = 0;

	*utf8 = 0;
	for (i = 1; i < len; i++) {
		if (u[i] < 0x20 || u[i] == 0x7f) {
			result_set(res, 501, "5.1.3",
			           "Bad address syntax: control character "
			           "in address");
			return -1;
		}
		if (u[i] >= 0x80) {
			if (!(flags & POLICY_PARSE_SMTPUTF8)) {
				result_set(res, 553, "5.6.7",
				           "Non-ASCII address needs SMTPUTF8");
				return -1;
			}
			if ((k = addr_utf8_len(u + i, len - i)) == 0) {
				result_set(res, 501, "5.6.7",
				           "Bad address syntax: malformed "
				           "UTF-8");
				return -1;
			}
			*utf8 = 1;
			i += k - 1;
			continue;
		}
		if (q && u[i] == '\\') {
			if (i + 1 < len &&
			    (u[i + 1] < 0x20 || u[i + 1] == 0x7f))
				continue; /* reported next round */
			if (i + 1 < len && u[i + 1] < 0x80)
				i++;
			continue;
		}
		if (u[i] == '"')
			q = !q;
		else if (!q && u[i] == '>') {
			*close = i;
			return 0;
		}
	}
	result_set(res, 501, "5.5.2", "Syntax: address must end with \">\"");
	return -1;
}

/* addr_parse_route - A-d-l "@d1,@d2:" at s[*i]; we accept and drop it
 * (RFC 5321 4.1.2, C) */
static int
addr_parse_route(const char *s, size_t close, size_t *i, int utf8,
                 struct result *res)
{
	size_t start;

	for (;;) {
		if (*i >= close || s[*i] != '@')
			goto bad;
		start = ++*i;
		while (*i < close && s[*i] != ',' && s[*i] != ':')
			++*i;
		if (*i >= close)
			goto bad;
		if (addr_parse_domain(s + start, *i - start, utf8, NULL, res) <
		    0)
			return -1;
		if (s[(*i)++] == ':')
			return 0;
	}
bad:
	result_set(res, 501, "5.1.3", "Bad address syntax: bad source route");
	return -1;
}

int
policy_parse_path(const char *s, size_t len, int flags, struct policy_path *out,
                  size_t *endp, struct result *res)
{
	size_t close, i = 1, start, local_len, dec = 0, mbox;
	int utf8;

	memset(out, 0, sizeof(*out));
	if (s == NULL || len == 0 || s[0] != '<') {
		result_set(res, 501, "5.5.2",
		           "Syntax: address must be enclosed in <>");
		return -1;
	}
	if (addr_find_close(s, len, flags, &close, &utf8, res) < 0)
		return -1;
	out->utf8 = utf8;
	if (close == 1) {
		if (flags & POLICY_PARSE_RCPT) {
			result_set(res, 501, "5.1.3",
			           "Bad address syntax: null recipient <>");
			return -1;
		}
		out->kind = POLICY_PATH_NULL;
		*endp = 2;
		result_set(res, 250, "2.1.0", "Ok");
		return 0;
	}
	if (s[i] == '@') {
		if (addr_parse_route(s, close, &i, utf8, res) < 0)
			return -1;
		out->source_route = 1;
	}

	/* Local-part = Dot-string / Quoted-string */
	start = i;
	if (i < close && s[i] == '"') {
		for (i++; i < close && s[i] != '"'; i++, dec++) {
			unsigned char c = s[i];

			if (c == '\\') {
				if (i + 1 >= close ||
				    (unsigned char)s[i + 1] < 32) {
					result_set(res, 501, "5.1.3",
					           "Bad address syntax: bad "
					           "quoted-pair");
					return -1;
				}
				i++;
			} else if (!addr_qtext(c) && c < 0x80) {
				result_set(res, 501, "5.1.3",
				           "Bad address syntax: bad character "
				           "in quoted local part");
				return -1;
			}
		}
		if (i >= close) {
			result_set(res, 501, "5.1.3",
			           "Bad address syntax: unterminated quoted "
			           "local part");
			return -1;
		}
		i++;
		out->quoted = 1;
	} else {
		while (i < close && s[i] != '@')
			i++;
		if (!addr_dot_string(s + start, i - start, utf8)) {
			result_set(res, 501, "5.1.3",
			           i == start ? "Bad address syntax: empty "
			                        "local part"
			                      : "Bad address syntax: bad "
			                        "local part");
			return -1;
		}
		dec = i - start;
	}
	local_len = i - start;
	if (dec > POLICY_LOCAL_MAX || local_len >= sizeof(out->local)) {
		result_set(res, 501, "5.1.3",
		           "Bad address syntax: local part longer than %d "
		           "octets",
		           POLICY_LOCAL_MAX);
		return -1;
	}
	memcpy(out->local, s + start, local_len);
	out->local[local_len] = '\0';

	if (i == close) {
		/* only <Postmaster> may come without a domain (4.1.1.3) */
		if ((flags & POLICY_PARSE_RCPT) && !out->quoted &&
		    strcasecmp(out->local, "postmaster") == 0 &&
		    !out->source_route) {
			out->kind = POLICY_PATH_POSTMASTER;
			snprintf(out->address, sizeof(out->address), "%s",
			         out->local);
			*endp = close + 1;
			result_set(res, 250, "2.1.5", "Ok");
			return 0;
		}
		result_set(res, 501, "5.1.3",
		           "Bad address syntax: domain missing");
		return -1;
	}
	if (s[i] != '@') {
		result_set(res, 501, "5.1.3",
		           "Bad address syntax: bad character after local "
		           "part");
		return -1;
	}
	i++;
	if (memchr(s + i, '@', close - i) != NULL) {
		result_set(res, 501, "5.1.3",
		           "Bad address syntax: more than one @");
		return -1;
	}
	if (addr_parse_domain(s + i, close - i, utf8, out, res) < 0)
		return -1;
	mbox = local_len + 1 + (close - i);
	if (mbox > POLICY_PATH_MAX) {
		result_set(res, 501, "5.1.3",
		           "Bad address syntax: path longer than %d octets",
		           POLICY_PATH_MAX);
		return -1;
	}
	out->kind = POLICY_PATH_MAILBOX;
	/* mbox <= POLICY_PATH_MAX: it fits */
	addr_join(out->address, sizeof(out->address), out->local, "@",
	          out->domain_lc);
	*endp = close + 1;
	result_set(res, 250, "2.1.0", "Ok");
	return 0;
}

/* ------------------------------------------------------------------ */
/* DSN parameters */

/* policy_xtext_valid - xtext = *( xchar / "+" 2HEXUPPER ), RFC 3461 4 */
int
policy_xtext_valid(const char *s, size_t len)
{
	size_t i;

	if (s == NULL)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = s[i];

		if (c == '+') {
			if (i + 2 >= len)
				return 0;
			for (int k = 1; k <= 2; k++) {
				unsigned char h = s[i + k];

				if (!((h >= '0' && h <= '9') ||
				      (h >= 'A' && h <= 'F')))
					return 0;
			}
			i += 2;
		} else if (c < 33 || c > 126 || c == '=')
			return 0;
	}
	return 1;
}
