/*
 * test_client.c - relay/client.c, the pure parts: the multi-line reply
 * parser (table: codes, continuation, enhanced codes, EHLO keywords,
 * bounds, malformed input, every split point needing more input), the
 * reply -> result conversion, and the DATA encoder (CRLF normalisation,
 * dot-stuffing, the end marker) at every chunk split.
 *
 * client.c is compiled into this test so that it runs whichever client
 * the Makefile builds into the library.
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

#include "../../relay/client.c"

struct parse_case {
	const char *in;
	int ret;		/* > 0: whole input; 0 more; -1 bad */
	int code;
	const char *enh;
	const char *text;
	int caps;
	uint64_t size;
};

static const struct parse_case parse_cases[] = {
	{ "250 OK\r\n", 1, 250, "", "OK", 0, 0 },
	{ "250\r\n", 1, 250, "", "", 0, 0 },
	{ "220 mx ESMTP\n", 1, 220, "", "mx ESMTP", 0, 0 },
	{ "550 5.1.1 no such user\r\n", 1, 550, "5.1.1", "no such user", 0,
	  0 },
	{ "451 4.3.0 try later\r\n", 1, 451, "4.3.0", "try later", 0, 0 },
	/* enhanced code of another class is text */
	{ "550 4.1.1 odd\r\n", 1, 550, "", "4.1.1 odd", 0, 0 },
	{ "250 2.0.0\r\n", 1, 250, "2.0.0", "", 0, 0 },
	{ "250 2.1234.0 x\r\n", 1, 250, "", "2.1234.0 x", 0, 0 },
	{ "250-mx hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
	  "250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250-STARTTLS\r\n"
	  "250 ENHANCEDSTATUSCODES\r\n",
	  1, 250, "", NULL,
	  CLIENT_CAP_PIPELINING | CLIENT_CAP_SIZE | CLIENT_CAP_8BITMIME |
	      CLIENT_CAP_DSN | CLIENT_CAP_SMTPUTF8 | CLIENT_CAP_STARTTLS,
	  1000 },
	{ "250-mx\r\n250-pipelining\r\n250 size\r\n", 1, 250, "", NULL,
	  CLIENT_CAP_PIPELINING | CLIENT_CAP_SIZE, 0 },
	/* a keyword that merely starts like one */
	{ "250-mx\r\n250 DSNX\r\n", 1, 250, "", NULL, 0, 0 },
	{ "250-mx\r\n250 SIZE 99999999999999999999999\r\n", 1, 250, "", NULL,
	  CLIENT_CAP_SIZE, 0 /* not checked below when NULL text */ },
	/* incomplete */
	{ "", 0, 0, NULL, NULL, 0, 0 },
	{ "25", 0, 0, NULL, NULL, 0, 0 },
	{ "250 OK", 0, 0, NULL, NULL, 0, 0 },
	{ "250-first\r\n", 0, 0, NULL, NULL, 0, 0 },
	{ "250-first\r\n250-second\r\n", 0, 0, NULL, NULL, 0, 0 },
	/* malformed */
	{ "hello\r\n", -1, 0, NULL, NULL, 0, 0 },
	{ "25\r\n", -1, 0, NULL, NULL, 0, 0 },
	{ "2500 x\r\n", -1, 0, NULL, NULL, 0, 0 },
	{ "199 x\r\n", -1, 0, NULL, NULL, 0, 0 },
	{ "600 x\r\n", -1, 0, NULL, NULL, 0, 0 },
	{ "250-a\r\n251 b\r\n", -1, 0, NULL, NULL, 0, 0 },
	{ "250_x\r\n", -1, 0, NULL, NULL, 0, 0 },
	{ "\r\n", -1, 0, NULL, NULL, 0, 0 },
};

static void
test_parse_table(void **state)
{
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]);
	     i++) {
		const struct parse_case *c = &parse_cases[i];
		struct client_reply rep;
		const char *why;
		int r = client_reply_parse(c->in, strlen(c->in), &rep, &why);

		if (c->ret > 0) {
			if (r != (int)strlen(c->in))
				fail_msg("case %zu (%s): %d", i, c->in, r);
			assert_int_equal(rep.code, c->code);
			assert_string_equal(rep.enh, c->enh);
			if (c->text != NULL)
				assert_string_equal(rep.text, c->text);
			assert_int_equal(rep.caps, c->caps);
			if (c->size != 0)
				assert_int_equal(rep.size, c->size);
		} else if (r != c->ret)
			fail_msg("case %zu (%s): %d, want %d", i, c->in, r,
				 c->ret);
		if (r < 0)
			assert_true(why[0] != '\0');
	}
}

/* only the first reply of a pipelined burst is consumed */
static void
test_parse_pipelined(void **state)
{
	const char *in = "250 2.1.0 ok\r\n550 5.1.1 no\r\n354 go\r\n";
	struct client_reply rep;
	const char *why, *p = in;
	int codes[3], n;

	for (int i = 0; i < 3; i++) {
		n = client_reply_parse(p, strlen(p), &rep, &why);
		assert_true(n > 0);
		codes[i] = rep.code;
		p += n;
	}
	assert_int_equal(codes[0], 250);
	assert_int_equal(codes[1], 550);
	assert_int_equal(codes[2], 354);
	assert_int_equal(*p, '\0');
}

/* a complete reply cut anywhere needs more input, never more or less */
static void
test_parse_every_prefix(void **state)
{
	const char *in = "250-mx.example hello\r\n250-SIZE 5\r\n250 DSN\r\n";
	struct client_reply rep;
	const char *why;
	size_t len = strlen(in);

	for (size_t k = 0; k < len; k++)
		assert_int_equal(client_reply_parse(in, k, &rep, &why), 0);
	assert_int_equal(client_reply_parse(in, len, &rep, &why), (int)len);
	assert_int_equal(rep.nlines, 3);
}

static void
test_parse_bounds(void **state)
{
	char buf[2048];
	struct client_reply rep;
	const char *why;

	/* a 512-octet line with CRLF is fine; 513 is not */
	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "250 ", 4);
	memcpy(buf + 510, "\r\n", 2);
	assert_int_equal(client_reply_parse(buf, 512, &rep, &why), 512);
	assert_true(strlen(rep.text) < sizeof(rep.text));
	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "250 ", 4);
	memcpy(buf + 511, "\r\n", 2);
	assert_int_equal(client_reply_parse(buf, 513, &rep, &why), -1);
	/* no line end within the limit: bad, not "need more" forever */
	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "250 ", 4);
	assert_int_equal(client_reply_parse(buf, 600, &rep, &why), -1);
	assert_int_equal(client_reply_parse(buf, 511, &rep, &why), 0);
	/* non-printable text is replaced */
	assert_int_equal(client_reply_parse("250 a\x01\x80z\r\n", 10, &rep,
					    &why), 10);
	assert_string_equal(rep.text, "a??z");
}

static void
test_parse_too_many_lines(void **state)
{
	char *buf = malloc(16 * (CLIENT_LINES_MAX + 2));
	struct client_reply rep;
	const char *why;
	size_t len = 0;

	for (int i = 0; i < CLIENT_LINES_MAX; i++)
		len += (size_t)sprintf(buf + len, "250-x\r\n");
	len += (size_t)sprintf(buf + len, "250 x\r\n");
	assert_int_equal(client_reply_parse(buf, len, &rep, &why), -1);
	/* exactly the limit is fine */
	len = 0;
	for (int i = 0; i < CLIENT_LINES_MAX - 1; i++)
		len += (size_t)sprintf(buf + len, "250-x\r\n");
	len += (size_t)sprintf(buf + len, "250 x\r\n");
	assert_int_equal(client_reply_parse(buf, len, &rep, &why), (int)len);
	free(buf);
}

static void
test_reply_result(void **state)
{
	struct client_reply rep;
	struct result r;
	const char *why;

	client_reply_parse("451 try later\r\n", 15, &rep, &why);
	client_reply_result(&rep, &r);
	assert_int_equal(r.code, 451);
	assert_string_equal(r.enh, "4.0.0");
	assert_string_equal(r.text, "try later");
	client_reply_parse("550 5.7.1 no\r\n", 14, &rep, &why);
	client_reply_result(&rep, &r);
	assert_string_equal(r.enh, "5.7.1");
	assert_string_equal(r.text, "no");
}

struct body_case {
	const char *in, *out;
};

static const struct body_case body_cases[] = {
	{ "", ".\r\n" },
	{ "a\r\n", "a\r\n.\r\n" },
	{ "a", "a\r\n.\r\n" },
	{ "a\nb\n", "a\r\nb\r\n.\r\n" },
	{ "a\rb\r", "a\r\nb\r\n.\r\n" },
	{ "a\r\r\nb", "a\r\n\r\nb\r\n.\r\n" },
	{ "a\n\rb", "a\r\n\r\nb\r\n.\r\n" },
	{ ".\r\n", "..\r\n.\r\n" },
	{ ".a\r\n.\r\n..\r\n", "..a\r\n..\r\n...\r\n.\r\n" },
	{ "x.\r\n.y", "x.\r\n..y\r\n.\r\n" },
	/* smuggling: the bare LF / CR forms of <LF>.<LF> are neutralised */
	{ "a\n.\nb", "a\r\n..\r\nb\r\n.\r\n" },
	{ "a\r.\rb", "a\r\n..\r\nb\r\n.\r\n" },
	{ "a\r\n.\nb", "a\r\n..\r\nb\r\n.\r\n" },
};

/* encode in at split points s1 < s2 (three calls) */
static char *
body_encode3(const char *in, size_t s1, size_t s2, size_t *olen)
{
	size_t len = strlen(in);
	char *out = malloc(2 * len + 8);
	int st = 0;
	size_t o = 0;

	o += client_body_encode(&st, in, s1, out + o);
	o += client_body_encode(&st, in + s1, s2 - s1, out + o);
	o += client_body_encode(&st, in + s2, len - s2, out + o);
	o += client_body_end(&st, out + o);
	*olen = o;
	return out;
}

static void
test_body_table(void **state)
{
	for (size_t i = 0; i < sizeof(body_cases) / sizeof(body_cases[0]);
	     i++) {
		const struct body_case *c = &body_cases[i];
		size_t len = strlen(c->in);

		for (size_t s1 = 0; s1 <= len; s1++)
			for (size_t s2 = s1; s2 <= len; s2++) {
				size_t olen;
				char *out = body_encode3(c->in, s1, s2, &olen);

				if (olen != strlen(c->out) ||
				    memcmp(out, c->out, olen) != 0)
					fail_msg("case %zu split %zu/%zu: "
						 "%.*s", i, s1, s2, (int)olen,
						 out);
				free(out);
			}
	}
}

/* invariants on random input: only CRLF line ends, no lone "." line */
static void
test_body_random(void **state)
{
	static const char alphabet[] = "\r\n.ab";
	char in[64];
	unsigned seed = 12345;

	for (int round = 0; round < 20000; round++) {
		size_t len = (size_t)(rand_r(&seed) % 40), olen, dots = 0;
		char *out;

		for (size_t i = 0; i < len; i++)
			in[i] = alphabet[rand_r(&seed) % 5];
		in[len] = '\0';
		out = body_encode3(in, len / 3, len / 2, &olen);
		assert_true(olen <= 2 * len + 5);
		for (size_t i = 0; i < olen; i++) {
			if (out[i] == '\r')
				assert_true(i + 1 < olen && out[i + 1] == '\n');
			if (out[i] == '\n')
				assert_true(i > 0 && out[i - 1] == '\r');
			if (out[i] == '.' && (i == 0 || out[i - 1] == '\n') &&
			    i + 3 < olen && out[i + 1] == '\r')
				dots++;	/* a "." line before the end */
		}
		assert_int_equal(dots, 0);
		assert_true(olen >= 3 && memcmp(out + olen - 3, ".\r\n", 3) == 0);
		assert_true(olen == 3 || (out[olen - 5] == '\r' &&
					  out[olen - 4] == '\n'));
		free(out);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_table),
		cmocka_unit_test(test_parse_pipelined),
		cmocka_unit_test(test_parse_every_prefix),
		cmocka_unit_test(test_parse_bounds),
		cmocka_unit_test(test_parse_too_many_lines),
		cmocka_unit_test(test_reply_result),
		cmocka_unit_test(test_body_table),
		cmocka_unit_test(test_body_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
