/*
 * schedule.c - the retry schedule: which queued message is due next.
 * An in-memory binary min-heap of (time, id), ties broken by id, with
 * an id -> entry hash so set/remove/when are O(log n) / O(1).  Rebuilt
 * by relay/forward.c from envelopes.db at start; never touches the disk.
 * Pure: the time is always a parameter.  Also the backoff arithmetic.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spool.h"

#define SCHED_EMPTY UINT32_MAX

struct sched_node {
	int64_t t;
	uint32_t pos; /* index in heap[], or the next free node */
	uint32_t tag; /* the caller's (a domain hash), 0 = none */
	char id[SPOOL_ID_LEN + 1];
	uint8_t flags; /* the caller's, 0 for a new entry */
};

struct schedule {
	struct sched_node *nodes;
	uint32_t nnodes, capnodes, freelist;
	uint32_t *heap; /* node indexes, heap-ordered */
	uint32_t nheap;
	uint32_t *hash;   /* node indexes, linear probing */
	uint32_t hashcap; /* power of two */
};

struct schedule *
schedule_new(void)
{
	struct schedule *q;

	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	q->freelist = SCHED_EMPTY;
	q->hashcap = 64;
	if ((q->hash = malloc(q->hashcap * sizeof(*q->hash))) == NULL) {
		free(q);
		return NULL;
	}
	memset(q->hash, 0xff, q->hashcap * sizeof(*q->hash));
	return q;
}

void
schedule_free(struct schedule *q)
{
	if (q == NULL)
		return;
	free(q->nodes);
	free(q->heap);
	free(q->hash);
	free(q);
}

size_t
schedule_size(const struct schedule *q)
{
	return q->nheap;
}

/* sched_hash - FNV-1a of the id */
static uint32_t
sched_hash(const char *id)
{
	uint32_t h = 2166136261u;

	while (*id != '\0')
		h = (h ^ (unsigned char)*id++) * 16777619u;
	return h;
}

/* sched_slot - the hash slot holding id, or the empty slot it would take */
static uint32_t
sched_slot(const struct schedule *q, const char *id)
{
	uint32_t mask = q->hashcap - 1, i = sched_hash(id) & mask;

	while (q->hash[i] != SCHED_EMPTY &&
	       strcmp(q->nodes[q->hash[i]].id, id) != 0)
		i = (i + 1) & mask;
	return i;
}

static int
sched_hash_grow(struct schedule *q)
{
	uint32_t *old = q->hash, oldcap = q->hashcap, i;

	if ((q->hash = malloc(2 * oldcap * sizeof(*q->hash))) == NULL) {
		q->hash = old;
		return -1;
	}
	q->hashcap = 2 * oldcap;
	memset(q->hash, 0xff, q->hashcap * sizeof(*q->hash));
	for (i = 0; i < oldcap; i++)
		if (old[i] != SCHED_EMPTY)
			q->hash[sched_slot(q, q->nodes[old[i]].id)] = old[i];
	free(old);
	return 0;
}

/* sched_hash_del - empty slot i, shifting the probe chain back */
static void
sched_hash_del(struct schedule *q, uint32_t i)
{
	uint32_t mask = q->hashcap - 1, j = i, home;

	q->hash[i] = SCHED_EMPTY;
	for (;;) {
		j = (j + 1) & mask;
		if (q->hash[j] == SCHED_EMPTY)
			return;
		home = sched_hash(q->nodes[q->hash[j]].id) & mask;
		/* move j into the hole unless its home lies in (i, j] */
		if ((j > i && (home <= i || home > j)) ||
		    (j < i && (home <= i && home > j))) {
			q->hash[i] = q->hash[j];
			q->hash[j] = SCHED_EMPTY;
			i = j;
		}
	}
}

/* sched_less - heap order of two nodes: time, then id */
static int
sched_less(const struct schedule *q, uint32_t a, uint32_t b)
{
	const struct sched_node *x = &q->nodes[a], *y = &q->nodes[b];

	if (x->t != y->t)
		return x->t < y->t;
	return strcmp(x->id, y->id) < 0;
}

static void
sched_place(struct schedule *q, uint32_t pos, uint32_t node)
{
	q->heap[pos] = node;
	q->nodes[node].pos = pos;
}

static void
sched_up(struct schedule *q, uint32_t pos)
{
	uint32_t node = q->heap[pos], parent;

	while (pos > 0) {
		parent = (pos - 1) / 2;
		if (!sched_less(q, node, q->heap[parent]))
			break;
		sched_place(q, pos, q->heap[parent]);
		pos = parent;
	}
	sched_place(q, pos, node);
}

static void
sched_down(struct schedule *q, uint32_t pos)
{
	uint32_t node = q->heap[pos], child;

	for (;;) {
		child = 2 * pos + 1;
		if (child >= q->nheap)
			break;
		if (child + 1 < q->nheap &&
		    sched_less(q, q->heap[child + 1], q->heap[child]))
			child++;
		if (!sched_less(q, q->heap[child], node))
			break;
		sched_place(q, pos, q->heap[child]);
		pos = child;
	}
	sched_place(q, pos, node);
}

/* sched_unlink - take node out of the heap, the hash and into the free list */
static void
sched_unlink(struct schedule *q, uint32_t slot)
{
	uint32_t node = q->hash[slot], pos = q->nodes[node].pos, last;

	sched_hash_del(q, slot);
	last = q->heap[--q->nheap];
	if (pos < q->nheap) {
		sched_place(q, pos, last);
		sched_down(q, pos);
		sched_up(q, q->nodes[last].pos);
	}
	q->nodes[node].id[0] = '\0';
	q->nodes[node].pos = q->freelist;
	q->freelist = node;
}

/* schedule_set - (re)place id at time t; one entry per id */
int
schedule_set(struct schedule *q, const char *id, int64_t t)
{
	uint32_t slot, node;

	if (id == NULL || strlen(id) != SPOOL_ID_LEN)
		return -1;
	slot = sched_slot(q, id);
	if (q->hash[slot] != SCHED_EMPTY) {
		node = q->hash[slot];
		q->nodes[node].t = t;
		sched_up(q, q->nodes[node].pos);
		sched_down(q, q->nodes[node].pos);
		return 0;
	}
	/* keep the load factor under 1/2 */
	if ((q->nheap + 1) * 2 > q->hashcap) {
		if (sched_hash_grow(q) < 0)
			return -1;
		slot = sched_slot(q, id);
	}
	if (q->freelist != SCHED_EMPTY) {
		node = q->freelist;
		q->freelist = q->nodes[node].pos;
	} else {
		if (q->nnodes == q->capnodes) {
			uint32_t cap = q->capnodes ? q->capnodes * 2 : 64;
			void *n, *h;

			if ((n = realloc(q->nodes, cap * sizeof(*q->nodes))) ==
			    NULL)
				return -1;
			q->nodes = n;
			if ((h = realloc(q->heap, cap * sizeof(*q->heap))) ==
			    NULL)
				return -1;
			q->heap = h;
			q->capnodes = cap;
		}
		node = q->nnodes++;
	}
	memcpy(q->nodes[node].id, id, SPOOL_ID_LEN + 1);
	q->nodes[node].t = t;
	q->nodes[node].tag = 0;
	q->nodes[node].flags = 0;
	q->hash[slot] = node;
	q->heap[q->nheap] = node;
	q->nodes[node].pos = q->nheap++;
	sched_up(q, q->nheap - 1);
	return 0;
}

void
schedule_remove(struct schedule *q, const char *id)
{
	uint32_t slot;

	if (id == NULL || strlen(id) != SPOOL_ID_LEN)
		return;
	slot = sched_slot(q, id);
	if (q->hash[slot] != SCHED_EMPTY)
		sched_unlink(q, slot);
}

/* schedule_peek - earliest entry: 1 and *t, id copied; 0 when empty */
int
schedule_peek(const struct schedule *q, int64_t *t, char id[SPOOL_ID_LEN + 1])
{
	const struct sched_node *n;

	if (q->nheap == 0)
		return 0;
	n = &q->nodes[q->heap[0]];
	if (t != NULL)
		*t = n->t;
	if (id != NULL)
		memcpy(id, n->id, SPOOL_ID_LEN + 1);
	return 1;
}

/* schedule_pop_due - remove and return the earliest id due at now */
int
schedule_pop_due(struct schedule *q, int64_t now, char id[SPOOL_ID_LEN + 1])
{
	int64_t t;
	char tmp[SPOOL_ID_LEN + 1];

	if (!schedule_peek(q, &t, tmp) || t > now)
		return 0;
	sched_unlink(q, sched_slot(q, tmp));
	if (id != NULL)
		memcpy(id, tmp, SPOOL_ID_LEN + 1);
	return 1;
}

/*
 * schedule_advance_all - every entry later than now becomes due at now
 * (a flush), in O(n): the times are clipped in place, then the heap is
 * rebuilt bottom-up (ties are ordered by id, which clipping disturbs).
 * Returns the number of entries.
 */
size_t
schedule_advance_all(struct schedule *q, int64_t now)
{
	uint32_t i;

	for (i = 0; i < q->nheap; i++)
		if (q->nodes[q->heap[i]].t > now)
			q->nodes[q->heap[i]].t = now;
	for (i = q->nheap / 2; i-- > 0;)
		sched_down(q, i);
	return q->nheap;
}

void
schedule_set_tag(struct schedule *q, const char *id, uint32_t tag)
{
	uint32_t slot;

	if (id == NULL || strlen(id) != SPOOL_ID_LEN)
		return;
	slot = sched_slot(q, id);
	if (q->hash[slot] != SCHED_EMPTY)
		q->nodes[q->hash[slot]].tag = tag;
}

void
schedule_set_flags(struct schedule *q, const char *id, unsigned flags)
{
	uint32_t slot;

	if (id == NULL || strlen(id) != SPOOL_ID_LEN)
		return;
	slot = sched_slot(q, id);
	if (q->hash[slot] != SCHED_EMPTY)
		q->nodes[q->hash[slot]].flags = (uint8_t)flags;
}

/* schedule_flags - the caller's flags of id, 0 when not scheduled */
unsigned
schedule_flags(const struct schedule *q, const char *id)
{
	uint32_t slot;

	if (id == NULL || strlen(id) != SPOOL_ID_LEN)
		return 0;
	slot = sched_slot(q, id);
	return q->hash[slot] == SCHED_EMPTY ? 0 : q->nodes[q->hash[slot]].flags;
}

/*
 * schedule_advance_match - as schedule_advance_all, only for the entries
 * holding every flag of need and tagged tag; untagged entries (and every
 * entry when tag is 0) match when unknown(arg, id) accepts them (it must
 * not change q; NULL accepts none).  Returns how many entries matched,
 * due already or made due.
 */
size_t
schedule_advance_match(struct schedule *q, int64_t now, uint32_t tag,
                       unsigned need, int (*unknown)(void *, const char *),
                       void *arg)
{
	uint32_t i;
	size_t n = 0;

	for (i = 0; i < q->nheap; i++) {
		struct sched_node *x = &q->nodes[q->heap[i]];

		if ((x->flags & need) != need)
			continue;
		if ((tag != 0 && x->tag == tag) ||
		    ((x->tag == 0 || tag == 0) && unknown != NULL &&
		     unknown(arg, x->id))) {
			n++;
			if (x->t > now)
				x->t = now;
		}
	}
	for (i = q->nheap / 2; i-- > 0;)
		sched_down(q, i);
	return n;
}

/* schedule_advance_tag - schedule_advance_match with no flag needed */
size_t
schedule_advance_tag(struct schedule *q, int64_t now, uint32_t tag,
                     int (*unknown)(void *, const char *), void *arg)
{
	return schedule_advance_match(q, now, tag, 0, unknown, arg);
}

/* schedule_when - the time of id, or -1 when not scheduled */
int64_t
schedule_when(const struct schedule *q, const char *id)
{
	uint32_t slot;

	if (id == NULL || strlen(id) != SPOOL_ID_LEN)
		return -1;
	slot = sched_slot(q, id);
	return q->hash[slot] == SCHED_EMPTY ? -1 : q->nodes[q->hash[slot]].t;
}

/* sched_mix - a well-mixed 32-bit value of (seed, n) */
static uint32_t
sched_mix(uint32_t seed, uint32_t n)
{
	uint32_t x = seed ^ (n * 0x9e3779b9u);

	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	return x;
}

/*
 * schedule_backoff - steps[attempts-1], the last step repeating, plus a
 * jitter in [0, step/10] drawn from the seed so that messages deferred
 * together do not all come back in the same second.
 */
int64_t
schedule_backoff(const long *steps, int nsteps, int attempts, int64_t now,
                 unsigned jitter_seed)
{
	int64_t step, jitter = 0;

	if (steps == NULL || nsteps <= 0)
		return now;
	if (attempts < 1)
		attempts = 1;
	step = steps[attempts > nsteps ? nsteps - 1 : attempts - 1];
	if (step < 0)
		step = 0;
	if (jitter_seed != 0 && step >= 10)
		jitter = sched_mix(jitter_seed, (uint32_t)attempts) %
		         (uint64_t)(step / 10 + 1);
	if (now > INT64_MAX - step - jitter)
		return INT64_MAX;
	return now + step + jitter;
}

/*
 * schedule_deferral - the next attempt of a recipient deferred at now by
 * an attempt that started at started.  An attempt made at its scheduled
 * time (next_attempt <= started) takes the next step of the retry list
 * (*step + 1); an early one (a flush, ETRN, a recovered destination, a
 * sibling recipient's attempt) changes neither the step nor the
 * scheduled time: the recipient goes back onto its schedule.  The
 * result is at most expires and always later than now.
 */
int64_t
schedule_deferral(const long *steps, int nsteps, int *step,
                  int64_t next_attempt, int64_t started, int64_t now,
                  int64_t expires, unsigned jitter_seed)
{
	int64_t t;

	if (next_attempt <= started || *step < 1) {
		if (*step < INT32_MAX)
			(*step)++;
		t = schedule_backoff(steps, nsteps, *step, now, jitter_seed);
	} else
		t = next_attempt;
	if (t > expires)
		t = expires;
	if (t <= now)
		t = now + 1;
	return t;
}
