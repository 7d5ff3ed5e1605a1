/*
 * repl_import.c - takeover's storage part: copy every message of one
 * spool (the replica of a lost peer, opened as a plain spool) into
 * another (ours), so that our forwarder delivers it as its own.
 *
 * Ids are kept: with a peer the two nodes hand out ids of different
 * parity (spool_options.id_node), so the peer's ids never collide with
 * ours.  An id that is taken anyway (a spool from before the parity, or
 * a wrong pairing) is compared: the same message (arrival, sender,
 * size) was imported before (a takeover interrupted by a crash, run
 * again) and is skipped; a different one gets a fresh id of ours (the
 * re-id is reported to the caller).  Bodies go in chunk by chunk, each
 * in its own transaction, the envelope last (as spool_writer does): a
 * crash in between leaves orphan chunks the next open removes, never a
 * half message.
 *
 * spool_import_some does it a few messages at a time (the caller, on the
 * event loop, resumes after the last id it was given), spool_import all
 * at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spool_private.h"

struct import_run {
	struct spool *dst, *src;
	spool_import_fn *fn;
	void *arg;
	struct spool_import_stats *st;
	int failed;
	char *after; /* the last id of src visited */
};

static void
dbt_set(DBT *d, void *data, size_t size)
{
	memset(d, 0, sizeof(*d));
	d->data = data;
	d->size = (u_int32_t)size;
}

/* import_same - is e the message already stored under its id in dst? */
static int
import_same(const struct spool_envelope *a, const struct spool_envelope *b)
{
	return a->arrival == b->arrival && a->size == b->size &&
	       strcmp(a->sender, b->sender) == 0;
}

/* import_bump - later ids of dst stay above id (ids sort by creation) */
static void
import_bump(struct spool *s, const char *id)
{
	char buf[SPOOL_ID_LEN + 1];
	uint32_t secs, count;

	memcpy(buf, id, sizeof(buf));
	count = (uint32_t)strtoul(buf + 8, NULL, 16);
	buf[8] = '\0';
	secs = (uint32_t)strtoul(buf, NULL, 16);
	if (secs > s->id_secs || (secs == s->id_secs && count > s->id_count)) {
		s->id_secs = secs;
		s->id_count = count;
	}
}

/* import_one - e (of src) into dst under id */
static int
import_one(struct import_run *r, const struct spool_envelope *e, const char *id)
{
	struct spool *dst = r->dst, *src = r->src;
	unsigned char kbuf[SPOOL_BODY_KEYLEN];
	struct spool_envelope copy;
	const void *data;
	size_t len, reclen;
	void *rec;
	DB_TXN *txn;
	DBT key, val;
	uint32_t n;
	int ret, got;

	for (n = 0; (got = spool_body_read(src, e->id, n, &data, &len)) == 1;
	     n++) {
		spool_body_key(kbuf, id, n);
		dbt_set(&key, kbuf, sizeof(kbuf));
		dbt_set(&val, (void *)data, len);
		if ((ret = dst->env->txn_begin(dst->env, NULL, &txn, 0)) != 0)
			return spool_fail(dst, ret, "import of %s", e->id);
		if ((ret = dst->body->put(dst->body, txn, &key, &val, 0)) !=
		        0 ||
		    (ret = txn->commit(txn, DB_TXN_NOSYNC)) != 0) {
			if (ret != 0 && txn != NULL)
				txn->abort(txn);
			return spool_fail(dst, ret, "import of %s (body)",
			                  e->id);
		}
	}
	if (got < 0)
		return spool_fail_class(dst, SPOOL_EIO,
		                        "import of %s: reading its body: %s",
		                        e->id, spool_error(src));
	copy = *e;
	memcpy(copy.id, id, sizeof(copy.id));
	if ((rec = spool_envelope_encode(&copy, &reclen)) == NULL)
		return spool_fail_class(dst, SPOOL_EIO,
		                        "import of %s: envelope not storable",
		                        e->id);
	dbt_set(&key, copy.id, SPOOL_ID_LEN);
	dbt_set(&val, rec, reclen);
	if ((ret = dst->env->txn_begin(dst->env, NULL, &txn, 0)) != 0) {
		free(rec);
		return spool_fail(dst, ret, "import of %s", e->id);
	}
	ret = dst->envelopes->put(dst->envelopes, txn, &key, &val,
	                          DB_NOOVERWRITE);
	if (ret == 0)
		ret = txn->commit(txn, DB_TXN_NOSYNC);
	else
		txn->abort(txn);
	free(rec);
	if (ret != 0)
		return spool_fail(dst, ret, "import of %s (envelope)", e->id);
	dst->msgs++;
	dst->bytes += e->size;
	import_bump(dst, id);
	if (r->fn != NULL)
		r->fn(r->arg, &copy, e->id);
	return 0;
}

static int
import_cb(void *arg, const struct spool_envelope *e)
{
	struct import_run *r = arg;
	struct spool_envelope *have;
	char id[SPOOL_ID_LEN + 1];

	memcpy(id, e->id, sizeof(id));
	memcpy(r->after, e->id, SPOOL_ID_LEN + 1);
	if ((have = spool_envelope_get(r->dst, e->id)) != NULL) {
		int same = import_same(have, e);

		spool_envelope_free(have);
		if (same) {
			r->st->already++;
			if (r->fn != NULL)
				r->fn(r->arg, NULL, e->id);
			return 0;
		}
		spool_id_next(r->dst, id);
		r->st->reid++;
	}
	if (import_one(r, e, id) < 0) {
		r->failed = 1;
		return 1;
	}
	r->st->imported++;
	r->st->bytes += e->size;
	return 0;
}

int
spool_import_some(struct spool *dst, struct spool *src, char *after, int max,
                  spool_import_fn *fn, void *arg, struct spool_import_stats *st)
{
	struct import_run r = {dst, src, fn, arg, st, 0, after};
	int n;

	if ((n = spool_scan(src, after, max, import_cb, &r)) < 0)
		return spool_fail_class(dst, SPOOL_EIO, "import: reading: %s",
		                        spool_error(src));
	return r.failed ? -1 : n;
}

int
spool_import(struct spool *dst, struct spool *src, spool_import_fn *fn,
             void *arg, struct spool_import_stats *st)
{
	char after[SPOOL_ID_LEN + 1] = "";
	int n;

	memset(st, 0, sizeof(*st));
	while ((n = spool_import_some(dst, src, after, 256, fn, arg, st)) > 0)
		;
	return n;
}
