/*
 * test_domains.c - policy/domains.c: the domain table, own names, and
 * recipient files (entry forms, case rules, FILE:LINE errors, reloads,
 * and a one-million-entry load that must stay a hash-set lookup), and the
 * lowercased domain of a queued recipient (policy_addr_domain_lc).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* cmocka needs the headers above first */
#include <cmocka.h>

#include "policy.h"

static char tmpdir[] = "/tmp/backmx-test-domains-XXXXXX";

static char *
write_file(const char *name, const char *text)
{
	char path[512];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	return strdup(path);
}

static int
setup(void **state)
{
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd);
}

static void
test_domains_table(void **state)
{
	struct policy *p = policy_new("MX2.Example.NET");
	struct policy_domain *d;
	char name[64];
	int i;

	policy_free(NULL);
	assert_non_null(p);
	assert_string_equal(p->hostname, "mx2.example.net");
	d = policy_add_domain(p, "Example.ORG");
	assert_non_null(d);
	assert_string_equal(d->name, "example.org");
	assert_int_equal(d->route_port, 25);
	assert_int_equal(d->tls, POLICY_TLS_MAY);
	assert_false(d->percent_hack);
	assert_false(d->route_static);
	assert_null(policy_add_domain(p, "example.org"));
	assert_null(policy_add_domain(p, "EXAMPLE.org."));
	assert_ptr_equal(policy_find_domain(p, "EXAMPLE.ORG"), d);
	assert_ptr_equal(policy_find_domain(p, "example.org."), d);
	assert_null(policy_find_domain(p, "example.com"));
	assert_null(policy_find_domain(p, "org"));
	assert_null(policy_find_domain(p, "sub.example.org"));
	assert_null(policy_find_domain(p, ""));
	assert_null(policy_find_domain(p, NULL));
	/* enough domains to grow the index several times */
	for (i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "d%d.example", i);
		assert_non_null(policy_add_domain(p, name));
	}
	assert_int_equal(p->ndomains, 2001);
	for (i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "D%d.EXAMPLE", i);
		d = policy_find_domain(p, name);
		assert_non_null(d);
		snprintf(name, sizeof(name), "d%d.example", i);
		assert_string_equal(d->name, name);
	}
	assert_ptr_equal(policy_find_domain(p, "example.org"), p->domains[0]);
	policy_free(p);
}

static void
test_domains_own_name(void **state)
{
	struct policy *p = policy_new("mx2.example.net");

	assert_true(policy_is_own_name(p, "mx2.example.net"));
	assert_true(policy_is_own_name(p, "MX2.EXAMPLE.NET."));
	assert_false(policy_is_own_name(p, "mx.provider.net"));
	assert_int_equal(policy_add_alias(p, "MX.Provider.Net"), 0);
	assert_int_equal(policy_add_alias(p, "mx.provider.net"), 0);
	assert_int_equal(p->naliases, 1);
	assert_string_equal(p->aliases[0], "mx.provider.net");
	assert_true(policy_is_own_name(p, "mx.PROVIDER.net"));
	assert_false(policy_is_own_name(p, "provider.net"));
	assert_false(policy_is_own_name(p, "x.mx2.example.net"));
	assert_false(policy_is_own_name(p, ""));
	assert_false(policy_is_own_name(p, NULL));
	assert_int_equal(policy_add_alias(p, ""), -1);
	policy_free(p);
	/* no host name: nothing is ours */
	p = policy_new("");
	assert_false(policy_is_own_name(p, ""));
	assert_false(policy_is_own_name(p, "x"));
	policy_free(p);
}

static void
test_domains_recipients(void **state)
{
	struct policy *p = policy_new("mx2.example.net");
	struct policy_domain *d = policy_add_domain(p, "example.org");
	struct policy_domain *w = policy_add_domain(p, "whole.example");
	char err[512];

	d->recipients_file =
	    write_file("org.rcpts", "# valid users of example.org\n"
	                            "alice\n"
	                            "  Bob  \n"
	                            "carol@EXAMPLE.org\n"
	                            "dave@other.example\n"
	                            "@whole.example\n"
	                            "\n"
	                            "erin # the new one\n"
	                            "a#b\n"
	                            "frank\r\n"
	                            "\"john doe\"\n"
	                            "\"Grace\"\n"
	                            "j\xc3\xb6rg\n"
	                            "\t\n");
	assert_int_equal(policy_domain_load_recipients(d, err, sizeof(err)), 0);
	assert_true(policy_domain_has_rcpt(d, "alice"));
	assert_true(policy_domain_has_rcpt(d, "ALICE"));
	assert_true(policy_domain_has_rcpt(d, "\"alice\""));
	assert_true(policy_domain_has_rcpt(d, "\"Ali\\ce\""));
	assert_true(policy_domain_has_rcpt(d, "bob"));
	assert_true(policy_domain_has_rcpt(d, "Carol"));
	assert_false(policy_domain_has_rcpt(d, "dave"));
	assert_true(policy_domain_has_rcpt(d, "erin"));
	assert_false(policy_domain_has_rcpt(d, "erin # the new one"));
	assert_true(policy_domain_has_rcpt(d, "a#b"));
	assert_false(policy_domain_has_rcpt(d, "a"));
	assert_true(policy_domain_has_rcpt(d, "frank"));
	assert_true(policy_domain_has_rcpt(d, "\"John Doe\""));
	assert_false(policy_domain_has_rcpt(d, "john.doe"));
	assert_true(policy_domain_has_rcpt(d, "grace"));
	assert_true(policy_domain_has_rcpt(d, "j\xc3\xb6rg"));
	/* non-ASCII local parts are compared as sent */
	assert_false(policy_domain_has_rcpt(d, "J\xc3\xb6rg"));
	assert_false(policy_domain_has_rcpt(d, "mallory"));
	assert_false(policy_domain_has_rcpt(d, ""));
	assert_false(policy_domain_has_rcpt(d, "bad local"));
	assert_false(policy_domain_has_rcpt(d, NULL));
	/* postmaster always, in every case and quoting */
	assert_true(policy_domain_has_rcpt(d, "postmaster"));
	assert_true(policy_domain_has_rcpt(d, "PostMaster"));
	assert_true(policy_domain_has_rcpt(d, "\"POSTMASTER\""));
	assert_false(policy_domain_has_rcpt(d, "postmaster2"));
	/* no list loaded yet: only postmaster */
	assert_false(policy_domain_has_rcpt(w, "anyone"));
	assert_true(policy_domain_has_rcpt(w, "postmaster"));
	/* "@whole.example" in a file of that domain opens it all */
	w->recipients_file = strdup(d->recipients_file);
	assert_int_equal(policy_domain_load_recipients(w, err, sizeof(err)), 0);
	assert_true(policy_domain_has_rcpt(w, "anyone"));
	assert_false(policy_domain_has_rcpt(d, "anyone"));
	/* recipients * */
	w = policy_add_domain(p, "any.example");
	w->recipients_any = 1;
	assert_true(policy_domain_has_rcpt(w, "x.y"));
	assert_false(policy_domain_has_rcpt(NULL, "alice"));
	policy_free(p);
}

static void
test_domains_reload(void **state)
{
	struct policy *p = policy_new("mx2.example.net");
	struct policy_domain *d = policy_add_domain(p, "example.org");
	char err[512];

	d->recipients_file = write_file("reload.rcpts", "alice\nbob\n");
	assert_int_equal(policy_domain_load_recipients(d, err, sizeof(err)), 0);
	assert_true(policy_domain_has_rcpt(d, "bob"));
	/* a broken new file is refused and the old list kept */
	free(write_file("reload.rcpts", "alice\ncarol\nbad entry\n"));
	assert_int_equal(policy_domain_load_recipients(d, err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "reload.rcpts:3: "));
	assert_true(policy_domain_has_rcpt(d, "bob"));
	assert_false(policy_domain_has_rcpt(d, "carol"));
	/* a good one replaces it: removed entries are gone */
	free(write_file("reload.rcpts", "alice\ncarol\n"));
	assert_int_equal(policy_domain_load_recipients(d, err, sizeof(err)), 0);
	assert_false(policy_domain_has_rcpt(d, "bob"));
	assert_true(policy_domain_has_rcpt(d, "carol"));
	policy_free(p);
}

static void
test_domains_errors(void **state)
{
	static const struct {
		const char *text;
		const char *want; /* after "FILE" */
	} t[] = {
	    {"alice\nbad entry with spaces\n", ":2: blank inside entry"},
	    {"alice\n\nbob@\n", ":3: bad domain"},
	    {"a..b\n", ":1: bad local part"},
	    {".alice\n", ":1: bad local part"},
	    {"alice@under_score.example\n", ":1: bad domain"},
	    {"# c\n# c\n\"unterminated\n", ":3: bad local part"},
	    {"ok\nx\x01y\n", ":2: control character"},
	    {"ok\nl(comment)\n", ":2: bad local part"},
	    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	     "aa\n",
	     ":1: bad local part"},
	    {"@\n", ":1: bad domain"},
	    {"x@y@\n", ":1: bad domain"},
	};
	struct policy *p = policy_new("mx2.example.net");
	struct policy_domain *d = policy_add_domain(p, "example.org");
	char err[512], want[600];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		free(d->recipients_file);
		d->recipients_file = write_file("err.rcpts", t[i].text);
		assert_int_equal(
		    policy_domain_load_recipients(d, err, sizeof(err)), -1);
		snprintf(want, sizeof(want), "%s%s", d->recipients_file,
		         t[i].want);
		if (strncmp(err, want, strlen(want)) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s...\"", i, err,
			         want);
	}
	/* a 64-octet local part is fine, a 65-octet one is not */
	free(d->recipients_file);
	d->recipients_file = write_file(
	    "ok.rcpts",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaa\n");
	assert_int_equal(policy_domain_load_recipients(d, err, sizeof(err)), 0);
	/* a missing file names the file */
	free(d->recipients_file);
	d->recipients_file = strdup("/nonexistent/backmx.rcpts");
	assert_int_equal(policy_domain_load_recipients(d, err, sizeof(err)),
	                 -1);
	assert_non_null(
	    strstr(err, "/nonexistent/backmx.rcpts:0: cannot open"));
	/* a tiny error buffer is not overrun */
	assert_int_equal(policy_domain_load_recipients(d, err, 8), -1);
	assert_int_equal(strlen(err), 7);
	policy_free(p);
}

static void
test_domains_million(void **state)
{
	struct policy *p = policy_new("mx2.example.net");
	struct policy_domain *d = policy_add_domain(p, "big.example");
	struct timespec t0, t1;
	char path[512], err[512], local[64];
	FILE *fp;
	double secs;
	int i;

	snprintf(path, sizeof(path), "%s/big.rcpts", tmpdir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	for (i = 0; i < 1000000; i++)
		fprintf(fp, i % 3 == 0 ? "User%d\n" : "user%d@big.example\n",
		        i);
	fclose(fp);
	d->recipients_file = strdup(path);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(policy_domain_load_recipients(d, err, sizeof(err)), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("1,000,000 recipients loaded in %.3f s\n", secs);
	for (i = 0; i < 1000000; i += 997) {
		snprintf(local, sizeof(local), "USER%d", i);
		assert_true(policy_domain_has_rcpt(d, local));
	}
	assert_true(policy_domain_has_rcpt(d, "user999999"));
	assert_false(policy_domain_has_rcpt(d, "user1000000"));
	assert_false(policy_domain_has_rcpt(d, "user-1"));
	policy_free(p);
	unlink(path);
}

/*
 * The domain of a queued recipient as the queue counters key it: after
 * the last '@', lowercased, none for NULL / no '@' / an over-long
 * domain.  Fails if the first '@' were taken, case kept, or a 256-octet
 * domain accepted.
 */
static void
test_domains_addr_domain_lc(void **state)
{
	char out[POLICY_DOMAIN_MAX + 1], addr[POLICY_DOMAIN_MAX + 8];

	assert_int_equal(policy_addr_domain_lc("Bob@Example.ORG", out), 0);
	assert_string_equal(out, "example.org");
	assert_int_equal(policy_addr_domain_lc("\"a@b\"@X.Test", out), 0);
	assert_string_equal(out, "x.test");
	assert_int_equal(policy_addr_domain_lc("user@", out), 0);
	assert_string_equal(out, "");
	assert_int_equal(policy_addr_domain_lc("postmaster", out), -1);
	assert_int_equal(policy_addr_domain_lc(NULL, out), -1);
	addr[0] = 'u';
	addr[1] = '@';
	memset(addr + 2, 'A', POLICY_DOMAIN_MAX);
	addr[2 + POLICY_DOMAIN_MAX] = '\0';
	assert_int_equal(policy_addr_domain_lc(addr, out), 0);
	assert_int_equal(strlen(out), POLICY_DOMAIN_MAX);
	assert_int_equal(out[0], 'a');
	addr[2 + POLICY_DOMAIN_MAX] = 'a';
	addr[3 + POLICY_DOMAIN_MAX] = '\0';
	assert_int_equal(policy_addr_domain_lc(addr, out), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_domains_table),
	    cmocka_unit_test(test_domains_own_name),
	    cmocka_unit_test(test_domains_recipients),
	    cmocka_unit_test(test_domains_reload),
	    cmocka_unit_test(test_domains_errors),
	    cmocka_unit_test(test_domains_million),
	    cmocka_unit_test(test_domains_addr_domain_lc),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
