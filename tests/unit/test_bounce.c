/*
 * test_bounce.c - the DSN composer: who gets a DSN (null sender, bounce,
 * NOTIFY), what is returned (RET), and the structure of the report
 * (top-level header, three parts, per-message and per-recipient fields),
 * the delayed and relayed kinds, and bounce_create when its allocations
 * fail (nothing half-written is left in a real spool).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
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

static void
test_wanted_kinds(void **state)
{
	static const struct {
		int notify;
		int failed, delayed, relayed;
	} t[] = {
	    {0, 1, 1, 0}, /* none given: FAILURE,DELAY */
	    {SPOOL_NOTIFY_NEVER, 0, 0, 0},
	    {SPOOL_NOTIFY_SUCCESS, 0, 0, 1},
	    {SPOOL_NOTIFY_FAILURE, 1, 0, 0},
	    {SPOOL_NOTIFY_DELAY, 0, 1, 0},
	    {SPOOL_NOTIFY_SUCCESS | SPOOL_NOTIFY_DELAY, 0, 1, 1},
	    {SPOOL_NOTIFY_SUCCESS | SPOOL_NOTIFY_FAILURE | SPOOL_NOTIFY_DELAY,
	     1, 1, 1},
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		setup_env();
		rc[0].notify = t[i].notify;
		assert_int_equal(bounce_wanted_kind(&env, 0, BOUNCE_FAILED),
		                 t[i].failed);
		assert_int_equal(bounce_wanted_kind(&env, 0, BOUNCE_DELAYED),
		                 t[i].delayed);
		assert_int_equal(bounce_wanted_kind(&env, 0, BOUNCE_RELAYED),
		                 t[i].relayed);
		/* never for <> or a bounce */
		env.sender = "";
		assert_false(bounce_wanted_kind(&env, 0, BOUNCE_DELAYED));
		assert_false(bounce_wanted_kind(&env, 0, BOUNCE_RELAYED));
		env.sender = "a@sender.example";
		env.is_bounce = 1;
		assert_false(bounce_wanted_kind(&env, 0, BOUNCE_DELAYED));
	}
}

static void
test_report_kinds(void **state)
{
	struct bounce_item it[1];
	size_t len;
	char *s;

	setup_env();
	memset(it, 0, sizeof(it));
	result_set(&it[0].res, 0, "4.4.1", "connect to mx1.example: refused");
	s = bounce_compose(&env, it, 1, BOUNCE_DELAYED, "mx2.example",
	                   "feedface0003", 1700003600, 1700432000, 0, &len);
	assert_non_null(s);
	assert_non_null(strstr(s, "Subject: Delayed Mail (still being "
	                          "retried)\r\n"));
	assert_non_null(strstr(s, "report-type=delivery-status"));
	assert_non_null(strstr(s, "Action: delayed\r\nStatus: 4.4.1\r\n"
	                          "Diagnostic-Code: X-Backmx; connect to "
	                          "mx1.example: refused\r\n"));
	assert_non_null(strstr(s, "\r\nWill-Retry-Until: "));
	assert_non_null(strstr(s, "for 60 minute(s)"));
	assert_null(strstr(s, "Action: failed"));
	free(s);

	result_set(&it[0].res, 250, "2.0.0", "OK queued as 42");
	it[0].remote_mta = "mx1.example";
	s = bounce_compose(&env, it, 1, BOUNCE_RELAYED, "mx2.example",
	                   "feedface0004", 1700000100, 0, 0, &len);
	assert_non_null(s);
	assert_non_null(strstr(s, "Subject: Successful Mail Delivery "
	                          "Report\r\n"));
	assert_non_null(strstr(s, "Action: relayed\r\nStatus: 2.0.0\r\n"
	                          "Remote-MTA: dns; mx1.example\r\n"
	                          "Diagnostic-Code: smtp; 250 2.0.0 OK queued "
	                          "as 42\r\n"));
	assert_null(strstr(s, "Will-Retry-Until"));
	free(s);
	assert_null(bounce_compose(&env, it, 1, (enum bounce_kind)7,
	                           "mx2.example", "x", 0, 0, 0, &len));
}

/* a failed allocation: -1, an error, and no half-written DSN left */
static void
test_create_enomem(void **state)
{
	char dir[] = "/tmp/backmx-test-bounce-XXXXXX", err[256], cmd[300];
	struct bounce_item it[1];
	struct spool_envelope *out = NULL;
	struct spool *sp;
	uint64_t msgs;
	int n;

	assert_non_null(mkdtemp(dir));
	sp = spool_open(dir, err, sizeof(err));
	assert_non_null(sp);
	setup_env();
	memset(it, 0, sizeof(it));
	result_set(&it[0].res, 550, "5.1.1", "no such user");
	for (n = 1; n <= 3; n++) {
		bounce_fail_allocs(n);
		err[0] = '\0';
		assert_int_equal(bounce_create(sp, &env, it, 1, "mx2.example",
		                               1700000000, &out, err,
		                               sizeof(err)),
		                 -1);
		bounce_fail_allocs(0);
		assert_null(out);
		assert_string_equal(err, "out of memory");
		spool_count(sp, &msgs, NULL);
		assert_int_equal(msgs, 0);
	}
	/* and with memory: one DSN in the spool */
	assert_int_equal(bounce_create(sp, &env, it, 1, "mx2.example",
	                               1700000000, &out, err, sizeof(err)),
	                 1);
	assert_non_null(out);
	assert_true(out->is_bounce);
	spool_envelope_free(out);
	spool_count(sp, &msgs, NULL);
	assert_int_equal(msgs, 1);
	spool_close(sp);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_wanted),
	    cmocka_unit_test(test_return),
	    cmocka_unit_test(test_report),
	    cmocka_unit_test(test_wanted_kinds),
	    cmocka_unit_test(test_report_kinds),
	    cmocka_unit_test(test_create_enomem),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
