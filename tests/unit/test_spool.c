/*
 * test_spool.c - spool/env.c and spool/message.c on a real BDB
 * environment in a temporary directory: envelope round trips and the
 * record decoder's refusals, writer commit/abort, a 5 MB message, ids
 * across reopen, scans, the lock against a second process, orphan
 * chunks after a crash, durability under kill -9 (acknowledged = after
 * spool_sync), and a full disk on a tiny tmpfs.
 */
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
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

#include "spool.h"

#define SPOOL_FIXTURE_TAG "spool"
#include "spool_fixture.h"

/* gen_body - the deterministic body of id: size octets */
static void
gen_body(const char *id, unsigned char *buf, size_t size)
{
	uint32_t x = 2166136261u;
	size_t i;

	for (i = 0; id[i]; i++)
		x = (x ^ (unsigned char)id[i]) * 16777619u;
	for (i = 0; i < size; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = (unsigned char)x;
	}
}

static void
fill_env(struct spool_envelope *e, struct spool_rcpt *r, int nrcpt)
{
	static char sender[] = "alice@example.net", a1[] = "bob@example.org",
	            a2[] = "carol@example.org",
	            orcpt[] = "rfc822;bob@x.example",
	            route[] = "primary.internal:25", addr[] = "192.0.2.1",
	            helo[] = "client.example.net", envid[] = "QQ314159";
	int i;

	memset(e, 0, sizeof(*e));
	memset(r, 0, nrcpt * sizeof(*r));
	e->arrival = 1700000000;
	e->sender = sender;
	e->body = SPOOL_BODY_8BITMIME;
	e->ret = SPOOL_RET_HDRS;
	e->envid = envid;
	e->client_addr = addr;
	e->client_helo = helo;
	e->nrcpt = nrcpt;
	e->rcpt = r;
	for (i = 0; i < nrcpt; i++) {
		r[i].address = i % 2 ? a2 : a1;
		r[i].notify = SPOOL_NOTIFY_FAILURE | SPOOL_NOTIFY_DELAY;
		r[i].orcpt = i % 2 ? NULL : orcpt;
		r[i].route = i % 2 ? route : NULL;
	}
}

/* write_msg - one message of size octets in random pieces; 0 or -1 */
static int
write_msg(struct spool *s, size_t size, char id[SPOOL_ID_LEN + 1])
{
	struct spool_writer *w = spool_writer_new(s);
	struct spool_envelope e;
	struct spool_rcpt r[2];
	unsigned char *body;
	size_t off = 0, n;

	if (w == NULL)
		return -1;
	if ((body = malloc(size + 1)) == NULL)
		abort();
	gen_body(spool_writer_id(w), body, size);
	while (off < size) {
		n = 1 + random() % 20000;
		if (n > size - off)
			n = size - off;
		if (spool_writer_append(w, body + off, n) < 0) {
			spool_writer_abort(w);
			free(body);
			return -1;
		}
		off += n;
	}
	free(body);
	fill_env(&e, r, 2);
	if (spool_writer_commit(w, &e) < 0)
		return -1;
	memcpy(id, e.id, SPOOL_ID_LEN + 1);
	return 0;
}

/* check_msg - the message id is there with its whole body; 0 or -1 */
static int
check_msg(struct spool *s, const char *id, size_t size)
{
	struct spool_envelope *e = spool_envelope_get(s, id);
	unsigned char *want, *got;
	const void *data;
	size_t len, off = 0;
	uint32_t n;
	int r, ok;

	if (e == NULL)
		return -1;
	ok = e->size == size && e->nrcpt == 2 && strcmp(e->id, id) == 0;
	spool_envelope_free(e);
	want = malloc(size + 1);
	got = malloc(size + 1);
	gen_body(id, want, size);
	for (n = 0; ok && (r = spool_body_read(s, id, n, &data, &len)) == 1;
	     n++) {
		if (off + len > size || len == 0) {
			ok = 0;
			break;
		}
		memcpy(got + off, data, len);
		off += len;
	}
	if (ok && (r != 0 || off != size || memcmp(want, got, size) != 0))
		ok = 0;
	free(want);
	free(got);
	return ok ? 0 : -1;
}

/* ------------------------------------------------------------------ */

static void
test_envelope_roundtrip(void **state)
{
	struct spool *s = open_spool();
	struct spool_writer *w;
	struct spool_envelope e, *g;
	struct spool_rcpt r[3];
	const void *data;
	size_t len;
	uint64_t msgs, bytes;

	w = spool_writer_new(s);
	assert_non_null(w);
	assert_int_equal(strlen(spool_writer_id(w)), SPOOL_ID_LEN);
	assert_int_equal(
	    spool_writer_append(w, "Subject: hi\r\n\r\nbody\r\n", 21), 0);
	fill_env(&e, r, 3);
	e.smtputf8 = 1;
	e.held = 1;
	r[1].state = SPOOL_RCPT_DELIVERED;
	r[2].attempts = 3;
	r[2].next_attempt = 1700000300;
	r[2].last_error = "4.4.1 connection refused";
	assert_int_equal(spool_writer_commit(w, &e), 0);
	assert_int_equal(e.size, 21);

	g = spool_envelope_get(s, e.id);
	assert_non_null(g);
	assert_string_equal(g->id, e.id);
	assert_int_equal(g->arrival, 1700000000);
	assert_int_equal(g->size, 21);
	assert_string_equal(g->sender, "alice@example.net");
	assert_int_equal(g->body, SPOOL_BODY_8BITMIME);
	assert_int_equal(g->smtputf8, 1);
	assert_int_equal(g->ret, SPOOL_RET_HDRS);
	assert_string_equal(g->envid, "QQ314159");
	assert_string_equal(g->client_addr, "192.0.2.1");
	assert_string_equal(g->client_helo, "client.example.net");
	assert_int_equal(g->held, 1);
	assert_int_equal(g->is_bounce, 0);
	assert_int_equal(g->nrcpt, 3);
	assert_string_equal(g->rcpt[0].address, "bob@example.org");
	assert_string_equal(g->rcpt[0].orcpt, "rfc822;bob@x.example");
	assert_null(g->rcpt[0].route);
	assert_null(g->rcpt[1].orcpt);
	assert_string_equal(g->rcpt[1].route, "primary.internal:25");
	assert_int_equal(g->rcpt[1].state, SPOOL_RCPT_DELIVERED);
	assert_int_equal(g->rcpt[2].attempts, 3);
	assert_int_equal(g->rcpt[2].next_attempt, 1700000300);
	assert_string_equal(g->rcpt[2].last_error, "4.4.1 connection refused");
	assert_int_equal(g->rcpt[0].notify,
	                 SPOOL_NOTIFY_FAILURE | SPOOL_NOTIFY_DELAY);

	assert_int_equal(spool_body_read(s, e.id, 0, &data, &len), 1);
	assert_int_equal(len, 21);
	assert_memory_equal(data, "Subject: hi\r\n\r\nbody\r\n", 21);
	assert_int_equal(spool_body_read(s, e.id, 1, &data, &len), 0);

	/* put: state changes persist */
	g->rcpt[2].state = SPOOL_RCPT_FAILED;
	g->rcpt[2].attempts = 4;
	g->held = 0;
	assert_int_equal(spool_envelope_put(s, g), 0);
	spool_envelope_free(g);
	assert_int_equal(spool_sync(s), 0);
	spool_close(s);
	s = open_spool();
	spool_count(s, &msgs, &bytes);
	assert_int_equal(msgs, 1);
	assert_int_equal(bytes, 21);
	g = spool_envelope_get(s, e.id);
	assert_non_null(g);
	assert_int_equal(g->rcpt[2].state, SPOOL_RCPT_FAILED);
	assert_int_equal(g->rcpt[2].attempts, 4);
	assert_int_equal(g->held, 0);

	/* delete: gone, twice is ENOTFOUND, put of a deleted one too */
	assert_int_equal(spool_message_delete(s, e.id), 0);
	assert_null(spool_envelope_get(s, e.id));
	assert_int_equal(spool_errno(s), SPOOL_ENOTFOUND);
	assert_int_equal(spool_message_delete(s, e.id), -1);
	assert_int_equal(spool_errno(s), SPOOL_ENOTFOUND);
	assert_int_equal(spool_envelope_put(s, g), -1);
	assert_int_equal(spool_errno(s), SPOOL_ENOTFOUND);
	assert_int_equal(spool_body_read(s, e.id, 0, &data, &len), 0);
	spool_count(s, &msgs, &bytes);
	assert_int_equal(msgs, 0);
	assert_int_equal(bytes, 0);
	/* bad ids */
	assert_null(spool_envelope_get(s, "../../etc"));
	assert_int_equal(spool_errno(s), SPOOL_ENOTFOUND);
	assert_null(spool_envelope_get(s, "0123456789AB"));
	spool_envelope_free(g);
	spool_close(s);
}

static void
test_decode_rejects(void **state)
{
	struct spool_envelope e, *g;
	struct spool_rcpt r[2];
	unsigned char *rec, *bad;
	size_t len, i;
	int bit;

	fill_env(&e, r, 2);
	strcpy(e.id, "0123456789ab");
	/* version 2 fields: the step, the flags, the delay warning */
	e.delay_warned = 1;
	r[0].attempts = 5;
	r[0].step = 2;
	r[1].flags = SPOOL_RCPT_F_CONN | SPOOL_RCPT_F_BOUNCE;
	rec = spool_envelope_encode(&e, &len);
	assert_non_null(rec);
	g = spool_envelope_decode(rec, len);
	assert_non_null(g);
	assert_string_equal(g->rcpt[1].address, "carol@example.org");
	assert_int_equal(g->delay_warned, 1);
	assert_int_equal(g->rcpt[0].attempts, 5);
	assert_int_equal(g->rcpt[0].step, 2);
	assert_int_equal(g->rcpt[0].flags, 0);
	assert_int_equal(g->rcpt[1].flags,
	                 SPOOL_RCPT_F_CONN | SPOOL_RCPT_F_BOUNCE);
	spool_envelope_free(g);
	r[1].flags = 0x80; /* unknown flag: refused */
	assert_null(spool_envelope_encode(&e, &len));
	r[1].flags = SPOOL_RCPT_F_CONN | SPOOL_RCPT_F_BOUNCE;

	/* every truncation, and a trailing byte */
	bad = malloc(len + 1);
	for (i = 0; i < len; i++) {
		memcpy(bad, rec, i);
		assert_null(spool_envelope_decode(bad, i));
	}
	memcpy(bad, rec, len);
	bad[len] = 0;
	assert_null(spool_envelope_decode(bad, len + 1));
	/* every single bit flip: never a crash, mostly a refusal */
	for (i = 0; i < len; i++)
		for (bit = 0; bit < 8; bit++) {
			memcpy(bad, rec, len);
			bad[i] ^= 1 << bit;
			spool_envelope_free(spool_envelope_decode(bad, len));
		}
	/* specific corruptions */
	memcpy(bad, rec, len);
	bad[0] = 'X';
	assert_null(spool_envelope_decode(bad, len));
	memcpy(bad, rec, len);
	bad[4] = 3; /* version */
	assert_null(spool_envelope_decode(bad, len));
	memcpy(bad, rec, len);
	bad[9] = 'G'; /* id not hex */
	assert_null(spool_envelope_decode(bad, len));
	memcpy(bad, rec, len);
	bad[5] = 0xff; /* id length huge */
	assert_null(spool_envelope_decode(bad, len));
	free(bad);
	free(rec);

	/* out-of-range fields are refused by encode */
	e.body = 7;
	assert_null(spool_envelope_encode(&e, &len));
	e.body = 0;
	r[0].state = 9;
	assert_null(spool_envelope_encode(&e, &len));
	r[0].state = 0;
	r[0].address = NULL;
	assert_null(spool_envelope_encode(&e, &len));
	r[0].address = "x@y";
	e.sender = NULL;
	assert_null(spool_envelope_encode(&e, &len));
	e.sender = "";
	strcpy(e.id, "nothex");
	assert_null(spool_envelope_encode(&e, &len));
	strcpy(e.id, "0123456789ab");
	rec = spool_envelope_encode(&e, &len);
	assert_non_null(rec);
	free(rec);
}

/* a record claiming 100000 recipients in a short buffer: no allocation */
static void
test_decode_huge_count(void **state)
{
	struct spool_envelope e, *g;
	unsigned char *rec;
	size_t len;

	memset(&e, 0, sizeof(e));
	strcpy(e.id, "0123456789ab");
	e.sender = "";
	rec = spool_envelope_encode(&e, &len);
	assert_non_null(rec);
	g = spool_envelope_decode(rec, len);
	assert_non_null(g);
	assert_int_equal(g->nrcpt, 0);
	spool_envelope_free(g);
	/* nrcpt is the last 4 octets */
	rec[len - 4] = 0x00;
	rec[len - 3] = 0x01;
	rec[len - 2] = 0x86;
	rec[len - 1] = 0xa0;
	assert_null(spool_envelope_decode(rec, len));
	rec[len - 4] = 0xff;
	assert_null(spool_envelope_decode(rec, len));
	free(rec);
}

static void
test_writer_abort(void **state)
{
	struct spool *s = open_spool();
	struct spool_writer *w;
	const void *data;
	size_t len;
	uint64_t msgs, bytes;
	char id[SPOOL_ID_LEN + 1];
	unsigned char *buf = calloc(1, 3 * SPOOL_CHUNK + 100);

	w = spool_writer_new(s);
	strcpy(id, spool_writer_id(w));
	assert_int_equal(spool_writer_append(w, buf, 3 * SPOOL_CHUNK + 100), 0);
	/* full chunks are already in body.db */
	assert_int_equal(spool_body_read(s, id, 2, &data, &len), 1);
	spool_writer_abort(w);
	assert_int_equal(spool_body_read(s, id, 0, &data, &len), 0);
	assert_null(spool_envelope_get(s, id));
	spool_count(s, &msgs, &bytes);
	assert_int_equal(msgs, 0);
	assert_int_equal(bytes, 0);
	spool_writer_abort(NULL);
	free(buf);
	spool_close(s);
}

static void
test_big_message(void **state)
{
	struct spool *s = open_spool();
	char id[SPOOL_ID_LEN + 1];
	uint64_t msgs, bytes;
	const size_t size = 5 * 1024 * 1024 + 7;

	assert_int_equal(write_msg(s, size, id), 0);
	assert_int_equal(check_msg(s, id, size), 0);
	/* exactly one chunk, and empty */
	{
		char id2[SPOOL_ID_LEN + 1], id3[SPOOL_ID_LEN + 1];

		assert_int_equal(write_msg(s, SPOOL_CHUNK, id2), 0);
		assert_int_equal(check_msg(s, id2, SPOOL_CHUNK), 0);
		assert_int_equal(write_msg(s, 0, id3), 0);
		assert_int_equal(check_msg(s, id3, 0), 0);
	}
	spool_count(s, &msgs, &bytes);
	assert_int_equal(msgs, 3);
	assert_int_equal(bytes, size + SPOOL_CHUNK);
	assert_int_equal(spool_sync(s), 0);
	assert_int_equal(spool_checkpoint(s), 0);
	spool_close(s);
	s = open_spool();
	assert_int_equal(check_msg(s, id, size), 0);
	spool_count(s, &msgs, &bytes);
	assert_int_equal(msgs, 3);
	assert_int_equal(bytes, size + SPOOL_CHUNK);
	/* a big delete in one transaction */
	assert_int_equal(spool_message_delete(s, id), 0);
	assert_int_equal(check_msg(s, id, size), -1);
	spool_close(s);
}

static void
test_ids_increase(void **state)
{
	struct spool *s = open_spool();
	char prev[SPOOL_ID_LEN + 1] = "", id[SPOOL_ID_LEN + 1];
	int round, i;

	for (round = 0; round < 3; round++) {
		for (i = 0; i < 300; i++) {
			assert_int_equal(write_msg(s, 10, id), 0);
			assert_true(strcmp(id, prev) > 0);
			strcpy(prev, id);
		}
		/* an aborted writer's id is not reused either */
		spool_writer_abort(spool_writer_new(s));
		assert_int_equal(spool_sync(s), 0);
		spool_close(s);
		s = open_spool();
	}
	spool_close(s);
}

struct scan_acc {
	char ids[2000][SPOOL_ID_LEN + 1];
	int n;
	int stop_at;
	struct spool *del;
};

static int
scan_cb(void *arg, const struct spool_envelope *e)
{
	struct scan_acc *a = arg;

	strcpy(a->ids[a->n++], e->id);
	/* the callback may change the spool: no lock is held */
	if (a->del != NULL && spool_message_delete(a->del, e->id) < 0)
		fail_msg("delete inside scan: %s", spool_error(a->del));
	return a->stop_at != 0 && a->n == a->stop_at;
}

static void
test_scan(void **state)
{
	struct spool *s = open_spool();
	static char ids[700][SPOOL_ID_LEN + 1];
	static struct scan_acc a;
	char after[SPOOL_ID_LEN + 1] = "";
	int i, n, total = 0;
	uint64_t msgs;

	for (i = 0; i < 700; i++)
		assert_int_equal(write_msg(s, 100, ids[i]), 0);
	/* pages of 64 */
	memset(&a, 0, sizeof(a));
	do {
		int before = a.n;

		n = spool_scan(s, after, 64, scan_cb, &a);
		assert_true(n >= 0 && n <= 64);
		assert_int_equal(a.n - before, n);
		if (n > 0)
			strcpy(after, a.ids[a.n - 1]);
		total += n;
	} while (n == 64);
	assert_int_equal(total, 700);
	for (i = 0; i < 700; i++)
		assert_string_equal(a.ids[i], ids[i]);
	/* after the last id: nothing */
	assert_int_equal(spool_scan(s, ids[699], 0, scan_cb, &a), 0);
	/* fn stops the scan */
	memset(&a, 0, sizeof(a));
	a.stop_at = 300;
	assert_int_equal(spool_scan(s, "", 0, scan_cb, &a), 300);
	/* all at once (crosses scan batches), deleting each as we go */
	memset(&a, 0, sizeof(a));
	a.del = s;
	assert_int_equal(spool_scan(s, NULL, 0, scan_cb, &a), 700);
	spool_count(s, &msgs, NULL);
	assert_int_equal(msgs, 0);
	spool_close(s);
}

/* a second process on the same spool is refused and told who holds it */
static void
test_second_process(void **state)
{
	int p1[2], p2[2];
	pid_t pid;
	char c, err[1024], want[64];
	enum spool_err cls = SPOOL_OK;
	struct spool *s;

	assert_int_equal(pipe(p1), 0);
	assert_int_equal(pipe(p2), 0);
	if ((pid = fork()) == 0) {
		s = spool_open_opts(dir, &fixture_opts, NULL, err, sizeof(err));
		if (write(p1[1], s ? "y" : "n", 1) != 1 || s == NULL)
			_exit(1);
		if (read(p2[0], &c, 1) != 1)
			_exit(1);
		spool_close(s);
		_exit(0);
	}
	assert_int_equal(read(p1[0], &c, 1), 1);
	assert_int_equal(c, 'y');
	s = spool_open_opts(dir, &fixture_opts, &cls, err, sizeof(err));
	assert_null(s);
	assert_int_equal(cls, SPOOL_EBUSY);
	snprintf(want, sizeof(want), "another backmxd is running (pid %d)",
	         (int)pid);
	if (strstr(err, want) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", err, want);
	assert_int_equal(write(p2[1], "x", 1), 1);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	s = open_spool();
	spool_close(s);
	close(p1[0]);
	close(p1[1]);
	close(p2[0]);
	close(p2[1]);
}

/* a process killed in the middle of a message leaves chunks: removed */
static void
test_orphans(void **state)
{
	int p[2], status;
	pid_t pid;
	char id[SPOOL_ID_LEN + 1], keep[SPOOL_ID_LEN + 1];
	const void *data;
	size_t len;
	uint64_t msgs;
	struct spool *s;

	assert_int_equal(pipe(p), 0);
	if ((pid = fork()) == 0) {
		static unsigned char buf[5 * SPOOL_CHUNK];
		struct spool_writer *w;

		s = open_spool();
		if (write_msg(s, 1000, keep) < 0)
			_exit(1);
		w = spool_writer_new(s);
		if (spool_writer_append(w, buf, sizeof(buf) - 1) < 0 ||
		    spool_sync(s) < 0)
			_exit(1);
		if (write(p[1], keep, SPOOL_ID_LEN) != SPOOL_ID_LEN ||
		    write(p[1], spool_writer_id(w), SPOOL_ID_LEN) !=
		        SPOOL_ID_LEN)
			_exit(1);
		pause();
		_exit(0);
	}
	close(p[1]);
	assert_int_equal(read(p[0], keep, SPOOL_ID_LEN), SPOOL_ID_LEN);
	assert_int_equal(read(p[0], id, SPOOL_ID_LEN), SPOOL_ID_LEN);
	keep[SPOOL_ID_LEN] = id[SPOOL_ID_LEN] = '\0';
	close(p[0]);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	s = open_spool();
	assert_int_equal(spool_body_read(s, id, 0, &data, &len), 0);
	assert_int_equal(spool_body_read(s, id, 3, &data, &len), 0);
	assert_int_equal(check_msg(s, keep, 1000), 0);
	spool_count(s, &msgs, NULL);
	assert_int_equal(msgs, 1);
	/* a new id is past the orphan's too */
	assert_int_equal(write_msg(s, 10, keep), 0);
	assert_true(strcmp(keep, id) > 0);
	spool_close(s);
}

/*
 * Durability: a child writes messages and, after each spool_sync,
 * reports the ids it may now acknowledge.  It is killed with SIGKILL at
 * a random moment; after recovery every reported id must be there with
 * its whole body.  Unreported ones may or may not be.
 */
static void
durability_round(unsigned seed)
{
	int p[2], status;
	pid_t pid;
	char *buf = NULL, *line;
	size_t cap = 0, fill = 0, acked = 0;
	ssize_t n;
	struct timespec t0, t1;
	long delay_ms;
	uint64_t msgs, before;
	struct spool *s;

	/* what earlier rounds left, to count this round's extras */
	s = open_spool();
	spool_count(s, &before, NULL);
	spool_close(s);
	assert_int_equal(pipe(p), 0);
	if ((pid = fork()) == 0) {
		char id[SPOOL_ID_LEN + 1], pending[64][40];
		int np = 0, i, batch;
		size_t size;

		close(p[0]);
		srandom(seed);
		s = open_spool();
		for (;;) {
			batch = 1 + random() % 8;
			for (np = 0; np < batch; np++) {
				size = random() % 4 == 0
				           ? random() % (3 * SPOOL_CHUNK)
				           : random() % 3000;
				if (write_msg(s, size, id) < 0)
					_exit(2);
				snprintf(pending[np], sizeof(pending[np]),
				         "%s %zu\n", id, size);
			}
			if (spool_sync(s) < 0)
				_exit(3);
			/* only now may these be acknowledged */
			for (i = 0; i < np; i++)
				if (write(p[1], pending[i],
				          strlen(pending[i])) < 0)
					_exit(4);
		}
	}
	close(p[1]);
	srandom(seed);
	delay_ms = 100 + random() % 700;
	{
		/* the kill comes delay_ms after the first acknowledgement:
		 * on a loaded machine opening the spool alone can take
		 * longer than the shortest delay */
		struct pollfd first = {p[0], POLLIN, 0};

		poll(&first, 1, 20000);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd pfd = {p[0], POLLIN, 0};

		clock_gettime(CLOCK_MONOTONIC, &t1);
		long el = (t1.tv_sec - t0.tv_sec) * 1000 +
		          (t1.tv_nsec - t0.tv_nsec) / 1000000;
		if (el >= delay_ms)
			break;
		if (poll(&pfd, 1, (int)(delay_ms - el)) <= 0)
			continue;
		if (cap - fill < 4096) {
			char *nb = realloc(buf, cap = cap * 2 + 65536);

			if (nb == NULL)
				fail_msg("out of memory");
			buf = nb;
		}
		if ((n = read(p[0], buf + fill, cap - fill - 1)) <= 0)
			break;
		fill += n;
	}
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFSIGNALED(status))
		fail_msg("writer child exited early: status %d", status);
	/* what it wrote before dying was acknowledged too */
	for (;;) {
		if (cap - fill < 4096) {
			char *nb = realloc(buf, cap = cap * 2 + 65536);

			if (nb == NULL)
				fail_msg("out of memory");
			buf = nb;
		}
		if ((n = read(p[0], buf + fill, cap - fill - 1)) <= 0)
			break;
		fill += n;
	}
	close(p[0]);
	buf[fill] = '\0';
	/* a torn last line was not fully reported: ignore it */
	if (fill > 0 && buf[fill - 1] != '\n')
		*(strrchr(buf, '\n') ? strrchr(buf, '\n') + 1 : buf) = '\0';

	s = open_spool();
	for (line = strtok(buf, "\n"); line != NULL;
	     line = strtok(NULL, "\n")) {
		char id[SPOOL_ID_LEN + 1];
		size_t size;

		if (sscanf(line, "%12s %zu", id, &size) != 2)
			fail_msg("bad report line \"%s\"", line);
		if (check_msg(s, id, size) < 0)
			fail_msg("acknowledged message %s (%zu octets) lost "
			         "or damaged after kill -9: %s",
			         id, size, spool_error(s));
		acked++;
	}
	spool_count(s, &msgs, NULL);
	print_message("    round %u: killed after %ld ms, %zu acknowledged, "
	              "all present; %llu unacknowledged extras\n",
	              seed, delay_ms, acked,
	              (unsigned long long)(msgs - before - acked));
	assert_true(acked > 0);
	assert_true(msgs >= before + acked);
	spool_close(s);
	free(buf);
}

static void
test_durability_kill9(void **state)
{
	unsigned seed;

	/* the same spool through every round: recovery on top of recovery */
	for (seed = 1; seed <= 4; seed++)
		durability_round(seed * 7919 + (unsigned)time(NULL) % 1000);
}

/*
 * Disk full: the spool on a small tmpfs, the rest of it filled by a
 * file.  A commit must fail with SPOOL_ENOSPC and leave the spool
 * usable; earlier messages survive; once space is back commits work.
 */
static void
test_disk_full(void **state)
{
	char mnt[300], filler[400], err[1024], ids[4][SPOOL_ID_LEN + 1];
	char id[SPOOL_ID_LEN + 1];
	static unsigned char junk[1 << 16];
	struct spool *s;
	int fd, i, failed = 0, syncfail = 0;
	enum spool_err cls;
	const struct spool_options tiny = {.cache_bytes = 1 << 20,
	                                   .log_buffer = 256 << 10,
	                                   .log_file = 1 << 20};

	snprintf(mnt, sizeof(mnt), "%s.tmpfs", dir);
	assert_int_equal(mkdir(mnt, 0700), 0);
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=16m") < 0) {
		print_message("    SKIPPED: cannot mount a tmpfs (%s); "
		              "disk-full behaviour not tested\n",
		              strerror(errno));
		rmdir(mnt);
		skip();
	}
	strcat(mnt, "/spool");
	s = spool_open_opts(mnt, &tiny, &cls, err, sizeof(err));
	if (s == NULL)
		fail_msg("spool on tmpfs: %s", err);
	for (i = 0; i < 4; i++)
		assert_int_equal(write_msg(s, 20000, ids[i]), 0);
	assert_int_equal(spool_sync(s), 0);

	/* fill the file system */
	snprintf(filler, sizeof(filler), "%s/../filler", mnt);
	fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	while (write(fd, junk, sizeof(junk)) > 0)
		;
	while (write(fd, junk, 512) > 0)
		;
	close(fd);

	for (i = 0; i < 200 && !failed; i++) {
		if (write_msg(s, 50000, id) < 0)
			failed = 1;
		else if (spool_sync(s) < 0) {
			/* the log flush is where a NOSYNC commit hits disk */
			syncfail++;
			assert_int_equal(spool_errno(s), SPOOL_ENOSPC);
		}
	}
	if (!failed)
		fail_msg("200 commits on a full disk all succeeded");
	if (spool_errno(s) != SPOOL_ENOSPC)
		fail_msg("commit on a full disk: class %d, \"%s\"",
		         spool_errno(s), spool_error(s));
	print_message("    full after %d message(s) (%d sync failure(s)): "
	              "%s\n",
	              i, syncfail, spool_error(s));
	/* still readable */
	for (i = 0; i < 4; i++)
		assert_int_equal(check_msg(s, ids[i], 20000), 0);

	/* space back: the same handle works again */
	assert_int_equal(unlink(filler), 0);
	if (write_msg(s, 50000, id) < 0 || spool_sync(s) < 0)
		fail_msg("commit after freeing space: %s", spool_error(s));
	assert_int_equal(check_msg(s, id, 50000), 0);
	spool_close(s);

	/* and it reopens with everything acknowledged */
	s = spool_open_opts(mnt, &tiny, &cls, err, sizeof(err));
	if (s == NULL)
		fail_msg("reopen after disk full: %s", err);
	for (i = 0; i < 4; i++)
		assert_int_equal(check_msg(s, ids[i], 20000), 0);
	assert_int_equal(check_msg(s, id, 50000), 0);
	spool_close(s);
	*strrchr(mnt, '/') = '\0';
	umount(mnt);
	rmdir(mnt);
}

/* the default sizes (64 MB cache, 4 MB log buffer) open and work */
static void
test_defaults(void **state)
{
	char err[1024], id[SPOOL_ID_LEN + 1];
	struct spool *s = spool_open(dir, err, sizeof(err));
	struct stat st;

	if (s == NULL)
		fail_msg("spool_open: %s", err);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(write_msg(s, 100000, id), 0);
	assert_int_equal(spool_sync(s), 0);
	assert_int_equal(check_msg(s, id, 100000), 0);
	assert_int_equal(spool_checkpoint(s), 0);
	spool_close(s);
	spool_close(NULL);
	/* not a directory */
	assert_null(spool_open("/dev/null", err, sizeof(err)));
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup_dir, teardown_dir)

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_envelope_roundtrip),
	    cmocka_unit_test(test_decode_rejects),
	    cmocka_unit_test(test_decode_huge_count),
	    T(test_writer_abort),
	    T(test_big_message),
	    T(test_ids_increase),
	    T(test_scan),
	    T(test_second_process),
	    T(test_orphans),
	    T(test_durability_kill9),
	    T(test_disk_full),
	    T(test_defaults),
	};

	srandom(1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
