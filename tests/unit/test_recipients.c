/*
 * test_recipients.c - policy/recipients.c: the RCPT verdict from the
 * sources' answers (yes / all no / unknown with verify_down), accept_when
 * primary-down, and RFC 4515 escaping of LDAP filter values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "policy.h"

static void
test_decide(void **state)
{
	struct policy *p = policy_new("mx2.example");
	struct policy_domain *d = policy_add_domain(p, "example.org");
	struct policy_rcpt_answers a;
	struct result r;

	assert_int_equal(policy_domain_add_src(d, POLICY_SRC_CALLOUT, NULL), 0);
	assert_true(d->rcpt_async);
	assert_true(policy_rcpt_async(d, 0));
	assert_false(policy_rcpt_async(d, 1));
	memset(&a, 0, sizeof(a));
	a.yes = 1;
	assert_int_equal(policy_rcpt_decide(d, "bob@example.org", &a, &r), 0);
	assert_int_equal(r.code, 250);
	memset(&a, 0, sizeof(a));
	a.no_text = "550 5.1.1 no such user";
	assert_int_equal(policy_rcpt_decide(d, "x@example.org", &a, &r), -1);
	assert_int_equal(r.code, 550);
	assert_string_equal(r.enh, "5.1.1");
	assert_non_null(strstr(r.text, "no such user"));
	/* unknown, nothing known: 450, never 250 */
	memset(&a, 0, sizeof(a));
	a.unknown = 1;
	assert_int_equal(policy_rcpt_decide(d, "c@example.org", &a, &r), -1);
	assert_int_equal(r.code, 450);
	assert_string_equal(r.enh, "4.4.3");
	/* stale yes: accept-known takes it, tempfail does not */
	a.stale_yes = 1;
	assert_int_equal(policy_rcpt_decide(d, "c@example.org", &a, &r), 0);
	d->verify_down = POLICY_VDOWN_TEMPFAIL;
	assert_int_equal(policy_rcpt_decide(d, "c@example.org", &a, &r), -1);
	assert_int_equal(r.code, 450);
	/* a stale yes without unknown cannot happen; a "no" with an unknown
	 * source is still unknown */
	memset(&a, 0, sizeof(a));
	a.unknown = 1;
	a.no_text = "550 no";
	assert_int_equal(policy_rcpt_decide(d, "c@example.org", &a, &r), -1);
	assert_int_equal(r.code, 450);
	/* accept_when */
	assert_int_equal(policy_accept_when_check(d, "a@example.org", 1, &r),
	                 0);
	d->accept_when = POLICY_ACCEPT_PRIMARY_DOWN;
	assert_true(policy_rcpt_async(d, 1));
	assert_int_equal(policy_accept_when_check(d, "a@example.org", 1, &r),
	                 -1);
	assert_int_equal(r.code, 451);
	assert_string_equal(r.enh, "4.7.1");
	assert_int_equal(policy_accept_when_check(d, "a@example.org", 0, &r),
	                 0);
	policy_free(p);
}

static void
test_ldap_escape(void **state)
{
	char out[256];

	assert_int_equal(policy_ldap_escape("bob", 3, out, sizeof(out)), 3);
	assert_string_equal(out, "bob");
	policy_ldap_escape("a*b(c)d\\e", 9, out, sizeof(out));
	assert_string_equal(out, "a\\2ab\\28c\\29d\\5ce");
	policy_ldap_escape("a\0b", 3, out, sizeof(out));
	assert_string_equal(out, "a\\00b");
	policy_ldap_escape("\xc3\xa9", 2, out, sizeof(out));
	assert_string_equal(out, "\\c3\\a9");
	/* too small: refused, never truncated */
	assert_int_equal(policy_ldap_escape("****", 4, out, 12), -1);
	assert_int_equal(
	    policy_ldap_filter("(mail=%s)", "*)(uid=*@x.org", out, sizeof(out)),
	    (int)strlen("(mail=\\2a\\29\\28uid=\\2a@x.org)"));
	assert_string_equal(out, "(mail=\\2a\\29\\28uid=\\2a@x.org)");
	policy_ldap_filter("(&(uid=%u)(dc=%d)(x=100%%))", "dave@ex.org", out,
	                   sizeof(out));
	assert_string_equal(out, "(&(uid=dave)(dc=ex.org)(x=100%))");
	assert_int_equal(
	    policy_ldap_filter("(mail=%x)", "a@b", out, sizeof(out)), -1);
	assert_int_equal(policy_ldap_filter("(mail=%s)", "a@b", out, 8), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_decide),
	    cmocka_unit_test(test_ldap_escape),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
