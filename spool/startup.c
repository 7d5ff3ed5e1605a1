/*
 * startup.c - what opening the spool must know before it serves anyone,
 * without reading every envelope: the largest id (new ids follow it:
 * the last key of envelopes.db and of body.db), the message and byte
 * counts, and the body chunks left without an envelope.
 *
 * Counts: a clean close writes them into the state file (recover.c,
 * "clean MSGS BYTES"); the open that trusts them rewrites the file
 * durably without that line before anything changes, so a process that
 * dies later never leaves a count behind that looks clean.  After a
 * crash the counts come from one pass over envelopes.db that reads only
 * the size field of each record (spool_recount).
 *
 * Orphan chunks (a message's chunks are written in their own
 * transactions before its envelope) can only belong to a writer alive
 * when the process died, or to an abort whose removal failed.  The state
 * file says from which id on they may be ("orphans_from": the oldest
 * live writer or failed abort, or the newest id when there is none;
 * "-" after a clean close without either), and only body.db from there
 * on is walked.  A spool without a state file is walked whole.
 * Called by env.c (spool_open_opts) and recover.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spool_private.h"

/* envelope record prefix: "BMXE" u8:version u32:12 id[12] i64 u64:size */
#define REC_SIZE_AT (4 + 1 + 4 + SPOOL_ID_LEN + 8)

static void
st_dbt(DBT *d, void *data, size_t size)
{
	memset(d, 0, sizeof(*d));
	d->data = data;
	d->size = (uint32_t)size;
}

/* id_from_key - the (secs, counter) of a 12-hex-digit key; 0 if not */
static int
id_from_key(const unsigned char *k, size_t n, uint32_t *secs, uint32_t *count)
{
	char id[SPOOL_ID_LEN + 1];

	if (n < SPOOL_ID_LEN)
		return 0;
	memcpy(id, k, SPOOL_ID_LEN);
	id[SPOOL_ID_LEN] = '\0';
	if (!spool_id_valid(id))
		return 0;
	*count = (uint32_t)strtoul(id + 8, NULL, 16);
	id[8] = '\0';
	*secs = (uint32_t)strtoul(id, NULL, 16);
	return 1;
}

static void
id_seen(struct spool *s, const unsigned char *k, size_t n)
{
	uint32_t secs, count;

	if (!id_from_key(k, n, &secs, &count))
		return;
	if (secs > s->id_secs || (secs == s->id_secs && count > s->id_count)) {
		s->id_secs = secs;
		s->id_count = count;
	}
}

/* last_key_seen - id_seen of the last key of db */
static int
last_key_seen(struct spool *s, DB *db)
{
	unsigned char kbuf[64];
	uint32_t secs, count;
	DBC *c;
	DBT key, data;
	int ret;

	if ((ret = db->cursor(db, NULL, &c, 0)) != 0)
		return ret;
	st_dbt(&key, kbuf, 0);
	key.ulen = sizeof(kbuf);
	key.flags = DB_DBT_USERMEM;
	st_dbt(&data, NULL, 0);
	data.flags = DB_DBT_PARTIAL | DB_DBT_USERMEM; /* dlen 0 */
	ret = c->get(c, &key, &data, DB_LAST);
	/* keys of 12 hex digits (envelopes) or id + chunk (bodies) sort
	 * by id; anything else sorts elsewhere and is skipped */
	while (ret == 0 && !id_from_key(kbuf, key.size, &secs, &count))
		ret = c->get(c, &key, &data, DB_PREV);
	if (ret == 0)
		id_seen(s, kbuf, key.size);
	c->close(c);
	return ret == DB_NOTFOUND ? 0 : ret;
}

/* record_size - the size field of an envelope record, without decoding
 * the rest; a record of another shape is decoded */
static uint64_t
record_size(const unsigned char *p, size_t n)
{
	struct spool_envelope *e;
	uint64_t v = 0;
	int i;

	if (n >= REC_SIZE_AT + 8 && memcmp(p, "BMXE", 4) == 0 &&
	    (p[4] == 1 || p[4] == 2) && p[5] == 0 && p[6] == 0 && p[7] == 0 &&
	    p[8] == SPOOL_ID_LEN) {
		for (i = 0; i < 8; i++)
			v = v << 8 | p[REC_SIZE_AT + i];
		return v;
	}
	if ((e = spool_envelope_decode(p, n)) != NULL)
		v = e->size;
	spool_envelope_free(e);
	return v;
}

/*
 * spool_recount - count messages and bytes from envelopes.db again.
 * After a failed group commit the in-memory count no longer matches
 * what is stored (a message whose commit never reached the disk, a
 * delete that failed for lack of space); after a crash nothing else
 * says it.  Reads the records in bulk, only their size field.
 */
int
spool_recount(struct spool *s)
{
	uint64_t msgs = 0, bytes = 0;
	size_t cap = 1 << 20;
	unsigned char kbuf[64];
	void *buf;
	DBC *c;
	DBT key, data;
	int ret;

	if ((buf = malloc(cap)) == NULL)
		return -1;
	if ((ret = s->envelopes->cursor(s->envelopes, NULL, &c, 0)) != 0) {
		free(buf);
		return -1;
	}
	st_dbt(&key, kbuf, 0);
	key.ulen = sizeof(kbuf);
	key.flags = DB_DBT_USERMEM;
	for (;;) {
		void *p, *k, *d;
		uint32_t kl, dl;

		st_dbt(&data, buf, 0);
		data.ulen = (uint32_t)cap;
		data.flags = DB_DBT_USERMEM;
		ret = c->get(c, &key, &data, DB_NEXT | DB_MULTIPLE_KEY);
		if (ret == DB_BUFFER_SMALL) {
			/* one record larger than the buffer */
			void *nb;

			cap = ((size_t)data.size + 4096) * 2;
			if ((nb = realloc(buf, cap)) == NULL)
				break;
			buf = nb;
			continue;
		}
		if (ret != 0)
			break;

		DB_MULTIPLE_INIT(p, &data);
		for (;;) {
			DB_MULTIPLE_KEY_NEXT(p, &data, k, kl, d, dl);
			if (p == NULL)
				break;
			(void)k;
			(void)kl;
			msgs++;
			bytes += record_size(d, dl);
		}
	}
	c->close(c);
	free(buf);
	if (ret != DB_NOTFOUND)
		return -1;
	s->msgs = msgs;
	s->bytes = bytes;
	return 0;
}

/* spool_orphans_from - where orphan chunks may start, for the state file */
void
spool_orphans_from(const struct spool *s, int closing,
                   char id[SPOOL_ID_LEN + 1])
{
	if (s->wfirst != NULL)
		memcpy(id, spool_writer_id(s->wfirst), SPOOL_ID_LEN + 1);
	else if (closing)
		snprintf(id, SPOOL_ID_LEN + 1, "-");
	else
		snprintf(id, SPOOL_ID_LEN + 1, "%08x%04x", (unsigned)s->id_secs,
		         (unsigned)s->id_count);
	if (s->orphan_min[0] != '\0' &&
	    (id[0] == '-' || strcmp(s->orphan_min, id) < 0))
		memcpy(id, s->orphan_min, SPOOL_ID_LEN + 1);
	/* workers write chunks this process cannot see: after a crash,
	 * every chunk from their first id on may be an orphan */
	if (!closing && s->orphan_shared[0] != '\0' &&
	    (id[0] == '-' || strcmp(s->orphan_shared, id) < 0))
		memcpy(id, s->orphan_shared, SPOOL_ID_LEN + 1);
}

/*
 * orphans_remove - remove body chunks of ids from `from` on ("" = all)
 * whose envelope does not exist.  The walk jumps from one message to
 * the next, one page per message.
 */
static int
orphans_remove(struct spool *s, const char *from, char *err, size_t errlen)
{
	unsigned char kbuf[64];
	char(*orphans)[SPOOL_ID_LEN + 1] = NULL, id[SPOOL_ID_LEN + 1];
	size_t norphans = 0, cap = 0, i;
	DBC *c;
	DBT key, data;
	int ret;

	if ((ret = s->body->cursor(s->body, NULL, &c, 0)) != 0)
		goto fail;
	st_dbt(&key, kbuf, strlen(from));
	memcpy(kbuf, from, strlen(from));
	key.ulen = sizeof(kbuf);
	key.flags = DB_DBT_USERMEM;
	st_dbt(&data, NULL, 0);
	data.flags = DB_DBT_PARTIAL | DB_DBT_USERMEM; /* dlen 0 */
	ret = from[0] == '\0' ? c->get(c, &key, &data, DB_FIRST)
	                      : c->get(c, &key, &data, DB_SET_RANGE);
	while (ret == 0) {
		DBT ekey;

		if (key.size < SPOOL_ID_LEN) {
			ret = c->get(c, &key, &data, DB_NEXT);
			continue;
		}
		memcpy(id, kbuf, SPOOL_ID_LEN);
		id[SPOOL_ID_LEN] = '\0';
		st_dbt(&ekey, id, SPOOL_ID_LEN);
		ret = s->envelopes->exists(s->envelopes, NULL, &ekey, 0);
		if (ret == DB_NOTFOUND) {
			if (norphans == cap) {
				void *n;

				cap = cap ? cap * 2 : 16;
				if ((n = realloc(orphans,
				                 cap * sizeof(*orphans))) ==
				    NULL) {
					c->close(c);
					free(orphans);
					snprintf(err, errlen, "out of memory");
					s->err = SPOOL_EIO;
					return -1;
				}
				orphans = n;
			}
			memcpy(orphans[norphans++], id, sizeof(id));
		} else if (ret != 0)
			break;
		/* past every chunk of id: id + ff ff ff ff + 00 */
		memcpy(kbuf, id, SPOOL_ID_LEN);
		memset(kbuf + SPOOL_ID_LEN, 0xff, 4);
		kbuf[SPOOL_BODY_KEYLEN] = 0;
		key.size = SPOOL_BODY_KEYLEN + 1;
		ret = c->get(c, &key, &data, DB_SET_RANGE);
	}
	c->close(c);
	if (ret != DB_NOTFOUND) {
		free(orphans);
		goto fail;
	}
	ret = 0;
	for (i = 0; i < norphans; i++) {
		if ((ret = spool_txn_body_remove(s, orphans[i])) != 0)
			break;
	}
	free(orphans);
	if (ret != 0)
		goto fail;
	return 0;
fail:
	spool_fail(s, ret, "scanning the spool");
	snprintf(err, errlen, "%s", s->errbuf);
	return -1;
}

/*
 * spool_open_scan - the largest id, the counts (the state file's after
 * a clean close, else one pass), orphan chunks from where the state
 * file says they may be
 */
int
spool_open_scan(struct spool *s, char *err, size_t errlen)
{
	int ret;

	s->id_secs = s->id_count = 0;
	if ((ret = last_key_seen(s, s->envelopes)) != 0 ||
	    (ret = last_key_seen(s, s->body)) != 0) {
		spool_fail(s, ret, "scanning the spool");
		snprintf(err, errlen, "%s", s->errbuf);
		return -1;
	}
	if (s->st_clean) {
		s->msgs = s->st_msgs;
		s->bytes = s->st_bytes;
	} else if (spool_recount(s) < 0) {
		spool_fail(s, EIO, "counting the spool");
		snprintf(err, errlen, "%s", s->errbuf);
		return -1;
	}
	if (strcmp(s->st_orphans, "-") == 0)
		return 0;
	return orphans_remove(s, s->st_orphans, err, errlen);
}
