/*
 * test_spool_next.c - the next-attempt index (spool/next.c) and the
 * open without a full scan (spool/startup.c) on a real BDB environment:
 * an entry per scheduled message kept by commit, rewrite and delete;
 * held and finished messages have none; time order across the sign of
 * the time; tag and flags; an index rebuilt when next.db is missing;
 * counts taken from a clean close and recounted after kill -9; orphan
 * chunks of a writer killed in the middle removed at the next open.
 */
#include <sys/wait.h>

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* cmocka needs the headers above first */
#include <cmocka.h>

#include "spool.h"

#define SPOOL_FIXTURE_TAG "next"
#include "spool_fixture.h"

/* add - a message to addr (and addr2 when not NULL), next attempt t */
static void
add(struct spool *s, const char *addr, const char *addr2, int64_t t,
    size_t size, char id[SPOOL_ID_LEN + 1])
{
	struct spool_writer *w = spool_writer_new(s);
	struct spool_envelope e;
	struct spool_rcpt r[2];
	char *body = calloc(1, size + 1);

	assert_non_null(w);
	assert_non_null(body);
	memset(&e, 0, sizeof(e));
	memset(r, 0, sizeof(r));
	e.arrival = 1700000000;
	e.sender = "a@example.net";
	e.nrcpt = addr2 ? 2 : 1;
	e.rcpt = r;
	r[0].address = (char *)addr;
	r[0].next_attempt = t;
	r[1].address = (char *)addr2;
	r[1].next_attempt = t + 100;
	assert_int_equal(spool_writer_append(w, body, size), 0);
	assert_int_equal(spool_writer_commit(w, &e), 0);
	memcpy(id, e.id, SPOOL_ID_LEN + 1);
	free(body);
}

struct got {
	int n;
	struct spool_next e[64];
};

static int
collect(void *arg, const struct spool_next *n)
{
	struct got *g = arg;

	if (g->n < 64)
		g->e[g->n] = *n;
	g->n++;
	return 0;
}

static void
scan(struct spool *s, struct got *g)
{
	int n;

	memset(g, 0, sizeof(*g));
	n = spool_next_scan(s, NULL, 0, collect, g);
	assert_int_equal(n, g->n);
}

static void
test_index_follows_envelopes(void **state)
{
	struct spool *s = open_spool();
	char a[13], b[13], c[13], d[13];
	struct spool_envelope *e;
	struct got g;

	add(s, "x@one.example", NULL, 2000, 10, a);
	add(s, "y@two.example", "z@TWO.example", -5, 10, b);
	add(s, "y@two.example", "z@three.example", 1000, 10, c);
	add(s, "w@one.example", NULL, 3000, 10, d);
	scan(s, &g);
	assert_int_equal(g.n, 4);
	/* time order, negative times first */
	assert_string_equal(g.e[0].id, b);
	assert_int_equal(g.e[0].t, -5);
	assert_int_equal(g.e[0].tag, spool_domain_tag("two.example"));
	assert_string_equal(g.e[1].id, c);
	assert_int_equal(g.e[1].tag, 0); /* two domains */
	assert_string_equal(g.e[2].id, a);
	assert_string_equal(g.e[3].id, d);
	assert_int_equal(g.e[2].flags, SPOOL_NEXT_WARN);

	/* a rewrite moves the entry; a held message has none */
	e = spool_envelope_get(s, a);
	assert_non_null(e);
	e->rcpt[0].next_attempt = 500;
	e->rcpt[0].flags = SPOOL_RCPT_F_CONN;
	e->delay_warned = 1;
	assert_int_equal(spool_envelope_put(s, e), 0);
	spool_envelope_free(e);
	e = spool_envelope_get(s, d);
	e->held = 1;
	assert_int_equal(spool_envelope_put(s, e), 0);
	spool_envelope_free(e);
	/* delivered: nothing left to do, no entry */
	e = spool_envelope_get(s, c);
	e->rcpt[0].state = SPOOL_RCPT_DELIVERED;
	e->rcpt[1].state = SPOOL_RCPT_DELIVERED;
	assert_int_equal(spool_envelope_put(s, e), 0);
	spool_envelope_free(e);
	scan(s, &g);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.e[1].id, a);
	assert_int_equal(g.e[1].t, 500);
	assert_int_equal(g.e[1].flags, SPOOL_NEXT_CONN);
	assert_int_equal(spool_message_delete(s, b), 0);
	scan(s, &g);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.e[0].id, a);
	spool_close(s);
}

static int
stop_at_two(void *arg, const struct spool_next *n)
{
	struct got *g = arg;

	g->e[g->n++] = *n;
	return g->n == 2;
}

static void
test_scan_resumes(void **state)
{
	struct spool *s = open_spool();
	char id[13];
	struct got g, h;
	int i;

	/* more than one internal batch (256) */
	for (i = 0; i < 600; i++)
		add(s, "x@one.example", NULL, 10000 - i, 1, id);
	memset(&g, 0, sizeof(g));
	assert_int_equal(spool_next_scan(s, NULL, 0, stop_at_two, &g), 2);
	assert_int_equal(g.e[0].t, 10000 - 599);
	memset(&h, 0, sizeof(h));
	assert_int_equal(spool_next_scan(s, &g.e[1], 10, collect, &h), 10);
	assert_int_equal(h.e[0].t, 10000 - 597);
	memset(&h, 0, sizeof(h));
	assert_int_equal(spool_next_scan(s, NULL, 0, collect, &h), 600);
	spool_close(s);
}

static void
test_rebuild(void **state)
{
	struct spool *s = open_spool();
	char a[13], b[13], path[400];
	struct got g;

	add(s, "x@one.example", NULL, 20, 10, a);
	add(s, "x@one.example", NULL, 10, 10, b);
	spool_close(s);
	/* a spool from before the index: next.db missing */
	snprintf(path, sizeof(path), "%s/next.db", dir);
	assert_int_equal(unlink(path), 0);
	s = open_spool();
	scan(s, &g);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.e[0].id, b);
	assert_string_equal(g.e[1].id, a);
	spool_close(s);
}

static void
test_counts_clean_and_crash(void **state)
{
	struct spool *s = open_spool();
	char id[13];
	uint64_t msgs, bytes;
	int status;
	pid_t pid;

	add(s, "x@one.example", NULL, 20, 100, id);
	add(s, "x@one.example", NULL, 20, 200, id);
	spool_close(s);
	s = open_spool();
	spool_count(s, &msgs, &bytes);
	assert_int_equal(msgs, 2);
	assert_int_equal(bytes, 300);
	spool_close(s);

	/* killed after more mail: counted again at the next open */
	if ((pid = fork()) == 0) {
		struct spool_writer *w;
		static char big[3 * SPOOL_CHUNK];

		s = open_spool();
		add(s, "x@one.example", NULL, 20, 1000, id);
		w = spool_writer_new(s); /* chunks, no envelope */
		if (spool_writer_append(w, big, sizeof(big)) < 0 ||
		    spool_sync(s) < 0)
			_exit(1);
		kill(getpid(), SIGKILL);
		_exit(1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	s = open_spool();
	spool_count(s, &msgs, &bytes);
	assert_int_equal(msgs, 3);
	assert_int_equal(bytes, 1300);
	spool_close(s);
}

static void
test_orphans_of_killed_writer(void **state)
{
	struct spool *s = open_spool();
	char id[13], orphan[13];
	const void *data;
	size_t len;
	int p[2], status;
	pid_t pid;

	add(s, "x@one.example", NULL, 20, 100, id);
	spool_close(s);
	assert_int_equal(pipe(p), 0);
	if ((pid = fork()) == 0) {
		static char big[2 * SPOOL_CHUNK];
		struct spool_writer *w;
		int i;

		s = open_spool();
		/* more than a second of syncs: the state file is rewritten */
		for (i = 0; i < 12; i++) {
			add(s, "x@one.example", NULL, 20, 10, id);
			spool_sync(s);
			usleep(100000);
		}
		w = spool_writer_new(s);
		if (spool_writer_append(w, big, sizeof(big)) < 0 ||
		    spool_sync(s) < 0 ||
		    write(p[1], spool_writer_id(w), 12) != 12)
			_exit(1);
		pause();
		_exit(0);
	}
	close(p[1]);
	assert_int_equal(read(p[0], orphan, 12), 12);
	orphan[12] = '\0';
	close(p[0]);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	s = open_spool();
	assert_int_equal(spool_body_read(s, orphan, 0, &data, &len), 0);
	assert_int_equal(spool_body_read(s, id, 0, &data, &len), 1);
	spool_close(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup_dir, teardown_dir)
	    T(test_index_follows_envelopes),
	    T(test_scan_resumes),
	    T(test_rebuild),
	    T(test_counts_clean_and_crash),
	    T(test_orphans_of_killed_writer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
