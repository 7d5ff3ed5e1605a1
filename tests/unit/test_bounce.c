/*
 * test_bounce.c - the DSN composer: who gets a DSN (null sender, bounce,
 * NOTIFY), what is returned (RET), and the structure of the report
 * (top-level header, three parts, per-message and per-recipient fields).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "bounce.h"

static struct spool_rcpt rc[2];
static struct spool_envelope env;

static void
setup_env(void)
{
	memset(&env, 0, sizeof(env));
	memset(rc, 0, sizeof(rc));
	strcpy(env.id, "0123456789ab");
	env.arrival = 1700000000;
	env.size = 100;
	env.sender = "a@sender.example";
	env.envid = "env+2B42";
	env.nrcpt = 2;
	env.rcpt = rc;
	rc[0].address = "x@backup.example";
	rc[0].orcpt = "rfc822;X+40orig.example";
	rc[1].address = "y@backup.example";
}

static void
test_wanted(void **state)
{
	setup_env();
	assert_true(bounce_wanted(&env, 0));
	rc[0].notify = SPOOL_NOTIFY_NEVER;
	assert_false(bounce_wanted(&env, 0));
	rc[0].notify = SPOOL_NOTIFY_SUCCESS | SPOOL_NOTIFY_DELAY;
	assert_false(bounce_wanted(&env, 0));
	rc[0].notify = SPOOL_NOTIFY_FAILURE;
	assert_true(bounce_wanted(&env, 0));
	env.sender = "";
	assert_false(bounce_wanted(&env, 0));
	env.sender = "a@sender.example";
	env.is_bounce = 1;
	assert_false(bounce_wanted(&env, 0));
	env.is_bounce = 0;
	assert_false(bounce_wanted(&env, 5));
}

static void
test_return(void **state)
{
	setup_env();
	assert_true(bounce_return_full(&env));
	env.size = BOUNCE_FULL_MAX + 1;
	assert_false(bounce_return_full(&env));
	env.ret = SPOOL_RET_FULL;
	assert_true(bounce_return_full(&env));
	env.ret = SPOOL_RET_HDRS;
	env.size = 10;
	assert_false(bounce_return_full(&env));
}

static int
count(const char *hay, const char *needle)
{
	int n = 0;

	while ((hay = strstr(hay, needle)) != NULL) {
		n++;
		hay++;
	}
	return n;
}

static void
test_report(void **state)
{
	struct bounce_item it[2];
	size_t len;
	char *s, *ds, *p;

	setup_env();
	memset(it, 0, sizeof(it));
	it[0].rcpt = 0;
	result_set(&it[0].res, 550, "5.1.1", "no such user\r\nInjected: x");
	it[0].remote_mta = "mx1.example";
	it[0].last_attempt = 1700000100;
	it[1].rcpt = 1;
	result_set(&it[1].res, 0, "4.4.7", "delivery time expired");
	s = bounce_compose_report(&env, it, 2, "mx2.example", "feedface0001",
				  1700000200, 1, &len);
	assert_non_null(s);
	assert_int_equal(strlen(s), len);
	/* only CRLF line endings */
	for (p = s; *p; p++)
		if (*p == '\n')
			assert_true(p > s && p[-1] == '\r');
		else if (*p == '\r')
			assert_true(p[1] == '\n');
	assert_non_null(strstr(s, "\r\nContent-Type: multipart/report; "
				  "report-type=delivery-status;"));
	assert_non_null(strstr(s, "\r\nAuto-Submitted: auto-replied\r\n"));
	assert_non_null(strstr(s, "From: MAILER-DAEMON@mx2.example"));
	assert_non_null(strstr(s, "\r\nTo: <a@sender.example>\r\n"));
	/* three part boundaries */
	assert_int_equal(count(s, "\r\n--feedface0001/mx2.example\r\n"), 3);
	ds = strstr(s, "Content-Type: message/delivery-status\r\n\r\n");
	assert_non_null(ds);
	assert_non_null(strstr(ds, "Reporting-MTA: dns; mx2.example\r\n"));
	assert_non_null(strstr(ds, "Original-Envelope-Id: env+42\r\n"));
	assert_non_null(strstr(ds, "Arrival-Date: "));
	assert_non_null(strstr(ds, "\r\n\r\nFinal-Recipient: rfc822; "
				   "x@backup.example\r\n"
				   "Original-Recipient: rfc822; "
				   "X@orig.example\r\nAction: failed\r\n"
				   "Status: 5.1.1\r\n"
				   "Remote-MTA: dns; mx1.example\r\n"
				   "Diagnostic-Code: smtp; 550 5.1.1 no such "
				   "user??Injected: x\r\n"));
	assert_non_null(strstr(ds, "\r\n\r\nFinal-Recipient: rfc822; "
				   "y@backup.example\r\nAction: failed\r\n"
				   "Status: 4.4.7\r\n"
				   "Diagnostic-Code: X-Backmx; delivery time "
				   "expired\r\n"));
	/* no Original-Recipient without ORCPT */
	assert_int_equal(count(ds, "Original-Recipient:"), 1);
	assert_non_null(strstr(s, "Content-Type: message/rfc822\r\n\r\n"));
	free(s);

	s = bounce_compose_report(&env, it, 1, "mx2.example", "feedface0002",
				  1700000200, 0, &len);
	assert_non_null(strstr(s, "Content-Type: text/rfc822-headers\r\n\r\n"));
	free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wanted),
		cmocka_unit_test(test_return),
		cmocka_unit_test(test_report),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
