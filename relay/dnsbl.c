/*
 * dnsbl.c - DNSBL lookups at connect and their cache (dnsbl.h).
 *
 * Called by smtpd.c; calls dns_query() (dns.c) and reads the
 * `dnsbl` zones from cfg->filter.  The cache holds one entry per (zone,
 * address): listed or not, and the TXT text, until the answer's TTL runs
 * out (negative answers: 60 s; failures are not cached).  It is bounded
 * at DNSBL_CACHE_MAX entries; the oldest entry makes room.  Each zone's
 * answer is counted per zone (dnsbl_metrics.c).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backmxd.h"
#include "config_filter.h"
#include "dns.h"
#include "dnsbl.h"
#include "log.h"

#define DNSBL_BUCKETS 2048
#define DNSBL_NEG_TTL 60
#define DNSBL_MAX_TTL 86400
#define DNSBL_ZONES_MAX 16

struct dnsbl_entry {
	char name[320]; /* the query name: reversed address.zone */
	unsigned hash;
	int listed;
	char text[256];
	time_t expires;
	struct dnsbl_entry *hnext;
	struct dnsbl_entry *fnext; /* insertion order, for eviction */
};

struct dnsbl_zone_q {
	struct dnsbl_check *c;
	int zone; /* index in cfg->filter->dnsbl */
	char name[320];
	struct dns_query *qa, *qtxt;
	int done_a, done_txt;
	int listed; /* -1 failed, 0 no, 1 yes */
	int cached; /* known from the cache, not asked */
	int ttl;
	char text[256];
};

struct dnsbl_check {
	dnsbl_cb cb;
	void *arg;
	char addr[64];
	int nzones, pending;
	struct dnsbl_zone_q z[DNSBL_ZONES_MAX];
};

static struct dnsbl_entry *dnsbl_hash[DNSBL_BUCKETS];
static struct dnsbl_entry *fifo_head, *fifo_tail;
static int dnsbl_ncache;

static unsigned
dnsbl_hash_name(const char *s)
{
	unsigned h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

int
dnsbl_query_name(const struct sockaddr_storage *ss, const char *zone, char *out,
                 size_t outlen)
{
	const unsigned char *a;
	size_t off = 0;
	int n;

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)ss;

		a = s6->sin6_addr.s6_addr;
		if (!IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			for (int i = 15; i >= 0; i--) {
				n = snprintf(out + off, outlen - off, "%x.%x.",
				             a[i] & 0xf, a[i] >> 4);
				if (n < 0 || (size_t)n >= outlen - off)
					return -1;
				off += n;
			}
			n = snprintf(out + off, outlen - off, "%s", zone);
			return n < 0 || (size_t)n >= outlen - off ? -1 : 0;
		}
		a += 12;
	} else if (ss->ss_family == AF_INET)
		a = (const unsigned char *)&((const struct sockaddr_in *)ss)
		        ->sin_addr;
	else
		return -1;
	n = snprintf(out, outlen, "%u.%u.%u.%u.%s", a[3], a[2], a[1], a[0],
	             zone);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

static struct dnsbl_entry *
dnsbl_cache_find(const char *name, time_t now)
{
	unsigned h = dnsbl_hash_name(name);
	struct dnsbl_entry *e;

	for (e = dnsbl_hash[h % DNSBL_BUCKETS]; e != NULL; e = e->hnext)
		if (e->hash == h && !strcmp(e->name, name))
			return e->expires > now ? e : NULL;
	return NULL;
}

static void
dnsbl_cache_evict(void)
{
	struct dnsbl_entry *e = fifo_head, **pp;

	if (e == NULL)
		return;
	fifo_head = e->fnext;
	if (fifo_head == NULL)
		fifo_tail = NULL;
	for (pp = &dnsbl_hash[e->hash % DNSBL_BUCKETS]; *pp != NULL;
	     pp = &(*pp)->hnext)
		if (*pp == e) {
			*pp = e->hnext;
			break;
		}
	dnsbl_ncache--;
	free(e);
}

static void
dnsbl_cache_put(const char *name, int listed, const char *text, int ttl,
                time_t now)
{
	unsigned h = dnsbl_hash_name(name);
	struct dnsbl_entry *e;

	for (e = dnsbl_hash[h % DNSBL_BUCKETS]; e != NULL; e = e->hnext)
		if (e->hash == h && !strcmp(e->name, name))
			break;
	if (e == NULL) {
		while (dnsbl_ncache >= DNSBL_CACHE_MAX)
			dnsbl_cache_evict();
		if ((e = calloc(1, sizeof(*e))) == NULL)
			return;
		snprintf(e->name, sizeof(e->name), "%s", name);
		e->hash = h;
		e->hnext = dnsbl_hash[h % DNSBL_BUCKETS];
		dnsbl_hash[h % DNSBL_BUCKETS] = e;
		if (fifo_tail != NULL)
			fifo_tail->fnext = e;
		else
			fifo_head = e;
		fifo_tail = e;
		dnsbl_ncache++;
	}
	e->listed = listed;
	snprintf(e->text, sizeof(e->text), "%s", text);
	if (ttl <= 0)
		ttl = DNSBL_NEG_TTL;
	if (ttl > DNSBL_MAX_TTL)
		ttl = DNSBL_MAX_TTL;
	e->expires = now + ttl;
}

static void
dnsbl_verdict_fill(struct dnsbl_verdict *v, const char *addr, const char *zone,
                   const char *text)
{
	v->listed = 1;
	snprintf(v->zone, sizeof(v->zone), "%s", zone);
	snprintf(v->text, sizeof(v->text), "%s", text);
	if (text[0] != '\0')
		snprintf(v->reply, sizeof(v->reply),
		         "554 5.7.1 Service unavailable; client [%s] blocked "
		         "using %s; %s",
		         addr, zone, text);
	else
		snprintf(v->reply, sizeof(v->reply),
		         "554 5.7.1 Service unavailable; client [%s] blocked "
		         "using %s",
		         addr, zone);
}

/* dnsbl_text - TXT joined, only printable ASCII, bounded */
static void
dnsbl_text(const struct dns_result *r, char *out, size_t outlen)
{
	size_t o = 0;

	out[0] = '\0';
	if (r->status != DNS_OK || r->n < 1 || r->txt == NULL)
		return;
	for (const char *p = r->txt[0]; *p && o + 1 < outlen; p++)
		out[o++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
	out[o] = '\0';
}

static void
dnsbl_finish(struct dnsbl_check *c)
{
	const struct config_filter *f = backmxd.cfg->filter;
	struct dnsbl_verdict v;
	time_t now = time(NULL);

	memset(&v, 0, sizeof(v));
	for (int i = 0; i < c->nzones; i++) {
		struct dnsbl_zone_q *z = &c->z[i];
		const char *zone =
		    z->zone < f->ndnsbl ? f->dnsbl[z->zone].zone : "?";

		if (!z->cached)
			dnsbl_metrics_record(zone,
			                     z->listed < 0 ? DNSBL_ANS_FAILED
			                     : z->listed   ? DNSBL_ANS_LISTED
			                                   : DNSBL_ANS_CLEAN);
		if (z->listed < 0) {
			stats.dnsbl_tempfailed++;
			continue; /* a failure never lists */
		}
		if (!z->cached)
			dnsbl_cache_put(z->name, z->listed, z->text, z->ttl,
			                now);
		if (z->listed && !v.listed)
			dnsbl_verdict_fill(&v, c->addr, zone, z->text);
	}
	if (v.listed)
		stats.dnsbl_rejected++;
	else
		stats.dnsbl_accepted++;
	c->cb(c->arg, &v);
	free(c);
}

static void
dnsbl_a_cb(void *arg, const struct dns_result *r)
{
	struct dnsbl_zone_q *z = arg;
	struct dnsbl_check *c = z->c;
	const struct config_filter *f = backmxd.cfg->filter;

	z->qa = NULL;
	z->done_a = 1;
	if (r->status == DNS_OK) {
		z->listed = 0;
		z->ttl = r->ttl;
		for (int i = 0; i < r->n; i++) {
			const struct sockaddr_in *sin =
			    (const void *)&r->addr[i];
			unsigned char a[4];

			if (sin->sin_family != AF_INET)
				continue;
			memcpy(a, &sin->sin_addr, 4);
			if (z->zone < f->ndnsbl &&
			    config_dnsbl_match(&f->dnsbl[z->zone], a))
				z->listed = 1;
		}
	} else if (r->status == DNS_NXDOMAIN || r->status == DNS_NODATA) {
		z->listed = 0;
		z->ttl = 0;
	} else {
		z->listed = -1;
		log_info("dnsbl: %s: %s (not blocking)", z->name, r->why);
	}
	if (z->done_txt && --c->pending == 0)
		dnsbl_finish(c);
}

static void
dnsbl_txt_cb(void *arg, const struct dns_result *r)
{
	struct dnsbl_zone_q *z = arg;
	struct dnsbl_check *c = z->c;

	z->qtxt = NULL;
	z->done_txt = 1;
	dnsbl_text(r, z->text, sizeof(z->text));
	if (z->done_a && --c->pending == 0)
		dnsbl_finish(c);
}

enum dnsbl_status
dnsbl_check_start(const struct sockaddr_storage *ss, const char *addrtext,
                  struct dnsbl_verdict *v, dnsbl_cb cb, void *arg,
                  struct dnsbl_check **out)
{
	const struct config_filter *f = backmxd.cfg->filter;
	struct dnsbl_check *c = NULL;
	time_t now = time(NULL);
	int nz;

	*out = NULL;
	memset(v, 0, sizeof(*v));
	if (f == NULL || f->ndnsbl == 0 || backmxd.dns == NULL ||
	    config_cidr_match(f->dnsbl_allow, f->ndnsbl_allow,
	                      (const struct sockaddr *)ss))
		return DNSBL_PASS;
	nz = f->ndnsbl < DNSBL_ZONES_MAX ? f->ndnsbl : DNSBL_ZONES_MAX;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return DNSBL_PASS;
	c->cb = cb;
	c->arg = arg;
	snprintf(c->addr, sizeof(c->addr), "%s", addrtext);
	/* the cache first: in zone order, a listed zone decides at once if
	 * every zone before it is known clean */
	int unknown = 0;

	for (int i = 0; i < nz; i++) {
		struct dnsbl_zone_q *z = &c->z[c->nzones];
		struct dnsbl_entry *e;

		if (dnsbl_query_name(ss, f->dnsbl[i].zone, z->name,
		                     sizeof(z->name)) < 0)
			continue;
		c->nzones++;
		z->c = c;
		z->zone = i;
		e = dnsbl_cache_find(z->name, now);
		if (e == NULL) {
			unknown++;
			continue;
		}
		z->cached = z->done_a = z->done_txt = 1;
		z->listed = e->listed;
		dnsbl_metrics_record(f->dnsbl[i].zone, e->listed
		                                           ? DNSBL_ANS_LISTED
		                                           : DNSBL_ANS_CLEAN);
		snprintf(z->text, sizeof(z->text), "%s", e->text);
		if (e->listed && unknown == 0) {
			dnsbl_verdict_fill(v, addrtext, f->dnsbl[i].zone,
			                   e->text);
			v->cached = 1;
			stats.dnsbl_rejected++;
			free(c);
			return DNSBL_LISTED;
		}
	}
	if (unknown == 0) {
		stats.dnsbl_accepted++;
		free(c);
		return DNSBL_PASS;
	}
	for (int i = 0; i < c->nzones; i++) {
		struct dnsbl_zone_q *z = &c->z[i];

		if (z->cached)
			continue;
		z->qa = dns_query(backmxd.dns, z->name, DNS_T_A, dnsbl_a_cb, z);
		z->qtxt =
		    dns_query(backmxd.dns, z->name, DNS_T_TXT, dnsbl_txt_cb, z);
		if (z->qa == NULL || z->qtxt == NULL) {
			dnsbl_check_cancel(c);
			return DNSBL_PASS;
		}
		c->pending++;
	}
	*out = c;
	return DNSBL_PENDING;
}

void
dnsbl_check_cancel(struct dnsbl_check *c)
{
	if (c == NULL)
		return;
	for (int i = 0; i < c->nzones; i++) {
		if (c->z[i].qa != NULL)
			dns_cancel(c->z[i].qa);
		if (c->z[i].qtxt != NULL)
			dns_cancel(c->z[i].qtxt);
	}
	free(c);
}
