/*
 * test_smtp_client.c - the pure parts of the outbound client: the reply
 * parser (table), reply -> result, EHLO capabilities, and the DATA
 * transformation (CRLF only, dot-stuffing, across chunk boundaries),
 * and smtp_client_new when copying the CA path fails (strdup is
 * replaced here so that it can be made to fail).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "config.h"
#include "smtp_client.h"

/* the executable's strdup wins over libc's for the library's calls */
static int strdup_fail;

char *
strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p;

	if (strdup_fail)
		return NULL;
	if ((p = malloc(n)) != NULL)
		memcpy(p, s, n);
	return p;
}

static const struct {
	const char *in;
	int ret; /* >0: consumed, 0: need more, -1: error */
	int code, nlines;
} replies[] = {
    {"250 ok\r\n", 8, 250, 1},
    {"250 ok\r\nextra", 8, 250, 1},
    {"250\r\n", 5, 250, 1},
    {"250-a\r\n250-b\r\n250 c\r\n", 21, 250, 3},
    {"250-a\r\n250 b\n", 13, 250, 2}, /* bare LF tolerated */
    {"250-a\r\n", 0, 0, 0},
    {"250 ok", 0, 0, 0},
    {"", 0, 0, 0},
    {"250-a\r\n251 b\r\n", -1, 0, 0}, /* code changes */
    {"25 ok\r\n", -1, 0, 0},
    {"650 ok\r\n", -1, 0, 0},
    {"190 ok\r\n", -1, 0, 0},
    {"2x0 ok\r\n", -1, 0, 0},
    {"250xok\r\n", -1, 0, 0},
    {"\r\n", -1, 0, 0},
};

static void
test_reply_table(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
		struct smtp_reply rep;
		const char *why = NULL;
		int r = smtp_reply_parse(replies[i].in, strlen(replies[i].in),
		                         &rep, &why);

		if (r != replies[i].ret)
			fail_msg("case %zu (%s): got %d want %d", i,
			         replies[i].in, r, replies[i].ret);
		if (r > 0) {
			assert_int_equal(rep.code, replies[i].code);
			assert_int_equal(rep.nlines, replies[i].nlines);
		}
		if (r < 0)
			assert_non_null(why);
	}
}

static void
test_reply_long_line(void **state)
{
	char buf[2000];
	struct smtp_reply rep;

	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "250 ", 4);
	assert_int_equal(smtp_reply_parse(buf, sizeof(buf), &rep, NULL), -1);
	/* 511 octets + LF is fine, more is not */
	buf[SMTP_REPLY_LINE_MAX - 1] = '\n';
	assert_int_equal(smtp_reply_parse(buf, sizeof(buf), &rep, NULL),
	                 SMTP_REPLY_LINE_MAX);
}

static void
test_reply_too_many_lines(void **state)
{
	char buf[SMTP_REPLY_LINES_MAX * 8 + 16];
	size_t o = 0;
	struct smtp_reply rep;
	int i;

	for (i = 0; i < SMTP_REPLY_LINES_MAX; i++) {
		memcpy(buf + o, "250-a\r\n", 7);
		o += 7;
	}
	memcpy(buf + o, "250 a\r\n", 7);
	o += 7;
	assert_int_equal(smtp_reply_parse(buf, o, &rep, NULL), -1);
}

static void
test_reply_result(void **state)
{
	const char *in = "550-5.1.1 no such\r\n550 5.1.1 user\x01 here\r\n";
	struct smtp_reply rep;
	struct result r;

	assert_true(smtp_reply_parse(in, strlen(in), &rep, NULL) > 0);
	smtp_reply_result(in, &rep, &r);
	assert_int_equal(r.code, 550);
	assert_string_equal(r.enh, "5.1.1");
	assert_string_equal(r.text, "no such user? here");

	in = "250 2.0.0\r\n";
	assert_true(smtp_reply_parse(in, strlen(in), &rep, NULL) > 0);
	smtp_reply_result(in, &rep, &r);
	assert_string_equal(r.enh, "2.0.0");
	assert_string_equal(r.text, "");

	/* a code of another class is not an enhanced code */
	in = "451 5.1.1 odd\r\n";
	assert_true(smtp_reply_parse(in, strlen(in), &rep, NULL) > 0);
	smtp_reply_result(in, &rep, &r);
	assert_string_equal(r.enh, "");
	assert_string_equal(r.text, "5.1.1 odd");
}

static void
test_caps(void **state)
{
	const char *in = "250-mx1 hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
	                 "250-8bitmime\r\n250-DSN\r\n250-STARTTLS\r\n"
	                 "250 SMTPUTF8\r\n";
	struct smtp_reply rep;
	unsigned long long size;
	int caps;

	assert_true(smtp_reply_parse(in, strlen(in), &rep, NULL) > 0);
	caps = smtp_client_caps(in, &rep, &size);
	assert_int_equal(caps, SMTP_CAP_PIPELINING | SMTP_CAP_SIZE |
	                           SMTP_CAP_8BITMIME | SMTP_CAP_DSN |
	                           SMTP_CAP_STARTTLS | SMTP_CAP_SMTPUTF8);
	assert_int_equal(size, 1000);
	/* the greeting line is not a keyword */
	in = "250-PIPELINING\r\n250 ok\r\n";
	assert_true(smtp_reply_parse(in, strlen(in), &rep, NULL) > 0);
	assert_int_equal(smtp_client_caps(in, &rep, &size), 0);
}

static const struct {
	const char *in, *out;
} bodies[] = {
    {"a\r\nb\r\n", "a\r\nb\r\n.\r\n"},
    {"a\nb\n", "a\r\nb\r\n.\r\n"},
    {"a\rb\r", "a\r\nb\r\n.\r\n"},
    {"a", "a\r\n.\r\n"},
    {".a\r\n..\r\n.\r\n", "..a\r\n...\r\n..\r\n.\r\n"},
    {"x\n.\n", "x\r\n..\r\n.\r\n"}, /* smuggling form */
    {"x\r\n.\r", "x\r\n..\r\n.\r\n"},
    {"x\r\r\n", "x\r\n\r\n.\r\n"},
    {"", ".\r\n"},
};

static void
test_body_encode(void **state)
{
	size_t i, split;

	for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		size_t len = strlen(bodies[i].in);

		/* every split point: state must carry across chunks */
		for (split = 0; split <= len; split++) {
			char out[256];
			size_t o = 0;
			int st = 0;

			o += smtp_client_body_encode(&st, bodies[i].in, split,
			                             out + o);
			o += smtp_client_body_encode(&st, bodies[i].in + split,
			                             len - split, out + o);
			o += smtp_client_body_end(&st, out + o);
			out[o] = '\0';
			if (strcmp(out, bodies[i].out) != 0)
				fail_msg("case %zu split %zu: got [%s]", i,
				         split, out);
		}
	}
}

static void
cb_never(void *arg, struct smtp_client *c, const struct result *r)
{
	(void)c;
	(void)r;
	++*(int *)arg;
}

/* a failed copy of tls_ca: no client, never one that verifies against
 * the system store instead of the configured CA */
static void
test_new_ca_copy_fails(void **state)
{
	struct ev_loop *loop = ev_loop_new(0);
	struct config cfg;
	struct smtp_client_params p;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&p.addr;
	struct smtp_client *c;
	char ca[] = "/etc/backmx/ca.pem";
	int calls = 0;

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	cfg.tls_ca = ca;
	memset(&p, 0, sizeof(p));
	p.cfg = &cfg;
	p.helo = "mx2.test.example";
	p.mxhost = "mx1.test.example";
	p.tls = POLICY_TLS_VERIFY;
	s4->sin_family = AF_INET;
	s4->sin_port = htons(9);
	s4->sin_addr.s_addr = htonl(0x7f000001);
	strdup_fail = 1;
	c = smtp_client_new(loop, &p, cb_never, &calls);
	strdup_fail = 0;
	assert_null(c);
	/* and with memory, a client (freed before it runs) */
	c = smtp_client_new(loop, &p, cb_never, &calls);
	assert_non_null(c);
	smtp_client_free(c);
	assert_int_equal(calls, 0);
	ev_loop_destroy(loop);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reply_table),
	    cmocka_unit_test(test_reply_long_line),
	    cmocka_unit_test(test_reply_too_many_lines),
	    cmocka_unit_test(test_reply_result),
	    cmocka_unit_test(test_caps),
	    cmocka_unit_test(test_body_encode),
	    cmocka_unit_test(test_new_ca_copy_fails),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
