/*
 * test_proxy.c - relay/proxy_parse.c: PROXY v1 and v2 headers, whole and
 * byte by byte (every prefix of a good header is "need more", never an
 * error), truncated, oversized, wrong signature, LOCAL / UNKNOWN, bad
 * fields; octets after the header are not counted in it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "proxy.h"

static const unsigned char sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                      0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

static size_t
v2(unsigned char *b, int cmd, int fam, const unsigned char *addr, size_t alen)
{
	memcpy(b, sig, 12);
	b[12] = 0x20 | cmd;
	b[13] = fam;
	b[14] = alen >> 8;
	b[15] = alen & 0xff;
	memcpy(b + 16, addr, alen);
	return 16 + alen;
}

/* every strict prefix must ask for more; the whole must parse */
static void
check_prefixes(const unsigned char *b, size_t n, size_t hdrlen)
{
	struct proxy_hdr h;
	const char *why;

	for (size_t i = 0; i < hdrlen; i++) {
		int r = proxy_parse(b, i, &h, &why);

		if (r != 0)
			fail_msg("prefix %zu of %zu: %d (%s)", i, hdrlen, r,
			         why ? why : "");
	}
	assert_int_equal(proxy_parse(b, n, &h, &why), (int)hdrlen);
}

static void
test_proxy_v1(void **state)
{
	const char *good =
	    "PROXY TCP4 192.0.2.7 127.0.0.3 40000 25\r\nEHLO x\r\n";
	struct proxy_hdr h;
	const char *why;
	char a[64];
	size_t hl = strlen("PROXY TCP4 192.0.2.7 127.0.0.3 40000 25\r\n");

	check_prefixes((const unsigned char *)good, strlen(good), hl);
	assert_int_equal(
	    proxy_parse((const unsigned char *)good, strlen(good), &h, &why),
	    (int)hl);
	assert_int_equal(h.version, 1);
	assert_int_equal(h.local, 0);
	assert_int_equal(h.src.ss_family, AF_INET);
	inet_ntop(AF_INET, &((struct sockaddr_in *)&h.src)->sin_addr, a,
	          sizeof(a));
	assert_string_equal(a, "192.0.2.7");
	assert_int_equal(ntohs(((struct sockaddr_in *)&h.src)->sin_port),
	                 40000);

	const char *g6 = "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n";

	check_prefixes((const unsigned char *)g6, strlen(g6), strlen(g6));
	assert_int_equal(h.src.ss_family, AF_INET);
	proxy_parse((const unsigned char *)g6, strlen(g6), &h, &why);
	assert_int_equal(h.src.ss_family, AF_INET6);
	inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&h.src)->sin6_addr, a,
	          sizeof(a));
	assert_string_equal(a, "2001:db8::1");

	const char *unk = "PROXY UNKNOWN\r\n";

	assert_int_equal(
	    proxy_parse((const unsigned char *)unk, strlen(unk), &h, &why),
	    (int)strlen(unk));
	assert_int_equal(h.local, 1);

	static const char *bad[] = {
	    "GET / HTTP/1.0\r\n",
	    "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
	    "PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n",
	    "PROXY TCP4 ::1 ::1 1 2\r\n",
	    "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
	    "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
	    "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
	    "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = proxy_parse((const unsigned char *)bad[i],
		                    strlen(bad[i]), &h, &why);

		if (r != -1 || why == NULL)
			fail_msg("accepted bad v1 \"%s\": %d", bad[i], r);
	}
	/* oversized: 107 octets without CRLF is an error, not "more" */
	char big[200];

	memset(big, 'a', sizeof(big));
	memcpy(big, "PROXY UNKNOWN ", 14);
	assert_int_equal(proxy_parse((unsigned char *)big, 106, &h, &why), 0);
	assert_int_equal(proxy_parse((unsigned char *)big, 107, &h, &why), -1);
	assert_int_equal(proxy_parse((unsigned char *)big, 200, &h, &why), -1);
	/* a CR at 106 with the LF beyond the limit */
	big[106] = '\r';
	big[107] = '\n';
	assert_int_equal(proxy_parse((unsigned char *)big, 107, &h, &why), -1);
	big[105] = '\r';
	big[106] = '\n';
	assert_int_equal(proxy_parse((unsigned char *)big, 107, &h, &why), 107);
}

static void
test_proxy_v2(void **state)
{
	unsigned char b[1200], a[64];
	struct proxy_hdr h;
	const char *why;
	char txt[64];
	size_t n;

	/* TCP over IPv4, with a TLV after the addresses and data after */
	memset(a, 0, sizeof(a));
	a[0] = 198, a[1] = 51, a[2] = 100, a[3] = 9;
	a[4] = 127, a[5] = 0, a[6] = 0, a[7] = 3;
	a[8] = 0x9c, a[9] = 0x40, a[10] = 0, a[11] = 25;
	a[12] = 0x04, a[13] = 0, a[14] = 1, a[15] = 'x'; /* TLV NOOP */
	n = v2(b, 1, 0x11, a, 16);
	memcpy(b + n, "EHLO", 4);
	check_prefixes(b, n + 4, n);
	proxy_parse(b, n + 4, &h, &why);
	assert_int_equal(h.version, 2);
	assert_int_equal(h.local, 0);
	assert_int_equal(h.len, 32);
	inet_ntop(AF_INET, &((struct sockaddr_in *)&h.src)->sin_addr, txt,
	          sizeof(txt));
	assert_string_equal(txt, "198.51.100.9");
	assert_int_equal(ntohs(((struct sockaddr_in *)&h.src)->sin_port),
	                 40000);

	/* IPv6 */
	memset(a, 0, sizeof(a));
	a[0] = 0x20, a[1] = 0x01, a[2] = 0x0d, a[3] = 0xb8, a[15] = 5;
	a[31] = 1;
	n = v2(b, 1, 0x21, a, 36);
	check_prefixes(b, n, n);
	proxy_parse(b, n, &h, &why);
	assert_int_equal(h.src.ss_family, AF_INET6);
	inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&h.src)->sin6_addr, txt,
	          sizeof(txt));
	assert_string_equal(txt, "2001:db8::5");

	/* LOCAL: no address; the block may even be empty */
	n = v2(b, 0, 0x00, a, 0);
	check_prefixes(b, n, n);
	proxy_parse(b, n, &h, &why);
	assert_int_equal(h.local, 1);
	n = v2(b, 0, 0x11, a, 12);
	assert_int_equal(proxy_parse(b, n, &h, &why), (int)n);
	assert_int_equal(h.local, 1);

	/* wrong signature, fails at the first wrong octet */
	n = v2(b, 1, 0x11, a, 12);
	b[5] = 'X';
	assert_int_equal(proxy_parse(b, 6, &h, &why), -1);
	assert_non_null(why);
	b[5] = 0x0d;
	/* version 1 in the binary form */
	b[12] = 0x11;
	assert_int_equal(proxy_parse(b, n, &h, &why), -1);
	/* command 2 */
	b[12] = 0x22;
	assert_int_equal(proxy_parse(b, n, &h, &why), -1);
	/* UDP and UNIX families */
	b[12] = 0x21;
	b[13] = 0x12;
	assert_int_equal(proxy_parse(b, n, &h, &why), -1);
	b[13] = 0x31;
	assert_int_equal(proxy_parse(b, n, &h, &why), -1);
	/* address block too short for its family: refused before it's in */
	n = v2(b, 1, 0x21, a, 12);
	assert_int_equal(proxy_parse(b, 16, &h, &why), -1);
	/* oversized: refused from the length field alone */
	n = v2(b, 1, 0x11, a, 12);
	b[14] = 0x02, b[15] = 0x10; /* 528 + 16 > 536 */
	assert_int_equal(proxy_parse(b, 16, &h, &why), -1);
	b[14] = 0xff, b[15] = 0xff;
	assert_int_equal(proxy_parse(b, 16, &h, &why), -1);
	/* exactly the limit is fine */
	memset(a, 0, sizeof(a));
	memset(b + 16, 0, PROXY_V2_MAX - 16);
	v2(b, 1, 0x11, a, 12);
	b[14] = (PROXY_V2_MAX - 16) >> 8, b[15] = (PROXY_V2_MAX - 16) & 0xff;
	assert_int_equal(proxy_parse(b, PROXY_V2_MAX - 1, &h, &why), 0);
	assert_int_equal(proxy_parse(b, PROXY_V2_MAX, &h, &why), PROXY_V2_MAX);
	/* truncated: whatever the cut, "more", never a result */
	n = v2(b, 1, 0x11, a, 12);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(proxy_parse(b, i, &h, &why), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_proxy_v1),
	    cmocka_unit_test(test_proxy_v2),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
