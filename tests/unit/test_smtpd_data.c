/*
 * test_smtpd_data.c - the DATA reader: dot-unstuffing, the one true end
 * of data (CRLF.CRLF), every smuggling variant fed whole and split at
 * every offset, NUL and long-line flags.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "smtpd.h"

struct out {
	char buf[8192];
	size_t len;
};

static void
emit(void *arg, const char *p, size_t n)
{
	struct out *o = arg;

	assert_true(o->len + n <= sizeof(o->buf));
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

/* feed in, split at `cut` (0 = whole); returns octets consumed */
static size_t
feed(const char *in, size_t len, size_t cut, struct smtpd_data *d,
     struct out *o)
{
	size_t used;

	memset(d, 0, sizeof(*d));
	memset(o, 0, sizeof(*o));
	if (cut == 0 || cut >= len)
		return smtpd_data_feed(d, in, len, emit, o);
	used = smtpd_data_feed(d, in, cut, emit, o);
	if (d->done)
		return used;
	return cut + smtpd_data_feed(d, in + cut, len - cut, emit, o);
}

static void
test_plain_and_stuffing(void **state)
{
	const char in[] = "Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n";
	struct smtpd_data d;
	struct out o;

	for (size_t cut = 0; cut < sizeof(in) - 1; cut++) {
		size_t used = feed(in, sizeof(in) - 1, cut, &d, &o);

		assert_true(d.done);
		assert_int_equal(d.flags, 0);
		assert_int_equal(used, sizeof(in) - 1 - strlen("QUIT\r\n"));
		assert_int_equal(o.len, strlen("Subject: x\r\n\r\n.dot\r\n"));
		assert_memory_equal(o.buf, "Subject: x\r\n\r\n.dot\r\n", o.len);
	}
}

static void
test_smuggling_variants(void **state)
{
	/* none of these may end the data: the smuggled MAIL is message
	 * text, and the BARE flag makes the session refuse the message */
	static const char *const variants[] = {
	    "\n.\n",   "\n.\r\n", "\r\n.\n", "\r.\r",
	    "\r.\r\n", "\r\n.\r", "\n.\r",   "\r.\n",
	};
	char in[256];

	for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
		int n =
		    snprintf(in, sizeof(in),
		             "Subject: s\r\n\r\nhello%sMAIL FROM:<evil@x>"
		             "\r\nRCPT TO:<v@y>\r\nDATA\r\nsmuggled\r\n.\r\n",
		             variants[v]);

		for (size_t cut = 0; cut < (size_t)n; cut++) {
			struct smtpd_data d;
			struct out o;
			size_t used = feed(in, n, cut, &d, &o);

			assert_true(d.done);
			/* the end is the real CRLF.CRLF at the very end */
			assert_int_equal(used, (size_t)n);
			assert_true(d.flags & SMTPD_DATA_BARE);
			assert_non_null(
			    memmem(o.buf, o.len, "MAIL FROM:<evil@x>", 18));
		}
	}
}

static void
test_nul_and_long_line(void **state)
{
	char in[1200];
	struct smtpd_data d;
	struct out o;
	size_t n;

	feed("a\0b\r\n.\r\n", 8, 0, &d, &o);
	assert_true(d.done);
	assert_true(d.flags & SMTPD_DATA_NUL);

	/* 998 octets + CRLF is the longest legal line */
	memset(in, 'x', 998);
	memcpy(in + 998, "\r\n.\r\n", 5);
	feed(in, 1003, 0, &d, &o);
	assert_true(d.done);
	assert_int_equal(d.flags & SMTPD_DATA_LONG, 0);
	memset(in, 'x', 999);
	memcpy(in + 999, "\r\n.\r\n", 5);
	n = feed(in, 1004, 500, &d, &o);
	assert_int_equal(n, 1004);
	assert_true(d.flags & SMTPD_DATA_LONG);
	/* the transparency dot does not count */
	in[0] = '.';
	memset(in + 1, 'x', 998);
	memcpy(in + 999, "\r\n.\r\n", 5);
	feed(in, 1004, 0, &d, &o);
	assert_int_equal(d.flags & SMTPD_DATA_LONG, 0);
}

static void
test_empty_and_unfinished(void **state)
{
	struct smtpd_data d;
	struct out o;

	assert_int_equal(feed(".\r\n", 3, 0, &d, &o), 3);
	assert_true(d.done);
	assert_int_equal(o.len, 0);
	assert_int_equal(feed("abc\r\n.\r", 7, 0, &d, &o), 7);
	assert_false(d.done);
	assert_int_equal(o.len, 5); /* ".\r" held back */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plain_and_stuffing),
	    cmocka_unit_test(test_smuggling_variants),
	    cmocka_unit_test(test_nul_and_long_line),
	    cmocka_unit_test(test_empty_and_unfinished),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
