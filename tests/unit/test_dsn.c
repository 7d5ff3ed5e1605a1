/*
 * test_dsn.c - relay/dsn.c: which failures are reported (null sender,
 * bounces, NOTIFY table), the composed report parsed back (MIME
 * structure, per-message and per-recipient fields, xtext decoding, CRLF
 * only, skipped recipients), and dsn_bounce() against a real spool: the
 * DSN message from <> to the sender, headers only or the full message,
 * closed by the final boundary, handed to the forwarder.
 *
 * dsn.c is compiled into this test so that it runs whichever bounce
 * module the Makefile builds into the library.
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

#include "../../relay/dsn.c"

struct backmxd backmxd;
struct stats stats;

/* the forwarder is not under test: remember what it was given */
static char queued_id[SPOOL_ID_LEN + 1];
static int nqueued;

void
forward_queued(const struct spool_envelope *e)
{
	memcpy(queued_id, e->id, sizeof(queued_id));
	nqueued++;
}

static struct spool_rcpt rcpts[3];
static struct spool_envelope env;

static void
env_setup(void)
{
	memset(&env, 0, sizeof(env));
	memset(rcpts, 0, sizeof(rcpts));
	snprintf(env.id, sizeof(env.id), "%s", "6b03f54c0001");
	env.arrival = 1700000000;
	env.sender = "someone@sender.example";
	env.envid = "env+3D42";
	env.ret = SPOOL_RET_NONE;
	env.nrcpt = 3;
	env.rcpt = rcpts;
	rcpts[0].address = "alice@backup.example";
	rcpts[0].orcpt = "rfc822;a+2Bb@backup.example";
	rcpts[1].address = "bob@backup.example";
	rcpts[1].notify = SPOOL_NOTIFY_NEVER;
	rcpts[2].address = "carol@backup.example";
	rcpts[2].notify = SPOOL_NOTIFY_FAILURE | SPOOL_NOTIFY_DELAY;
}

static void
items_setup(struct dsn_item it[3])
{
	memset(it, 0, 3 * sizeof(*it));
	for (int k = 0; k < 3; k++) {
		it[k].rcpt = k;
		it[k].last_attempt = 1700000100;
	}
	result_set(&it[0].res, 550, "5.1.1", "no such user");
	it[0].remote = 1;
	snprintf(it[0].remote_mta, sizeof(it[0].remote_mta),
		 "mx1.test.example[127.0.0.2]:25");
	result_set(&it[1].res, 550, "5.1.1", "never reported");
	result_set(&it[2].res, 554, "4.4.7", "delivery time expired");
}

static void
test_wanted(void **state)
{
	static const struct {
		int notify;
		int want;
	} t[] = {
		{ 0, 1 },
		{ SPOOL_NOTIFY_NEVER, 0 },
		{ SPOOL_NOTIFY_FAILURE, 1 },
		{ SPOOL_NOTIFY_SUCCESS, 0 },
		{ SPOOL_NOTIFY_DELAY, 0 },
		{ SPOOL_NOTIFY_SUCCESS | SPOOL_NOTIFY_FAILURE, 1 },
		{ SPOOL_NOTIFY_DELAY | SPOOL_NOTIFY_FAILURE, 1 },
	};

	env_setup();
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		rcpts[0].notify = t[i].notify;
		assert_int_equal(dsn_wanted(&env, 0), t[i].want);
	}
	rcpts[0].notify = 0;
	env.sender = "";
	assert_int_equal(dsn_wanted(&env, 0), 0);
	env.sender = "someone@sender.example";
	env.is_bounce = 1;
	assert_int_equal(dsn_wanted(&env, 0), 0);
	env.is_bounce = 0;
	assert_int_equal(dsn_wanted(&env, -1), 0);
	assert_int_equal(dsn_wanted(&env, 3), 0);
}

/* count occurrences of needle in hay */
static int
count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

static void
test_compose_parsed_back(void **state)
{
	struct dsn_item it[3];
	const char *b = "6b03f54c0001.1700000200/mx2.test.example";
	char trailer[256], *msg, *p, *blank, *report;
	size_t len, tl;

	env_setup();
	items_setup(it);
	msg = dsn_compose(&env, it, 3, "mx2.test.example", b, 1700000200, 0,
			  &len);
	assert_non_null(msg);
	tl = dsn_trailer(b, trailer, sizeof(trailer));
	assert_string_equal(trailer, "\r\n--6b03f54c0001.1700000200/"
				     "mx2.test.example--\r\n");
	assert_int_equal(tl, strlen(trailer));
	msg = realloc(msg, len + tl + 1);
	memcpy(msg + len, trailer, tl + 1);
	len += tl;
	assert_int_equal(strlen(msg), len);

	/* only CRLF line ends, no line over 998 octets */
	for (size_t i = 0, ll = 0; i < len; i++, ll++) {
		if (msg[i] == '\n') {
			assert_true(i > 0 && msg[i - 1] == '\r');
			ll = 0;
		}
		if (msg[i] == '\r')
			assert_true(msg[i + 1] == '\n');
		assert_true(ll < 998);
	}
	/* top-level header */
	blank = strstr(msg, "\r\n\r\n");
	assert_non_null(blank);
	*blank = '\0';
	assert_non_null(strstr(msg, "From: MAILER-DAEMON@mx2.test.example"));
	assert_non_null(strstr(msg, "To: <someone@sender.example>\r\n"));
	assert_non_null(strstr(msg, "Auto-Submitted: auto-replied\r\n"));
	assert_non_null(strstr(msg, "MIME-Version: 1.0\r\n"));
	assert_non_null(strstr(msg, "Content-Type: multipart/report; "
				    "report-type=delivery-status;"));
	assert_non_null(strstr(msg, "boundary=\"6b03f54c0001.1700000200/"
				    "mx2.test.example\""));
	*blank = '\r';
	/* three parts and the closing delimiter, each on a line of its own */
	assert_int_equal(count(msg, "\r\n--6b03f54c0001.1700000200/"
				    "mx2.test.example\r\n"), 3);
	assert_int_equal(count(msg, "--6b03f54c0001.1700000200/"
				    "mx2.test.example--\r\n"), 1);
	assert_non_null(strstr(msg, "Content-Type: text/plain"));
	assert_non_null(strstr(msg, "Content-Type: text/rfc822-headers\r\n"));
	assert_null(strstr(msg, "message/rfc822"));

	/* the delivery-status part */
	report = strstr(msg, "Content-Type: message/delivery-status\r\n\r\n");
	assert_non_null(report);
	assert_non_null(strstr(report, "\r\n\r\nReporting-MTA: dns; "
				       "mx2.test.example\r\n"));
	assert_non_null(strstr(report, "Original-Envelope-Id: env=42\r\n"));
	assert_non_null(strstr(report, "Arrival-Date: Tue, 14 Nov 2023 "
				       "22:13:20 +0000\r\n"));
	p = strstr(report, "\r\n\r\nFinal-Recipient: rfc822; "
			   "alice@backup.example\r\n"
			   "Original-Recipient: rfc822; a+b@backup.example\r\n"
			   "Action: failed\r\n"
			   "Status: 5.1.1\r\n"
			   "Remote-MTA: dns; mx1.test.example\r\n"
			   "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n"
			   "Last-Attempt-Date: Tue, 14 Nov 2023 22:15:00 "
			   "+0000\r\n");
	assert_non_null(p);
	/* NOTIFY=NEVER is not reported, NOTIFY=FAILURE,DELAY is */
	assert_null(strstr(msg, "bob@backup.example"));
	p = strstr(report, "Final-Recipient: rfc822; carol@backup.example\r\n"
			   "Action: failed\r\nStatus: 4.4.7\r\n"
			   "Diagnostic-Code: smtp; 554 4.4.7 delivery time "
			   "expired\r\n");
	assert_non_null(p);
	/* the human part names both */
	assert_non_null(strstr(msg, "<alice@backup.example>: host "
				    "mx1.test.example[127.0.0.2]:25 said: "
				    "550 5.1.1 no such user"));
	assert_non_null(strstr(msg, "<carol@backup.example>: delivery time "
				    "expired"));
	free(msg);
}

static void
test_compose_full_and_hostile_text(void **state)
{
	struct dsn_item it[3];
	char *msg;
	size_t len;

	env_setup();
	items_setup(it);
	env.ret = SPOOL_RET_FULL;
	env.body = SPOOL_BODY_8BITMIME;
	/* a remote reply cannot inject header lines or 8-bit octets */
	result_set(&it[0].res, 550, "5.1.1", "bad\r\nX-Injected: 1\xff");
	rcpts[0].address = "al\nice@backup.example";
	msg = dsn_compose(&env, it, 3, "mx2.test.example", "B", 1700000200, 1,
			  &len);
	assert_non_null(msg);
	assert_non_null(strstr(msg, "Content-Type: message/rfc822\r\n"));
	assert_non_null(strstr(msg, "Content-Transfer-Encoding: 8bit\r\n"));
	assert_null(strstr(msg, "\r\nX-Injected"));
	assert_non_null(strstr(msg, "bad??X-Injected: 1?"));
	assert_non_null(strstr(msg, "al?ice@backup.example"));
	for (size_t i = 0; i < len; i++)
		assert_true((unsigned char)msg[i] < 128);
	free(msg);
}

/* dsn_bounce against a real spool */
static char spooldir[64];

static int
spool_setup(void **state)
{
	static struct config cfg;
	char err[256];

	snprintf(spooldir, sizeof(spooldir), "/tmp/test_dsn.XXXXXX");
	assert_non_null(mkdtemp(spooldir));
	backmxd.spool = spool_open(spooldir, err, sizeof(err));
	assert_non_null(backmxd.spool);
	cfg.hostname = "mx2.test.example";
	backmxd.cfg = &cfg;
	return 0;
}

static int
spool_teardown(void **state)
{
	char cmd[128];

	spool_close(backmxd.spool);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", spooldir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

/* the body of id, NUL-terminated */
static char *
read_body(const char *id, size_t *total)
{
	const void *data;
	size_t len;
	char *all = NULL;
	uint32_t n = 0;

	*total = 0;
	while (spool_body_read(backmxd.spool, id, n++, &data, &len) == 1) {
		all = realloc(all, *total + len + 1);
		memcpy(all + *total, data, len);
		*total += len;
	}
	if (all == NULL)
		all = calloc(1, 1);
	all[*total] = '\0';
	return all;
}

static void
bounce_one(int ret, const char *orig, const char *want_part,
	   const char *must_not)
{
	struct spool_writer *w = spool_writer_new(backmxd.spool);
	struct spool_envelope *b;
	struct dsn_item it[3];
	char *body;
	size_t total;
	int before = nqueued;

	env_setup();
	env.ret = ret;
	assert_non_null(w);
	assert_int_equal(spool_writer_append(w, orig, strlen(orig)), 0);
	assert_int_equal(spool_writer_commit(w, &env), 0);
	items_setup(it);
	assert_int_equal(dsn_bounce(&env, it, 3, 1700000200), 1);
	assert_int_equal(nqueued, before + 1);
	assert_int_equal(stats.dsn_sent, (uint64_t)nqueued);

	b = spool_envelope_get(backmxd.spool, queued_id);
	assert_non_null(b);
	assert_string_equal(b->sender, "");
	assert_int_equal(b->is_bounce, 1);
	assert_int_equal(b->nrcpt, 1);
	assert_string_equal(b->rcpt[0].address, "someone@sender.example");
	assert_int_equal(b->rcpt[0].state, SPOOL_RCPT_PENDING);
	body = read_body(queued_id, &total);
	assert_int_equal(b->size, total);
	assert_non_null(strstr(body, want_part));
	if (must_not != NULL)
		assert_null(strstr(body, must_not));
	/* ends with the closing delimiter, right after the content */
	assert_true(total > 40);
	assert_string_equal(body + total - strlen("--\r\n"), "--\r\n");
	free(body);
	spool_envelope_free(b);
}

static void
test_bounce_headers(void **state)
{
	bounce_one(SPOOL_RET_HDRS,
		   "From: a@b\r\nSubject: hi\r\n\r\nbody line\r\n",
		   "text/rfc822-headers\r\n\r\nFrom: a@b\r\nSubject: hi\r\n"
		   "\r\n--",
		   "body line");
	/* bare LF line ends: the header still ends at the empty line */
	bounce_one(SPOOL_RET_HDRS,
		   "From: a@b\nSubject: hi\n\nbody line\n",
		   "text/rfc822-headers\r\n\r\nFrom: a@b\nSubject: hi\n\r\n--",
		   "body line");
	bounce_one(SPOOL_RET_NONE,
		   "From: a@b\r\nSubject: hi\r\n\r\nbody line\r\n",
		   "text/rfc822-headers\r\n\r\nFrom: a@b\r\nSubject: hi\r\n",
		   "body line");
}

static void
test_bounce_full(void **state)
{
	bounce_one(SPOOL_RET_FULL,
		   "From: a@b\r\nSubject: hi\r\n\r\nbody line\r\n",
		   "message/rfc822\r\n\r\nFrom: a@b\r\nSubject: hi\r\n\r\n"
		   "body line\r\n",
		   NULL);
}

static void
test_bounce_not_wanted(void **state)
{
	struct dsn_item it[3];
	int before = nqueued;

	env_setup();
	items_setup(it);
	env.sender = "";
	assert_int_equal(dsn_bounce(&env, it, 3, 1700000200), 0);
	env.sender = "someone@sender.example";
	env.is_bounce = 1;
	assert_int_equal(dsn_bounce(&env, it, 3, 1700000200), 0);
	env.is_bounce = 0;
	assert_int_equal(dsn_bounce(&env, it + 1, 1, 1700000200), 0);
	assert_int_equal(nqueued, before);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wanted),
		cmocka_unit_test(test_compose_parsed_back),
		cmocka_unit_test(test_compose_full_and_hostile_text),
		cmocka_unit_test(test_bounce_headers),
		cmocka_unit_test(test_bounce_full),
		cmocka_unit_test(test_bounce_not_wanted),
	};

	log_open("test_dsn", 1);
	return cmocka_run_group_tests(tests, spool_setup, spool_teardown);
}
