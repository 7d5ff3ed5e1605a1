/*
 * message.c - the records of the spool: the versioned envelope format
 * (spool_envelope_encode/decode), the body writer (chunks in their own
 * short transactions, envelope + last chunk in one), envelope reads and
 * rewrites, delete, bounded scans, body reads.  Every write of an
 * envelope updates its next-attempt index entry (next.c) in the same
 * transaction.  Every transaction begins and ends inside one call.  Used
 * by relay/ (smtpd, forward, control); env.c owns the environment,
 * startup.c the scan at open.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spool_private.h"

/*
 * Record layout, version 2, integers big-endian:
 *   "BMXE" u8:version
 *   str:id i64:arrival u64:size str:sender u8:body u8:smtputf8 u8:ret
 *   ostr:envid ostr:client_addr ostr:client_helo u8:held u8:is_bounce
 *   u8:delay_warned
 *   u32:nrcpt, then per recipient:
 *     str:address ostr:orcpt u8:notify u8:state u32:attempts
 *     i64:next_attempt ostr:last_error ostr:route u32:step u8:flags
 * Version 1 (still read) lacks delay_warned, step and flags: step is
 * then the attempts, flags and delay_warned 0.
 * str = u32 length + octets (no NUL, at most SPOOL_STR_MAX);
 * ostr = the same, or length 0xffffffff for NULL.  The record must end
 * exactly after the last field.
 */
#define ENV_MAGIC "BMXE"
#define ENV_VERSION 2
#define ENV_NULLSTR 0xffffffffu
/* the smallest encoded recipient: bounds nrcpt before allocating */
#define ENV_RCPT_MIN (4 + 4 + 1 + 1 + 4 + 8 + 4 + 4)
#define SCAN_BATCH 256

struct enc {
	unsigned char *buf;
	size_t len, cap;
	int bad;
};

static void
enc_put(struct enc *b, const void *p, size_t n)
{
	unsigned char *nb;
	size_t ncap;

	if (b->bad)
		return;
	if (b->len + n > b->cap) {
		ncap = b->cap ? b->cap : 256;
		while (ncap < b->len + n)
			ncap *= 2;
		if ((nb = realloc(b->buf, ncap)) == NULL) {
			b->bad = 1;
			return;
		}
		b->buf = nb;
		b->cap = ncap;
	}
	memcpy(b->buf + b->len, p, n);
	b->len += n;
}

static void
enc_u64(struct enc *b, uint64_t v, int octets)
{
	unsigned char t[8];
	int i;

	for (i = 0; i < octets; i++)
		t[i] = v >> (8 * (octets - 1 - i));
	enc_put(b, t, octets);
}

static void
enc_str(struct enc *b, const char *s, int optional)
{
	size_t n;

	if (s == NULL) {
		if (!optional)
			b->bad = 1;
		enc_u64(b, ENV_NULLSTR, 4);
		return;
	}
	if ((n = strlen(s)) > SPOOL_STR_MAX) {
		b->bad = 1;
		return;
	}
	enc_u64(b, n, 4);
	enc_put(b, s, n);
}

static void
enc_small(struct enc *b, int v, int max)
{
	if (v < 0 || v > max)
		b->bad = 1;
	enc_u64(b, (unsigned)v, 1);
}

/* spool_envelope_encode - the envelopes.db record of e */
void *
spool_envelope_encode(const struct spool_envelope *e, size_t *len)
{
	struct enc b = {0};
	int i;

	if (!spool_id_valid(e->id) || e->nrcpt < 0 ||
	    e->nrcpt > SPOOL_RCPT_MAX || (e->nrcpt > 0 && e->rcpt == NULL))
		return NULL;
	enc_put(&b, ENV_MAGIC, 4);
	enc_u64(&b, ENV_VERSION, 1);
	enc_str(&b, e->id, 0);
	enc_u64(&b, (uint64_t)e->arrival, 8);
	enc_u64(&b, e->size, 8);
	enc_str(&b, e->sender, 0);
	enc_small(&b, e->body, SPOOL_BODY_BINARYMIME);
	enc_small(&b, !!e->smtputf8, 1);
	enc_small(&b, e->ret, SPOOL_RET_HDRS);
	enc_str(&b, e->envid, 1);
	enc_str(&b, e->client_addr, 1);
	enc_str(&b, e->client_helo, 1);
	enc_small(&b, !!e->held, 1);
	enc_small(&b, !!e->is_bounce, 1);
	enc_small(&b, !!e->delay_warned, 1);
	enc_u64(&b, (uint32_t)e->nrcpt, 4);
	for (i = 0; i < e->nrcpt; i++) {
		const struct spool_rcpt *r = &e->rcpt[i];

		enc_str(&b, r->address, 0);
		enc_str(&b, r->orcpt, 1);
		enc_small(&b, r->notify, 0x0f);
		enc_small(&b, r->state, SPOOL_RCPT_FAILED);
		if (r->attempts < 0)
			b.bad = 1;
		enc_u64(&b, (uint32_t)r->attempts, 4);
		enc_u64(&b, (uint64_t)r->next_attempt, 8);
		enc_str(&b, r->last_error, 1);
		enc_str(&b, r->route, 1);
		if (r->step < 0)
			b.bad = 1;
		enc_u64(&b, (uint32_t)r->step, 4);
		enc_small(&b, r->flags, SPOOL_RCPT_F_ALL);
	}
	if (b.bad) {
		free(b.buf);
		return NULL;
	}
	*len = b.len;
	return b.buf;
}

struct dec {
	const unsigned char *p;
	size_t left;
	int bad;
};

static uint64_t
dec_u64(struct dec *d, int octets)
{
	uint64_t v = 0;
	int i;

	if (d->bad || d->left < (size_t)octets) {
		d->bad = 1;
		return 0;
	}
	for (i = 0; i < octets; i++)
		v = (v << 8) | d->p[i];
	d->p += octets;
	d->left -= octets;
	return v;
}

static int
dec_small(struct dec *d, int max)
{
	int v = (int)dec_u64(d, 1);

	if (v > max)
		d->bad = 1;
	return v;
}

static char *
dec_str(struct dec *d, int optional)
{
	uint64_t n = dec_u64(d, 4);
	char *s;

	if (d->bad)
		return NULL;
	if (n == ENV_NULLSTR) {
		if (!optional)
			d->bad = 1;
		return NULL;
	}
	if (n > SPOOL_STR_MAX || n > d->left || memchr(d->p, '\0', n)) {
		d->bad = 1;
		return NULL;
	}
	if ((s = malloc(n + 1)) == NULL) {
		d->bad = 1;
		return NULL;
	}
	memcpy(s, d->p, n);
	s[n] = '\0';
	d->p += n;
	d->left -= n;
	return s;
}

/* spool_envelope_decode - parse a record; NULL for anything malformed */
struct spool_envelope *
spool_envelope_decode(const void *buf, size_t len)
{
	struct dec d = {buf, len, 0};
	struct spool_envelope *e;
	uint64_t n;
	char *id;
	int i, version;

	if (len < 5 || memcmp(buf, ENV_MAGIC, 4) != 0)
		return NULL;
	d.p += 4;
	d.left -= 4;
	version = (int)dec_u64(&d, 1);
	if (version != ENV_VERSION && version != 1)
		return NULL;
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	id = dec_str(&d, 0);
	if (id == NULL || !spool_id_valid(id))
		d.bad = 1;
	else
		memcpy(e->id, id, SPOOL_ID_LEN + 1);
	free(id);
	e->arrival = (int64_t)dec_u64(&d, 8);
	e->size = dec_u64(&d, 8);
	e->sender = dec_str(&d, 0);
	e->body = dec_small(&d, SPOOL_BODY_BINARYMIME);
	e->smtputf8 = dec_small(&d, 1);
	e->ret = dec_small(&d, SPOOL_RET_HDRS);
	e->envid = dec_str(&d, 1);
	e->client_addr = dec_str(&d, 1);
	e->client_helo = dec_str(&d, 1);
	e->held = dec_small(&d, 1);
	e->is_bounce = dec_small(&d, 1);
	if (version >= 2)
		e->delay_warned = dec_small(&d, 1);
	n = dec_u64(&d, 4);
	if (d.bad || n > SPOOL_RCPT_MAX || n > d.left / ENV_RCPT_MIN)
		goto bad;
	if (n > 0 && (e->rcpt = calloc(n, sizeof(*e->rcpt))) == NULL)
		goto bad;
	e->nrcpt = (int)n;
	for (i = 0; i < e->nrcpt && !d.bad; i++) {
		struct spool_rcpt *r = &e->rcpt[i];

		r->address = dec_str(&d, 0);
		r->orcpt = dec_str(&d, 1);
		r->notify = dec_small(&d, 0x0f);
		r->state = dec_small(&d, SPOOL_RCPT_FAILED);
		n = dec_u64(&d, 4);
		if (n > INT_MAX)
			d.bad = 1;
		r->attempts = (int)n;
		r->next_attempt = (int64_t)dec_u64(&d, 8);
		r->last_error = dec_str(&d, 1);
		r->route = dec_str(&d, 1);
		r->step = r->attempts;
		if (version >= 2) {
			n = dec_u64(&d, 4);
			if (n > INT_MAX)
				d.bad = 1;
			r->step = (int)n;
			r->flags = dec_small(&d, SPOOL_RCPT_F_ALL);
		}
	}
	if (d.bad || d.left != 0)
		goto bad;
	return e;
bad:
	spool_envelope_free(e);
	return NULL;
}

/* spool_envelope_free - free e and everything in it; NULL ok */
void
spool_envelope_free(struct spool_envelope *e)
{
	int i;

	if (e == NULL)
		return;
	for (i = 0; i < e->nrcpt; i++) {
		free(e->rcpt[i].address);
		free(e->rcpt[i].orcpt);
		free(e->rcpt[i].last_error);
		free(e->rcpt[i].route);
	}
	free(e->rcpt);
	free(e->sender);
	free(e->envid);
	free(e->client_addr);
	free(e->client_helo);
	free(e);
}

/* ------------------------------------------------------------------ */

static void
dbt_init(DBT *d, void *data, size_t size)
{
	memset(d, 0, sizeof(*d));
	d->data = data;
	d->size = (uint32_t)size;
}

/* spool_body_remove - delete every chunk of id inside txn */
static int
spool_body_remove(struct spool *s, DB_TXN *txn, const char *id)
{
	unsigned char kbuf[SPOOL_BODY_KEYLEN];
	DBC *c;
	DBT key, data;
	int ret, r2;

	if ((ret = s->body->cursor(s->body, txn, &c, 0)) != 0)
		return ret;
	spool_body_key(kbuf, id, 0);
	dbt_init(&key, kbuf, sizeof(kbuf));
	key.ulen = sizeof(kbuf);
	key.flags = DB_DBT_USERMEM;
	dbt_init(&data, NULL, 0);
	data.flags = DB_DBT_PARTIAL | DB_DBT_USERMEM; /* dlen 0: no copy */
	ret = c->get(c, &key, &data, DB_SET_RANGE | DB_RMW);
	while (ret == 0 && key.size == SPOOL_BODY_KEYLEN &&
	       memcmp(kbuf, id, SPOOL_ID_LEN) == 0) {
		if ((ret = c->del(c, 0)) != 0)
			break;
		ret = c->get(c, &key, &data, DB_NEXT | DB_RMW);
	}
	if (ret == DB_NOTFOUND || ret == 0)
		ret = 0;
	if ((r2 = c->close(c)) != 0 && ret == 0)
		ret = r2;
	return ret;
}

/* spool_txn_body_remove - delete the chunks of id in a transaction */
int
spool_txn_body_remove(struct spool *s, const char *id)
{
	DB_TXN *txn;
	int ret, tries = 0;

again:
	if ((ret = s->env->txn_begin(s->env, NULL, &txn, 0)) != 0)
		return ret;
	if ((ret = spool_body_remove(s, txn, id)) != 0) {
		txn->abort(txn);
		if (spool_txn_retry(ret, &tries))
			goto again;
		return ret;
	}
	return txn->commit(txn, DB_TXN_NOSYNC);
}

/* ------------------------------------------------------------------ */
/* The writer */

struct spool_writer {
	struct spool *s;
	struct spool_writer *prev, *next; /* s->wfirst..wlast, by id */
	char id[SPOOL_ID_LEN + 1];
	unsigned char *buf; /* SPOOL_CHUNK octets */
	size_t fill;
	uint32_t nchunks; /* full chunks already in body.db */
	uint64_t size;
	int failed;
};

struct spool_writer *
spool_writer_new(struct spool *s)
{
	struct spool_writer *w;

	if ((w = calloc(1, sizeof(*w))) == NULL ||
	    (w->buf = malloc(SPOOL_CHUNK)) == NULL) {
		free(w);
		spool_fail_class(s, SPOOL_EIO, "out of memory");
		return NULL;
	}
	w->s = s;
	spool_id_next(s, w->id);
	/* ids grow: the list stays in id order, its head the oldest */
	w->prev = s->wlast;
	if (s->wlast != NULL)
		s->wlast->next = w;
	else
		s->wfirst = w;
	s->wlast = w;
	return w;
}

const char *
spool_writer_id(const struct spool_writer *w)
{
	return w->id;
}

/* writer_put_chunk - the buffered chunk as chunk w->nchunks, in txn */
static int
writer_put_chunk(struct spool_writer *w, DB_TXN *txn)
{
	unsigned char kbuf[SPOOL_BODY_KEYLEN];
	DBT key, data;

	spool_body_key(kbuf, w->id, w->nchunks);
	dbt_init(&key, kbuf, sizeof(kbuf));
	dbt_init(&data, w->buf, w->fill);
	return w->s->body->put(w->s->body, txn, &key, &data, 0);
}

/* writer_flush - write one full chunk in its own short transaction */
static int
writer_flush(struct spool_writer *w)
{
	struct spool *s = w->s;
	DB_TXN *txn;
	int ret;

	int tries = 0;

again:
	if ((ret = s->env->txn_begin(s->env, NULL, &txn, 0)) != 0)
		goto fail;
	if ((ret = writer_put_chunk(w, txn)) != 0) {
		txn->abort(txn);
		if (spool_txn_retry(ret, &tries))
			goto again;
		goto fail;
	}
	if ((ret = txn->commit(txn, DB_TXN_NOSYNC)) != 0)
		goto fail;
	w->nchunks++;
	w->fill = 0;
	return 0;
fail:
	w->failed = 1;
	return spool_fail(s, ret, "writing body of %s", w->id);
}

int
spool_writer_append(struct spool_writer *w, const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t n;

	if (w->failed)
		return -1;
	while (len > 0) {
		n = SPOOL_CHUNK - w->fill;
		if (n > len)
			n = len;
		memcpy(w->buf + w->fill, p, n);
		w->fill += n;
		w->size += n;
		p += n;
		len -= n;
		if (w->fill == SPOOL_CHUNK && writer_flush(w) < 0)
			return -1;
	}
	return 0;
}

static void
writer_free(struct spool_writer *w)
{
	struct spool *s = w->s;

	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		s->wfirst = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	else
		s->wlast = w->prev;
	free(w->buf);
	free(w);
}

/*
 * spool_writer_abort - remove what was written.  If even that fails
 * (disk full), the chunks are orphans and the next open removes them.
 */
void
spool_writer_abort(struct spool_writer *w)
{
	int ret;

	if (w == NULL)
		return;
	if (w->nchunks > 0 && (ret = spool_txn_body_remove(w->s, w->id)) != 0) {
		struct spool *s = w->s;

		spool_fail(s, ret, "removing body of aborted %s", w->id);
		/* the next open removes them (startup.c) */
		if (s->orphan_min[0] == '\0' ||
		    strcmp(w->id, s->orphan_min) < 0)
			memcpy(s->orphan_min, w->id, sizeof(s->orphan_min));
	}
	writer_free(w);
}

/* spool_writer_commit - last chunk and envelope in one transaction */
int
spool_writer_commit(struct spool_writer *w, struct spool_envelope *e)
{
	struct spool *s = w->s;
	DB_TXN *txn = NULL;
	DBT key, data;
	void *rec = NULL;
	size_t reclen;
	int ret, tries = 0;

	if (w->failed)
		goto fail_kept;
	memcpy(e->id, w->id, sizeof(e->id));
	e->size = w->size;
	if ((rec = spool_envelope_encode(e, &reclen)) == NULL) {
		spool_fail_class(s, SPOOL_EIO,
		                 "envelope of %s cannot be stored "
		                 "(field too long or invalid)",
		                 w->id);
		goto fail_kept;
	}
again:
	if ((ret = s->env->txn_begin(s->env, NULL, &txn, 0)) != 0)
		goto fail;
	dbt_init(&key, w->id, SPOOL_ID_LEN);
	dbt_init(&data, rec, reclen);
	if ((w->fill > 0 && (ret = writer_put_chunk(w, txn)) != 0) ||
	    (ret = s->envelopes->put(s->envelopes, txn, &key, &data,
	                             DB_NOOVERWRITE)) != 0 ||
	    (ret = spool_next_update(s, txn, NULL, e)) != 0) {
		txn->abort(txn);
		txn = NULL;
		if (spool_txn_retry(ret, &tries))
			goto again;
		goto fail;
	}
	ret = txn->commit(txn, DB_TXN_NOSYNC);
	txn = NULL;
	if (ret != 0)
		goto fail;
	s->msgs++;
	s->bytes += w->size;
	free(rec);
	writer_free(w);
	return 0;

fail:
	if (txn != NULL)
		txn->abort(txn);
	spool_fail(s, ret, "committing %s", w->id);
fail_kept:
	free(rec);
	{
		/* keep the first error: the cleanup may fail the same way */
		enum spool_err cls = s->err;
		char buf[sizeof(s->errbuf)];

		memcpy(buf, s->errbuf, sizeof(buf));
		spool_writer_abort(w);
		s->err = cls;
		memcpy(s->errbuf, buf, sizeof(buf));
	}
	return -1;
}

/* ------------------------------------------------------------------ */
/* Envelopes */

/* spool_envelope_get - read one envelope; NULL + SPOOL_ENOTFOUND */
struct spool_envelope *
spool_envelope_get(struct spool *s, const char *id)
{
	struct spool_envelope *e;
	DBT key, data;
	int ret;

	if (id == NULL || !spool_id_valid(id)) {
		spool_fail_class(s, SPOOL_ENOTFOUND, "no message %s",
		                 id ? id : "(null)");
		return NULL;
	}
	dbt_init(&key, (void *)id, SPOOL_ID_LEN);
	dbt_init(&data, NULL, 0);
	data.flags = DB_DBT_MALLOC;
	ret = s->envelopes->get(s->envelopes, NULL, &key, &data, 0);
	if (ret == DB_NOTFOUND) {
		spool_fail_class(s, SPOOL_ENOTFOUND, "no message %s", id);
		return NULL;
	}
	if (ret != 0) {
		spool_fail(s, ret, "reading envelope %s", id);
		return NULL;
	}
	e = spool_envelope_decode(data.data, data.size);
	free(data.data);
	if (e == NULL || strcmp(e->id, id) != 0) {
		spool_envelope_free(e);
		spool_fail_class(s, SPOOL_EIO, "envelope %s is corrupt", id);
		return NULL;
	}
	return e;
}

/*
 * envelope_old_locked - the stored envelope id, read in txn (write
 * locked): *size its size, its next-attempt index entry replaced by
 * that of new (NULL: removed)
 */
static int
envelope_old_locked(struct spool *s, DB_TXN *txn, const char *id,
                    uint64_t *size, const struct spool_envelope *new)
{
	struct spool_envelope *old;
	DBT key, data;
	int ret;

	dbt_init(&key, (void *)id, SPOOL_ID_LEN);
	dbt_init(&data, NULL, 0);
	data.flags = DB_DBT_MALLOC;
	if ((ret = s->envelopes->get(s->envelopes, txn, &key, &data, DB_RMW)) !=
	    0)
		return ret;
	old = spool_envelope_decode(data.data, data.size);
	*size = old != NULL ? old->size : 0;
	ret = spool_next_update(s, txn, old, new);
	spool_envelope_free(old);
	free(data.data);
	return ret;
}

/* spool_envelope_put - rewrite an existing envelope (NOSYNC commit) */
int
spool_envelope_put(struct spool *s, const struct spool_envelope *e)
{
	DB_TXN *txn;
	DBT key, data;
	uint64_t oldsize = 0;
	void *rec;
	size_t reclen;
	int ret, tries = 0;

	if ((rec = spool_envelope_encode(e, &reclen)) == NULL)
		return spool_fail_class(s, SPOOL_EIO,
		                        "envelope %s cannot be stored "
		                        "(field too long or invalid)",
		                        e->id);
again:
	if ((ret = s->env->txn_begin(s->env, NULL, &txn, 0)) != 0) {
		free(rec);
		return spool_fail(s, ret, "updating %s", e->id);
	}
	ret = envelope_old_locked(s, txn, e->id, &oldsize, e);
	if (ret == DB_NOTFOUND) {
		txn->abort(txn);
		free(rec);
		return spool_fail_class(s, SPOOL_ENOTFOUND, "no message %s",
		                        e->id);
	}
	if (ret == 0) {
		dbt_init(&key, (void *)e->id, SPOOL_ID_LEN);
		dbt_init(&data, rec, reclen);
		ret = s->envelopes->put(s->envelopes, txn, &key, &data, 0);
	}
	if (ret != 0) {
		txn->abort(txn);
		if (spool_txn_retry(ret, &tries))
			goto again;
		free(rec);
		return spool_fail(s, ret, "updating %s", e->id);
	}
	free(rec);
	if ((ret = txn->commit(txn, DB_TXN_NOSYNC)) != 0)
		return spool_fail(s, ret, "updating %s", e->id);
	s->bytes = s->bytes - oldsize + e->size;
	return 0;
}

/* spool_message_delete - envelope and body in one transaction */
int
spool_message_delete(struct spool *s, const char *id)
{
	DB_TXN *txn;
	DBT key;
	uint64_t size = 0;
	int ret, tries = 0;

	if (id == NULL || !spool_id_valid(id))
		return spool_fail_class(s, SPOOL_ENOTFOUND, "no message %s",
		                        id ? id : "(null)");
again:
	if ((ret = s->env->txn_begin(s->env, NULL, &txn, 0)) != 0)
		return spool_fail(s, ret, "deleting %s", id);
	ret = envelope_old_locked(s, txn, id, &size, NULL);
	if (ret == DB_NOTFOUND) {
		txn->abort(txn);
		return spool_fail_class(s, SPOOL_ENOTFOUND, "no message %s",
		                        id);
	}
	if (ret == 0) {
		dbt_init(&key, (void *)id, SPOOL_ID_LEN);
		ret = s->envelopes->del(s->envelopes, txn, &key, 0);
	}
	if (ret == 0)
		ret = spool_body_remove(s, txn, id);
	if (ret != 0) {
		txn->abort(txn);
		if (spool_txn_retry(ret, &tries))
			goto again;
		return spool_fail(s, ret, "deleting %s", id);
	}
	if ((ret = txn->commit(txn, DB_TXN_NOSYNC)) != 0)
		return spool_fail(s, ret, "deleting %s", id);
	if (s->msgs > 0)
		s->msgs--;
	s->bytes = s->bytes >= size ? s->bytes - size : 0;
	return 0;
}

/*
 * spool_scan - envelopes after `after`, in id order.  Records are read
 * in batches with a cursor that is closed before fn runs, so fn may
 * update or delete messages without meeting a lock of ours.  Malformed
 * records are skipped (spool_envelope_get reports them one by one).
 */
int
spool_scan(struct spool *s, const char *after, int max,
           int (*fn)(void *arg, const struct spool_envelope *e), void *arg)
{
	struct spool_envelope *batch[SCAN_BATCH];
	char last[SPOOL_ID_LEN + 1];
	unsigned char kbuf[64];
	DBC *c;
	DBT key, data;
	int nb, i, ret, visited = 0, stop = 0, end = 0;
	size_t n;

	n = after != NULL ? strlen(after) : 0;
	if (n > SPOOL_ID_LEN)
		n = SPOOL_ID_LEN;
	memcpy(last, after != NULL ? after : "", n);
	last[n] = '\0';
	dbt_init(&data, NULL, 0);
	data.flags = DB_DBT_REALLOC;
	while (!stop && !end) {
		if ((ret = s->envelopes->cursor(s->envelopes, NULL, &c, 0)) !=
		    0)
			goto fail;
		n = strlen(last);
		memcpy(kbuf, last, n);
		dbt_init(&key, kbuf, n);
		key.ulen = sizeof(kbuf);
		key.flags = DB_DBT_USERMEM;
		ret = n == 0 ? c->get(c, &key, &data, DB_FIRST)
		             : c->get(c, &key, &data, DB_SET_RANGE);
		if (ret == 0 && n > 0 && key.size == n &&
		    memcmp(kbuf, last, n) == 0)
			ret = c->get(c, &key, &data, DB_NEXT);
		nb = 0;
		while (ret == 0 && nb < SCAN_BATCH &&
		       (max == 0 || visited + nb < max)) {
			struct spool_envelope *e;

			e = spool_envelope_decode(data.data, data.size);
			if (key.size == SPOOL_ID_LEN) {
				memcpy(last, kbuf, SPOOL_ID_LEN);
				last[SPOOL_ID_LEN] = '\0';
			}
			if (e != NULL)
				batch[nb++] = e;
			ret = c->get(c, &key, &data, DB_NEXT);
		}
		c->close(c);
		if (ret == DB_NOTFOUND)
			end = 1;
		else if (ret != 0) {
			for (i = 0; i < nb; i++)
				spool_envelope_free(batch[i]);
			goto fail;
		}
		if (max != 0 && visited + nb >= max)
			end = 1;
		for (i = 0; i < nb; i++) {
			if (!stop) {
				visited++;
				stop = fn(arg, batch[i]) != 0;
			}
			spool_envelope_free(batch[i]);
		}
	}
	free(data.data);
	return visited;
fail:
	free(data.data);
	return spool_fail(s, ret, "scanning envelopes");
}

/* ------------------------------------------------------------------ */
/* Bodies */

/* spool_body_read - chunk n of id; 1 read, 0 past the end, -1 error */
int
spool_body_read(struct spool *s, const char *id, uint32_t n, const void **data,
                size_t *len)
{
	unsigned char kbuf[SPOOL_BODY_KEYLEN];
	DBT key, d;
	int ret;

	if (id == NULL || !spool_id_valid(id))
		return spool_fail_class(s, SPOOL_ENOTFOUND, "no message %s",
		                        id ? id : "(null)");
	if (s->rbuf == NULL) {
		if ((s->rbuf = malloc(SPOOL_CHUNK)) == NULL)
			return spool_fail_class(s, SPOOL_EIO, "out of memory");
		s->rbufcap = SPOOL_CHUNK;
	}
	spool_body_key(kbuf, id, n);
	dbt_init(&key, kbuf, sizeof(kbuf));
	dbt_init(&d, s->rbuf, 0);
	d.ulen = (uint32_t)s->rbufcap;
	d.flags = DB_DBT_USERMEM;
	ret = s->body->get(s->body, NULL, &key, &d, 0);
	if (ret == DB_NOTFOUND)
		return 0;
	if (ret == DB_BUFFER_SMALL)
		return spool_fail_class(s, SPOOL_EIO,
		                        "body chunk %u of %s is corrupt "
		                        "(%u octets)",
		                        (unsigned)n, id, (unsigned)d.size);
	if (ret != 0)
		return spool_fail(s, ret, "reading body of %s", id);
	*data = s->rbuf;
	*len = d.size;
	return 1;
}
