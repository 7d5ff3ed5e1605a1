/*
 * next.c - the persistent next-attempt index of the spool: next.db, one
 * key per scheduled message, (time, id, domain tag, flags), in time
 * order, no data.  message.c keeps it in the same transaction as the
 * envelope it describes (a new message, a rewrite, a delete), so the
 * index never says more or less than envelopes.db.  At start the
 * forwarder reads it in time order (spool_next_scan) instead of decoding
 * every envelope: due mail comes first, and a million queued messages
 * cost one sequential read of small keys.
 *
 * An entry is a pure function of the envelope record (spool_next_of),
 * never of the configuration: the earliest next attempt of its pending
 * recipients (and of a failed one whose DSN is still owed), the domain
 * tag when every pending recipient shares one domain, and flags the
 * forwarder needs without the envelope (SPOOL_NEXT_CONN, _WARN).  Held
 * messages and messages with nothing left to do have no entry.
 *
 * The key "\xff" (one octet, after every entry) marks the index as
 * complete: an older spool without it is indexed at open, in batches,
 * the mark written last.  Called by env.c (open) and message.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spool_private.h"

#define NEXT_MARK "\xff"
#define NEXT_BUILD_BATCH 1000

/* spool_domain_tag - FNV-1a of the lower-case domain, never 0 */
uint32_t
spool_domain_tag(const char *domain)
{
	uint32_t h = 2166136261u;

	for (; *domain != '\0'; domain++) {
		unsigned char c = (unsigned char)*domain;

		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		h = (h ^ c) * 16777619u;
	}
	return h != 0 ? h : 1;
}

static const char *
next_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at ? at + 1 : "";
}

/* spool_next_of - the index entry of e: 1, or 0 when it has none */
int
spool_next_of(const struct spool_envelope *e, struct spool_next *n)
{
	int64_t t = -1;
	uint32_t tag = 0;
	unsigned flags = 0;
	int i, mixed = 0, pending = 0, have = 0;

	if (e->held)
		return 0;
	for (i = 0; i < e->nrcpt; i++) {
		const struct spool_rcpt *r = &e->rcpt[i];

		if (r->state == SPOOL_RCPT_PENDING) {
			uint32_t h = spool_domain_tag(next_domain(r->address));

			if (!have || r->next_attempt < t)
				t = r->next_attempt;
			have = 1;
			if (tag != 0 && h != tag)
				mixed = 1;
			tag = h;
			pending = 1;
			if (r->flags & SPOOL_RCPT_F_CONN)
				flags |= SPOOL_NEXT_CONN;
		} else if (r->state == SPOOL_RCPT_FAILED &&
		           (r->flags & SPOOL_RCPT_F_BOUNCE) &&
		           (!have || r->next_attempt < t)) {
			t = r->next_attempt; /* a DSN still owed */
			have = 1;
		}
	}
	if (!have)
		return 0;
	if (pending && !e->delay_warned && !e->is_bounce)
		flags |= SPOOL_NEXT_WARN;
	n->t = t;
	memcpy(n->id, e->id, sizeof(n->id));
	n->tag = mixed ? 0 : tag;
	n->flags = flags;
	return 1;
}

/* next_key - the next.db key of n */
static void
next_key(unsigned char k[SPOOL_NEXT_KEYLEN], const struct spool_next *n)
{
	uint64_t t = (uint64_t)n->t ^ (1ull << 63); /* signed order */
	int i;

	for (i = 0; i < 8; i++)
		k[i] = (unsigned char)(t >> (56 - 8 * i));
	memcpy(k + 8, n->id, SPOOL_ID_LEN);
	for (i = 0; i < 4; i++)
		k[8 + SPOOL_ID_LEN + i] =
		    (unsigned char)(n->tag >> (24 - 8 * i));
	k[SPOOL_NEXT_KEYLEN - 1] = (unsigned char)n->flags;
}

/* next_unkey - the entry of key k; 0 when k is not an entry */
static int
next_unkey(const unsigned char *k, size_t len, struct spool_next *n)
{
	uint64_t t = 0;
	int i;

	if (len != SPOOL_NEXT_KEYLEN)
		return 0;
	for (i = 0; i < 8; i++)
		t = t << 8 | k[i];
	n->t = (int64_t)(t ^ (1ull << 63));
	memcpy(n->id, k + 8, SPOOL_ID_LEN);
	n->id[SPOOL_ID_LEN] = '\0';
	n->tag = 0;
	for (i = 0; i < 4; i++)
		n->tag = n->tag << 8 | k[8 + SPOOL_ID_LEN + i];
	n->flags = k[SPOOL_NEXT_KEYLEN - 1];
	return spool_id_valid(n->id);
}

static void
next_dbt(DBT *d, void *data, size_t size)
{
	memset(d, 0, sizeof(*d));
	d->data = data;
	d->size = (uint32_t)size;
}

/*
 * spool_next_update - inside txn, replace the entry of old (NULL: none)
 * by the entry of new (NULL: none); a missing old entry is no error.
 * Returns a BDB error code or 0.
 */
int
spool_next_update(struct spool *s, DB_TXN *txn,
                  const struct spool_envelope *old,
                  const struct spool_envelope *new)
{
	unsigned char ko[SPOOL_NEXT_KEYLEN], kn[SPOOL_NEXT_KEYLEN];
	struct spool_next n;
	int haveo = 0, haven = 0, ret;
	DBT key, data;

	if (s->next == NULL)
		return 0;
	if (old != NULL && spool_next_of(old, &n)) {
		next_key(ko, &n);
		haveo = 1;
	}
	if (new != NULL && spool_next_of(new, &n)) {
		next_key(kn, &n);
		haven = 1;
	}
	if (haveo && haven && memcmp(ko, kn, sizeof(ko)) == 0)
		return 0;
	if (haveo) {
		next_dbt(&key, ko, sizeof(ko));
		ret = s->next->del(s->next, txn, &key, 0);
		if (ret != 0 && ret != DB_NOTFOUND)
			return ret;
	}
	if (haven) {
		next_dbt(&key, kn, sizeof(kn));
		next_dbt(&data, NULL, 0);
		if ((ret = s->next->put(s->next, txn, &key, &data, 0)) != 0)
			return ret;
	}
	return 0;
}

struct next_build {
	struct spool *s;
	DB_TXN *txn;
	int n, ret;
};

static int
next_build_cb(void *arg, const struct spool_envelope *e)
{
	struct next_build *b = arg;
	struct spool *s = b->s;

	if (b->txn == NULL &&
	    (b->ret = s->env->txn_begin(s->env, NULL, &b->txn, 0)) != 0)
		return 1;
	if ((b->ret = spool_next_update(s, b->txn, NULL, e)) != 0)
		return 1;
	if (++b->n % NEXT_BUILD_BATCH == 0) {
		b->ret = b->txn->commit(b->txn, DB_TXN_NOSYNC);
		b->txn = NULL;
		if (b->ret != 0)
			return 1;
	}
	return 0;
}

/*
 * next_build - index every envelope (a spool from before next.db, or a
 * build cut short): empty the index, add an entry per envelope in
 * transactions of NEXT_BUILD_BATCH, then the mark
 */
static int
next_build(struct spool *s)
{
	struct next_build b = {s, NULL, 0, 0};
	uint32_t count;
	DBT key, data;
	int ret;

	if ((ret = s->next->truncate(s->next, NULL, &count, DB_AUTO_COMMIT)) !=
	    0)
		return ret;
	if (spool_scan(s, "", 0, next_build_cb, &b) < 0 && b.ret == 0)
		b.ret = EIO;
	if (b.txn != NULL) {
		if (b.ret != 0)
			b.txn->abort(b.txn);
		else
			b.ret = b.txn->commit(b.txn, DB_TXN_NOSYNC);
	}
	if (b.ret != 0)
		return b.ret;
	next_dbt(&key, NEXT_MARK, 1);
	next_dbt(&data, "1", 1);
	return s->next->put(s->next, NULL, &key, &data, DB_AUTO_COMMIT);
}

/*
 * spool_next_open - open next.db (created empty); index the envelopes
 * when it lacks the mark.  0, or -1 with err set.
 */
int
spool_next_open(struct spool *s, char *err, size_t errlen)
{
	DB *db;
	DBT key, data;
	int ret;

	if ((ret = db_create(&db, s->env, 0)) != 0)
		goto fail;
	ret = db->open(db, NULL, "next.db", NULL, DB_BTREE,
	               DB_CREATE | DB_AUTO_COMMIT, 0600);
	if (ret != 0) {
		db->close(db, 0);
		goto fail;
	}
	s->next = db;
	next_dbt(&key, NEXT_MARK, 1);
	next_dbt(&data, NULL, 0);
	data.flags = DB_DBT_PARTIAL | DB_DBT_USERMEM; /* dlen 0 */
	ret = db->get(db, NULL, &key, &data, 0);
	if (ret == DB_NOTFOUND)
		ret = next_build(s);
	if (ret != 0)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "next.db: %s%s%s", db_strerror(ret),
	         s->dberr[0] ? ": " : "", s->dberr);
	return -1;
}

/*
 * spool_next_scan - entries after *after (NULL = from the start) in
 * time order, at most max (0 = all).  The keys are read in batches with
 * a cursor closed before fn runs, so fn may change the spool.  fn
 * returns non-zero to stop.  Returns the number visited or -1.
 */
int
spool_next_scan(struct spool *s, const struct spool_next *after, int max,
                int (*fn)(void *arg, const struct spool_next *n), void *arg)
{
	struct spool_next batch[256], last;
	unsigned char kbuf[64], lastkey[SPOOL_NEXT_KEYLEN];
	int nb, i, ret, visited = 0, stop = 0, end = 0, have = after != NULL;
	DBC *c;
	DBT key, data;

	if (have) {
		last = *after;
		next_key(lastkey, &last);
	}
	while (!stop && !end) {
		if ((ret = s->next->cursor(s->next, NULL, &c, 0)) != 0)
			goto fail;
		next_dbt(&key, kbuf, 0);
		key.ulen = sizeof(kbuf);
		key.flags = DB_DBT_USERMEM;
		next_dbt(&data, NULL, 0);
		data.flags = DB_DBT_PARTIAL | DB_DBT_USERMEM; /* dlen 0 */
		if (have) {
			memcpy(kbuf, lastkey, sizeof(lastkey));
			key.size = sizeof(lastkey);
			ret = c->get(c, &key, &data, DB_SET_RANGE);
			if (ret == 0 && key.size == sizeof(lastkey) &&
			    memcmp(kbuf, lastkey, sizeof(lastkey)) == 0)
				ret = c->get(c, &key, &data, DB_NEXT);
		} else
			ret = c->get(c, &key, &data, DB_FIRST);
		nb = 0;
		while (ret == 0 && nb < (int)(sizeof(batch) / sizeof(*batch)) &&
		       (max == 0 || visited + nb < max)) {
			if (key.size == SPOOL_NEXT_KEYLEN) {
				memcpy(lastkey, kbuf, sizeof(lastkey));
				have = 1;
				if (next_unkey(kbuf, key.size, &batch[nb]))
					nb++;
			} else if (key.size == 1 && kbuf[0] == 0xff) {
				ret = DB_NOTFOUND; /* the mark: the end */
				break;
			}
			ret = c->get(c, &key, &data, DB_NEXT);
		}
		c->close(c);
		if (ret == DB_NOTFOUND)
			end = 1;
		else if (ret != 0)
			goto fail;
		if (max != 0 && visited + nb >= max)
			end = 1;
		for (i = 0; i < nb && !stop; i++) {
			visited++;
			stop = fn(arg, &batch[i]) != 0;
		}
	}
	return visited;
fail:
	return spool_fail(s, ret, "reading the next-attempt index");
}
