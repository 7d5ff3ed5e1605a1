/*
 * ids.c - queue ids and keys: the id generator (time-ordered, never
 * repeating within one spool), the id syntax check and the body.db key
 * of a chunk.  Called by message.c (new messages, body chunks, ids
 * from the outside checked); calls nothing of the spool.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "spool_private.h"

/* spool_id_valid - 12 lowercase hex digits */
int
spool_id_valid(const char *id)
{
	int i;

	for (i = 0; i < SPOOL_ID_LEN; i++)
		if (!((id[i] >= '0' && id[i] <= '9') ||
		      (id[i] >= 'a' && id[i] <= 'f')))
			return 0;
	return id[SPOOL_ID_LEN] == '\0';
}

/*
 * spool_id_next - 32-bit seconds + 16-bit counter.  When the clock
 * stands still (or goes back) the counter runs on; when it overflows
 * we borrow the next second, so ids only ever grow.
 */
void
spool_id_next(struct spool *s, char id[SPOOL_ID_LEN + 1])
{
	uint32_t now = (uint32_t)time(NULL);

	/* a mirror node's counters have its parity (id_node 1 even, 2 odd) */
	uint32_t first = s->id_node == 2 ? 1 : 0;
	/* worker processes (spool_ids_share): counters offset + k*stride */
	uint32_t step = s->id_stride > 1 ? (uint32_t)s->id_stride : 1;

	if (step > 1)
		first = (uint32_t)s->id_offset;
	if (now > s->id_secs) {
		s->id_secs = now;
		s->id_count = first;
	} else {
		s->id_count += step;
		if (step == 1 && s->id_node != 0 && (s->id_count & 1) != first)
			s->id_count++;
		if (s->id_count > 0xffff) {
			s->id_secs++;
			s->id_count = first;
		}
	}
	snprintf(id, SPOOL_ID_LEN + 1, "%08x%04x", (unsigned)s->id_secs,
	         (unsigned)s->id_count);
}

/* spool_body_key - body.db key of chunk n of id into key */
void
spool_body_key(unsigned char key[SPOOL_BODY_KEYLEN], const char *id, uint32_t n)
{
	memcpy(key, id, SPOOL_ID_LEN);
	key[SPOOL_ID_LEN] = n >> 24;
	key[SPOOL_ID_LEN + 1] = n >> 16;
	key[SPOOL_ID_LEN + 2] = n >> 8;
	key[SPOOL_ID_LEN + 3] = n;
}
