/*
 * test_config.c - relay/config.c: every directive parsed, every kind of
 * error reported as FILE:LINE, warnings that do not fail the load.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "config.h"

static char tmpdir[] = "/tmp/backmx-test-config-XXXXXX";
static char diag[16384];

static const char *
write_file(const char *name, const char *text)
{
	static char path[512];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	return path;
}

static struct config *
load_text(const char *text, int *nerr)
{
	const char *path = write_file("backmx.conf", text);

	return config_load(path, diag, sizeof(diag), nerr);
}

static int
setup(void **state)
{
	assert_non_null(mkdtemp(tmpdir));
	assert_int_equal(chdir(tmpdir), 0);
	write_file("ex.rcpts", "alice\nBob\n# comment\n@whole.example\n");
	return 0;
}

/* teardown - the scratch directory and every file the tests wrote */
static int
teardown(void **state)
{
	char cmd[600];

	if (chdir("/") != 0)
		return -1;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void
test_full_config(void **state)
{
	int nerr = -1;
	struct config *c =
	    load_text("# a comment\n"
	              "hostname        MX2.Example.NET\n"
	              "hostname_alias  mx.provider.net\n"
	              "listen          127.0.0.1:2525 [::1]:2525\n"
	              "spool           spooldir   # relative\n"
	              "control         \"/run/backmx/control sock\"\n"
	              "dns             127.0.0.1:5353\n"
	              "max_size        10M\n"
	              "max_recipients  150\n"
	              "max_hops        50\n"
	              "max_clients     20\n"
	              "timeout         30s\n"
	              "queue_lifetime  4d\n"
	              "retry           1m 5m 1h\n"
	              "etrn_allow      192.0.2.10 2001:db8::/32 10.0.0.0/8\n"
	              "metrics         127.0.0.1:9425\n"
	              "domain example.org {\n"
	              "    recipients  ex.rcpts\n"
	              "    route       mx\n"
	              "    tls         verify\n"
	              "    percent_hack off\n"
	              "}\n"
	              "domain example.com { recipients ex.rcpts route "
	              "primary.internal:2526 percent_hack on }\n"
	              "domain lit.example {\n recipients ex.rcpts\n route "
	              "[192.0.2.7]:25\n queue_lifetime 1h\n}\n",
	              &nerr);

	if (c == NULL)
		fprintf(stderr, "%s", diag);
	assert_non_null(c);
	assert_int_equal(nerr, 0);
	assert_string_equal(c->hostname, "mx2.example.net");
	assert_true(policy_is_own_name(c->policy, "mx.provider.net"));
	assert_int_equal(c->nlisten, 2);
	assert_int_equal(c->listen[1].ss.ss_family, AF_INET6);
	assert_non_null(strstr(c->spool, tmpdir));
	assert_string_equal(c->control, "/run/backmx/control sock");
	assert_int_equal(c->max_size, 10 * 1024 * 1024);
	assert_int_equal(c->max_recipients, 150);
	assert_int_equal(c->max_hops, 50);
	assert_int_equal(c->timeout, 30);
	assert_int_equal(c->queue_lifetime, 4 * 86400);
	assert_int_equal(c->nretry, 3);
	assert_int_equal(c->retry[2], 3600);
	assert_int_equal(c->netrn_allow, 3);
	assert_string_equal(c->metrics, "127.0.0.1:9425");

	const struct policy_domain *d =
	    policy_find_domain(c->policy, "EXAMPLE.com");
	assert_non_null(d);
	assert_true(d->route_static);
	assert_string_equal(d->route_host, "primary.internal");
	assert_int_equal(d->route_port, 2526);
	assert_true(d->percent_hack);
	d = policy_find_domain(c->policy, "example.org");
	assert_non_null(d);
	assert_false(d->route_static);
	assert_int_equal(d->tls, POLICY_TLS_VERIFY);
	assert_true(policy_domain_has_rcpt(d, "ALICE"));
	assert_true(policy_domain_has_rcpt(d, "postmaster"));
	assert_false(policy_domain_has_rcpt(d, "mallory"));
	d = policy_find_domain(c->policy, "lit.example");
	assert_non_null(d);
	assert_true(d->route_literal);
	assert_string_equal(d->route_host, "192.0.2.7");
	assert_int_equal(d->queue_lifetime, 3600);

	struct sockaddr_in sin = {.sin_family = AF_INET};
	inet_pton(AF_INET, "10.1.2.3", &sin.sin_addr);
	assert_true(config_etrn_allowed(c, (struct sockaddr *)&sin));
	inet_pton(AF_INET, "192.0.2.11", &sin.sin_addr);
	assert_false(config_etrn_allowed(c, (struct sockaddr *)&sin));
	config_free(c);
}

/* each bad line is reported with the file name and its own line number */
static const struct {
	const char *text;
	const char *expect; /* substring of the diagnostics */
} bad[] = {
    {"frobnicate yes\n", "backmx.conf:1: unknown directive \"frobnicate\""},
    {"\n\nmax_size lots\n", "backmx.conf:3: max_size: bad size"},
    {"timeout 5x\n", "backmx.conf:1: timeout: bad duration"},
    {"retry 1m never\n", "backmx.conf:1: retry: bad duration"},
    {"listen 0.0.0.0\n", "backmx.conf:1: listen: expected ADDR:PORT"},
    {"listen ::1:25\n", "backmx.conf:1: listen: expected"},
    {"listen 0.0.0.0:99999\n", "backmx.conf:1: listen"},
    {"etrn_allow 300.1.1.1\n", "backmx.conf:1: etrn_allow: bad address"},
    {"etrn_allow 10.0.0.0/33\n", "backmx.conf:1: etrn_allow"},
    {"hostname bad_name.example\n", "backmx.conf:1: hostname"},
    {"max_recipients -3\n", "backmx.conf:1: max_recipients: bad number"},
    {"user no-such-user-here\n", "backmx.conf:1: user: no such user"},
    {"tls_cert /nonexistent/cert.pem\n",
     "backmx.conf:1: tls_cert: cannot read"},
    {"domain a.example {\n}\n",
     "backmx.conf:1: domain a.example has no recipients"},
    {"domain a.example {\n recipients /nonexistent/file\n}\n",
     "/nonexistent/file"},
    {"domain a.example {\n recipients *\n route mx\n percent_hack on\n}\n",
     "percent_hack on needs a static route"},
    {"domain a.example {\n recipients *\n tls sometimes\n}\n",
     "backmx.conf:3: tls: expected"},
    {"domain a.example {\n recipients *\n route host:0\n}\n",
     "backmx.conf:3: route"},
    {"domain a.example {\n recipients *\n colour blue\n}\n",
     "backmx.conf:3: unknown domain directive \"colour\""},
    {"domain a.example {\n recipients *\n", "missing closing }"},
    {"recipients *\n",
     "backmx.conf:1: recipients: only allowed inside a domain block"},
    {"domain a.example {\n recipients *\n}\ndomain A.example {\n recipients "
     "*\n}\n",
     "backmx.conf:4: domain A.example: defined twice"},
    {"hostname \"unterminated\n", "backmx.conf:1: unterminated quote"},
    {"tls_cert /etc/hostname\n", "tls_cert and tls_key must be given together"},
    /* an empty or truncated file: no domain block is an error */
    {"", "backmx.conf:0: no domain blocks"},
    {"hostname mx.provider.net\nlisten 127.0.0.1:25\n", "no domain blocks"},
    {"spool_cache 12K\ndomain a.example { recipients * }\n",
     "backmx.conf:1: spool_cache: bad size"},
};

static void
test_errors(void **state)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int nerr = 0;
		struct config *c = load_text(bad[i].text, &nerr);

		if (c != NULL || strstr(diag, bad[i].expect) == NULL)
			fprintf(stderr, "case %zu: %s\nexpected: %s\ngot: %s\n",
			        i, bad[i].text, bad[i].expect, diag);
		assert_null(c);
		assert_true(nerr >= 1);
		assert_non_null(strstr(diag, bad[i].expect));
	}
}

static void
test_all_errors_reported(void **state)
{
	int nerr = 0;
	struct config *c = load_text("bogus1 x\nmax_size zz\nbogus2 y\n"
	                             "domain a.example { recipients * }\n",
	                             &nerr);

	assert_null(c);
	assert_int_equal(nerr, 3);
	assert_non_null(strstr(diag, "backmx.conf:1:"));
	assert_non_null(strstr(diag, "backmx.conf:2:"));
	assert_non_null(strstr(diag, "backmx.conf:3:"));
}

static void
test_warnings_do_not_fail(void **state)
{
	int nerr = -1;
	struct config *c =
	    load_text("hostname mx.provider.net\n"
	              "domain any.example {\n recipients *\n route "
	              "[127.0.0.1]:25\n percent_hack on\n}\n",
	              &nerr);

	assert_non_null(c);
	assert_int_equal(nerr, 0);
	assert_non_null(
	    strstr(diag, "warning: domain any.example accepts any local part"));
	assert_non_null(
	    strstr(diag, "any local part at any.example is reachable"));
	config_free(c);
}

static void
test_missing_file(void **state)
{
	int nerr = 0;
	struct config *c =
	    config_load("/nonexistent/backmx.conf", diag, sizeof(diag), &nerr);

	assert_null(c);
	assert_int_equal(nerr, 1);
	assert_non_null(
	    strstr(diag, "/nonexistent/backmx.conf:0: cannot open"));
}

static void
test_sizes_durations(void **state)
{
	assert_int_equal(config_parse_size("64K"), 65536);
	assert_int_equal(config_parse_size("2G"), 2147483648LL);
	assert_int_equal(config_parse_size("12"), 12);
	assert_int_equal(config_parse_size("-1"), -1);
	assert_int_equal(config_parse_size("1T"), -1);
	assert_int_equal(config_parse_size(""), -1);
	assert_int_equal(config_parse_size("99999999999999999999G"), -1);
	assert_int_equal(config_parse_duration("90"), 90);
	assert_int_equal(config_parse_duration("5m"), 300);
	assert_int_equal(config_parse_duration("2h"), 7200);
	assert_int_equal(config_parse_duration("5d"), 432000);
	assert_int_equal(config_parse_duration("5mm"), -1);
	assert_int_equal(config_parse_duration("m"), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_full_config),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_all_errors_reported),
	    cmocka_unit_test(test_warnings_do_not_fail),
	    cmocka_unit_test(test_missing_file),
	    cmocka_unit_test(test_sizes_durations),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
