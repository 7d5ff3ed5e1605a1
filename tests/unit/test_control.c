/*
 * test_control.c - the control protocol's request parser (control_proto.c)
 * and the JSON escaping shared by control.c, metrics.c and backmxctl
 * (json.c), table-driven.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "control.h"
#include "json.h"

struct parse_case {
	const char *line;
	int ok;
	enum control_cmd cmd;
	int json, nargs, is_id;
	const char *arg; /* args[0] after canonicalisation */
	const char *err; /* substring of the error */
};

static const struct parse_case parse_cases[] = {
    {"queue\n", 1, CONTROL_QUEUE, 0, 0, 0, NULL, NULL},
    {"queue", 1, CONTROL_QUEUE, 0, 0, 0, NULL, NULL},
    {"queue --json\r\n", 1, CONTROL_QUEUE, 1, 0, 0, NULL, NULL},
    {"--json queue Example.ORG\n", 1, CONTROL_QUEUE, 1, 1, 0, "example.org",
     NULL},
    {"queue\t @example.org.\n", 1, CONTROL_QUEUE, 0, 1, 0, "example.org", NULL},
    {"show 4F2A9C1E0A3B\n", 1, CONTROL_SHOW, 0, 1, 1, "4f2a9c1e0a3b", NULL},
    {"show 4F2A9C1E0A3\n", 0, 0, 0, 0, 0, NULL, "bad queue id"},
    {"show 4F2A9C1E0A3BC\n", 0, 0, 0, 0, 0, NULL, "bad queue id"},
    {"show example.org\n", 0, 0, 0, 0, 0, NULL, "bad queue id"},
    {"show\n", 0, 0, 0, 0, 0, NULL, "usage: show ID"},
    {"flush\n", 1, CONTROL_FLUSH, 0, 0, 0, NULL, NULL},
    {"flush backup.example\n", 1, CONTROL_FLUSH, 0, 1, 0, "backup.example",
     NULL},
    {"flush a b\n", 0, 0, 0, 0, 0, NULL, "usage: flush"},
    {"hold 00aabbccddee\n", 1, CONTROL_HOLD, 0, 1, 1, "00aabbccddee", NULL},
    {"hold example.org\n", 1, CONTROL_HOLD, 0, 1, 0, "example.org", NULL},
    {"release EXAMPLE.org\n", 1, CONTROL_RELEASE, 0, 1, 0, "example.org", NULL},
    {"hold bad..domain\n", 0, 0, 0, 0, 0, NULL, "bad queue id or domain"},
    {"delete 00aabbccddee\n", 1, CONTROL_DELETE, 0, 1, 1, "00aabbccddee", NULL},
    {"delete example.org\n", 1, CONTROL_DELETE, 0, 1, 0, "example.org", NULL},
    {"delete\n", 0, 0, 0, 0, 0, NULL, "no filter given"},
    {"bounce --json\n", 0, 0, 0, 0, 0, NULL, "no filter given"},
    {"delete --all\n", 1, CONTROL_DELETE, 0, 0, 0, NULL, NULL},
    {"delete --older 2d\n", 1, CONTROL_DELETE, 0, 0, 0, NULL, NULL},
    {"hold --sender ^spam@ --rcpt @backup\\.example$\n", 1, CONTROL_HOLD, 0, 0,
     0, NULL, NULL},
    {"hold --sender (\n", 0, 0, 0, 0, 0, NULL, "bad regular expression"},
    {"hold --sender\n", 0, 0, 0, 0, 0, NULL, "--sender needs a value"},
    {"queue --older 5x\n", 0, 0, 0, 0, 0, NULL, "bad duration"},
    {"queue --frob\n", 0, 0, 0, 0, 0, NULL, "unknown option: --frob"},
    {"queue --id 00aabbccddeg\n", 0, 0, 0, 0, 0, NULL, "bad queue id"},
    {"stats --held\n", 0, 0, 0, 0, 0, NULL, "stats takes no filters"},
    {"queue --body\n", 0, 0, 0, 0, 0, NULL, "takes no --body"},
    {"show 00aabbccddee --body\n", 1, CONTROL_SHOW, 0, 1, 1, "00aabbccddee",
     NULL},
    {"requeue backup.example --younger 1h\n", 1, CONTROL_REQUEUE, 0, 1, 0,
     "backup.example", NULL},
    {"shape\n", 1, CONTROL_SHAPE, 0, 0, 0, NULL, NULL},
    {"shape 00aabbccddee x\n", 0, 0, 0, 0, 0, NULL, "usage: shape"},
    {"pause Backup.Example\n", 1, CONTROL_PAUSE, 0, 1, 0, "backup.example",
     NULL},
    {"resume\n", 0, 0, 0, 0, 0, NULL, "usage: resume DOMAIN"},
    {"hold 00aabbccddee --id 00aabbccddef\n", 0, 0, 0, 0, 0, NULL,
     "two queue ids"},
    {"bounce 00aabbccddee --json\n", 1, CONTROL_BOUNCE, 1, 1, 1, "00aabbccddee",
     NULL},
    {"stats\n", 1, CONTROL_STATS, 0, 0, 0, NULL, NULL},
    {"stats extra\n", 0, 0, 0, 0, 0, NULL, "usage: stats"},
    {"check-dns backup.example\n", 1, CONTROL_CHECK_DNS, 0, 1, 0,
     "backup.example", NULL},
    {"check-dns\n", 0, 0, 0, 0, 0, NULL, "usage: check-dns"},
    {"check-dns exa_mple.org\n", 1, CONTROL_CHECK_DNS, 0, 1, 0, "exa_mple.org",
     NULL},
    {"check-dns exa/mple.org\n", 0, 0, 0, 0, 0, NULL, "bad domain"},
    {"check-dns .example.org\n", 0, 0, 0, 0, 0, NULL, "bad domain"},
    {"check-dns @\n", 0, 0, 0, 0, 0, NULL, "bad domain"},
    {"QUEUE\n", 0, 0, 0, 0, 0, NULL, "unknown command"},
    {"frobnicate\n", 0, 0, 0, 0, 0, NULL, "unknown command: frobnicate"},
    {"\n", 0, 0, 0, 0, 0, NULL, "no command"},
    {"   \t \n", 0, 0, 0, 0, 0, NULL, "no command"},
    {"--json\n", 0, 0, 0, 0, 0, NULL, "no command"},
    {"queue a b c d\n", 0, 0, 0, 0, 0, NULL, "too many arguments"},
    {"queue ex\001ample.org\n", 0, 0, 0, 0, 0, NULL, "non-printable"},
    {"queue ex\xc3\xa9mple.org\n", 0, 0, 0, 0, 0, NULL, "non-printable"},
};

static void
test_parse_table(void **state)
{
	struct control_request req;
	char err[256];
	size_t i;
	int r;

	for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		const struct parse_case *t = &parse_cases[i];

		err[0] = '\0';
		r = control_request_parse(t->line, strlen(t->line), &req, err,
		                          sizeof(err));
		if ((r == 0) != t->ok)
			fail_msg("case %zu \"%s\": got %d (%s)", i, t->line, r,
			         err);
		if (!t->ok) {
			if (strstr(err, t->err) == NULL)
				fail_msg("case %zu: error \"%s\" lacks \"%s\"",
				         i, err, t->err);
			continue;
		}
		assert_int_equal(req.cmd, t->cmd);
		assert_int_equal(req.json, t->json);
		assert_int_equal(req.nargs, t->nargs);
		if (t->nargs > 0) {
			assert_string_equal(req.args[0], t->arg);
			assert_int_equal(req.arg_is_id, t->is_id);
		}
		assert_non_null(req.name);
	}
}

static void
test_parse_bounds(void **state)
{
	struct control_request req;
	char line[CONTROL_LINE_MAX + 16], err[256];

	/* a token of exactly CONTROL_TOKEN_MAX octets: a domain label is at
	 * most 63, so it is refused as a domain, not as too long */
	memset(line, 'a', sizeof(line));
	memcpy(line, "queue ", 6);
	line[6 + CONTROL_TOKEN_MAX] = '\n';
	assert_int_equal(control_request_parse(line, 7 + CONTROL_TOKEN_MAX,
	                                       &req, err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "or domain"));
	line[6 + CONTROL_TOKEN_MAX] = 'a';
	line[7 + CONTROL_TOKEN_MAX] = '\n';
	assert_int_equal(control_request_parse(line, 8 + CONTROL_TOKEN_MAX,
	                                       &req, err, sizeof(err)),
	                 -1);
	assert_string_equal(err, "argument too long");
	/* the whole line */
	memset(line, ' ', sizeof(line));
	memcpy(line, "stats", 5);
	assert_int_equal(control_request_parse(line, CONTROL_LINE_MAX - 1, &req,
	                                       err, sizeof(err)),
	                 0);
	assert_int_equal(control_request_parse(line, CONTROL_LINE_MAX, &req,
	                                       err, sizeof(err)),
	                 -1);
	assert_string_equal(err, "request too long");
	/* a NUL inside is not a terminator */
	assert_int_equal(
	    control_request_parse("stats\0x\n", 8, &req, err, sizeof(err)), -1);
	/* a 253-octet name of 63-octet labels is the longest domain */
	{
		char dom[300];
		int n = 0;

		n += snprintf(dom + n, sizeof(dom) - n, "queue ");
		for (int k = 0; k < 3; k++) {
			memset(dom + n, 'b', 63);
			n += 63;
			dom[n++] = '.';
		}
		memset(dom + n, 'c', 61);
		n += 61;
		assert_int_equal(control_request_parse(dom, (size_t)n, &req,
		                                       err, sizeof(err)),
		                 0);
		assert_int_equal(strlen(req.args[0]), 253);
		dom[n++] = 'c';
		assert_int_equal(control_request_parse(dom, (size_t)n, &req,
		                                       err, sizeof(err)),
		                 -1);
	}
}

static void
test_is_id(void **state)
{
	assert_true(control_is_id("0123456789ab"));
	assert_true(control_is_id("0123456789AB"));
	assert_false(control_is_id("0123456789a"));
	assert_false(control_is_id("0123456789abc"));
	assert_false(control_is_id("0123456789ag"));
	assert_false(control_is_id(""));
	assert_non_null(strstr(control_usage(), "check-dns DOMAIN"));
	assert_int_equal(control_parse_duration("90"), 90);
	assert_int_equal(control_parse_duration("5m"), 300);
	assert_int_equal(control_parse_duration("2d"), 172800);
	assert_int_equal(control_parse_duration("1w"), 604800);
	assert_int_equal(control_parse_duration("m"), -1);
	assert_int_equal(control_parse_duration("5mm"), -1);
	assert_int_equal(control_parse_duration("99999999999999"), -1);
}

struct esc_case {
	const char *in;
	size_t len;
	const char *out;
};

static const struct esc_case esc_cases[] = {
    {"", 0, "\"\""},
    {"a@b.example", 11, "\"a@b.example\""},
    {"say \"hi\"", 8, "\"say \\\"hi\\\"\""},
    {"back\\slash", 10, "\"back\\\\slash\""},
    {"l1\r\nl2\t", 7, "\"l1\\r\\nl2\\t\""},
    {"\x01\x1f\x7f", 3, "\"\\u0001\\u001f\\u007f\""},
    {"nul\0in", 6, "\"nul\\u0000in\""},
    {"caf\xc3\xa9", 5, "\"caf\xc3\xa9\""},           /* valid 2 */
    {"\xe2\x82\xac", 3, "\"\xe2\x82\xac\""},         /* valid 3 */
    {"\xf0\x9f\x93\xa7", 4, "\"\xf0\x9f\x93\xa7\""}, /* valid 4 */
    {"\xff", 1, "\"\\ufffd\""},
    {"\xc3", 1, "\"\\ufffd\""},                       /* truncated */
    {"\xc3(", 2, "\"\\ufffd(\""},                     /* bad continuation */
    {"\xc0\xaf", 2, "\"\\ufffd\\ufffd\""},            /* overlong '/' */
    {"\xe0\x80\xaf", 3, "\"\\ufffd\\ufffd\\ufffd\""}, /* overlong */
    {"\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""}, /* surrogate */
    {"\xf4\x90\x80\x80", 4,
     "\"\\ufffd\\ufffd\\ufffd\\ufffd\""}, /* > U+10FFFF */
    {"\x80x", 2, "\"\\ufffdx\""},         /* lone continuation */
};

static void
test_json_escape(void **state)
{
	struct json_buf b;
	size_t i;

	for (i = 0; i < sizeof(esc_cases) / sizeof(esc_cases[0]); i++) {
		json_buf_init(&b);
		json_put_string(&b, esc_cases[i].in, esc_cases[i].len);
		assert_false(b.oom);
		if (strcmp(b.data, esc_cases[i].out) != 0)
			fail_msg("case %zu: got %s want %s", i, b.data,
			         esc_cases[i].out);
		json_buf_free(&b);
	}
	json_buf_init(&b);
	json_put_cstring(&b, NULL);
	assert_string_equal(b.data, "null");
	json_buf_free(&b);
}

static void
test_json_text(void **state)
{
	struct json_buf b;

	json_buf_init(&b);
	json_put_text(&b, "a\r\nb\tc\x1b[31m\xff\xc3\xa9");
	assert_string_equal(b.data, "a??b\tc?[31m\xef\xbf\xbd\xc3\xa9");
	json_buf_free(&b);
}

static void
test_json_buf(void **state)
{
	struct json_buf b;
	int i;

	json_buf_init(&b);
	for (i = 0; i < 10000; i++)
		json_buf_printf(&b, "%04d,", i);
	assert_int_equal(b.len, 50000);
	assert_false(b.oom);
	assert_memory_equal(b.data, "0000,0001,", 10);
	json_buf_consume(&b, 5);
	assert_int_equal(b.len, 49995);
	assert_memory_equal(b.data, "0001,", 5);
	assert_int_equal(b.data[b.len], '\0');
	json_buf_consume(&b, 100000);
	assert_int_equal(b.len, 0);
	json_buf_append(&b, "xy", 2);
	assert_string_equal(b.data, "xy");
	json_buf_free(&b);
	json_buf_free(&b); /* twice is harmless */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_table),
	    cmocka_unit_test(test_parse_bounds),
	    cmocka_unit_test(test_is_id),
	    cmocka_unit_test(test_json_escape),
	    cmocka_unit_test(test_json_text),
	    cmocka_unit_test(test_json_buf),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
