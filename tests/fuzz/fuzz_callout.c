/*
 * fuzz_callout.c - libFuzzer target for what the recipient sources make
 * of hostile input: the LDAP filter expansion (policy_ldap_filter,
 * RFC 4515 escaping, used by ldap_src.c for every lookup) and the
 * callout's reading of a primary's replies (smtp_reply_parse on the
 * stream as callout_conn.c reads it, then its RCPT classification).
 *
 * Input: the first octet picks the part.  Even: a query_filter template
 * up to the first LF, the address after it (up to a NUL).  Invariants:
 * an expansion fits its buffer; the address put through "(mail=%s)"
 * comes out as exactly "(mail=" + value + ")" where the value holds no
 * filter metacharacter, no control or 8-bit octet except as \XX, and
 * unescapes to the address (an address can never change the filter).
 * Odd: bytes a primary sends.  Invariants: each parsed reply lies in
 * the input, its code is 200..599, the callout's answer for a RCPT is
 * 2xx (valid), 5xx (invalid) or 451 4.4.3 (unknown) and never anything
 * else, with printable text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "smtp_client.h"

static int
unhex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static void
fuzz_filter(const char *data, size_t len)
{
	char tmpl[600], addr[600], out[1024], back[600];
	const char *nl = memchr(data, '\n', len);
	size_t tl = 0, al, i, o, n;

	if (nl != NULL) {
		tl = (size_t)(nl - data);
		if (tl >= sizeof(tmpl))
			tl = sizeof(tmpl) - 1;
		memcpy(tmpl, data, tl);
		len -= (size_t)(nl - data) + 1;
		data = nl + 1;
	}
	tmpl[tl] = '\0';
	al = strnlen(data, len);
	if (al >= sizeof(addr))
		al = sizeof(addr) - 1;
	memcpy(addr, data, al);
	addr[al] = '\0';

	if (policy_ldap_filter(tmpl, addr, out, sizeof(out)) >= 0 &&
	    strlen(out) >= sizeof(out))
		abort();
	if (policy_ldap_filter("(mail=%s)", addr, out, sizeof(out)) < 0)
		return; /* too long for the buffer: refused */
	n = strlen(out);
	if (n < 7 || strncmp(out, "(mail=", 6) != 0 || out[n - 1] != ')')
		abort();
	for (i = 6, o = 0; i < n - 1; i++) {
		unsigned char c = (unsigned char)out[i];

		if (c == '(' || c == ')' || c == '*' || c < 0x20 || c >= 0x7f)
			abort();
		if (c == '\\') {
			int h, l;

			if (i + 2 >= n - 1 || (h = unhex(out[i + 1])) < 0 ||
			    (l = unhex(out[i + 2])) < 0)
				abort();
			c = (unsigned char)(h * 16 + l);
			i += 2;
		}
		if (o + 1 >= sizeof(back))
			abort();
		back[o++] = (char)c;
	}
	back[o] = '\0';
	if (o != al || memcmp(back, addr, al) != 0)
		abort();
}

static void
fuzz_replies(const char *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		struct smtp_reply rep;
		struct result r, a;
		const char *why = NULL;
		int n = smtp_reply_parse(buf + off, len - off, &rep, &why);
		int cls;

		if (n <= 0) {
			if (n < 0 && why == NULL)
				abort();
			return; /* the callout: garbage -> 451, suspended */
		}
		if ((size_t)n > len - off || rep.code < 200 || rep.code > 599)
			abort();
		smtp_reply_result(buf + off, &rep, &r);
		/* the RCPT answer as callout_conn.c classifies it */
		cls = r.code / 100;
		if (cls == 2 || cls == 5)
			a = r;
		else
			result_set(&a, 451, "4.4.3",
			           "primary of x said %d %s "
			           "%s",
			           r.code, r.enh, r.text);
		if (a.code / 100 != 2 && a.code / 100 != 5 && a.code != 451)
			abort();
		for (size_t i = 0; a.text[i] != '\0'; i++)
			if (a.text[i] < 0x20 || a.text[i] > 0x7e)
				abort();
		off += (size_t)n;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	if (len < 1)
		return 0;
	if (data[0] & 1)
		fuzz_replies((const char *)data + 1, len - 1);
	else
		fuzz_filter((const char *)data + 1, len - 1);
	return 0;
}
