/*
 * test_mtasts.c - relay/mtasts.c: the TXT record, the policy file, MX
 * pattern matching and the HTTP response parser (tables); the cache
 * (max_age, id change, daily refresh); and the fetch on a real libev loop
 * against a forked one-shot TLS server with a throwaway CA: good policies
 * (Content-Length, chunked, close-delimited), redirects and 404 refused,
 * wrong name and untrusted CA refused, timeout, refused connection,
 * cancel without callback, callback never inside start.
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

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "mtasts.h"

/* ------------------------------------------------------------------ */
/* TXT */

static const struct txt_case {
	const char *txt;
	const char *id; /* NULL: invalid */
} txt_cases[] = {
    {"v=STSv1; id=20160831085700Z;", "20160831085700Z"},
    {"v=STSv1; id=20160831085700Z", "20160831085700Z"},
    {"v=STSv1;id=abc", "abc"},
    {"v=STSv1 ;\tid=abc ; ", "abc"},
    {"v=STSv1; ext=foo:bar; id=X1", "X1"},
    {"v=STSv1; id=12345678901234567890123456789012;",
     "12345678901234567890123456789012"},
    {"v=STSv1; id=123456789012345678901234567890123;", NULL}, /* 33 */
    {"v=STSv1;", NULL},                                       /* no id */
    {"v=STSv1", NULL},
    {"v=STSv1; id=;", NULL},
    {"v=STSv1; id=ab-c;", NULL},   /* not alnum */
    {"v=STSv1; id=a; id=b", NULL}, /* twice */
    {"v=STSv2; id=abc", NULL},
    {"v=stsv1; id=abc", NULL},  /* case matters */
    {" v=STSv1; id=abc", NULL}, /* must start with v= */
    {"id=abc; v=STSv1", NULL},
    {"v=STSv1x; id=abc", NULL},
    {"v=STSv1; id=abc junk", NULL},
    {"v=STSv1; id=abc;; ", NULL},
    {"v=STSv1; =x; id=abc", NULL},
    {"v=STSv1; e=a=b; id=abc", NULL},
    {"v=STSv1; id=\xc3\xa9", NULL},
    {"", NULL},
};

static void
test_txt(void **state)
{
	for (size_t i = 0; i < sizeof(txt_cases) / sizeof(txt_cases[0]); i++) {
		const struct txt_case *c = &txt_cases[i];
		char id[MTASTS_ID_MAX + 1];
		int rc = mtasts_parse_txt(c->txt, id, sizeof(id));

		if (c->id == NULL) {
			if (rc != -1 || id[0] != '\0')
				fail_msg("accepted \"%s\" (id %s)", c->txt, id);
		} else {
			if (rc != 0)
				fail_msg("refused \"%s\"", c->txt);
			assert_string_equal(id, c->id);
		}
	}
}

static void
test_txt_select(void **state)
{
	char id[MTASTS_ID_MAX + 1];
	char *one[] = {"v=spf1 -all", "v=STSv1; id=A1;"};
	char *two[] = {"v=STSv1; id=A1;", "v=STSv1; id=B2;"};
	char *none[] = {"v=spf1 -all", "something"};
	char *bad[] = {"v=STSv1; id=;", "x"};

	assert_int_equal(mtasts_txt_select(one, 2, id, sizeof(id)), 0);
	assert_string_equal(id, "A1");
	assert_int_equal(mtasts_txt_select(two, 2, id, sizeof(id)), -1);
	assert_int_equal(mtasts_txt_select(none, 2, id, sizeof(id)), -1);
	assert_int_equal(mtasts_txt_select(bad, 2, id, sizeof(id)), -1);
	assert_int_equal(mtasts_txt_select(NULL, 0, id, sizeof(id)), -1);
}

/* ------------------------------------------------------------------ */
/* policy */

static const struct policy_case {
	const char *body;
	int ok;
	enum mtasts_mode mode;
	long max_age;
	int nmx;
	const char *mx0, *err; /* err: substring of the error */
} policy_cases[] = {
    {"version: STSv1\nmode: enforce\nmx: mail.example.com\n"
     "mx: *.example.net\nmx: backupmx.example.com\nmax_age: 604800\n",
     1, MTASTS_MODE_ENFORCE, 604800, 3, "mail.example.com", NULL},
    {"version: STSv1\r\nmode: testing\r\nmx: MX1.Example.COM\r\n"
     "max_age: 86400\r\n",
     1, MTASTS_MODE_TESTING, 86400, 1, "mx1.example.com", NULL},
    /* no final newline, blank lines, WSP around values */
    {"version:STSv1\n\nmode:\t none \nmax_age: 0\n", 1, MTASTS_MODE_NONE, 0, 0,
     NULL, NULL},
    {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557600", 1,
     MTASTS_MODE_ENFORCE, 31557600, 1, "a.example", NULL},
    /* first occurrence wins; unknown keys ignored */
    {"version: STSv1\nmode: testing\nmode: enforce\nmax_age: 10\n"
     "max_age: 99999999999\nfoo_bar: anything goes\nmx: a.example\n"
     "version: STSv9\n",
     1, MTASTS_MODE_TESTING, 10, 1, "a.example", NULL},
    {"version: STSv1\nmode: enforce\nmax_age: 31557601\nmx: a.example\n", 0, 0,
     0, 0, NULL, "max_age"},
    {"version: STSv1\nmode: enforce\nmax_age: 12345678901\nmx: a.example\n", 0,
     0, 0, 0, NULL, "max_age"},
    {"version: STSv1\nmode: enforce\nmax_age: -1\nmx: a.example\n", 0, 0, 0, 0,
     NULL, "max_age"},
    {"version: STSv1\nmode: enforce\nmax_age: \nmx: a.example\n", 0, 0, 0, 0,
     NULL, "empty"},
    {"version: STSv1\nmode: enforce\nmax_age: 1\n", 0, 0, 0, 0, NULL, "no mx"},
    {"version: STSv1\nmode: Enforce\nmax_age: 1\nmx: a.example\n", 0, 0, 0, 0,
     NULL, "mode"},
    {"version: STSv2\nmode: enforce\nmax_age: 1\nmx: a.example\n", 0, 0, 0, 0,
     NULL, "version"},
    {"mode: enforce\nmax_age: 1\nmx: a.example\n", 0, 0, 0, 0, NULL, "version"},
    {"version: STSv1\nmax_age: 1\nmx: a.example\n", 0, 0, 0, 0, NULL,
     "no mode"},
    {"version: STSv1\nmode: none\n", 0, 0, 0, 0, NULL, "max_age"},
    {"version: STSv1\nmode: enforce\nmax_age: 1\nmx: b\xc3\xa9.example\n", 0, 0,
     0, 0, NULL, "mx pattern"},
    {"version: STSv1\nmode: enforce\nmax_age: 1\nmx: a..example\n", 0, 0, 0, 0,
     NULL, "mx pattern"},
    {"version: STSv1\nmode: enforce\nmax_age: 1\nmx: -a.example\n", 0, 0, 0, 0,
     NULL, "mx pattern"},
    {"version: STSv1\nmode: enforce\nmax_age: 1\nmx: a.example.\n", 0, 0, 0, 0,
     NULL, "mx pattern"},
    {"version: STSv1\nmode: enforce\nmax_age: 1\nmx: *.*.example\n", 0, 0, 0, 0,
     NULL, "mx pattern"},
    {"version: STSv1\nmode: enforce\nmax_age: 1\nmx: a*.example\n", 0, 0, 0, 0,
     NULL, "mx pattern"},
    {"version: STSv1\nmode: enforce\nmax_age: 1\nmx: *.\n", 0, 0, 0, 0, NULL,
     "mx pattern"},
    {"version: STSv1\nmode: enforce\nmax_age: 1\nmx: a b.example\n", 0, 0, 0, 0,
     NULL, "mx pattern"},
    {"version: STSv1\nmode: enforce\nmax_age: 1\nmx a.example\n", 0, 0, 0, 0,
     NULL, "line 4"},
    {"version: STSv1\nmode : enforce\nmax_age: 1\nmx: a.example\n", 0, 0, 0, 0,
     NULL, "line 2"},
    {"version: STSv1\rmode: enforce\nmax_age: 1\nmx: a.example\n", 0, 0, 0, 0,
     NULL, "control"},
    {"<html>hello</html>\n", 0, 0, 0, 0, NULL, "line 1"},
    {"", 0, 0, 0, 0, NULL, "version"},
};

static void
test_policy(void **state)
{
	for (size_t i = 0; i < sizeof(policy_cases) / sizeof(policy_cases[0]);
	     i++) {
		const struct policy_case *c = &policy_cases[i];
		struct mtasts_policy p;
		char err[256] = "";
		int rc = mtasts_parse_policy(c->body, strlen(c->body), &p, err,
		                             sizeof(err));

		if (!c->ok) {
			if (rc != -1)
				fail_msg("case %zu accepted", i);
			if (strstr(err, c->err) == NULL)
				fail_msg("case %zu: error \"%s\", want \"%s\"",
				         i, err, c->err);
			continue;
		}
		if (rc != 0)
			fail_msg("case %zu refused: %s", i, err);
		assert_int_equal(p.mode, c->mode);
		assert_int_equal(p.max_age, c->max_age);
		assert_int_equal(p.nmx, c->nmx);
		if (c->mx0 != NULL)
			assert_string_equal(p.mx[0], c->mx0);
	}
}

static void
test_policy_limits(void **state)
{
	struct mtasts_policy p;
	char err[256], *big;
	size_t n = 0;

	/* MTASTS_MAX_MX patterns are fine, one more is not */
	big = malloc(MTASTS_BODY_MAX + 100);
	n += sprintf(big + n, "version: STSv1\nmode: enforce\nmax_age: 5\n");
	for (int i = 0; i < MTASTS_MAX_MX; i++)
		n += sprintf(big + n, "mx: mx%d.example\n", i);
	assert_int_equal(mtasts_parse_policy(big, n, &p, err, sizeof(err)), 0);
	assert_int_equal(p.nmx, MTASTS_MAX_MX);
	n += sprintf(big + n, "mx: one-too-many.example\n");
	assert_int_equal(mtasts_parse_policy(big, n, &p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "more than"));

	/* NUL inside: refused, not cut short */
	assert_int_equal(mtasts_parse_policy("version: STSv1\0mode: none\n", 26,
	                                     &p, err, sizeof(err)),
	                 -1);

	/* over 64 KiB */
	memset(big, '\n', MTASTS_BODY_MAX + 1);
	assert_int_equal(
	    mtasts_parse_policy(big, MTASTS_BODY_MAX + 1, &p, err, sizeof(err)),
	    -1);

	/* a 63-octet label and a 253-octet name are fine; 64 / 254 are not */
	n = sprintf(big, "version: STSv1\nmode: enforce\nmax_age: 5\nmx: *.");
	memset(big + n, 'a', 63);
	n += 63;
	n += sprintf(big + n, ".example\n");
	assert_int_equal(mtasts_parse_policy(big, n, &p, err, sizeof(err)), 0);
	n = sprintf(big, "version: STSv1\nmode: enforce\nmax_age: 5\nmx: ");
	memset(big + n, 'a', 64);
	n += 64;
	n += sprintf(big + n, ".example\n");
	assert_int_equal(mtasts_parse_policy(big, n, &p, err, sizeof(err)), -1);
	n = sprintf(big, "version: STSv1\nmode: enforce\nmax_age: 5\nmx: *.");
	for (int i = 0; i < 4; i++)
		n += sprintf(big + n, "%.62s.",
		             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	n += sprintf(big + n, "e\n"); /* 4 * 63 + 1 = 253 */
	assert_int_equal(mtasts_parse_policy(big, n, &p, err, sizeof(err)), 0);
	big[n - 2] = 'e';
	big[n - 1] = 'e';
	big[n] = '\n';
	assert_int_equal(mtasts_parse_policy(big, n + 1, &p, err, sizeof(err)),
	                 -1);
	free(big);
}

/* ------------------------------------------------------------------ */
/* MX matching */

static const struct mx_case {
	const char *pattern, *host;
	int match;
} mx_cases[] = {
    {"mail.example.com", "mail.example.com", 1},
    {"mail.example.com", "MAIL.Example.Com", 1},
    {"mail.example.com", "mail.example.com.", 1},
    {"mail.example.com", "mail.example.co", 0},
    {"mail.example.com", "xmail.example.com", 0},
    {"mail.example.com", "mail.example.com.au", 0},
    {"*.example.net", "mx1.example.net", 1},
    {"*.example.net", "MX1.EXAMPLE.NET.", 1},
    {"*.example.net", "example.net", 0},
    {"*.example.net", "a.b.example.net", 0},
    {"*.example.net", ".example.net", 0},
    {"*.example.net", "mx1.example.network", 0},
    {"*.example.net", "mx1example.net", 0},
    {"*.example.net", "", 0},
    {"*.example.net", ".", 0},
    {"*.example.net", "*.example.net", 1}, /* a literal "*" label */
};

static void
test_mx_match(void **state)
{
	for (size_t i = 0; i < sizeof(mx_cases) / sizeof(mx_cases[0]); i++) {
		const struct mx_case *c = &mx_cases[i];
		struct mtasts_policy p;
		char body[512], err[256];
		int n = snprintf(body, sizeof(body),
		                 "version: STSv1\nmode: enforce\nmax_age: 5\n"
		                 "mx: other.example\nmx: %s\n",
		                 c->pattern);

		assert_int_equal(
		    mtasts_parse_policy(body, n, &p, err, sizeof(err)), 0);
		if (mtasts_mx_match(&p, c->host) != c->match)
			fail_msg("pattern %s host %s: want %d", c->pattern,
			         c->host, c->match);
	}
}

/* ------------------------------------------------------------------ */
/* HTTP responses */

static const struct http_case {
	const char *resp;
	int eof;
	int rc;
	const char *out; /* body when rc 1, error substring when -1 */
} http_cases[] = {
    {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 0, 1, "hello"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", 0, 0, NULL},
    {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", 1, -1, "truncated"},
    {"HTTP/1.1 200 OK\r\ncontent-length:  5 \r\n\r\nhello+extra", 0, 1,
     "hello"},
    {"HTTP/1.0 200 OK\nContent-Type: text/plain\n\nclose-delimited", 0, 0,
     NULL},
    {"HTTP/1.0 200 OK\nContent-Type: text/plain\n\nclose-delimited", 1, 1,
     "close-delimited"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n",
     0, 1, "hello world"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", 0, 0,
     NULL},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n",
     0, 0, NULL},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", 1, -1,
     "chunk"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, -1,
     "chunk size"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX", 0, -1,
     "CRLF"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     "fffffffffffffffffffff\r\n",
     0, -1, "larger"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 0, -1,
     "Transfer-Encoding"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n"
     "\r\n",
     0, -1, "both"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 0, -1,
     "Content-Length"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\n", 0, -1, "Content-Length"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n", 0, -1, "larger"},
    {"HTTP/1.1 301 Moved\r\nLocation: https://evil.example/p\r\n\r\n", 0, -1,
     "HTTP 301 redirect to https://evil.example/p not followed"},
    {"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n", 0, -1,
     "redirect not followed"},
    {"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 0, -1,
     "HTTP status 404"},
    {"HTTP/1.1 204 No Content\r\n\r\n", 1, -1, "HTTP status 204"},
    {"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", 0, 1, "ok"},
    {"HTTP/2 200\r\n\r\n", 0, -1, "HTTP/1"},
    {"HTTP/1.1 2000 OK\r\n\r\n", 0, -1, "HTTP/1"},
    {"SSH-2.0-OpenSSH\r\n\r\n", 0, -1, "HTTP/1"},
    {"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n", 0, -1, "header"},
    {"HTTP/1.1 200 OK\r\n", 0, 0, NULL},
    {"HTTP/1.1 200 OK\r\n", 1, -1, "truncated"},
    {"", 1, -1, "empty"},
};

static void
test_http(void **state)
{
	static char body[MTASTS_BODY_MAX];

	for (size_t i = 0; i < sizeof(http_cases) / sizeof(http_cases[0]);
	     i++) {
		const struct http_case *c = &http_cases[i];
		char err[256] = "";
		size_t blen = 99;
		int rc =
		    mtasts_http_response(c->resp, strlen(c->resp), c->eof, body,
		                         sizeof(body), &blen, err, sizeof(err));

		if (rc != c->rc)
			fail_msg("case %zu: rc %d want %d (%s)", i, rc, c->rc,
			         err);
		if (rc == 1 &&
		    (blen != strlen(c->out) || memcmp(body, c->out, blen) != 0))
			fail_msg("case %zu: body \"%.*s\"", i, (int)blen, body);
		if (rc == -1 && strstr(err, c->out) == NULL)
			fail_msg("case %zu: error \"%s\" want \"%s\"", i, err,
			         c->out);
	}
}

static void
test_http_header_limit(void **state)
{
	static char buf[MTASTS_HEAD_MAX + 200], body[MTASTS_BODY_MAX];
	char err[256];
	size_t blen;

	/* an endless header is refused once past the limit, not waited on */
	memcpy(buf, "HTTP/1.1 200 OK\r\nX: ", 20);
	memset(buf + 20, 'a', sizeof(buf) - 20);
	assert_int_equal(mtasts_http_response(buf, MTASTS_HEAD_MAX, 0, body,
	                                      sizeof(body), &blen, err,
	                                      sizeof(err)),
	                 0);
	assert_int_equal(mtasts_http_response(buf, sizeof(buf), 0, body,
	                                      sizeof(body), &blen, err,
	                                      sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "too long"));
}

/* ------------------------------------------------------------------ */
/* cache */

/* the cache saved in the spool and loaded after a restart: policies
 * survive as they were, expired ones are dropped, a damaged file loses
 * entries (from the damage on) but never yields a wrong policy */
static void
test_cache_persist(void **state)
{
	char dir[] = "/tmp/test_mtasts.XXXXXX", path[128], cmd[256];
	struct mtasts_cache *c = mtasts_cache_new(), *l;
	struct mtasts_policy p = {
	    .mode = MTASTS_MODE_ENFORCE,
	    .max_age = 86400,
	    .nmx = 2,
	    .mx = {"mx1.example.org", "*.backup.example"}};
	const struct mtasts_policy *got;
	time_t t0 = 1700000000;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/mta-sts.cache", dir);
	/* no file yet: nothing, no error */
	l = mtasts_cache_new();
	assert_int_equal(mtasts_cache_load(l, path, t0), 0);
	mtasts_cache_free(l);

	assert_int_equal(mtasts_cache_put(c, "example.org", "A1", &p, t0), 0);
	p.mode = MTASTS_MODE_TESTING;
	p.max_age = 60;
	p.nmx = 1;
	assert_int_equal(mtasts_cache_put(c, "short.example", "S", &p, t0), 0);
	assert_int_equal(mtasts_cache_save(c, path), 0);

	/* an hour later: the 60 s policy expired, the other is back */
	l = mtasts_cache_new();
	assert_int_equal(mtasts_cache_load(l, path, t0 + 3600), 1);
	got = mtasts_cache_get(l, "example.org", "A1", t0 + 3600, NULL);
	assert_non_null(got);
	assert_int_equal(got->mode, MTASTS_MODE_ENFORCE);
	assert_int_equal(got->max_age, 86400);
	assert_int_equal(got->nmx, 2);
	assert_string_equal(got->mx[1], "*.backup.example");
	/* still expires at fetch time + max_age, not load time + max_age */
	assert_null(mtasts_cache_get(l, "example.org", "A1", t0 + 86400, NULL));
	assert_null(mtasts_cache_get(l, "short.example", "S", t0 + 3600, NULL));
	mtasts_cache_free(l);

	/* damage: a policy body that does not parse is skipped, a wrong
	 * length stops the load there */
	f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "bad.example X %lld 22\nversion: STSv1\nmode: \n",
	        (long long)t0);
	fprintf(f,
	        "good.example Y %lld 58\nversion: STSv1\nmode: enforce"
	        "\nmx: a.example\nmax_age: 86400\n",
	        (long long)t0);
	fprintf(f, "cut.example Z %lld 500\nversion: STSv1\n", (long long)t0);
	fclose(f);
	l = mtasts_cache_new();
	assert_int_equal(mtasts_cache_load(l, path, t0 + 1), 1);
	assert_null(mtasts_cache_get(l, "bad.example", NULL, t0 + 1, NULL));
	assert_non_null(
	    mtasts_cache_get(l, "good.example", NULL, t0 + 1, NULL));
	assert_null(mtasts_cache_get(l, "cut.example", NULL, t0 + 1, NULL));
	mtasts_cache_free(l);
	/* a directory that does not exist: save fails cleanly */
	assert_int_equal(mtasts_cache_save(c, "/nonexistent/dir/x"), -1);
	mtasts_cache_free(c);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

static void
test_cache(void **state)
{
	struct mtasts_cache *c = mtasts_cache_new();
	struct mtasts_policy p = {.mode = MTASTS_MODE_ENFORCE,
	                          .max_age = 7 * 86400,
	                          .nmx = 1,
	                          .mx = {"mx1.example.org"}};
	const struct mtasts_policy *got;
	time_t t0 = 1700000000;
	int refetch = -1;

	assert_null(mtasts_cache_get(c, "example.org", "A1", t0, &refetch));
	assert_int_equal(refetch, 1);
	assert_int_equal(mtasts_cache_put(c, "Example.ORG.", "A1", &p, t0), 0);

	got = mtasts_cache_get(c, "example.org", "A1", t0 + 10, &refetch);
	assert_non_null(got);
	assert_int_equal(refetch, 0);
	assert_string_equal(got->mx[0], "mx1.example.org");
	/* unknown TXT id (lookup failed): use the cache, no refetch */
	assert_non_null(
	    mtasts_cache_get(c, "EXAMPLE.org.", NULL, t0 + 10, &refetch));
	assert_int_equal(refetch, 0);
	/* id changed: still usable, refetch */
	assert_non_null(
	    mtasts_cache_get(c, "example.org", "B2", t0 + 10, &refetch));
	assert_int_equal(refetch, 1);
	/* a day old: refetch */
	assert_non_null(
	    mtasts_cache_get(c, "example.org", "A1", t0 + 86400, &refetch));
	assert_int_equal(refetch, 1);
	/* max_age ran out: gone */
	assert_null(
	    mtasts_cache_get(c, "example.org", "A1", t0 + 7 * 86400, &refetch));
	assert_int_equal(refetch, 1);
	/* replaced */
	p.mode = MTASTS_MODE_TESTING;
	assert_int_equal(mtasts_cache_put(c, "example.org", "B2", &p, t0 + 20),
	                 0);
	got = mtasts_cache_get(c, "example.org", "B2", t0 + 30, &refetch);
	assert_non_null(got);
	assert_int_equal(got->mode, MTASTS_MODE_TESTING);
	assert_int_equal(refetch, 0);
	/* other domains are separate; many of them */
	for (int i = 0; i < 100; i++) {
		char d[64];

		snprintf(d, sizeof(d), "d%d.example", i);
		assert_int_equal(mtasts_cache_put(c, d, "X", &p, t0), 0);
	}
	assert_non_null(mtasts_cache_get(c, "d57.example", "X", t0, NULL));
	assert_null(mtasts_cache_get(c, "d100.example", "X", t0, NULL));
	mtasts_cache_remove(c, "d57.example");
	assert_null(mtasts_cache_get(c, "d57.example", "X", t0, NULL));
	assert_non_null(mtasts_cache_get(c, "d99.example", "X", t0, NULL));
	assert_non_null(
	    mtasts_cache_get(c, "example.org", "B2", t0 + 30, NULL));
	/* bad input */
	assert_int_equal(mtasts_cache_put(c, "", "X", &p, t0), -1);
	assert_int_equal(mtasts_cache_put(c, "a.example",
	                                  "123456789012345678901234567890123",
	                                  &p, t0),
	                 -1);
	mtasts_cache_free(c);
	mtasts_cache_free(NULL);
}

/* ------------------------------------------------------------------ */
/* the fetch against a forked one-shot TLS server */

static char certdir[] = "/tmp/test_mtasts.XXXXXX";
static char cafile[512];

#define POLICY                                                                 \
	"version: STSv1\nmode: enforce\nmx: mx1.example.net\n"                 \
	"mx: *.backup.example.net\nmax_age: 86400\n"

static int
certs_setup(void **state)
{
	char cmd[4096];

	if (mkdtemp(certdir) == NULL)
		return -1;
	snprintf(cmd, sizeof(cmd),
	         "set -e; cd %s;"
	         "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256"
	         " -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=t CA'"
	         " -addext basicConstraints=critical,CA:TRUE"
	         " -addext keyUsage=critical,keyCertSign 2>/dev/null;"
	         "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256"
	         " -nodes -keyout ca2.key -out ca2.pem -days 2 -subj '/CN=t2'"
	         " 2>/dev/null;"
	         "for n in example.net other.net; do "
	         " openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256"
	         "  -nodes -keyout $n.key -out $n.csr -subj /CN=mta-sts.$n"
	         "  2>/dev/null;"
	         " printf 'subjectAltName=DNS:mta-sts.%%s\\n' $n > $n.ext;"
	         " openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key"
	         "  -CAcreateserial -out $n.pem -days 2 -extfile $n.ext"
	         "  2>/dev/null;"
	         "done",
	         certdir);
	if (system(cmd) != 0)
		return -1;
	snprintf(cafile, sizeof(cafile), "%s/ca.pem", certdir);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static int
certs_teardown(void **state)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", certdir);
	return system(cmd) == 0 ? 0 : -1;
}

struct server {
	pid_t pid;
	struct sockaddr_in sin;
};

/*
 * server_start - fork a server that accepts one connection with the
 * certificate of name, reads the request and answers resp (NULL: never
 * answer).  A request that is not exactly the expected GET gets a 400.
 */
static void
server_start(struct server *s, const char *name, const char *resp)
{
	socklen_t sl = sizeof(s->sin);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&s->sin, 0, sizeof(s->sin));
	s->sin.sin_family = AF_INET;
	s->sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lfd, (struct sockaddr *)&s->sin, sizeof(s->sin)),
	                 0);
	assert_int_equal(listen(lfd, 4), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&s->sin, &sl), 0);
	if ((s->pid = fork()) == 0) {
		char path[600], req[4096], want[512];
		SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
		size_t n = 0;
		SSL *ssl;
		int fd, r;

		snprintf(path, sizeof(path), "%s/%s.pem", certdir, name);
		SSL_CTX_use_certificate_file(ctx, path, SSL_FILETYPE_PEM);
		snprintf(path, sizeof(path), "%s/%s.key", certdir, name);
		SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM);
		fd = accept(lfd, NULL, NULL);
		ssl = SSL_new(ctx);
		SSL_set_fd(ssl, fd);
		if (SSL_accept(ssl) != 1)
			_exit(0);
		while (n < sizeof(req) - 1 &&
		       (r = SSL_read(ssl, req + n, sizeof(req) - 1 - n)) > 0) {
			n += r;
			req[n] = '\0';
			if (strstr(req, "\r\n\r\n") != NULL)
				break;
		}
		req[n] = '\0';
		if (resp == NULL) {
			sleep(30);
			_exit(0);
		}
		snprintf(want, sizeof(want),
		         "GET /.well-known/mta-sts.txt HTTP/1.1\r\n"
		         "Host: mta-sts.example.net\r\n");
		if (strncmp(req, want, strlen(want)) != 0 ||
		    strstr(req, "\r\nConnection: close\r\n") == NULL)
			resp = "HTTP/1.1 400 Bad request\r\n"
			       "Content-Length: 0\r\n\r\n";
		SSL_write(ssl, resp, strlen(resp));
		SSL_shutdown(ssl);
		_exit(0);
	}
	close(lfd);
}

static void
server_stop(struct server *s)
{
	int st;

	kill(s->pid, SIGKILL);
	waitpid(s->pid, &st, 0);
}

struct outcome {
	int called;
	int ok;
	struct mtasts_policy p;
	char err[320];
};

static void
fetch_cb(void *arg, const struct mtasts_policy *p, const char *err)
{
	struct outcome *o = arg;

	o->called++;
	if (p != NULL) {
		o->ok = 1;
		o->p = *p;
	} else
		snprintf(o->err, sizeof(o->err), "%s", err);
}

/* fetch - run one fetch to its end against s */
static void
fetch(struct server *s, const char *ca, double timeout, struct outcome *o)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct mtasts_fetch *f;
	char err[256];

	memset(o, 0, sizeof(*o));
	f = mtasts_fetch_start(loop, "Example.NET.", (struct sockaddr *)&s->sin,
	                       sizeof(s->sin), ca, timeout, fetch_cb, o, err,
	                       sizeof(err));
	assert_non_null(f);
	assert_int_equal(o->called, 0); /* never inside start */
	ev_run(loop, 0);
	assert_int_equal(o->called, 1);
	ev_loop_destroy(loop);
}

static const struct fetch_case {
	const char *cert; /* the server's: "example.net", "other.net" */
	const char *resp;
	int ca;          /* 1 test CA, 2 another CA */
	const char *err; /* NULL: a policy is expected */
} fetch_cases[] = {
    {"example.net",
     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
     "Content-Length: 89\r\n\r\n" POLICY,
     1, NULL},
    {"example.net",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     "1f\r\nversion: STSv1\nmode: enforce\nmx\r\n"
     "3a\r\n: mx1.example.net\nmx: *.backup.example.net\nmax_age: 86400\n"
     "\r\n0\r\n\r\n",
     1, NULL},
    {"example.net", "HTTP/1.0 200 OK\r\n\r\n" POLICY, 1, NULL},
    {"example.net",
     "HTTP/1.1 301 Moved\r\nLocation: https://x.example/\r\n"
     "Content-Length: 0\r\n\r\n",
     1, "redirect"},
    {"example.net", "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno\n",
     1, "HTTP status 404"},
    {"example.net", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nversion: 1",
     1, "bad policy"},
    {"example.net", "HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\nshort", 1,
     "truncated"},
    {"other.net", "HTTP/1.1 200 OK\r\nContent-Length: 89\r\n\r\n" POLICY, 1,
     "certificate verification failed"},
    {"example.net", "HTTP/1.1 200 OK\r\nContent-Length: 89\r\n\r\n" POLICY, 2,
     "certificate verification failed"},
};

static void
test_fetch(void **state)
{
	char ca2[600];

	snprintf(ca2, sizeof(ca2), "%s/ca2.pem", certdir);
	for (size_t i = 0; i < sizeof(fetch_cases) / sizeof(fetch_cases[0]);
	     i++) {
		const struct fetch_case *c = &fetch_cases[i];
		struct server s;
		struct outcome o;

		server_start(&s, c->cert, c->resp);
		fetch(&s, c->ca == 1 ? cafile : ca2, 10, &o);
		server_stop(&s);
		if (c->err == NULL) {
			if (!o.ok)
				fail_msg("case %zu: %s", i, o.err);
			assert_int_equal(o.p.mode, MTASTS_MODE_ENFORCE);
			assert_int_equal(o.p.max_age, 86400);
			assert_int_equal(o.p.nmx, 2);
			assert_true(mtasts_mx_match(&o.p, "mx1.example.net"));
			assert_true(
			    mtasts_mx_match(&o.p, "mx2.backup.example.net"));
		} else {
			if (o.ok)
				fail_msg("case %zu: policy accepted", i);
			if (strstr(o.err, c->err) == NULL)
				fail_msg("case %zu: error \"%s\" want \"%s\"",
				         i, o.err, c->err);
		}
	}
}

static void
test_fetch_timeout(void **state)
{
	struct server s;
	struct outcome o;

	server_start(&s, "example.net", NULL);
	fetch(&s, cafile, 0.5, &o);
	server_stop(&s);
	assert_int_equal(o.ok, 0);
	assert_non_null(strstr(o.err, "timeout"));
}

static void
test_fetch_refused(void **state)
{
	struct server s;
	struct outcome o;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	socklen_t sl = sizeof(s.sin);

	/* a port that was just free: nobody listens */
	memset(&s.sin, 0, sizeof(s.sin));
	s.sin.sin_family = AF_INET;
	s.sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&s.sin, sizeof(s.sin));
	getsockname(fd, (struct sockaddr *)&s.sin, &sl);
	close(fd);
	fetch(&s, cafile, 5, &o);
	assert_int_equal(o.ok, 0);
	assert_non_null(strstr(o.err, "connect: Connection refused"));

	/* an unusable CA file fails from the loop too */
	fetch(&s, "/nonexistent/ca.pem", 5, &o);
	assert_non_null(strstr(o.err, "CA file"));
}

static void
test_fetch_cancel(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct server s;
	struct outcome o = {0};
	struct mtasts_fetch *f;
	char err[256];

	server_start(&s, "example.net", NULL);
	f = mtasts_fetch_start(loop, "example.net", (struct sockaddr *)&s.sin,
	                       sizeof(s.sin), cafile, 5, fetch_cb, &o, err,
	                       sizeof(err));
	assert_non_null(f);
	ev_run(loop, EVRUN_NOWAIT);
	mtasts_fetch_cancel(f);
	ev_run(loop, 0); /* nothing left: returns at once */
	assert_int_equal(o.called, 0);
	server_stop(&s);

	/* bad names are refused by start itself */
	assert_null(mtasts_fetch_start(
	    loop, "bad..name", (struct sockaddr *)&s.sin, sizeof(s.sin), cafile,
	    5, fetch_cb, &o, err, sizeof(err)));
	assert_null(mtasts_fetch_start(loop, "", (struct sockaddr *)&s.sin,
	                               sizeof(s.sin), cafile, 5, fetch_cb, &o,
	                               err, sizeof(err)));
	ev_loop_destroy(loop);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_txt),
	    cmocka_unit_test(test_txt_select),
	    cmocka_unit_test(test_policy),
	    cmocka_unit_test(test_policy_limits),
	    cmocka_unit_test(test_mx_match),
	    cmocka_unit_test(test_http),
	    cmocka_unit_test(test_http_header_limit),
	    cmocka_unit_test(test_cache),
	    cmocka_unit_test(test_cache_persist),
	    cmocka_unit_test(test_fetch),
	    cmocka_unit_test(test_fetch_timeout),
	    cmocka_unit_test(test_fetch_refused),
	    cmocka_unit_test(test_fetch_cancel),
	};

	return cmocka_run_group_tests(tests, certs_setup, certs_teardown);
}
