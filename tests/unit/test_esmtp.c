/*
 * test_esmtp.c - policy/esmtp.c: MAIL and RCPT parameters, NOTIFY lists,
 * xtext decoding and encoding; every refusal with its exact reply.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "esmtp.h"
#include "spool.h"

/* the envelope takes these values as they are */
_Static_assert(ESMTP_BODY_8BITMIME == SPOOL_BODY_8BITMIME, "body");
_Static_assert(ESMTP_RET_HDRS == SPOOL_RET_HDRS, "ret");
_Static_assert(ESMTP_NOTIFY_DELAY == SPOOL_NOTIFY_DELAY, "notify");

static int
mail(const char *params, struct esmtp_mail *m, struct result *res)
{
	static char buf[2048];

	snprintf(buf, sizeof(buf), "%s", params);
	return esmtp_mail_params(buf, m, res);
}

static int
rcpt(const char *params, struct esmtp_rcpt *r, struct result *res)
{
	static char buf[2048];

	snprintf(buf, sizeof(buf), "%s", params);
	return esmtp_rcpt_params(buf, r, res);
}

/* mail_refused - the parameters are refused with exactly this reply */
static void
mail_refused(const char *params, int code, const char *text)
{
	struct esmtp_mail m;
	struct result res;

	memset(&res, 0, sizeof(res));
	assert_int_equal(mail(params, &m, &res), -1);
	assert_int_equal(res.code, code);
	assert_string_equal(res.enh, "5.5.4");
	assert_string_equal(res.text, text);
}

static void
rcpt_refused(const char *params, int code, const char *text)
{
	struct esmtp_rcpt r;
	struct result res;

	memset(&res, 0, sizeof(res));
	assert_int_equal(rcpt(params, &r, &res), -1);
	assert_int_equal(res.code, code);
	assert_string_equal(res.enh, "5.5.4");
	assert_string_equal(res.text, text);
}

static void
test_mail_none(void **state)
{
	struct esmtp_mail m;
	struct result res;

	assert_int_equal(mail("", &m, &res), 0);
	assert_int_equal(m.size, 0);
	assert_int_equal(m.body, ESMTP_BODY_7BIT);
	assert_int_equal(m.ret, ESMTP_RET_NONE);
	assert_int_equal(m.smtputf8, 0);
	assert_null(m.envid);
	assert_int_equal(mail("   ", &m, &res), 0);
}

static void
test_mail_all(void **state)
{
	struct esmtp_mail m;
	struct result res;

	assert_int_equal(mail(" SIZE=12345 body=8bitmime SMTPUTF8 RET=hdrs "
	                      "ENVID=QQ+2B314159",
	                      &m, &res),
	                 0);
	assert_int_equal(m.size, 12345);
	assert_int_equal(m.body, ESMTP_BODY_8BITMIME);
	assert_int_equal(m.smtputf8, 1);
	assert_int_equal(m.ret, ESMTP_RET_HDRS);
	assert_string_equal(m.envid, "QQ+2B314159");
	assert_int_equal(mail(" RET=FULL BODY=7BIT", &m, &res), 0);
	assert_int_equal(m.ret, ESMTP_RET_FULL);
	assert_int_equal(m.body, ESMTP_BODY_7BIT);
	/* the largest SIZE that fits */
	assert_int_equal(mail(" SIZE=18446744073709551615", &m, &res), 0);
	assert_true(m.size == 18446744073709551615ull);
}

static void
test_mail_size_bad(void **state)
{
	mail_refused(" SIZE=", 501, "Bad SIZE parameter");
	mail_refused(" SIZE=-1", 501, "Bad SIZE parameter");
	mail_refused(" SIZE=+1", 501, "Bad SIZE parameter");
	mail_refused(" SIZE=12k", 501, "Bad SIZE parameter");
	mail_refused(" SIZE=18446744073709551616", 501, "Bad SIZE parameter");
	mail_refused(" SIZE=1 SIZE=2", 501, "Bad SIZE parameter");
	/* SIZE without a value is not our SIZE */
	mail_refused(" SIZE", 555, "Unsupported option: SIZE");
}

static void
test_mail_duplicates_and_values(void **state)
{
	mail_refused(" BODY=7BIT BODY=8BITMIME", 501, "Duplicate BODY");
	mail_refused(" BODY=BINARYMIME", 501, "Unsupported BODY type");
	mail_refused(" SMTPUTF8 SMTPUTF8", 501, "Duplicate SMTPUTF8");
	mail_refused(" SMTPUTF8=yes", 555, "Unsupported option: SMTPUTF8");
	mail_refused(" RET=FULL RET=HDRS", 501, "Duplicate RET");
	mail_refused(" RET=BODY", 501, "Bad RET parameter");
	mail_refused(" AUTH=<>", 555, "Unsupported option: AUTH");
	mail_refused(" NOTIFY=NEVER", 555, "Unsupported option: NOTIFY");
}

static void
test_mail_envid(void **state)
{
	char big[200];

	mail_refused(" ENVID=a=b", 501, "Bad ENVID parameter");
	mail_refused(" ENVID=ab+2", 501, "Bad ENVID parameter");
	mail_refused(" ENVID=ab+2b", 501, "Bad ENVID parameter");
	mail_refused(" ENVID=x ENVID=y", 501, "Bad ENVID parameter");
	memset(big, 'x', sizeof(big));
	memcpy(big, " ENVID=", 7);
	big[7 + ESMTP_ENVID_MAX + 1] = '\0';
	mail_refused(big, 501, "Bad ENVID parameter");
	big[7 + ESMTP_ENVID_MAX] = '\0';
	{
		struct esmtp_mail m;
		struct result res;

		assert_int_equal(mail(big, &m, &res), 0);
		assert_int_equal(strlen(m.envid), ESMTP_ENVID_MAX);
	}
}

static void
test_mail_too_many(void **state)
{
	char buf[512] = "";
	int i;

	for (i = 0; i < ESMTP_MAIL_PARAMS_MAX; i++)
		strcat(buf, " X=1");
	/* 16 unknown ones: counted first, refused for being unknown */
	mail_refused(buf, 555, "Unsupported option: X");
	strcat(buf, " X=1");
	mail_refused(buf, 501, "Too many parameters");
}

static void
test_mail_long_unknown_name(void **state)
{
	char buf[300], want[100];

	memset(buf, 'K', sizeof(buf));
	buf[0] = ' ';
	buf[sizeof(buf) - 1] = '\0';
	memset(want, 'K', 64);
	want[64] = '\0';
	{
		char text[120];

		snprintf(text, sizeof(text), "Unsupported option: %s", want);
		mail_refused(buf, 555, text);
	}
}

static void
test_notify_parse(void **state)
{
	assert_int_equal(esmtp_notify_parse("NEVER"), ESMTP_NOTIFY_NEVER);
	assert_int_equal(esmtp_notify_parse("success,Failure,DELAY"),
	                 ESMTP_NOTIFY_SUCCESS | ESMTP_NOTIFY_FAILURE |
	                     ESMTP_NOTIFY_DELAY);
	assert_int_equal(esmtp_notify_parse("FAILURE"), ESMTP_NOTIFY_FAILURE);
	assert_int_equal(esmtp_notify_parse("NEVER,DELAY"), -2);
	assert_int_equal(esmtp_notify_parse("SOMETIMES"), -1);
	assert_int_equal(
	    esmtp_notify_parse("SUCCESS,SUCCESS,SUCCESS,SUCCESS,"
	                       "SUCCESS,SUCCESS,SUCCESS,SUCCESS,SUCCESS"),
	    -1);
	assert_int_equal(esmtp_notify_parse(""), -1);
	assert_int_equal(esmtp_notify_parse("FAILURE,,DELAY"), -1);
	assert_int_equal(esmtp_notify_parse(",DELAY"), -1);
	assert_int_equal(esmtp_notify_parse("DELAY,"), -1);
}

static void
test_rcpt_params(void **state)
{
	struct esmtp_rcpt r;
	struct result res;

	assert_int_equal(rcpt("", &r, &res), 0);
	assert_int_equal(r.notify, 0);
	assert_null(r.orcpt);
	assert_int_equal(
	    rcpt(" NOTIFY=SUCCESS,DELAY ORCPT=rfc822;bob+40x.example", &r,
	         &res),
	    0);
	assert_int_equal(r.notify, ESMTP_NOTIFY_SUCCESS | ESMTP_NOTIFY_DELAY);
	assert_string_equal(r.orcpt, "rfc822;bob+40x.example");
}

static void
test_rcpt_refused(void **state)
{
	rcpt_refused(" NOTIFY=NEVER,SUCCESS", 501,
	             "NOTIFY=NEVER must stand alone");
	rcpt_refused(" NOTIFY=MAYBE", 501, "Bad NOTIFY");
	rcpt_refused(" NOTIFY=", 501, "Bad NOTIFY");
	rcpt_refused(" NOTIFY=FAILURE NOTIFY=DELAY", 501,
	             "Duplicate NOTIFY parameter");
	rcpt_refused(" ORCPT=rfc822;a ORCPT=rfc822;b", 501,
	             "Duplicate ORCPT parameter");
	rcpt_refused(" ORCPT=rfc822", 501, "Bad ORCPT");
	rcpt_refused(" ORCPT=;bob", 501, "Bad ORCPT");
	rcpt_refused(" ORCPT=rfc822;a+zz", 501, "Bad ORCPT");
	/* addr-type is an atom: it goes into the DSN as is (fuzz_dsn) */
	rcpt_refused(" ORCPT=rfc\361822;bob", 501, "Bad ORCPT");
	rcpt_refused(" ORCPT=rfc\001822;bob", 501, "Bad ORCPT");
	rcpt_refused(" ORCPT=rfc(822);bob", 501, "Bad ORCPT");
	rcpt_refused(" SIZE=10", 555, "Unsupported option: SIZE");
	rcpt_refused(" NOTIFY", 555, "Unsupported option: NOTIFY");
	rcpt_refused(" A=1 B=1 C=1 D=1 E=1 F=1 G=1 H=1 I=1", 501,
	             "Too many parameters");
}

static void
test_rcpt_orcpt_length(void **state)
{
	char buf[600];
	struct esmtp_rcpt r;
	struct result res;

	memset(buf, 'a', sizeof(buf));
	memcpy(buf, " ORCPT=rfc822;", 14);
	buf[7 + ESMTP_ORCPT_MAX] = '\0';
	assert_int_equal(rcpt(buf, &r, &res), 0);
	memset(buf, 'a', sizeof(buf));
	memcpy(buf, " ORCPT=rfc822;", 14);
	buf[7 + ESMTP_ORCPT_MAX + 1] = '\0';
	rcpt_refused(buf, 501, "Bad ORCPT");
}

static void
test_xtext_decode(void **state)
{
	char out[64];

	assert_int_equal(
	    esmtp_xtext_decode("bob+40x.example", 15, out, sizeof(out)), 13);
	assert_string_equal(out, "bob@x.example");
	assert_int_equal(esmtp_xtext_decode("+2B+3D", 6, out, sizeof(out)), 2);
	assert_string_equal(out, "+=");
	assert_int_equal(esmtp_xtext_decode("", 0, out, sizeof(out)), 0);
	assert_string_equal(out, "");
	/* lower-case hex, a short escape, '=' and controls are no xtext */
	assert_int_equal(esmtp_xtext_decode("+2b", 3, out, sizeof(out)), -1);
	assert_int_equal(esmtp_xtext_decode("ab+4", 4, out, sizeof(out)), -1);
	assert_int_equal(esmtp_xtext_decode("a=b", 3, out, sizeof(out)), -1);
	assert_int_equal(esmtp_xtext_decode("a b", 3, out, sizeof(out)), -1);
	/* out too small: refused, never overrun */
	assert_int_equal(esmtp_xtext_decode("abcd", 4, out, 4), -1);
	assert_int_equal(esmtp_xtext_decode("abc", 3, out, 4), 3);
	assert_int_equal(esmtp_xtext_decode("", 0, out, 0), -1);
}

static void
test_xtext_encode(void **state)
{
	char out[64], back[64];

	assert_int_equal(esmtp_xtext_encode("a+b=c d", out, sizeof(out)), 13);
	assert_string_equal(out, "a+2Bb+3Dc+20d");
	/* valid xtext is kept as received (ENVID/ORCPT are stored so) */
	assert_int_equal(esmtp_xtext_encode("bob+40x", out, sizeof(out)), 7);
	assert_string_equal(out, "bob+40x");
	assert_int_equal(esmtp_xtext_encode("\x01\xff", out, sizeof(out)), 6);
	assert_string_equal(out, "+01+FF");
	assert_int_equal(esmtp_xtext_encode("", out, sizeof(out)), 0);
	assert_string_equal(out, "");
	/* too small: a prefix that is still xtext, never half an escape */
	assert_int_equal(esmtp_xtext_encode("ab cd", out, 5), -1);
	assert_string_equal(out, "ab");
	assert_int_equal(esmtp_xtext_encode("abcd", out, 4), -1);
	assert_string_equal(out, "abc");
	assert_int_equal(esmtp_xtext_encode("x", out, 0), -1);
	/* round trip */
	assert_int_equal(esmtp_xtext_encode("a b+c", out, sizeof(out)), 9);
	assert_int_equal(esmtp_xtext_decode(out, 9, back, sizeof(back)), 5);
	assert_string_equal(back, "a b+c");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mail_none),
	    cmocka_unit_test(test_mail_all),
	    cmocka_unit_test(test_mail_size_bad),
	    cmocka_unit_test(test_mail_duplicates_and_values),
	    cmocka_unit_test(test_mail_envid),
	    cmocka_unit_test(test_mail_too_many),
	    cmocka_unit_test(test_mail_long_unknown_name),
	    cmocka_unit_test(test_notify_parse),
	    cmocka_unit_test(test_rcpt_params),
	    cmocka_unit_test(test_rcpt_refused),
	    cmocka_unit_test(test_rcpt_orcpt_length),
	    cmocka_unit_test(test_xtext_decode),
	    cmocka_unit_test(test_xtext_encode),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
