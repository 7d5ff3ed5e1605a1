/*
 * test_loop.c - policy/loop.c: Received counting over any split of the
 * input (whole, byte by byte, every two-way split, random splits), folded
 * fields, body lines not counted, the 554 5.4.6 verdicts; and the RFC
 * 5321 5.1 MX cut (own name, alias, shuffling, self best, null MX).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cmocka needs the headers above first */
#include <cmocka.h>

#include "policy.h"

#define HOST "mx2.example.net"

static const struct hdr_case {
	const char *msg;
	int received, by_us;
} hdr_cases[] = {
    {"Received: from a.example by b.example; Tue, 2 Jan 2024 10:00:00 "
     "+0100\r\nSubject: x\r\n\r\nbody\r\n",
     1, 0},
    {"Received: from c.example (c.example [192.0.2.1]) by mx2.example.net "
     "with ESMTP id 4F2A; Tue, 2 Jan 2024 10:00:00 +0100\r\n"
     "Received: from d.example by mx2.example.net; Tue, 2 Jan 2024\r\n"
     "\r\n",
     2, 2},
    /* folded: "by" on a continuation line */
    {"Received: from a.example\r\n\tby MX2.Example.Net\r\n\twith ESMTP; "
     "date\r\nFrom: a@b\r\n\r\n",
     1, 1},
    {"Received: from a.example (helo\r\n  a.example)\r\n by\r\n "
     "mx2.example.net; date\r\n\r\n",
     1, 1},
    /* field names are case-insensitive; obsolete WSP before ":" */
    {"RECEIVED: from a by mx2.example.net; d\r\nreceived : from b by c; d"
     "\r\nReCeIvEd:from x by y;d\r\n\r\n",
     3, 1},
    /* look-alike names are not Received */
    {"Received-SPF: pass\r\nX-Received: from a by mx2.example.net; d\r\n"
     "Receive: x\r\nReceived\r\n\r\n",
     0, 0},
    /* body lines are never counted */
    {"Subject: hi\r\n\r\nReceived: from x by mx2.example.net; d\r\n"
     "Received: from x by mx2.example.net; d\r\n",
     0, 0},
    {"\r\nReceived: from x by mx2.example.net; d\r\n", 0, 0},
    /* "by" in a comment or as the from domain */
    {"Received: from a (by mx2.example.net) by other.example; d\r\n\r\n", 1, 0},
    {"Received: from by (by [192.0.2.1]) by mx2.example.net; d\r\n\r\n", 1, 1},
    {"Received: from a (x (nested) by mx2.example.net) by o.example; d\r\n"
     "\r\n",
     1, 0},
    {"Received: from a by mx2.example.net.; d\r\n\r\n", 1, 1},
    {"Received: from a by mx2.example.net.evil.example; d\r\n"
     "Received: from a by xmx2.example.net; d\r\n\r\n",
     2, 0},
    {"Received: from a with ESMTP; date by mx2.example.net\r\n\r\n", 1, 0},
    /* no empty line: the header runs to the end */
    {"Received: from a by mx2.example.net; d\r\nReceived: from b by "
     "mx2.example.net; d",
     2, 2},
    /* LF-only lines (the server refuses them, the scanner copes) */
    {"Received: from a by mx2.example.net; d\nReceived: x\n\nReceived: y\n", 2,
     1},
    /* a field longer than the buffer still counts */
    {"Received: from "
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     ".example by mx2.example.net; d\r\nReceived: x\r\n\r\n",
     2, 0},
    /* continuation before any field, bare CR at a line start */
    {" stray\r\nReceived: from a by mx2.example.net; d\r\n\rX: y\r\n\r\n", 1,
     1},
    {"", 0, 0},
};

static void
scan_parts(const char *msg, size_t len, const size_t *cuts, int ncuts,
           int *received, int *by_us)
{
	struct policy_hdrscan h;
	struct result res;
	size_t at = 0;

	policy_hdrscan_init(&h, HOST);
	for (int i = 0; i < ncuts; i++) {
		policy_hdrscan_feed(&h, msg + at, cuts[i] - at);
		at = cuts[i];
	}
	policy_hdrscan_feed(&h, msg + at, len - at);
	policy_hdrscan_check(&h, 0, &res);
	*received = h.received;
	*by_us = h.received_by_us;
}

static void
check_split(size_t k, const char *how, const size_t *cuts, int ncuts)
{
	const struct hdr_case *c = &hdr_cases[k];
	int r, b;

	scan_parts(c->msg, strlen(c->msg), cuts, ncuts, &r, &b);
	if (r != c->received || b != c->by_us)
		fail_msg("case %zu (%s): received %d by_us %d, want %d %d", k,
		         how, r, b, c->received, c->by_us);
}

static void
test_loop_hdrscan_splits(void **state)
{
	static size_t cuts[4096];
	unsigned seed = 12345;

	for (size_t k = 0; k < sizeof(hdr_cases) / sizeof(hdr_cases[0]); k++) {
		size_t len = strlen(hdr_cases[k].msg), i;
		int n;

		check_split(k, "one piece", cuts, 0);
		for (i = 1; i < len; i++)
			cuts[i - 1] = i;
		check_split(k, "byte by byte", cuts,
		            len > 0 ? (int)len - 1 : 0);
		for (i = 1; i < len; i++) {
			cuts[0] = i;
			check_split(k, "two pieces", cuts, 1);
		}
		for (int round = 0; round < 200 && len > 1; round++) {
			size_t at = 0;

			n = 0;
			for (;;) {
				seed = seed * 1103515245u + 12345u;
				at += 1 + (seed >> 16) % 17;
				if (at >= len)
					break;
				cuts[n++] = at;
			}
			check_split(k, "random pieces", cuts, n);
		}
	}
}

static void
test_loop_hdrscan_check(void **state)
{
	struct policy_hdrscan h;
	struct result res;
	const char *three = "Received: a\r\nReceived: b\r\nReceived: c\r\n\r\n";
	const char *us = "Received: from x by mx2.example.net; d\r\n";

	policy_hdrscan_init(&h, HOST);
	policy_hdrscan_feed(&h, three, strlen(three));
	assert_int_equal(policy_hdrscan_check(&h, 3, &res), 0);
	assert_int_equal(policy_hdrscan_check(&h, 2, &res), -1);
	assert_int_equal(res.code, 554);
	assert_string_equal(res.enh, "5.4.6");
	assert_non_null(strstr(res.text, "hops"));
	/* data after the header changes nothing */
	policy_hdrscan_feed(&h, three, strlen(three));
	assert_int_equal(h.received, 3);

	/* one earlier pass through us is fine, two is a loop */
	policy_hdrscan_init(&h, HOST);
	policy_hdrscan_feed(&h, us, strlen(us));
	assert_int_equal(policy_hdrscan_check(&h, 100, &res), 0);
	policy_hdrscan_feed(&h, us, strlen(us));
	policy_hdrscan_feed(&h, "\r\n", 2);
	assert_int_equal(policy_hdrscan_check(&h, 100, &res), -1);
	assert_int_equal(res.code, 554);
	assert_string_equal(res.enh, "5.4.6");
	assert_non_null(strstr(res.text, "loop"));

	/* without a host name only the count matters */
	policy_hdrscan_init(&h, NULL);
	policy_hdrscan_feed(&h, us, strlen(us));
	policy_hdrscan_feed(&h, us, strlen(us));
	assert_int_equal(policy_hdrscan_check(&h, 100, &res), 0);
	assert_int_equal(h.received, 2);
	assert_int_equal(h.received_by_us, 0);
}

/* ------------------------------------------------------------------ */
/* MX cut */

static struct policy *pol;
static unsigned rnd_state;

static unsigned
rnd_zero(unsigned n)
{
	return 0;
}

static unsigned
rnd_lcg(unsigned n)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return (rnd_state >> 16) % n;
}

static int
setup(void **state)
{
	pol = policy_new(HOST);
	policy_add_alias(pol, "mx.provider.net");
	return pol == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	policy_free(pol);
	return 0;
}

static int
mx_fill(struct policy_mx *mx, const char *spec)
{
	/* "10 a.example, 20 mx2.example.net" */
	char buf[512], *tok, *save;
	int n = 0;

	snprintf(buf, sizeof(buf), "%s", spec);
	memset(mx, 0, sizeof(*mx) * 16);
	for (tok = strtok_r(buf, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		char host[256] = "";

		if (sscanf(tok, "%d %255s", &mx[n].pref, host) < 1)
			fail_msg("bad spec %s", spec);
		snprintf(mx[n].host, sizeof(mx[n].host), "%s", host);
		n++;
	}
	return n;
}

static void
mx_expect(const char *spec, enum policy_mx_verdict want, const char *order)
{
	struct policy_mx mx[16];
	char got[512] = "";
	int n = mx_fill(mx, spec);

	enum policy_mx_verdict v = policy_mx_cut(pol, mx, &n, rnd_zero);
	for (int i = 0; i < n; i++) {
		if (i > 0)
			strcat(got, ",");
		strcat(got, mx[i].host);
	}
	if (v != want || strcmp(got, order) != 0)
		fail_msg("%s: verdict %d \"%s\", want %d \"%s\"", spec, v, got,
		         want, order);
}

static void
test_loop_mx_cut(void **state)
{
	/* self by host name: drop our level and worse */
	mx_expect("10 primary.example, 20 mx2.example.net, 30 third.example",
	          POLICY_MX_OK, "primary.example");
	/* by alias, in any case, with a final dot */
	mx_expect("10 primary.example, 20 MX.Provider.NET.", POLICY_MX_OK,
	          "primary.example");
	/* unsorted input comes out sorted */
	mx_expect("30 c.example, 10 a.example, 20 b.example", POLICY_MX_OK,
	          "a.example,b.example,c.example");
	/* self not in the list: everything stays */
	mx_expect("20 b.example, 10 a.example", POLICY_MX_OK,
	          "a.example,b.example");
	/* equal preference with us is dropped too */
	mx_expect("10 a.example, 10 mx2.example.net, 5 z.example", POLICY_MX_OK,
	          "z.example");
	/* the lowest of several self levels counts */
	mx_expect("10 a.example, 20 mx2.example.net, 30 mx.provider.net, "
	          "5 z.example, 25 y.example",
	          POLICY_MX_OK, "z.example,a.example");
	/* we are the best */
	mx_expect("10 mx2.example.net", POLICY_MX_SELF_BEST, "");
	mx_expect("10 mx2.example.net, 20 other.example", POLICY_MX_SELF_BEST,
	          "");
	mx_expect("10 other.example, 10 mx.provider.net", POLICY_MX_SELF_BEST,
	          "");
	/* null MX, empty */
	mx_expect("0 .", POLICY_MX_NULL, "");
	mx_expect("0", POLICY_MX_NULL, "");
	mx_expect("0 ., 10 a.example", POLICY_MX_OK, "a.example");
	mx_expect("", POLICY_MX_EMPTY, "");
}

static void
test_loop_mx_marked(void **state)
{
	struct policy_mx mx[16];
	int n = mx_fill(mx, "10 a.example, 20 b.example, 30 c.example");

	/* the caller matched b.example by address */
	mx[1].self = 1;
	assert_int_equal(policy_mx_cut(pol, mx, &n, rnd_zero), POLICY_MX_OK);
	assert_int_equal(n, 1);
	assert_string_equal(mx[0].host, "a.example");
	n = 0;
	assert_int_equal(policy_mx_cut(pol, mx, &n, rnd_zero), POLICY_MX_EMPTY);
	/* rnd NULL falls back to random() */
	n = mx_fill(mx, "10 a.example, 10 b.example");
	assert_int_equal(policy_mx_cut(pol, mx, &n, NULL), POLICY_MX_OK);
	assert_int_equal(n, 2);
}

static void
test_loop_mx_shuffle(void **state)
{
	const char *spec = "20 mx2.example.net, 10 a.example, 10 b.example, "
	                   "10 c.example, 5 first.example, 15 last.example";
	int seen[6] = {0}, i;

	rnd_state = 1;
	for (int round = 0; round < 600; round++) {
		struct policy_mx mx[16];
		int n = mx_fill(mx, spec), idx;

		assert_int_equal(policy_mx_cut(pol, mx, &n, rnd_lcg),
		                 POLICY_MX_OK);
		assert_int_equal(n, 5);
		assert_string_equal(mx[0].host, "first.example");
		assert_string_equal(mx[4].host, "last.example");
		for (i = 1; i <= 3; i++)
			assert_int_equal(mx[i].pref, 10);
		/* which of the 6 orders of a, b, c */
		idx =
		    (mx[1].host[0] - 'a') * 2 + (mx[2].host[0] > mx[3].host[0]);
		assert_true(idx >= 0 && idx < 6);
		seen[idx]++;
	}
	for (i = 0; i < 6; i++)
		if (seen[i] < 50)
			fail_msg("order %d seen %d times in 600", i, seen[i]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_loop_hdrscan_splits),
	    cmocka_unit_test(test_loop_hdrscan_check),
	    cmocka_unit_test(test_loop_mx_cut),
	    cmocka_unit_test(test_loop_mx_marked),
	    cmocka_unit_test(test_loop_mx_shuffle),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
