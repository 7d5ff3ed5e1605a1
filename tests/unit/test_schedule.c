/*
 * test_schedule.c - spool/schedule.c: the retry heap against a brute
 * force model (many random set/remove/pop operations), rescheduling,
 * removal, pop_due with a fake clock, and the backoff table (steps,
 * the last step repeating, jitter bounds and determinism).
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

static void
mkid(char id[SPOOL_ID_LEN + 1], unsigned n)
{
	snprintf(id, SPOOL_ID_LEN + 1, "%012x", n);
}

static void
test_empty(void **state)
{
	struct schedule *q = schedule_new();
	char id[SPOOL_ID_LEN + 1];
	int64_t t;

	assert_non_null(q);
	assert_int_equal(schedule_size(q), 0);
	assert_int_equal(schedule_peek(q, &t, id), 0);
	assert_int_equal(schedule_pop_due(q, INT64_MAX, id), 0);
	assert_int_equal(schedule_when(q, "000000000001"), -1);
	schedule_remove(q, "000000000001");
	/* ids must be 12 characters */
	assert_int_equal(schedule_set(q, "short", 5), -1);
	assert_int_equal(schedule_set(q, NULL, 5), -1);
	schedule_free(q);
	schedule_free(NULL);
}

/* a flush: everything later than now comes due at now, in id order
 * among the ties, earlier entries keep their place before them */
static void
test_advance_all(void **state)
{
	enum { N = 5000 };
	struct schedule *q = schedule_new();
	char id[SPOOL_ID_LEN + 1], previd[SPOOL_ID_LEN + 1] = "";
	int64_t t, prev = INT64_MIN;
	unsigned i, n = 0, early = 0;

	srandom(7);
	for (i = 0; i < N; i++) {
		int64_t w = random() % 2000;

		mkid(id, (unsigned)random());
		if (schedule_when(q, id) >= 0)
			continue;
		assert_int_equal(schedule_set(q, id, w), 0);
		early += w <= 1000;
	}
	assert_int_equal(schedule_advance_all(q, 1000), schedule_size(q));
	/* nothing later than 1000 is left */
	while (schedule_pop_due(q, 1000, id) == 1) {
		assert_true(schedule_peek(q, &t, NULL) == 0 || t <= 1000);
		n++;
	}
	assert_int_equal(schedule_size(q), 0);
	assert_true(n > early);
	/* heap order after the rebuild: (t, id) never decreases */
	for (i = 0; i < 300; i++) {
		mkid(id, (unsigned)random());
		schedule_set(q, id, random() % 50);
	}
	schedule_advance_all(q, 20);
	while (schedule_peek(q, &t, id) == 1) {
		assert_true(t <= 20);
		assert_true(t > prev || (t == prev && strcmp(id, previd) > 0));
		prev = t;
		memcpy(previd, id, sizeof(previd));
		assert_int_equal(schedule_pop_due(q, INT64_MAX, NULL), 1);
	}
	assert_int_equal(schedule_advance_all(q, 5), 0);
	schedule_free(q);
}

static int
unknown_even(void *arg, const char *id)
{
	(*(int *)arg)++;
	return (strtoul(id, NULL, 16) & 1) == 0;
}

/* a flush by domain: tagged entries of that tag come due, untagged ones
 * when the callback says so (asked once each), the others keep their
 * time; heap order holds afterwards */
static void
test_advance_tag(void **state)
{
	struct schedule *q = schedule_new();
	char id[SPOOL_ID_LEN + 1], previd[SPOOL_ID_LEN + 1] = "";
	int64_t t, prev = INT64_MIN;
	unsigned i;
	int asked = 0;
	size_t n;

	for (i = 0; i < 300; i++) {
		mkid(id, i);
		assert_int_equal(schedule_set(q, id, 1000 + i), 0);
		/* 0..99 tag 7, 100..199 tag 9, 200..299 untagged */
		if (i < 100)
			schedule_set_tag(q, id, 7);
		else if (i < 200)
			schedule_set_tag(q, id, 9);
	}
	/* rescheduling keeps the tag */
	mkid(id, 5);
	assert_int_equal(schedule_set(q, id, 5000), 0);
	n = schedule_advance_tag(q, 10, 7, unknown_even, &asked);
	assert_int_equal(asked, 100);
	assert_int_equal(n, 100 + 50);
	for (i = 0; i < 300; i++) {
		mkid(id, i);
		if (i < 100 || (i >= 200 && i % 2 == 0))
			assert_int_equal(schedule_when(q, id), 10);
		else
			assert_int_equal(schedule_when(q, id), 1000 + i);
	}
	/* no callback: untagged never match */
	assert_int_equal(schedule_advance_tag(q, 10, 9, NULL, NULL), 100);
	while (schedule_peek(q, &t, id) == 1) {
		assert_true(t > prev || (t == prev && strcmp(id, previd) > 0));
		prev = t;
		memcpy(previd, id, sizeof(previd));
		assert_int_equal(schedule_pop_due(q, INT64_MAX, NULL), 1);
	}
	schedule_free(q);
}

static void
test_order_random(void **state)
{
	enum { N = 20000 };
	struct schedule *q = schedule_new();
	static int64_t when[N];
	char id[SPOOL_ID_LEN + 1];
	int64_t t, prev = INT64_MIN;
	unsigned i, live = 0;
	char previd[SPOOL_ID_LEN + 1] = "";

	srandom(42);
	for (i = 0; i < N; i++) {
		mkid(id, i);
		when[i] = random() % 1000; /* many ties */
		assert_int_equal(schedule_set(q, id, when[i]), 0);
	}
	assert_int_equal(schedule_size(q), N);
	/* reschedule a third, remove a third */
	for (i = 0; i < N; i += 3) {
		mkid(id, i);
		when[i] = random() % 1000;
		assert_int_equal(schedule_set(q, id, when[i]), 0);
	}
	for (i = 1; i < N; i += 3) {
		mkid(id, i);
		schedule_remove(q, id);
		when[i] = -1;
	}
	for (i = 0; i < N; i++) {
		mkid(id, i);
		assert_int_equal(schedule_when(q, id), when[i]);
		live += when[i] >= 0;
	}
	assert_int_equal(schedule_size(q), live);
	/* everything comes out in (time, id) order, exactly once */
	for (i = 0; i < live; i++) {
		assert_int_equal(schedule_peek(q, &t, id), 1);
		assert_int_equal(schedule_pop_due(q, INT64_MAX, id), 1);
		assert_true(t >= prev);
		if (t == prev)
			assert_true(strcmp(id, previd) > 0);
		assert_int_equal(when[strtoul(id, NULL, 16)], t);
		when[strtoul(id, NULL, 16)] = -2;
		prev = t;
		strcpy(previd, id);
	}
	assert_int_equal(schedule_size(q), 0);
	schedule_free(q);
}

/* random operations checked against a plain array after every step */
static void
test_model(void **state)
{
	enum { IDS = 300, OPS = 30000 };
	struct schedule *q = schedule_new();
	int64_t model[IDS], t, best;
	char id[SPOOL_ID_LEN + 1], got[SPOOL_ID_LEN + 1];
	int i, op, k, besti;
	size_t n;

	for (i = 0; i < IDS; i++)
		model[i] = -1;
	srandom(7);
	for (op = 0; op < OPS; op++) {
		k = random() % IDS;
		mkid(id, k);
		switch (random() % 4) {
		case 0:
		case 1:
			model[k] = random() % 5000;
			assert_int_equal(schedule_set(q, id, model[k]), 0);
			break;
		case 2:
			schedule_remove(q, id);
			model[k] = -1;
			break;
		case 3: {
			int64_t now = random() % 5000;

			best = INT64_MAX;
			besti = -1;
			for (i = 0; i < IDS; i++)
				if (model[i] >= 0 && model[i] < best) {
					best = model[i];
					besti = i;
				}
			if (besti >= 0 && best <= now) {
				assert_int_equal(schedule_pop_due(q, now, got),
				                 1);
				mkid(id, besti);
				assert_string_equal(got, id);
				model[besti] = -1;
			} else
				assert_int_equal(schedule_pop_due(q, now, got),
				                 0);
			break;
		}
		}
		n = 0;
		for (i = 0; i < IDS; i++)
			n += model[i] >= 0;
		assert_int_equal(schedule_size(q), n);
		assert_int_equal(schedule_when(q, id),
		                 model[strtoul(id, NULL, 16)]);
	}
	if (schedule_peek(q, &t, got))
		assert_int_equal(model[strtoul(got, NULL, 16)], t);
	schedule_free(q);
}

static void
test_pop_due_clock(void **state)
{
	struct schedule *q = schedule_new();
	char id[SPOOL_ID_LEN + 1];
	int64_t now = 1000;

	assert_int_equal(schedule_set(q, "00000000000a", 1060), 0);
	assert_int_equal(schedule_set(q, "00000000000b", 1000), 0);
	assert_int_equal(schedule_set(q, "00000000000c", 1300), 0);
	assert_int_equal(schedule_pop_due(q, now, id), 1);
	assert_string_equal(id, "00000000000b");
	assert_int_equal(schedule_pop_due(q, now, id), 0);
	now += 59;
	assert_int_equal(schedule_pop_due(q, now, id), 0);
	now += 1;
	assert_int_equal(schedule_pop_due(q, now, id), 1);
	assert_string_equal(id, "00000000000a");
	/* reschedule c earlier: it becomes due */
	assert_int_equal(schedule_set(q, "00000000000c", 1010), 0);
	assert_int_equal(schedule_size(q), 1);
	assert_int_equal(schedule_when(q, "00000000000c"), 1010);
	assert_int_equal(schedule_pop_due(q, now, id), 1);
	assert_string_equal(id, "00000000000c");
	assert_int_equal(schedule_size(q), 0);
	assert_int_equal(schedule_when(q, "00000000000c"), -1);
	schedule_free(q);
}

struct backoff_case {
	int attempts;
	int64_t want;
};

static void
test_backoff_steps(void **state)
{
	static const long steps[] = {60, 300, 900, 1800, 3600};
	static const struct backoff_case cases[] = {
	    {0, 60},   {1, 60},   {2, 300},  {3, 900},
	    {4, 1800}, {5, 3600}, {6, 3600}, {100, 3600},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(
		    schedule_backoff(steps, 5, cases[i].attempts, 1000, 0),
		    1000 + cases[i].want);
	/* no steps: now */
	assert_int_equal(schedule_backoff(NULL, 0, 3, 1000, 0), 1000);
	/* no overflow */
	assert_int_equal(schedule_backoff(steps, 5, 1, INT64_MAX - 5, 0),
	                 INT64_MAX);
}

static void
test_backoff_jitter(void **state)
{
	static const long steps[] = {60, 300, 3600};
	int attempts, differ = 0;
	unsigned seed;
	int64_t t, base;

	for (seed = 1; seed < 2000; seed++)
		for (attempts = 1; attempts <= 4; attempts++) {
			base = steps[attempts > 3 ? 2 : attempts - 1];
			t = schedule_backoff(steps, 3, attempts, 0, seed);
			assert_true(t >= base);
			assert_true(t <= base + base / 10);
			/* deterministic */
			assert_int_equal(
			    t, schedule_backoff(steps, 3, attempts, 0, seed));
			differ += t != base;
		}
	/* jitter actually happens, and spreads over the range */
	assert_true(differ > 7000);
	{
		int seen[361] = {0}, distinct = 0;

		for (seed = 1; seed < 20000; seed++)
			seen[schedule_backoff(steps, 3, 3, 0, seed) - 3600]++;
		for (int i = 0; i <= 360; i++)
			distinct += seen[i] > 0;
		assert_true(distinct > 300);
	}
}

/* a recovered destination: only entries holding the flag come due */
static void
test_advance_match_flags(void **state)
{
	struct schedule *q = schedule_new();
	char id[SPOOL_ID_LEN + 1];
	unsigned i;
	size_t n;

	(void)state;
	for (i = 0; i < 6; i++) {
		mkid(id, i);
		assert_int_equal(schedule_set(q, id, 1000 + i), 0);
		schedule_set_tag(q, id, i < 4 ? 7 : 0);
		schedule_set_flags(q, id, i % 2 ? 0x01 : 0);
	}
	mkid(id, 1);
	assert_int_equal(schedule_flags(q, id), 0x01);
	/* schedule_set keeps the flags */
	assert_int_equal(schedule_set(q, id, 1001), 0);
	assert_int_equal(schedule_flags(q, id), 0x01);
	/* tag 7 with the flag: 1 and 3; untagged 5 has it but unknown is
	 * NULL, so it does not match */
	n = schedule_advance_match(q, 10, 7, 0x01, NULL, NULL);
	assert_int_equal(n, 2);
	for (i = 0; i < 6; i++) {
		mkid(id, i);
		assert_int_equal(schedule_when(q, id),
		                 i == 1 || i == 3 ? 10 : 1000 + (int)i);
	}
	/* tag 0: any flagged entry the callback accepts (5) */
	n = schedule_advance_match(q, 20, 0, 0x01, NULL, NULL);
	assert_int_equal(n, 0);
	mkid(id, 42);
	assert_int_equal(schedule_flags(q, id), 0); /* not scheduled */
	schedule_free(q);
}

static int
accept_all(void *arg, const char *id)
{
	(void)id;
	++*(int *)arg;
	return 1;
}

static void
test_advance_match_unknown(void **state)
{
	struct schedule *q = schedule_new();
	char id[SPOOL_ID_LEN + 1];
	int calls = 0;
	unsigned i;

	(void)state;
	for (i = 0; i < 4; i++) {
		mkid(id, i);
		schedule_set(q, id, 500);
		schedule_set_tag(q, id, 9);
		schedule_set_flags(q, id, i < 2 ? 0x01 : 0);
	}
	/* tag 0 (a static route): every flagged entry is asked about */
	assert_int_equal(
	    schedule_advance_match(q, 5, 0, 0x01, accept_all, &calls), 2);
	assert_int_equal(calls, 2);
	mkid(id, 0);
	assert_int_equal(schedule_pop_due(q, 5, id), 1);
	mkid(id, 9);
	assert_int_equal(schedule_pop_due(q, 5, id), 1);
	assert_int_equal(schedule_pop_due(q, 5, id), 0);
	schedule_free(q);
}

/*
 * The step of a deferred recipient, with a fake clock: retry 60 300 900.
 * A scheduled attempt takes the next step; a flush's attempt (earlier
 * than the recipient's own time) neither moves the step nor the time, so
 * after a flush there is still an attempt at 1 min, then 5 min later.
 */
static void
test_deferral_steps(void **state)
{
	const long steps[] = {60, 300, 900};
	int step = 0;
	int64_t t0 = 1000000, next, t;

	(void)state;
	/* first attempt at arrival: step 1, next at +60 */
	next = schedule_deferral(steps, 3, &step, t0, t0, t0, t0 + 86400, 0);
	assert_int_equal(step, 1);
	assert_int_equal(next, t0 + 60);
	/* flush at +10: the attempt is early; it fails at +11 */
	t = schedule_deferral(steps, 3, &step, next, t0 + 10, t0 + 11,
	                      t0 + 86400, 0);
	assert_int_equal(step, 1);
	assert_int_equal(t, t0 + 60);
	/* three more flushes: still step 1 */
	t = schedule_deferral(steps, 3, &step, t, t0 + 20, t0 + 20, t0 + 86400,
	                      0);
	t = schedule_deferral(steps, 3, &step, t, t0 + 30, t0 + 31, t0 + 86400,
	                      0);
	assert_int_equal(step, 1);
	assert_int_equal(t, t0 + 60);
	/* the scheduled attempt at +60: step 2, next +300 */
	t = schedule_deferral(steps, 3, &step, t, t0 + 60, t0 + 61, t0 + 86400,
	                      0);
	assert_int_equal(step, 2);
	assert_int_equal(t, t0 + 61 + 300);
	/* late (the timer was busy): still the next step from now */
	t = schedule_deferral(steps, 3, &step, t, t + 5, t + 6, t0 + 86400, 0);
	assert_int_equal(step, 3);
	/* the last step repeats */
	t = schedule_deferral(steps, 3, &step, t, t, t + 1, t0 + 86400, 0);
	assert_int_equal(step, 4);
	/* clipped to the lifetime, and never at or before now */
	next =
	    schedule_deferral(steps, 3, &step, t + 900, t, t + 1, t + 100, 0);
	assert_int_equal(next, t + 100);
	next =
	    schedule_deferral(steps, 3, &step, t + 900, t, t + 200, t + 100, 0);
	assert_int_equal(next, t + 201);
	/* an early attempt that ends after its time: the time has passed,
	 * one more attempt at once (its scheduled one) */
	step = 1;
	next = schedule_deferral(steps, 3, &step, t0 + 60, t0 + 50, t0 + 70,
	                         t0 + 86400, 0);
	assert_int_equal(step, 1);
	assert_int_equal(next, t0 + 71);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_empty),
	    cmocka_unit_test(test_advance_all),
	    cmocka_unit_test(test_advance_tag),
	    cmocka_unit_test(test_order_random),
	    cmocka_unit_test(test_model),
	    cmocka_unit_test(test_pop_due_clock),
	    cmocka_unit_test(test_backoff_steps),
	    cmocka_unit_test(test_backoff_jitter),
	    cmocka_unit_test(test_advance_match_flags),
	    cmocka_unit_test(test_advance_match_unknown),
	    cmocka_unit_test(test_deferral_steps),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
