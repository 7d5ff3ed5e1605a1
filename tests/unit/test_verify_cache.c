/*
 * test_verify_cache.c - spool/verify.c, the recipient verification cache,
 * on a real BDB environment in a temporary directory: round trip of an
 * answer with the primary's text, answers kept across a close and reopen
 * of the environment (a restart), expiry by keep_until, the size bound
 * (expired records evicted first, then the oldest), and a bad record read
 * as a miss.
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

#include "spool.h"

#define SPOOL_FIXTURE_TAG "verify"
#include "spool_fixture.h"

static struct spool_verify *
open_cache(struct spool *s, uint64_t max)
{
	char err[512];
	struct spool_verify *v = spool_verify_open(s, max, err, sizeof(err));

	if (v == NULL)
		fail_msg("spool_verify_open: %s", err);
	return v;
}

static void
put(struct spool_verify *v, const char *key, int yes, int64_t t, int64_t keep,
    int64_t now)
{
	struct spool_verify_entry e;

	memset(&e, 0, sizeof(e));
	e.answer = yes;
	e.code = yes ? 250 : 550;
	e.time = t;
	e.keep_until = keep;
	snprintf(e.text, sizeof(e.text), "%s",
	         yes ? "2.1.5 ok" : "5.1.1 no such user here");
	assert_int_equal(spool_verify_put(v, key, &e, now), 0);
}

static void
test_round_trip_and_restart(void **state)
{
	struct spool *s = open_spool();
	struct spool_verify *v = open_cache(s, 100);
	struct spool_verify_entry e;

	put(v, "c:bob@verify.example", 1, 1000, 5000, 1000);
	put(v, "c:ghost@verify.example", 0, 1001, 2000, 1001);
	put(v, "c:bob@verify.example", 1, 1002, 5002, 1002); /* replaced */
	assert_int_equal(spool_verify_count(v), 2);
	assert_int_equal(spool_verify_get(v, "c:carol@verify.example", &e), 0);
	assert_int_equal(spool_verify_get(v, "c:ghost@verify.example", &e), 1);
	assert_int_equal(e.answer, 0);
	assert_int_equal(e.code, 550);
	assert_int_equal(e.time, 1001);
	assert_string_equal(e.text, "5.1.1 no such user here");
	spool_verify_close(v);
	spool_close(s);

	/* a restart: the environment opened again, answers still there */
	s = open_spool();
	v = open_cache(s, 100);
	assert_int_equal(spool_verify_count(v), 2);
	assert_int_equal(spool_verify_get(v, "c:bob@verify.example", &e), 1);
	assert_int_equal(e.answer, 1);
	assert_int_equal(e.time, 1002);
	assert_int_equal(e.keep_until, 5002);
	assert_string_equal(e.text, "2.1.5 ok");
	assert_int_equal(spool_verify_del(v, "c:bob@verify.example"), 0);
	assert_int_equal(spool_verify_get(v, "c:bob@verify.example", &e), 0);
	assert_int_equal(spool_verify_count(v), 1);
	spool_verify_close(v);
	spool_close(s);
}

static void
test_expire(void **state)
{
	struct spool *s = open_spool();
	struct spool_verify *v = open_cache(s, 100);
	struct spool_verify_entry e;

	put(v, "c:a@x.example", 1, 100, 200, 100);
	put(v, "c:b@x.example", 0, 100, 300, 100);
	put(v, "c:c@x.example", 1, 100, 400, 100);
	assert_int_equal(spool_verify_expire(v, 250), 1);
	assert_int_equal(spool_verify_get(v, "c:a@x.example", &e), 0);
	assert_int_equal(spool_verify_get(v, "c:b@x.example", &e), 1);
	assert_int_equal(spool_verify_expire(v, 1000), 2);
	assert_int_equal(spool_verify_count(v), 0);
	assert_int_equal(spool_verify_expire(v, 1000), 0);
	spool_verify_close(v);
	spool_close(s);
}

static void
test_bounded(void **state)
{
	struct spool *s = open_spool();
	struct spool_verify *v = open_cache(s, 3);
	struct spool_verify_entry e;
	char key[64];

	/* full of live answers: each new one pushes out the oldest */
	for (int i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "c:u%d@x.example", i);
		put(v, key, 1, 1000 + i, 100000, 1000 + i);
		assert_true(spool_verify_count(v) <= 3);
	}
	assert_int_equal(spool_verify_count(v), 3);
	for (int i = 7; i < 10; i++) {
		snprintf(key, sizeof(key), "c:u%d@x.example", i);
		assert_int_equal(spool_verify_get(v, key, &e), 1);
	}
	assert_int_equal(spool_verify_get(v, "c:u0@x.example", &e), 0);

	/* an expired answer goes before any live one, however new */
	put(v, "c:u7@x.example", 1, 2000, 2001, 2000); /* expires at 2001 */
	put(v, "c:new@x.example", 1, 3000, 100000, 3000);
	assert_int_equal(spool_verify_count(v), 3);
	assert_int_equal(spool_verify_get(v, "c:u7@x.example", &e), 0);
	assert_int_equal(spool_verify_get(v, "c:u8@x.example", &e), 1);
	assert_int_equal(spool_verify_get(v, "c:new@x.example", &e), 1);
	spool_verify_close(v);

	/* the bound holds after a reopen too (the count is recounted) */
	v = open_cache(s, 3);
	assert_int_equal(spool_verify_count(v), 3);
	put(v, "c:later@x.example", 0, 4000, 100000, 4000);
	assert_int_equal(spool_verify_count(v), 3);
	spool_verify_close(v);
	spool_close(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_round_trip_and_restart,
	                                    setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_expire, setup_dir,
	                                    teardown_dir),
	    cmocka_unit_test_setup_teardown(test_bounded, setup_dir,
	                                    teardown_dir),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
