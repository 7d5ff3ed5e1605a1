/*
 * verify.c - the recipient verification cache: verify.db, a btree in the
 * spool's Berkeley DB environment, so answers of the primary (callouts)
 * and of LDAP survive restarts and are recovered like the queue.
 *
 * Called by relay/rcpt_verify.c (lookups on every unlisted RCPT, stores
 * after each answer, a periodic expiry) and by nothing else.  Records are
 * short text, "ANSWER CODE TIME KEEP_UNTIL TEXT", readable with db_dump.
 * The size is bounded: in-memory count, expiry first, then eviction.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spool_private.h"

#define VERIFY_DEFAULT_MAX 100000
#define VERIFY_EVICT_SCAN 1000 /* records looked at per eviction */

struct spool_verify {
	struct spool *s;
	DB *db;
	uint64_t count;
	uint64_t max;
	char err[256];
};

static int
verify_fail(struct spool_verify *v, int ret, const char *what)
{
	snprintf(v->err, sizeof(v->err), "verify.db: %s: %s", what,
	         db_strerror(ret));
	return -1;
}

const char *
spool_verify_error(const struct spool_verify *v)
{
	return v->err;
}

/* verify_dbt_realloc - an empty DBT BDB fills in its own memory (a
 * DB_THREAD environment wants one of its memory flags on every DBT it
 * returns into); free(d->data) after */
static void
verify_dbt_realloc(DBT *d)
{
	memset(d, 0, sizeof(*d));
	d->flags = DB_DBT_REALLOC;
}

/* verify_count_all - count the records once at open */
static int
verify_count_all(struct spool_verify *v)
{
	DBC *c;
	DBT k, d;
	int ret;

	v->count = 0;
	if ((ret = v->db->cursor(v->db, NULL, &c, 0)) != 0)
		return verify_fail(v, ret, "cursor");
	verify_dbt_realloc(&k);
	verify_dbt_realloc(&d);
	while ((ret = c->get(c, &k, &d, DB_NEXT)) == 0)
		v->count++;
	c->close(c);
	free(k.data);
	free(d.data);
	return ret == DB_NOTFOUND ? 0 : verify_fail(v, ret, "count");
}

struct spool_verify *
spool_verify_open(struct spool *s, uint64_t max_entries, char *err,
                  size_t errlen)
{
	struct spool_verify *v;
	int ret;

	if ((v = calloc(1, sizeof(*v))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	v->s = s;
	v->max = max_entries ? max_entries : VERIFY_DEFAULT_MAX;
	if ((ret = db_create(&v->db, s->env, 0)) != 0)
		goto fail;
	ret = v->db->open(v->db, NULL, "verify.db", NULL, DB_BTREE,
	                  DB_CREATE | DB_AUTO_COMMIT, 0600);
	if (ret != 0)
		goto fail;
	if (verify_count_all(v) < 0) {
		snprintf(err, errlen, "%s", v->err);
		spool_verify_close(v);
		return NULL;
	}
	return v;
fail:
	snprintf(err, errlen, "verify.db: %s", db_strerror(ret));
	spool_verify_close(v);
	return NULL;
}

void
spool_verify_close(struct spool_verify *v)
{
	if (v == NULL)
		return;
	if (v->db != NULL)
		v->db->close(v->db, 0);
	free(v);
}

uint64_t
spool_verify_count(const struct spool_verify *v)
{
	return v != NULL ? v->count : 0;
}

/* verify_decode - record -> entry; -1 when malformed */
static int
verify_decode(const DBT *d, struct spool_verify_entry *e)
{
	char buf[SPOOL_VERIFY_TEXT_MAX + 96];
	long long t, keep;
	int answer, code, off = 0;

	if (d->size == 0 || d->size >= sizeof(buf))
		return -1;
	memcpy(buf, d->data, d->size);
	buf[d->size] = '\0';
	if (sscanf(buf, "%d %d %lld %lld %n", &answer, &code, &t, &keep,
	           &off) != 4 ||
	    off <= 0)
		return -1;
	memset(e, 0, sizeof(*e));
	e->answer = answer != 0;
	e->code = code;
	e->time = t;
	e->keep_until = keep;
	snprintf(e->text, sizeof(e->text), "%s", buf + off);
	return 0;
}

int
spool_verify_get(struct spool_verify *v, const char *key,
                 struct spool_verify_entry *e)
{
	DBT k, d;
	int ret;

	if (v == NULL)
		return 0;
	memset(&k, 0, sizeof(k));
	verify_dbt_realloc(&d);
	k.data = (void *)key;
	k.size = (uint32_t)strlen(key);
	if ((ret = v->db->get(v->db, NULL, &k, &d, 0)) == DB_NOTFOUND)
		return 0;
	if (ret != 0)
		return verify_fail(v, ret, "get");
	ret = verify_decode(&d, e);
	free(d.data);
	if (ret < 0)
		return 0; /* a bad record is a miss; the next put fixes it */
	return 1;
}

/* verify_exists - is key stored (for the count)? */
static int
verify_exists(struct spool_verify *v, DB_TXN *txn, DBT *k)
{
	return v->db->exists(v->db, txn, k, 0) == 0;
}

/*
 * verify_evict - make room: first every expired record, then, if still
 * full, the oldest of the first VERIFY_EVICT_SCAN records (a bounded
 * scan; the cache is a cache, exact LRU is not worth a second index).
 */
static void
verify_evict(struct spool_verify *v, int64_t now)
{
	struct spool_verify_entry e;
	DBC *c;
	DBT k, d, oldest;
	int64_t oldest_t = INT64_MAX;
	char okey[SPOOL_VERIFY_KEY_MAX + 1];
	int n = 0;

	if (spool_verify_expire(v, now) > 0 && v->count <= v->max)
		return;
	if (v->db->cursor(v->db, NULL, &c, 0) != 0)
		return;
	verify_dbt_realloc(&k);
	verify_dbt_realloc(&d);
	okey[0] = '\0';
	while (n++ < VERIFY_EVICT_SCAN && c->get(c, &k, &d, DB_NEXT) == 0) {
		if (verify_decode(&d, &e) < 0)
			e.time = INT64_MIN;
		if (e.time < oldest_t && k.size <= SPOOL_VERIFY_KEY_MAX) {
			oldest_t = e.time;
			memcpy(okey, k.data, k.size);
			okey[k.size] = '\0';
		}
	}
	c->close(c);
	free(k.data);
	free(d.data);
	if (okey[0] != '\0') {
		memset(&oldest, 0, sizeof(oldest));
		spool_verify_del(v, okey);
	}
}

int
spool_verify_put(struct spool_verify *v, const char *key,
                 const struct spool_verify_entry *e, int64_t now)
{
	char buf[SPOOL_VERIFY_TEXT_MAX + 96], text[SPOOL_VERIFY_TEXT_MAX];
	DB_TXN *txn;
	DBT k, d;
	int ret, n, existed, tries = 0;
	size_t i;

	if (v == NULL || strlen(key) > SPOOL_VERIFY_KEY_MAX)
		return -1;
	/* one line of printable text: the record stays parseable */
	snprintf(text, sizeof(text), "%s", e->text);
	for (i = 0; text[i] != '\0'; i++)
		if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f)
			text[i] = ' ';
	n = snprintf(buf, sizeof(buf), "%d %d %lld %lld %s", e->answer ? 1 : 0,
	             e->code, (long long)e->time, (long long)e->keep_until,
	             text);
	if (n < 0 || (size_t)n >= sizeof(buf))
		n = (int)strlen(buf);
	memset(&k, 0, sizeof(k));
	memset(&d, 0, sizeof(d));
	k.data = (void *)key;
	k.size = (uint32_t)strlen(key);
	d.data = buf;
	d.size = (uint32_t)n;
again:
	if ((ret = v->s->env->txn_begin(v->s->env, NULL, &txn, 0)) != 0)
		return verify_fail(v, ret, "txn_begin");
	existed = verify_exists(v, txn, &k);
	if ((ret = v->db->put(v->db, txn, &k, &d, 0)) != 0) {
		txn->abort(txn);
		if (spool_txn_retry(ret, &tries))
			goto again;
		return verify_fail(v, ret, "put");
	}
	if ((ret = txn->commit(txn, DB_TXN_NOSYNC)) != 0)
		return verify_fail(v, ret, "commit");
	if (!existed)
		v->count++;
	if (v->count > v->max)
		verify_evict(v, now);
	return 0;
}

int
spool_verify_del(struct spool_verify *v, const char *key)
{
	DB_TXN *txn;
	DBT k;
	int ret, tries = 0;

	if (v == NULL)
		return -1;
	memset(&k, 0, sizeof(k));
	k.data = (void *)key;
	k.size = (uint32_t)strlen(key);
again:
	if ((ret = v->s->env->txn_begin(v->s->env, NULL, &txn, 0)) != 0)
		return verify_fail(v, ret, "txn_begin");
	ret = v->db->del(v->db, txn, &k, 0);
	if (ret != 0 && ret != DB_NOTFOUND) {
		txn->abort(txn);
		if (spool_txn_retry(ret, &tries))
			goto again;
		return verify_fail(v, ret, "del");
	}
	if (txn->commit(txn, DB_TXN_NOSYNC) != 0)
		return -1;
	if (ret == 0 && v->count > 0)
		v->count--;
	return 0;
}

int
spool_verify_expire(struct spool_verify *v, int64_t now)
{
	struct spool_verify_entry e;
	DB_TXN *txn;
	DBC *c;
	DBT k, d;
	int ret, n = 0;

	if (v == NULL)
		return 0;
	if ((ret = v->s->env->txn_begin(v->s->env, NULL, &txn, 0)) != 0)
		return verify_fail(v, ret, "txn_begin");
	if ((ret = v->db->cursor(v->db, txn, &c, 0)) != 0) {
		txn->abort(txn);
		return verify_fail(v, ret, "cursor");
	}
	verify_dbt_realloc(&k);
	verify_dbt_realloc(&d);
	while ((ret = c->get(c, &k, &d, DB_NEXT)) == 0) {
		if (verify_decode(&d, &e) == 0 && e.keep_until > now)
			continue;
		if (c->del(c, 0) == 0)
			n++;
	}
	c->close(c);
	free(k.data);
	free(d.data);
	if (ret != DB_NOTFOUND) {
		txn->abort(txn);
		return verify_fail(v, ret, "expire");
	}
	if ((ret = txn->commit(txn, DB_TXN_NOSYNC)) != 0)
		return verify_fail(v, ret, "commit");
	v->count = v->count > (uint64_t)n ? v->count - n : 0;
	return n;
}
