/*
 * fuzz_dns_rdata.c - libFuzzer target for relay/dns.c's RDATA
 * parsers.  The first octet picks the parser (mod 4): 0 a wire name, 1 MX,
 * 2 TXT, 3 TLSA; the rest is the RDATA.  Accepted names must encode back
 * to the bytes they came from (case aside), TXT text must be as long as
 * reported, and TLSA data must lie inside the input.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"

/* fuzz_name_encode - text name back to wire format; returns its length */
static size_t
fuzz_name_encode(const char *name, uint8_t *out)
{
	size_t o = 0;
	const char *s = name;

	while (*s != '\0') {
		const char *dot = strchr(s, '.');
		size_t l = dot != NULL ? (size_t)(dot - s) : strlen(s);

		if (l == 0 || l > 63)
			abort();
		out[o++] = (uint8_t)l;
		memcpy(out + o, s, l);
		o += l;
		s += l;
		if (*s == '.')
			s++;
	}
	out[o++] = 0;
	return o;
}

/* fuzz_name_check - a parsed name matches its wire form */
static void
fuzz_name_check(const uint8_t *p, size_t len, int n, const char *text)
{
	uint8_t wire[600];
	size_t i, wl;

	if (n < 1 || (size_t)n > len || n > 255 || strlen(text) > 253)
		abort();
	for (i = 0; text[i] != '\0'; i++)
		if (isupper((unsigned char)text[i]))
			abort();
	wl = fuzz_name_encode(text, wire);
	if (wl != (size_t)n)
		abort();
	for (i = 0; i < wl; i++)
		if (tolower(wire[i]) != tolower(p[i]))
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char text[70000];
	const uint8_t *p;
	size_t len;
	int n;

	if (size < 1)
		return 0;
	p = data + 1;
	len = size - 1;
	switch (data[0] % 4) {
	case 0: {
		char out[256];

		n = dns_parse_name(p, len, out, sizeof(out));
		if (n >= 0)
			fuzz_name_check(p, len, n, out);
		/* a short buffer must fail, never overflow */
		n = dns_parse_name(p, len, out, 8);
		if (n >= 0 && strlen(out) >= 8)
			abort();
		break;
	}
	case 1: {
		struct policy_mx mx;

		if (dns_parse_mx_rdata(p, len, &mx) == 0) {
			if (len < 3 || mx.pref != (p[0] << 8 | p[1]))
				abort();
			fuzz_name_check(p + 2, len - 2, (int)(len - 2),
			                mx.host);
		}
		break;
	}
	case 2:
		n = dns_parse_txt_rdata(p, len, text, sizeof(text));
		if (n >= 0 && ((size_t)n != strlen(text) || (size_t)n >= len))
			abort();
		n = dns_parse_txt_rdata(p, len, text, 4);
		if (n >= 0 && strlen(text) >= 4)
			abort();
		break;
	case 3: {
		struct dns_tlsa t;

		if (dns_parse_tlsa_rdata(p, len, &t) == 0) {
			if (t.data != p + 3 || t.len != len - 3 || t.len == 0 ||
			    t.usage != p[0] || t.selector != p[1] ||
			    t.mtype != p[2])
				abort();
		}
		break;
	}
	}
	return 0;
}
