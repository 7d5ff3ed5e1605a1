/*
 * stats.c - the counters of every process summed (stats.h).  Without
 * workers there is no table and a value is this process's own.  With
 * workers the parent maps one slot per worker before forking; a worker
 * copies its `stats` into its slot after each loop iteration (an
 * ev_prepare watcher in worker_child.c), before the loop sleeps, so a
 * counter a session changed is visible by the time its client has read
 * the reply and asked `backmxctl stats`.  An 8-byte aligned counter is
 * read whole on the platforms we run on; a sum may mix iterations.
 */
#include <string.h>
#include <sys/mman.h>

#include "stats.h"

static struct stats *stats_slots;
static int stats_nslots;
static int stats_own = -1; /* this worker's slot */

int
stats_share(int nslots)
{
	void *p =
	    mmap(NULL, (size_t)nslots * sizeof(struct stats),
	         PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return -1;
	memset(p, 0, (size_t)nslots * sizeof(struct stats));
	stats_slots = p;
	stats_nslots = nslots;
	return 0;
}

void
stats_set_slot(int slot)
{
	stats_own = slot;
}

void
stats_publish(void)
{
	if (stats_slots != NULL && stats_own >= 0 && stats_own < stats_nslots)
		memcpy(&stats_slots[stats_own], &stats, sizeof(stats));
}

uint64_t
stats_value(size_t offset)
{
	uint64_t v, sum;

	memcpy(&sum, (const char *)&stats + offset, sizeof(sum));
	for (int i = 0; i < stats_nslots; i++) {
		if (i == stats_own)
			continue;
		memcpy(&v, (const char *)&stats_slots[i] + offset, sizeof(v));
		sum += v;
	}
	return sum;
}

uint64_t
stats_others_sessions(void)
{
	uint64_t sum = 0;

	for (int i = 0; i < stats_nslots; i++)
		if (i != stats_own)
			sum += stats_slots[i].sessions_active;
	return sum;
}
