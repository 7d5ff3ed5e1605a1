/*
 * client_limits.c - per-client session counting for max_clients_per_ip,
 * client_limit and client_rate (client_limits.h).
 *
 * One hash table of entries keyed by the client's address (IPv4, or the
 * /64 of an IPv6 address; IPv4-mapped IPv6 counts as IPv4).  An entry
 * with open sessions is never dropped; an entry without any only keeps
 * the address's rate window and sits on an LRU list capped at
 * LIMITS_IDLE_MAX, so a flood of distinct addresses costs a fixed
 * amount of memory.  dnsbl_allow addresses skip client_limit and
 * client_rate (max_clients_per_ip, the daemon's own guard, still holds).
 *
 * The table lives in one MAP_SHARED region (buckets, entries, free
 * list) behind a process-shared robust mutex, so the worker processes
 * of `workers N` (worker.c) count one client's sessions together: the
 * parent maps it before forking (client_limits_share); a single process
 * maps it at first use.  Entries come from a fixed pool sized then; an
 * exhausted pool admits the session uncounted (never refuses mail).
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backmxd.h"
#include "config_filter.h"
#include "client_limits.h"

#define LIMITS_BUCKETS 4096

struct limits_entry {
	unsigned char key[16];
	unsigned hash;
	int count;           /* open sessions */
	ev_tstamp win_start; /* client_rate window */
	int win_count;
	struct limits_entry *hnext;         /* hash chain */
	struct limits_entry *lprev, *lnext; /* idle LRU, count == 0 */
};

struct limits_table {
	pthread_mutex_t mu;
	struct limits_entry *hash[LIMITS_BUCKETS];
	struct limits_entry *lru_head, *lru_tail; /* head = oldest */
	struct limits_entry *free;                /* via hnext */
	size_t nidle, n, cap, used;               /* used: pool handed out */
	struct limits_entry pool[];
};

static struct limits_table *lt;
#define limits_hash (lt->hash)
#define lru_head (lt->lru_head)
#define lru_tail (lt->lru_tail)
#define limits_nidle (lt->nidle)
#define limits_n (lt->n)

int
client_limits_share(size_t max_sessions)
{
	pthread_mutexattr_t ma;
	size_t cap = max_sessions + LIMITS_IDLE_MAX + 64;
	size_t len = sizeof(*lt) + cap * sizeof(struct limits_entry);
	void *p;

	if (lt != NULL)
		return 0;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	         -1, 0);
	if (p == MAP_FAILED)
		return -1;
	lt = p; /* zero-filled: empty buckets, lists and pool */
	lt->cap = cap;
	if (pthread_mutexattr_init(&ma) != 0 ||
	    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED) != 0 ||
	    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST) != 0 ||
	    pthread_mutex_init(&lt->mu, &ma) != 0) {
		munmap(p, len);
		lt = NULL;
		return -1;
	}
	pthread_mutexattr_destroy(&ma);
	return 0;
}

/* limits_lock - 0 when held; a holder that died (a killed worker, which
 * stops the daemon anyway) leaves the table as it was: take it over */
static int
limits_lock(void)
{
	int rc;

	if (lt == NULL &&
	    client_limits_share((size_t)backmxd.cfg->max_clients) < 0)
		return -1;
	rc = pthread_mutex_lock(&lt->mu);
	if (rc == EOWNERDEAD)
		rc = pthread_mutex_consistent(&lt->mu);
	return rc == 0 ? 0 : -1;
}

static void
limits_unlock(void)
{
	pthread_mutex_unlock(&lt->mu);
}

static struct limits_entry *
limits_alloc(void)
{
	struct limits_entry *e = lt->free;

	if (e != NULL)
		lt->free = e->hnext;
	else if (lt->used < lt->cap)
		e = &lt->pool[lt->used++];
	else
		return NULL;
	memset(e, 0, sizeof(*e));
	return e;
}

static unsigned
limits_key(const struct sockaddr_storage *ss, unsigned char key[16])
{
	unsigned h = 2166136261u;

	memset(key, 0, 16);
	if (ss->ss_family == AF_INET) {
		memcpy(key, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)ss;

		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
			memcpy(key, s6->sin6_addr.s6_addr + 12, 4);
		else {
			memcpy(key, &s6->sin6_addr, 8); /* the /64 */
			key[15] = 6;
		}
	}
	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return h;
}

static void
limits_lru_unlink(struct limits_entry *e)
{
	if (e->lprev != NULL)
		e->lprev->lnext = e->lnext;
	else
		lru_head = e->lnext;
	if (e->lnext != NULL)
		e->lnext->lprev = e->lprev;
	else
		lru_tail = e->lprev;
	e->lprev = e->lnext = NULL;
	limits_nidle--;
}

static void
limits_lru_push(struct limits_entry *e)
{
	e->lnext = NULL;
	e->lprev = lru_tail;
	if (lru_tail != NULL)
		lru_tail->lnext = e;
	else
		lru_head = e;
	lru_tail = e;
	limits_nidle++;
}

static void
limits_drop(struct limits_entry *e)
{
	struct limits_entry **pp = &limits_hash[e->hash % LIMITS_BUCKETS];

	for (; *pp != NULL; pp = &(*pp)->hnext)
		if (*pp == e) {
			*pp = e->hnext;
			break;
		}
	limits_lru_unlink(e);
	limits_n--;
	e->hnext = lt->free;
	lt->free = e;
}

static struct limits_entry *
limits_find(const struct sockaddr_storage *ss, int create)
{
	unsigned char key[16];
	unsigned h = limits_key(ss, key);
	struct limits_entry *e;

	for (e = limits_hash[h % LIMITS_BUCKETS]; e != NULL; e = e->hnext)
		if (e->hash == h && memcmp(e->key, key, 16) == 0)
			return e;
	if (!create)
		return NULL;
	/* bounded: forget the least recently seen idle address */
	while (limits_nidle >= LIMITS_IDLE_MAX && lru_head != NULL)
		limits_drop(lru_head);
	if ((e = limits_alloc()) == NULL)
		return NULL;
	memcpy(e->key, key, 16);
	e->hash = h;
	e->hnext = limits_hash[h % LIMITS_BUCKETS];
	limits_hash[h % LIMITS_BUCKETS] = e;
	limits_n++;
	limits_lru_push(e); /* idle until counted */
	return e;
}

static enum limits_verdict limits_open(const struct sockaddr_storage *ss,
                                       ev_tstamp now);
static void limits_close(const struct sockaddr_storage *ss);

enum limits_verdict
client_limits_open(const struct sockaddr_storage *ss, ev_tstamp now)
{
	enum limits_verdict v;

	if (limits_lock() < 0)
		return LIMITS_OK; /* no table: do not refuse mail */
	v = limits_open(ss, now);
	limits_unlock();
	return v;
}

void
client_limits_close(const struct sockaddr_storage *ss)
{
	if (limits_lock() < 0)
		return;
	limits_close(ss);
	limits_unlock();
}

size_t
client_limits_entries(void)
{
	size_t n;

	if (limits_lock() < 0)
		return 0;
	n = limits_n;
	limits_unlock();
	return n;
}

static enum limits_verdict
limits_open(const struct sockaddr_storage *ss, ev_tstamp now)
{
	const struct config *cfg = backmxd.cfg;
	const struct config_filter *f = cfg->filter;
	struct limits_entry *e = limits_find(ss, 1);
	int exempt;

	if (e == NULL)
		return LIMITS_OK; /* out of memory: do not refuse mail */
	if (e->count == 0) {
		/* seen again: the most recent idle entry */
		limits_lru_unlink(e);
		limits_lru_push(e);
	}
	exempt = f == NULL || config_cidr_match(f->dnsbl_allow, f->ndnsbl_allow,
	                                        (const struct sockaddr *)ss);
	if (!exempt && f->client_rate > 0) {
		if (now - e->win_start >= f->client_rate_window) {
			e->win_start = now;
			e->win_count = 0;
		}
		/* refused attempts count too: a hammering client stays out */
		if (++e->win_count > f->client_rate)
			return LIMITS_RATE;
	}
	if (e->count >= cfg->max_clients_per_ip)
		return LIMITS_PER_IP;
	if (!exempt && f->client_limit > 0 && e->count >= f->client_limit)
		return LIMITS_CONCURRENT;
	if (e->count++ == 0)
		limits_lru_unlink(e);
	return LIMITS_OK;
}

static void
limits_close(const struct sockaddr_storage *ss)
{
	struct limits_entry *e = limits_find(ss, 0);

	if (e == NULL || e->count <= 0)
		return;
	if (--e->count == 0) {
		const struct config_filter *f = backmxd.cfg->filter;

		if (f != NULL && f->client_rate > 0)
			limits_lru_push(e); /* keep its rate window */
		else {
			limits_lru_push(e);
			limits_drop(e);
		}
	}
}
