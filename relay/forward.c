/*
 * forward.c - the forwarder: one ev_timer armed at the earliest entry of
 * the schedule; due messages are grouped by destination (static route or
 * the domain's MX set), routed (MX lookup, A/AAAA of every MX, our own
 * records marked, policy_mx_cut), delivered with smtp_client (one
 * transaction per message and destination, connections reused for due
 * messages to the same destination), and the per-recipient results are
 * written back to the spool, logged, counted and bounced (bounce.c).
 * Callers: main.c, smtpd.c (queued, ETRN), control.c (operator commands).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "backmxd.h"
#include "bounce.h"
#include "dns.h"
#include "route_dns.h"
#include "forward.h"
#include "fwd_dsn.h"
#include "log.h"
#include "metrics_domain.h"
#include "mtasts.h"
#include "smtp_client.h"
#include "stats.h"

#define FWD_HOSTS_MAX 16
#define FWD_ADDR_MAX 8
#define FWD_KEY_MAX (POLICY_DOMAIN_MAX + 32)
#define FWD_STS_TIMEOUT 60	/* MTA-STS policy fetch, seconds (as mox) */

/* a destination: the unit of concurrency limits and connection reuse */
struct fwd_dest {
	struct fwd_dest *next;
	char key[FWD_KEY_MAX];
	int active;		/* deliveries in flight */
	int failures;		/* consecutive failed deliveries */
	struct smtp_client *idle;	/* only while handing a connection on */
	struct schedule *wait;	/* ids blocked by max_per_destination,
				   FIFO by sequence number, one entry each */
	int64_t wseq;
	/* no address of the destination answered: until dead_until its
	 * messages are deferred without a connection attempt (as Postfix's
	 * "delivery temporarily suspended"), so a backup MX whose primary
	 * is down does not knock once per message it accepts; one message
	 * a second still probes, so a recovered primary is seen at once */
	int64_t dead_until;
	double last_probe;	/* one real attempt a second while dead */
	char dead_why[300];
};

struct fwd_host {
	char name[POLICY_DOMAIN_MAX + 1];
	int pref;
	int self;
	int tempfail;
	int insecure;		/* an address answer was not DNSSEC-secure */
	int bogus;		/* an address answer failed validation */
	char dnswhy[96];	/* what A/AAAA answered when they gave nothing */
	int naddr;
	struct sockaddr_storage addr[FWD_ADDR_MAX];
};

/* what the TLSA lookup of a host gave (tls dane, tls mta-sts) */
enum fwd_tlsa {
	FWD_TLSA_NONE,		/* none, or not secure: opportunistic */
	FWD_TLSA_USABLE,	/* DANE-TA/DANE-EE: authenticated TLS */
	FWD_TLSA_UNUSABLE,	/* records, none usable: TLS, unauthenticated */
	FWD_TLSA_ERROR,		/* bogus or failed: the host is not used */
};

struct delivery;

struct fwd_query {
	struct delivery *d;
	int host;
	struct dns_query *q;
};

struct delivery {
	struct delivery *next, *prev;
	char id[SPOOL_ID_LEN + 1];
	struct spool_envelope *env;
	struct fwd_dest *dest;
	int is_static, literal, port, tls;
	char domain[POLICY_DOMAIN_MAX + 1];	/* of the recipients */
	char host[POLICY_DOMAIN_MAX + 1];	/* static route host */

	int nrcpt;
	int *rcpt;		/* indices into env->rcpt */
	struct result *res;
	int *remote;
	char (*relay)[POLICY_DOMAIN_MAX + 80];	/* per rcpt, for logs */
	char (*mta)[POLICY_DOMAIN_MAX + 1];	/* per rcpt, for bounces */

	struct dns_query *mxq;
	struct fwd_host hosts[FWD_HOSTS_MAX];
	int nhosts;
	struct fwd_query qs[FWD_HOSTS_MAX * 2];
	int nqs, outstanding;
	int order[FWD_HOSTS_MAX];	/* hosts to try, after the cut */
	int norder, oi, ai;

	int64_t started;	/* when the attempt began (the schedule) */
	struct smtp_client *client;
	struct smtp_client_tx tx;
	struct result last;	/* last connection-level failure */
	int connected;		/* some address answered */
	int dsn;		/* the host that took the tx offers DSN */
	int suspended;		/* deferred at once: destination dead */

	/*
	 * TLS of the host being tried, decided before its first address
	 * (fwd_host_tls) and kept for its other addresses.
	 */
	struct dns_query *tlsaq;
	int tlsa_for;		/* 1 + index of the host decided, 0 none */
	enum fwd_tlsa tlsa_state;
	struct dns_tlsa *tlsa;	/* usable records, data in the same block */
	int ntlsa;
	int cur_tls;		/* enum policy_tls of the current connection */
	int plain;		/* next connection without STARTTLS (tls may,
				   after a failed handshake) */
	char tlsdesc[64];	/* of the connection that carried the tx */
	double t_send, setup;	/* delays=: tx start, connection setup */
	int conn_use;		/* conn_use=: tx number on the connection */

	/* MTA-STS policy of the recipient domain (tls mta-sts, route mx) */
	int sts_done;
	struct dns_query *stsq;
	struct mtasts_fetch *stsf;
	char sts_id[MTASTS_ID_MAX + 1];
	enum mtasts_mode sts_mode;	/* NONE: no policy in force */
	struct mtasts_policy sts;
};

static struct delivery *fwd_list;
static struct mtasts_cache *fwd_sts_cache;	/* policies, for max_age */
static struct fwd_dest *fwd_dests;
static int fwd_active;
static int fwd_stopped;
static ev_timer fwd_timer;
/*
 * Messages blocked by max_per_destination wait in their destination's
 * FIFO (fwd_dest.wait), not in the schedule: a delivery's end hands its
 * connection to the next of them, so a flush of n messages costs O(n)
 * envelope reads, not O(n^2).  At most FWD_WAIT_MAX wait in all (as
 * Postfix's qmgr_message_active_limit); beyond that the rest stays in the
 * schedule until the waiting drains.
 */
#define FWD_WAIT_MAX 20000
#define FWD_SUSPENDED_TEXT "delivery temporarily suspended: "
/* schedule entry flag: a pending recipient was deferred by a
 * connection-level failure (SPOOL_RCPT_F_CONN) */
#define FWD_SCHED_CONN 0x01
static size_t fwd_nwaiting;
static int fwd_release_depth;	/* a release that fails at once recurses */
static int fwd_release_pending;	/* the timer finishes a cut-off release */

static void fwd_arm(void);
static int fwd_flush_match(const char *domain, const char *key,
			   int conn_only);
static void fwd_try_next(struct delivery *d);
static void fwd_timer_cb(struct ev_loop *, ev_timer *, int);
static void fwd_client_cb(void *arg, struct smtp_client *c,
			  const struct result *r);

static int64_t
fwd_now(void)
{
	return (int64_t)ev_now(backmxd.loop);
}

/* fwd_rnd - policy_mx_cut's source of randomness */
static unsigned
fwd_rnd(unsigned n)
{
	return n ? (unsigned)random() % n : 0;
}

static const char *
fwd_rcpt_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at ? at + 1 : "";
}

/*
 * fwd_domain_tag - the schedule tag of a recipient domain: FNV-1a of its
 * lower case, never 0.  Two domains sharing a tag only cost a flush of
 * one of them an early attempt for the other's messages.
 */
static uint32_t
fwd_domain_tag(const char *domain)
{
	uint32_t h = 2166136261u;

	for (; *domain != '\0'; domain++)
		h = (h ^ (unsigned char)tolower((unsigned char)*domain)) *
		    16777619u;
	return h != 0 ? h : 1;
}

/*
 * fwd_jitter_seed - the same for every recipient of a message, so that
 * recipients deferred together at the same step come back together (one
 * transaction, not one each)
 */
static unsigned
fwd_jitter_seed(const char *id)
{
	return (unsigned)fwd_domain_tag(id);
}

/* fwd_dest_find - the destination of key, or NULL (never creates) */
static struct fwd_dest *
fwd_dest_find(const char *key)
{
	struct fwd_dest *d;

	for (d = fwd_dests; d != NULL; d = d->next)
		if (!strcmp(d->key, key))
			return d;
	return NULL;
}

static struct fwd_dest *
fwd_dest_get(const char *key)
{
	struct fwd_dest *d;

	if ((d = fwd_dest_find(key)) != NULL)
		return d;
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	snprintf(d->key, sizeof(d->key), "%s", key);
	d->next = fwd_dests;
	fwd_dests = d;
	return d;
}

/*
 * fwd_route - where recipient i of e goes: key for grouping, and the
 * route fields in d (when d != NULL).  Returns 0, or -1 when the domain
 * is no longer ours (and the mail is not a bounce): r says why.
 */
static int
fwd_route(const struct spool_envelope *e, int i, char *key, size_t keylen,
	  struct delivery *d, struct result *r)
{
	const struct spool_rcpt *rc = &e->rcpt[i];
	const char *dom = fwd_rcpt_domain(rc->address);
	const struct policy_domain *pd;
	char host[POLICY_DOMAIN_MAX + 1];
	int port = 25, literal = 0, is_static = 0, tls = POLICY_TLS_MAY;

	pd = policy_find_domain(backmxd.cfg->policy, dom);
	if (pd != NULL)
		tls = pd->tls;
	host[0] = '\0';
	if (rc->route != NULL && rc->route[0] != '\0') {
		const char *s = rc->route, *colon;
		size_t hl;

		if (*s == '[') {
			const char *rb = strchr(s, ']');

			if (rb == NULL)
				goto bad;
			hl = (size_t)(rb - s - 1);
			if (hl >= sizeof(host))
				goto bad;
			memcpy(host, s + 1, hl);
			host[hl] = '\0';
			literal = 1;
			colon = rb[1] == ':' ? rb + 1 : NULL;
		} else {
			colon = strrchr(s, ':');
			hl = colon ? (size_t)(colon - s) : strlen(s);
			if (hl >= sizeof(host))
				goto bad;
			memcpy(host, s, hl);
			host[hl] = '\0';
		}
		if (colon != NULL)
			port = atoi(colon + 1);
		is_static = 1;
	} else if (pd != NULL && pd->route_static) {
		snprintf(host, sizeof(host), "%s", pd->route_host);
		literal = pd->route_literal;
		port = pd->route_port > 0 ? pd->route_port : 25;
		is_static = 1;
	} else if (pd == NULL && !e->is_bounce) {
		if (r != NULL)
			result_set(r, 451, "4.3.5", "domain %s is no longer "
				   "configured here", dom);
		return -1;
	}
	if (port <= 0 || port > 65535)
		port = 25;
	if (is_static)
		snprintf(key, keylen, "s:%s:%d:%d", host, port, tls);
	else
		snprintf(key, keylen, "m:%s:%d", dom, tls);
	if (d != NULL) {
		d->is_static = is_static;
		d->literal = literal;
		d->port = port;
		d->tls = tls;
		snprintf(d->domain, sizeof(d->domain), "%s", dom);
		snprintf(d->host, sizeof(d->host), "%s", host);
	}
	return 0;
bad:
	if (r != NULL)
		result_set(r, 451, "4.4.4", "bad stored route %s", rc->route);
	return -1;
}

static long
fwd_lifetime(const struct spool_envelope *e)
{
	long lt = backmxd.cfg->queue_lifetime;
	int i;

	for (i = 0; i < e->nrcpt; i++) {
		const struct policy_domain *pd = policy_find_domain(
		    backmxd.cfg->policy, fwd_rcpt_domain(e->rcpt[i].address));

		if (pd != NULL && pd->queue_lifetime > 0) {
			lt = pd->queue_lifetime;
			break;
		}
	}
	return lt > 0 ? lt : 5 * 86400;
}

static int
fwd_msg_inflight(const char *id)
{
	struct delivery *d;

	for (d = fwd_list; d != NULL; d = d->next)
		if (!strcmp(d->id, id))
			return 1;
	return 0;
}

static int
fwd_maxpd(void)
{
	return backmxd.cfg->max_per_destination > 0
		   ? backmxd.cfg->max_per_destination : 20;
}

static int
fwd_maxd(void)
{
	return backmxd.cfg->max_deliveries > 0 ? backmxd.cfg->max_deliveries
					       : 100;
}

/* fwd_wait_add - id waits for a free slot of dest */
static void
fwd_wait_add(struct fwd_dest *dest, const char *id)
{
	size_t before;

	if (dest->wait == NULL && (dest->wait = schedule_new()) == NULL) {
		schedule_set(backmxd.sched, id, fwd_now() + 1);
		return;
	}
	before = schedule_size(dest->wait);
	if (schedule_set(dest->wait, id, dest->wseq++) < 0) {
		schedule_set(backmxd.sched, id, fwd_now() + 1);
		return;
	}
	fwd_nwaiting += schedule_size(dest->wait) - before;
}

static void fwd_process(const char *id);

/*
 * fwd_wait_release - start waiting messages while dest has free slots
 * (and the global limit allows), the first on dest->idle if set.  A
 * message the schedule owns again (its delivery to another destination
 * ended and rescheduled it) is left to the schedule.
 */
static void
fwd_wait_release(struct fwd_dest *dest)
{
	char id[SPOOL_ID_LEN + 1];

	if (fwd_release_depth >= 4) {
		fwd_release_pending = 1;
		return;
	}
	fwd_release_depth++;
	while (dest->wait != NULL && !fwd_stopped &&
	       dest->active < fwd_maxpd() && fwd_active < fwd_maxd() &&
	       schedule_pop_due(dest->wait, INT64_MAX, id) == 1) {
		fwd_nwaiting--;
		if (schedule_when(backmxd.sched, id) >= 0)
			continue;
		fwd_process(id);
	}
	fwd_release_depth--;
}

/* fwd_wait_release_all - capacity freed somewhere: every destination */
static void
fwd_wait_release_all(void)
{
	struct fwd_dest *dd;

	for (dd = fwd_dests; dd != NULL && fwd_active < fwd_maxd();
	     dd = dd->next)
		if (dd->wait != NULL && schedule_size(dd->wait) > 0)
			fwd_wait_release(dd);
}

/* fwd_reschedule - the next attempt of e's pending recipients */
static void
fwd_reschedule(const struct spool_envelope *e)
{
	int64_t t = -1;
	uint32_t tag = 0;
	int i, mixed = 0;
	unsigned flags = 0;

	if (e->held || fwd_msg_inflight(e->id))
		return;
	for (i = 0; i < e->nrcpt; i++)
		if (e->rcpt[i].state == SPOOL_RCPT_PENDING) {
			uint32_t h = fwd_domain_tag(
			    fwd_rcpt_domain(e->rcpt[i].address));

			if (t < 0 || e->rcpt[i].next_attempt < t)
				t = e->rcpt[i].next_attempt;
			if (tag != 0 && h != tag)
				mixed = 1;
			tag = h;
			if (e->rcpt[i].flags & SPOOL_RCPT_F_CONN)
				flags |= FWD_SCHED_CONN;
		} else if (e->rcpt[i].state == SPOOL_RCPT_FAILED &&
			   (e->rcpt[i].flags & SPOOL_RCPT_F_BOUNCE) &&
			   (t < 0 || e->rcpt[i].next_attempt < t))
			t = e->rcpt[i].next_attempt;	/* a bounce owed */
	t = fwd_dsn_warn_wakeup(e, t, fwd_now(), fwd_lifetime(e));
	if (t >= 0 && schedule_set(backmxd.sched, e->id, t) == 0) {
		/* one domain: ETRN and flush DOMAIN find it without
		 * reading the envelope; several: they read it */
		schedule_set_tag(backmxd.sched, e->id, mixed ? 0 : tag);
		/* a recovered destination makes due only these */
		schedule_set_flags(backmxd.sched, e->id, flags);
	}
}

/* the delivery whose results fwd_results is logging (delays=, conn_use=) */
static const struct delivery *fwd_log_d;

/* fwd_delay_fmt - Postfix's delays= number: two significant digits,
 * at most two decimals, no trailing zeros */
static void
fwd_delay_fmt(char *buf, size_t n, double v)
{
	char *p;

	if (v < 0)
		v = 0;
	snprintf(buf, n, v >= 10 ? "%.0f" : v >= 1 ? "%.1f" : "%.2f", v);
	if (strchr(buf, '.') != NULL) {
		for (p = buf + strlen(buf) - 1; *p == '0'; p--)
			*p = '\0';
		if (*p == '.')
			*p = '\0';
	}
}

/*
 * fwd_log_tls - the delivery line, as Postfix's smtp logs it:
 *   ID: to=<x@y>, relay=H[A]:25, [conn_use=N, ]delay=D, delays=a/b/c/d,
 *   dsn=X.Y.Z, status=sent|deferred|bounced (...)
 * delays: a before the queue (0: the message is queued as it arrives),
 * b in the queue, c connection setup, d transmission.  tls (the
 * connection's TLS state, "none" in clear, NULL when no connection
 * carried it) is appended as tls=...
 */
static void
fwd_log_tls(const struct spool_envelope *e, int i, const char *relay,
	    const struct result *r, const char *status, int remote,
	    const char *tls)
{
	char dsn[16], tl[80], cu[32], db[16], dc[16], dd[16];
	const struct delivery *d = fwd_log_d;
	/* arrival has whole seconds: the delay is shown to 0.1 s as
	 * operators expect (delay=0.4), never negative */
	double now = ev_now(backmxd.loop);
	double delay = now - (double)e->arrival, c = 0, x = 0;

	if (delay < 0)
		delay = 0;
	tl[0] = cu[0] = '\0';
	if (tls != NULL && tls[0] != '\0')
		snprintf(tl, sizeof(tl), ", tls=%s", tls);
	if (d != NULL && relay != NULL && d->t_send > 0) {
		x = now - d->t_send;
		c = d->setup;
		if (d->conn_use > 1)
			snprintf(cu, sizeof(cu), "conn_use=%d, ", d->conn_use);
	}
	if (x > delay)
		x = delay;
	if (c > delay - x)
		c = delay - x;
	fwd_delay_fmt(db, sizeof(db), delay - x - c);
	fwd_delay_fmt(dc, sizeof(dc), c);
	fwd_delay_fmt(dd, sizeof(dd), x);

	metrics_domain_record(e->rcpt[i].address, status, delay, tls);
	if (r->enh[0] != '\0')
		snprintf(dsn, sizeof(dsn), "%s", r->enh);
	else
		snprintf(dsn, sizeof(dsn), "%d.0.0",
			 r->code / 100 >= 2 && r->code / 100 <= 5
			     ? r->code / 100 : 4);
	if (remote && r->code / 100 != 2)
		log_svc(relay ? "smtp" : "qmgr", LOG_INFO, e->id, "to=<%s>, relay=%s, %sdelay=%.1f, "
			"delays=0/%s/%s/%s, dsn=%s, "
			"status=%s (host %s said: %d %s%s%s)%s",
			e->rcpt[i].address, relay ? relay : "none", cu,
			delay, db, dc, dd, dsn, status,
			relay ? relay : "none", r->code, r->enh,
			r->enh[0] ? " " : "", r->text, tl);
	else if (remote)
		log_svc(relay ? "smtp" : "qmgr", LOG_INFO, e->id, "to=<%s>, relay=%s, %sdelay=%.1f, "
			"delays=0/%s/%s/%s, dsn=%s, "
			"status=%s (%d %s%s%s)%s",
			e->rcpt[i].address, relay ? relay : "none", cu,
			delay, db, dc, dd, dsn, status,
			r->code, r->enh, r->enh[0] ? " " : "", r->text, tl);
	else
		log_svc(relay ? "smtp" : "qmgr", LOG_INFO, e->id, "to=<%s>, relay=%s, %sdelay=%.1f, "
			"delays=0/%s/%s/%s, dsn=%s, "
			"status=%s (%s)%s",
			e->rcpt[i].address, relay ? relay : "none", cu,
			delay, db, dc, dd, dsn, status,
			r->text, tl);
}

static void
fwd_log(const struct spool_envelope *e, int i, const char *relay,
	const struct result *r, const char *status, int remote)
{
	fwd_log_tls(e, i, relay, r, status, remote, NULL);
}

static void
fwd_set_error(struct spool_rcpt *rc, const struct result *r, int remote,
	      const char *relay)
{
	char buf[600];

	if (remote)
		snprintf(buf, sizeof(buf), "%s host %s said: %d %s%s%s",
			 r->enh[0] ? r->enh : (r->code / 100 == 5 ? "5.0.0"
								  : "4.0.0"),
			 relay ? relay : "", r->code, r->enh,
			 r->enh[0] ? " " : "", r->text);
	else
		snprintf(buf, sizeof(buf), "%s %s",
			 r->enh[0] ? r->enh : "4.0.0", r->text);
	free(rc->last_error);
	rc->last_error = strdup(buf);
}

/*
 * fwd_commit - write e back (or delete it when every recipient is
 * final), bounce the failed batch first: a crash in between may send a
 * DSN twice, never lose one.
 */
static void
fwd_commit(struct spool_envelope *e, struct bounce_item *it, int nit)
{
	int i, open = 0, owed = 0;
	int64_t now = fwd_now();

	if (nit > 0 && fwd_dsn_send(e, it, nit, BOUNCE_FAILED, 0, now) == 0)
		for (i = 0; i < nit; i++)
			e->rcpt[it[i].rcpt].flags &= ~SPOOL_RCPT_F_BOUNCE;
	/* those an allocation or the spool failed before */
	fwd_dsn_owed(e, now);
	for (i = 0; i < e->nrcpt; i++) {
		struct spool_rcpt *rc = &e->rcpt[i];

		if (rc->state == SPOOL_RCPT_PENDING)
			open++;
		else if (rc->state == SPOOL_RCPT_FAILED &&
			 (rc->flags & SPOOL_RCPT_F_BOUNCE)) {
			/* the message stays until its bounce is queued */
			rc->next_attempt = now + fwd_dsn_owed_wait();
			owed++;
		}
	}
	if (open == 0 && owed == 0) {
		schedule_remove(backmxd.sched, e->id);
		if (spool_message_delete(backmxd.spool, e->id) < 0) {
			/* (disk full) the spool still says pending: keep it
			 * scheduled, a later attempt or flush sends it again
			 * (a duplicate, never a loss) and removes it */
			log_err("%s: cannot remove from the spool: %s", e->id,
				spool_error(backmxd.spool));
			schedule_set(backmxd.sched, e->id, fwd_now() + 60);
		} else
			log_msg(e->id, "removed");
		return;
	}
	if (spool_envelope_put(backmxd.spool, e) < 0)
		log_err("%s: cannot update the spool: %s", e->id,
			spool_error(backmxd.spool));
	fwd_reschedule(e);
}

/*
 * fwd_expire - after a temporary failure, or when a message comes due:
 * has its time run out?  Then the pending recipient fails with 4.4.7.
 */
static int
fwd_expired(const struct spool_envelope *e, int64_t now)
{
	return now >= e->arrival + fwd_lifetime(e);
}

/*
 * fwd_suspended - would one more delivery to dest be deferred at once?
 * own: deliveries of the caller already counted in dest->active.
 */
static int
fwd_suspended(const struct fwd_dest *dest, int own)
{
	return dest->idle == NULL && dest->dead_until > fwd_now() &&
	       (dest->active > own ||
		ev_now(backmxd.loop) - dest->last_probe < 1.0);
}

/* fwd_all_temporary - every result of d is a 4xx */
static int
fwd_all_temporary(const struct delivery *d)
{
	int i;

	for (i = 0; i < d->nrcpt; i++)
		if (d->res[i].code / 100 != 4)
			return 0;
	return d->nrcpt > 0;
}

/*
 * fwd_dest_dead - nobody answered: suspend the destination for the first
 * retry step (1 s to 5 min); a flush, an ETRN or a delivery that gets
 * through ends it at once.
 */
static void
fwd_dest_dead(struct fwd_dest *dest, const char *why)
{
	long t = backmxd.cfg->nretry > 0 ? backmxd.cfg->retry[0] : 300;

	if (t < 1)
		t = 1;
	if (t > 300)
		t = 300;
	dest->dead_until = fwd_now() + t;
	snprintf(dest->dead_why, sizeof(dest->dead_why), "%s", why);
}

/* fwd_results - apply d's per-recipient results to the spool */
static void
fwd_results(struct delivery *d)
{
	struct spool_envelope *e;
	struct bounce_item *it;
	struct bounce_item *rl;
	int64_t now = fwd_now();
	int i, nit = 0, nrl = 0, ok = 0, bad = 0, conn = 0;

	e = spool_envelope_get(backmxd.spool, d->id);
	if (e == NULL) {
		/* deleted meanwhile, or unreadable now: then try again */
		if (spool_errno(backmxd.spool) != SPOOL_ENOTFOUND) {
			log_err("%s: %s", d->id, spool_error(backmxd.spool));
			schedule_set(backmxd.sched, d->id, fwd_now() + 60);
		}
		return;
	}
	/* a failed allocation leaves the recipients flagged: the message
	 * stays queued and fwd_commit tries their bounce again */
	it = bounce_calloc((size_t)d->nrcpt, sizeof(*it));
	rl = bounce_calloc((size_t)d->nrcpt, sizeof(*rl));
	fwd_log_d = d;
	for (i = 0; i < d->nrcpt; i++) {
		int k = d->rcpt[i];
		struct spool_rcpt *rc;
		const struct result *r = &d->res[i];
		const char *relay = d->relay[i][0] ? d->relay[i] : NULL;
		const char *tls = relay != NULL ? d->tlsdesc : NULL;
		int cls = r->code / 100;

		if (k >= e->nrcpt)
			continue;
		rc = &e->rcpt[k];
		if (rc->state != SPOOL_RCPT_PENDING)
			continue;
		rc->attempts++;
		if (cls == 2) {
			rc->state = SPOOL_RCPT_DELIVERED;
			free(rc->last_error);
			rc->last_error = NULL;
			fwd_log_tls(e, k, relay, r, "sent", 1, tls);
			stats.delivered++;
			if (tls != NULL && strcmp(tls, "none") != 0) {
				stats.tls_outbound++;
				if (strstr(tls, " dane") != NULL)
					stats.tls_outbound_dane++;
				else if (strstr(tls, " verified") != NULL)
					stats.tls_outbound_verified++;
			}
			ok++;
			/* RFC 3461 5.2.2: the next hop will not report the
			 * delivery, so we say it was relayed */
			if (!d->dsn && (rc->notify & SPOOL_NOTIFY_SUCCESS) &&
			    rl != NULL) {
				rl[nrl].rcpt = k;
				rl[nrl].res = *r;
				rl[nrl].remote_mta = relay ? d->mta[i] : NULL;
				rl[nrl].last_attempt = now;
				nrl++;
			}
			continue;
		}
		fwd_set_error(rc, r, d->remote[i], relay);
		if (cls == 5 || (cls == 4 && fwd_expired(e, now))) {
			rc->state = SPOOL_RCPT_FAILED;
			rc->flags |= SPOOL_RCPT_F_BOUNCE;
			if (it != NULL) {
				it[nit].rcpt = k;
				it[nit].res = *r;
				it[nit].remote_mta = d->remote[i] && relay
							 ? d->mta[i]
							 : NULL;
				it[nit].last_attempt = now;
				if (cls == 4) {
					result_set(&it[nit].res, 0, "4.4.7",
						   "delivery time expired; "
						   "last error: %s",
						   rc->last_error);
					it[nit].remote_mta = NULL;
				}
				nit++;
			}
			if (cls == 4)
				log_msg(e->id, "to=<%s>, relay=%s, delay=%lld, "
					"dsn=4.4.7, status=expired, returned "
					"to sender (%s)", rc->address,
					relay ? relay : "none",
					(long long)(now - e->arrival),
					rc->last_error);
			else
				fwd_log_tls(e, k, relay, r, "bounced",
					    d->remote[i], tls);
			stats.bounced++;
			bad++;
			continue;
		}
		/* its own schedule, whatever else went to the destination:
		 * an early attempt (flush) keeps the step and the time */
		rc->next_attempt = schedule_deferral(
		    backmxd.cfg->retry, backmxd.cfg->nretry, &rc->step,
		    rc->next_attempt, d->started, now,
		    e->arrival + fwd_lifetime(e), fwd_jitter_seed(e->id));
		if (d->remote[i])
			rc->flags &= ~SPOOL_RCPT_F_CONN;
		else {
			rc->flags |= SPOOL_RCPT_F_CONN;
			conn++;
		}
		fwd_log_tls(e, k, relay, r, "deferred", d->remote[i], tls);
		stats.deferred++;
		if (!d->remote[i] && (!strncmp(r->enh, "4.7.4", 5) ||
				      !strncmp(r->enh, "4.7.5", 5)))
			stats.tls_deferred++;
		bad++;
	}
	fwd_log_d = NULL;
	/* before fwd_commit, which may delete the body it quotes */
	if (nrl > 0)
		(void)fwd_dsn_send(e, rl, nrl, BOUNCE_RELAYED, 0, now);
	free(rl);
	/* the fwd_list entry is removed by the caller first, so the
	 * reschedule in fwd_commit sees the message as not in flight */
	fwd_commit(e, it, nit);
	free(it);
	spool_envelope_free(e);
	if (d->dest != NULL) {
		if (ok > 0)
			d->dest->dead_until = 0;
		else if (bad > 0 && !d->connected && !d->suspended &&
			 fwd_all_temporary(d))
			fwd_dest_dead(d->dest, d->res[0].text);
		/*
		 * Only connection-level failures count: a live primary that
		 * defers one recipient (450) has not "recovered" when it
		 * accepts the next message, and its recipient keeps its own
		 * schedule.  A recovery makes due only the messages deferred
		 * without an answer for their recipients.
		 */
		if (ok > 0) {
			if (d->dest->failures > 0) {
				int n;

				d->dest->failures = 0;
				n = fwd_flush_match(NULL, d->dest->key, 1);
				if (n > 0)
					log_info("destination %s recovered: "
						 "%d message(s) made due",
						 d->is_static ? d->host
							      : d->domain, n);
			}
		} else if (conn > 0)
			d->dest->failures++;
	}
}

/* fwd_all - the same result for every recipient of d */
static void
fwd_all(struct delivery *d, const struct result *r, int remote)
{
	int i;

	for (i = 0; i < d->nrcpt; i++) {
		d->res[i] = *r;
		d->remote[i] = remote;
	}
}

static void
fwd_delivery_free(struct delivery *d)
{
	int i;

	if (d->mxq != NULL)
		dns_cancel(d->mxq);
	for (i = 0; i < d->nqs; i++)
		if (d->qs[i].q != NULL)
			dns_cancel(d->qs[i].q);
	if (d->tlsaq != NULL)
		dns_cancel(d->tlsaq);
	if (d->stsq != NULL)
		dns_cancel(d->stsq);
	if (d->stsf != NULL)
		mtasts_fetch_cancel(d->stsf);
	free(d->tlsa);
	smtp_client_free(d->client);
	if (d->prev != NULL)
		d->prev->next = d->next;
	else if (fwd_list == d)
		fwd_list = d->next;
	if (d->next != NULL)
		d->next->prev = d->prev;
	if (d->dest != NULL)
		d->dest->active--;
	fwd_active--;
	stats.deliveries_active = (uint64_t)(fwd_active > 0 ? fwd_active : 0);
	spool_envelope_free(d->env);
	free(d->rcpt);
	free(d->res);
	free(d->remote);
	free(d->relay);
	free(d->mta);
	free(d);
}

/* fwd_done - d is over: record, free, start what may start now */
static void
fwd_done(struct delivery *d, struct smtp_client *reusable)
{
	struct fwd_dest *dest = d->dest;

	/* unlink first so the message counts as no longer in flight */
	if (d->prev != NULL)
		d->prev->next = d->next;
	else if (fwd_list == d)
		fwd_list = d->next;
	if (d->next != NULL)
		d->next->prev = d->prev;
	d->next = d->prev = NULL;
	fwd_results(d);
	d->client = NULL;
	fwd_delivery_free(d);
	if (fwd_stopped) {
		smtp_client_free(reusable);
		return;
	}
	if (dest != NULL) {
		/* the next message waiting for this destination takes the
		 * connection over; then due messages may */
		dest->idle = reusable;
		fwd_wait_release(dest);
		if (dest->idle != NULL)
			fwd_timer_cb(backmxd.loop, &fwd_timer, 0);
		if (dest->idle != NULL) {
			smtp_client_quit(dest->idle);
			dest->idle = NULL;
		}
	} else if (reusable != NULL)
		smtp_client_quit(reusable);
	fwd_wait_release_all();
	fwd_arm();
}

/* fwd_fail_route - a route-level verdict for every recipient */
static void
fwd_fail_route(struct delivery *d, const struct result *r)
{
	fwd_all(d, r, 0);
	fwd_done(d, NULL);
}

/* fwd_listen_port - is port one of our SMTP listening ports? */
static int
fwd_listen_port(int port)
{
	const struct config *cfg = backmxd.cfg;

	for (int i = 0; i < cfg->nlisten; i++) {
		const struct sockaddr_storage *l = &cfg->listen[i].ss;
		int lp = l->ss_family == AF_INET6
			     ? ntohs(((const struct sockaddr_in6 *)(const void *)l)->sin6_port)
			     : ntohs(((const struct sockaddr_in *)(const void *)l)->sin_port);

		if (lp == port)
			return 1;
	}
	return 0;
}

/*
 * fwd_is_own_addr - would connecting to ss:port reach our own listener?
 * Our listening addresses carry their port; interface addresses (from a
 * wildcard listen) carry port 0 and match any of our listening ports.  A
 * static route to another port of this host (a primary on 127.0.0.1:2526
 * next to us on :25) is not ourselves.
 */
static int
fwd_is_own_addr(const struct sockaddr_storage *ss, int port)
{
	int i;

	for (i = 0; i < backmxd.nown_addrs; i++) {
		const struct sockaddr_storage *o = &backmxd.own_addrs[i];
		int oport;

		if (o->ss_family != ss->ss_family)
			continue;
		if (ss->ss_family == AF_INET) {
			if (memcmp(&((const struct sockaddr_in *)(const void *)o)->sin_addr,
				   &((const struct sockaddr_in *)(const void *)ss)->sin_addr, 4))
				continue;
			oport = ntohs(((const struct sockaddr_in *)(const void *)o)->sin_port);
		} else if (ss->ss_family == AF_INET6) {
			if (memcmp(&((const struct sockaddr_in6 *)(const void *)o)->sin6_addr,
				   &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr, 16))
				continue;
			oport = ntohs(((const struct sockaddr_in6 *)(const void *)o)->sin6_port);
		} else
			continue;
		if (oport == port || (oport == 0 && fwd_listen_port(port)))
			return 1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* TLS per host: DANE (RFC 7672) first, then MTA-STS (RFC 8461) */

static void
fwd_tlsa_clear(struct delivery *d)
{
	free(d->tlsa);
	d->tlsa = NULL;
	d->ntlsa = 0;
	d->tlsa_for = 0;
	d->tlsa_state = FWD_TLSA_NONE;
}

/*
 * fwd_tlsa_usable - RFC 7672 3.1: DANE-TA(2) and DANE-EE(3) only, with a
 * selector and matching type OpenSSL knows; PKIX usages 0 and 1 are
 * unusable for SMTP (no agreed trust store between MTAs)
 */
static int
fwd_tlsa_usable(const struct dns_tlsa *t)
{
	return (t->usage == 2 || t->usage == 3) && t->selector <= 1 &&
	       t->mtype <= 2 && t->len > 0;
}

/* fwd_tlsa_take - keep the usable records of a secure answer */
static void
fwd_tlsa_take(struct delivery *d, const struct dns_result *res)
{
	size_t sz = 0, off = 0;
	uint8_t *data;
	int i, n = 0;

	for (i = 0; i < res->n; i++)
		if (fwd_tlsa_usable(&res->tlsa[i])) {
			n++;
			sz += res->tlsa[i].len;
		}
	if (n == 0) {
		/* records, but none usable: TLS still mandatory (2.2) */
		d->tlsa_state = FWD_TLSA_UNUSABLE;
		return;
	}
	if ((d->tlsa = malloc((size_t)n * sizeof(*d->tlsa) + sz)) == NULL) {
		result_set(&d->last, 451, "4.3.0", "out of memory");
		d->tlsa_state = FWD_TLSA_ERROR;
		return;
	}
	data = (uint8_t *)(d->tlsa + n);
	for (i = 0; i < res->n; i++) {
		const struct dns_tlsa *t = &res->tlsa[i];

		if (!fwd_tlsa_usable(t))
			continue;
		d->tlsa[d->ntlsa] = *t;
		memcpy(data + off, t->data, t->len);
		d->tlsa[d->ntlsa++].data = data + off;
		off += t->len;
	}
	d->tlsa_state = FWD_TLSA_USABLE;
}

/* fwd_tlsa_cb - _25._tcp.<host>: decide, then go on where we stopped */
static void
fwd_tlsa_cb(void *arg, const struct dns_result *res)
{
	struct delivery *d = arg;

	d->tlsaq = NULL;
	d->tlsa_for = d->order[d->oi] + 1;
	switch (res->status) {
	case DNS_BOGUS:
	case DNS_TEMPFAIL:
		/* never downgrade: an attacker can make lookups fail */
		d->tlsa_state = FWD_TLSA_ERROR;
		result_set(&d->last, 451, "4.7.5", "TLSA lookup error for %s: "
			   "%s", res->qname, res->why);
		break;
	case DNS_OK:
		/* insecure records, which anyone could forge, mean nothing */
		if (res->secure)
			fwd_tlsa_take(d, res);
		else
			d->tlsa_state = FWD_TLSA_NONE;
		break;
	default:
		d->tlsa_state = FWD_TLSA_NONE;
		break;
	}
	fwd_try_next(d);
}

/*
 * fwd_host_tls - the TLS policy of the connections to the host at d->oi,
 * before its first address: 1 decided (d->cur_tls; d->tlsa for DANE), 0
 * a TLSA lookup is under way (its callback calls fwd_try_next again), -1
 * the host must not be used (d->last says why).
 */
static int
fwd_host_tls(struct delivery *d)
{
	int hi = d->order[d->oi], fresh = 0;
	const struct fwd_host *h = &d->hosts[hi];

	d->cur_tls = d->tls;
	if (d->tls != POLICY_TLS_DANE && d->tls != POLICY_TLS_MTASTS)
		return 1;
	if (h->bogus) {
		result_set(&d->last, 451, "4.7.5", "DNSSEC validation of the "
			   "address records of %s failed", h->name);
		return -1;
	}
	if (d->tlsa_for != hi + 1) {
		fwd_tlsa_clear(d);
		fresh = 1;
		/*
		 * RFC 7672 2.2.2: TLSA records count only when the host's
		 * address records are DNSSEC-secure as well; an address
		 * literal has no name to look up.
		 */
		if (!h->insecure && !d->literal) {
			char name[POLICY_DOMAIN_MAX + 16];

			snprintf(name, sizeof(name), "_25._tcp.%s", h->name);
			d->tlsaq = dns_query(backmxd.dns, name, DNS_T_TLSA,
					     fwd_tlsa_cb, d);
			if (d->tlsaq != NULL)
				return 0;
			result_set(&d->last, 451, "4.7.5", "TLSA lookup error "
				   "for %s: resolver unavailable", name);
			d->tlsa_state = FWD_TLSA_ERROR;
		}
		d->tlsa_for = hi + 1;
	}
	switch (d->tlsa_state) {
	case FWD_TLSA_ERROR:
		return -1;
	case FWD_TLSA_USABLE:
		/* DANE wins over MTA-STS (RFC 8461 2) */
		d->cur_tls = POLICY_TLS_DANE;
		return 1;
	case FWD_TLSA_UNUSABLE:
		d->cur_tls = POLICY_TLS_ENCRYPT;
		return 1;
	case FWD_TLSA_NONE:
		break;
	}
	d->cur_tls = POLICY_TLS_MAY;
	if (d->tls == POLICY_TLS_MTASTS && d->sts_mode != MTASTS_MODE_NONE) {
		int match = mtasts_mx_match(&d->sts, h->name);

		if (d->sts_mode == MTASTS_MODE_ENFORCE) {
			if (!match) {
				result_set(&d->last, 451, "4.7.5", "MX host %s "
					   "does not match the MTA-STS policy "
					   "of %s", h->name, d->domain);
				return -1;
			}
			/* RFC 8461 4.2: a WebPKI certificate naming the
			 * MX host, or no delivery to it */
			d->cur_tls = POLICY_TLS_VERIFY;
		} else if (!match && fresh)
			log_msg(d->id, "MTA-STS policy of %s (mode testing): "
				"MX host %s does not match; delivering anyway",
				d->domain, h->name);
	}
	return 1;
}

/*
 * fwd_sts_ready - the MTA-STS policy of d->domain is known: the one just
 * fetched, else a cached one still within its max_age (RFC 8461 5.1:
 * even when the TXT record or the fetch fails now), else none.
 */
static void
fwd_sts_ready(struct delivery *d, const struct mtasts_policy *fetched)
{
	const struct mtasts_policy *p = fetched;

	d->sts_done = 1;
	if (p == NULL && fwd_sts_cache != NULL)
		p = mtasts_cache_get(fwd_sts_cache, d->domain, NULL,
				     (time_t)fwd_now(), NULL);
	if (p != NULL && p->mode != MTASTS_MODE_NONE) {
		d->sts = *p;
		d->sts_mode = p->mode;
	}
	d->oi = d->ai = 0;
	fwd_try_next(d);
}

/* the MTA-STS cache file in the spool directory */
static void
fwd_sts_cache_path(char *buf, size_t len)
{
	snprintf(buf, len, "%s/mta-sts.cache", backmxd.cfg->spool);
}

static void
fwd_sts_cache_save(void)
{
	char path[4096];

	fwd_sts_cache_path(path, sizeof(path));
	if (mtasts_cache_save(fwd_sts_cache, path) < 0)
		log_warn("cannot save the MTA-STS policies to %s: %s", path,
			 strerror(errno));
}

/* fwd_sts_cache_open - the cache, loaded from the spool the first time */
static int
fwd_sts_cache_open(void)
{
	char path[4096];
	int n;

	if (fwd_sts_cache != NULL)
		return 0;
	if ((fwd_sts_cache = mtasts_cache_new()) == NULL)
		return -1;
	fwd_sts_cache_path(path, sizeof(path));
	n = mtasts_cache_load(fwd_sts_cache, path, (time_t)fwd_now());
	if (n < 0)
		log_warn("cannot read the MTA-STS policies in %s: %s", path,
			 strerror(errno));
	else if (n > 0)
		log_info("%d MTA-STS policies loaded from %s", n, path);
	return 0;
}

static void
fwd_sts_fetch_cb(void *arg, const struct mtasts_policy *p, const char *err)
{
	struct delivery *d = arg;

	d->stsf = NULL;
	if (p == NULL) {
		log_msg(d->id, "MTA-STS policy fetch for %s failed: %s",
			d->domain, err != NULL ? err : "unknown error");
		fwd_sts_ready(d, NULL);
		return;
	}
	log_msg(d->id, "MTA-STS policy of %s fetched: id=%s, mode=%s, "
		"max_age=%ld, mx patterns=%d", d->domain, d->sts_id,
		mtasts_mode_str(p->mode), p->max_age, p->nmx);
	if (mtasts_cache_put(fwd_sts_cache, d->domain, d->sts_id, p,
			     (time_t)fwd_now()) < 0)
		log_warn("MTA-STS policy of %s: cannot cache it", d->domain);
	else
		fwd_sts_cache_save();
	fwd_sts_ready(d, p);
}

/* fwd_sts_addr_cb - mta-sts.<domain> resolved (A, then AAAA): fetch */
static void
fwd_sts_addr_cb(void *arg, const struct dns_result *res)
{
	struct delivery *d = arg;
	char err[256];
	socklen_t salen;

	d->stsq = NULL;
	if (res->status != DNS_OK || res->n == 0) {
		if (res->rrtype == DNS_T_A) {
			d->stsq = dns_query(backmxd.dns, res->qname,
					    DNS_T_AAAA, fwd_sts_addr_cb, d);
			if (d->stsq != NULL)
				return;
		}
		log_msg(d->id, "MTA-STS policy fetch for %s failed: %s: %s",
			d->domain, res->qname, res->status == DNS_OK
			? "no address" : res->why);
		fwd_sts_ready(d, NULL);
		return;
	}
	salen = res->addr[0].ss_family == AF_INET6
		    ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	d->stsf = mtasts_fetch_start(backmxd.loop, d->domain,
				     (const struct sockaddr *)&res->addr[0],
				     salen, backmxd.cfg->tls_ca,
				     FWD_STS_TIMEOUT, fwd_sts_fetch_cb, d, err,
				     sizeof(err));
	if (d->stsf == NULL) {
		log_msg(d->id, "MTA-STS policy fetch for %s failed: %s",
			d->domain, err);
		fwd_sts_ready(d, NULL);
	}
}

/*
 * fwd_sts_txt_cb - _mta-sts.<domain>: a valid record whose id differs
 * from the cached policy's (or no usable cache, or a day old) means a
 * fetch; anything else keeps what the cache has (RFC 8461 3.1, 5.1)
 */
static void
fwd_sts_txt_cb(void *arg, const struct dns_result *res)
{
	struct delivery *d = arg;
	char name[POLICY_DOMAIN_MAX + 16];
	int refetch = 0;

	d->stsq = NULL;
	if (res->status != DNS_OK ||
	    mtasts_txt_select(res->txt, res->n, d->sts_id,
			      sizeof(d->sts_id)) == -1) {
		fwd_sts_ready(d, NULL);
		return;
	}
	if (fwd_sts_cache_open() < 0) {
		fwd_sts_ready(d, NULL);
		return;
	}
	(void)mtasts_cache_get(fwd_sts_cache, d->domain, d->sts_id,
			       (time_t)fwd_now(), &refetch);
	if (!refetch) {
		fwd_sts_ready(d, NULL);
		return;
	}
	snprintf(name, sizeof(name), "mta-sts.%s", d->domain);
	d->stsq = dns_query(backmxd.dns, name, DNS_T_A, fwd_sts_addr_cb, d);
	if (d->stsq == NULL)
		fwd_sts_ready(d, NULL);
}

/* fwd_sts_start - tls mta-sts: learn the domain's policy, then connect */
static void
fwd_sts_start(struct delivery *d)
{
	char name[POLICY_DOMAIN_MAX + 16];

	/* the saved policies count even when the TXT lookup fails */
	(void)fwd_sts_cache_open();
	snprintf(name, sizeof(name), "_mta-sts.%s", d->domain);
	d->stsq = dns_query(backmxd.dns, name, DNS_T_TXT, fwd_sts_txt_cb, d);
	if (d->stsq == NULL)
		fwd_sts_ready(d, NULL);
}

/* fwd_hosts_ready - every address lookup is back: cut and connect */
static void
fwd_hosts_ready(struct delivery *d)
{
	struct policy_mx mx[FWD_HOSTS_MAX];
	struct result r;
	int i, j, n = d->nhosts, any = 0;
	enum policy_mx_verdict v;

	for (i = 0; i < d->nhosts; i++) {
		/* sizeof does not read mx[i]: a cppcheck false positive */
		/* cppcheck-suppress legacyUninitvar */
		snprintf(mx[i].host, sizeof(mx[i].host), "%s",
			 d->hosts[i].name);
		mx[i].pref = d->hosts[i].pref;
		mx[i].self = 0;
		for (j = 0; j < d->hosts[i].naddr; j++)
			if (fwd_is_own_addr(&d->hosts[i].addr[j], d->port))
				mx[i].self = 1;
	}
	if (d->is_static) {
		d->norder = 0;
		for (i = 0; i < n; i++)
			d->order[d->norder++] = i;
	} else {
		/*
		 * If we are a backup MX, do not relay to MXs with a
		 * greater (or equal) preference value than ours.
		 */
		v = policy_mx_cut(backmxd.cfg->policy, mx, &n, fwd_rnd);
		if (v == POLICY_MX_SELF_BEST) {
			result_set(&r, 451, "4.4.6", "mail for %s loops back "
				   "to myself", d->domain);
			fwd_fail_route(d, &r);
			return;
		}
		if (v == POLICY_MX_NULL) {
			result_set(&r, 556, "5.1.10", "recipient domain %s "
				   "has a null MX", d->domain);
			fwd_fail_route(d, &r);
			return;
		}
		d->norder = 0;
		for (i = 0; i < n; i++)
			for (j = 0; j < d->nhosts; j++)
				if (!strcmp(mx[i].host, d->hosts[j].name)) {
					d->order[d->norder++] = j;
					break;
				}
	}
	for (i = 0; i < d->norder; i++)
		if (d->hosts[d->order[i]].naddr > 0)
			any = 1;
	if (!any) {
		const char *names[FWD_HOSTS_MAX], *whys[FWD_HOSTS_MAX];

		for (i = 0; i < d->norder; i++) {
			names[i] = d->hosts[d->order[i]].name;
			whys[i] = d->hosts[d->order[i]].dnswhy;
		}
		route_dns_noaddr(d->id, d->domain, d->is_static, names, whys,
				 d->norder, &r);
		fwd_fail_route(d, &r);
		return;
	}
	d->oi = d->ai = 0;
	if (d->tls == POLICY_TLS_MTASTS && !d->is_static && !d->sts_done) {
		/* the policy filters the MX hosts: learn it first */
		fwd_sts_start(d);
		return;
	}
	fwd_try_next(d);
}

static void
fwd_addr_cb(void *arg, const struct dns_result *res)
{
	struct fwd_query *q = arg;
	struct delivery *d = q->d;
	struct fwd_host *h = &d->hosts[q->host];
	int i;

	q->q = NULL;
	if (res->status == DNS_OK) {
		for (i = 0; i < res->n && h->naddr < FWD_ADDR_MAX; i++)
			h->addr[h->naddr++] = res->addr[i];
	} else if (res->status == DNS_TEMPFAIL || res->status == DNS_BOGUS)
		h->tempfail = 1;
	if (res->status != DNS_OK || res->n == 0)
		route_dns_addr_note(h->dnswhy, sizeof(h->dnswhy), res);
	/* DANE needs every answer about the host's addresses secure */
	if (res->status == DNS_BOGUS)
		h->bogus = 1;
	else if (res->status != DNS_TEMPFAIL && !res->secure)
		h->insecure = 1;
	if (--d->outstanding == 0)
		fwd_hosts_ready(d);
}

/* fwd_resolve_hosts - A and AAAA for every host of d */
static void
fwd_resolve_hosts(struct delivery *d)
{
	int i, t;

	d->nqs = 0;
	d->outstanding = 0;
	for (i = 0; i < d->nhosts; i++)
		for (t = 0; t < 2; t++) {
			struct fwd_query *q = &d->qs[d->nqs++];

			q->d = d;
			q->host = i;
			q->q = dns_query(backmxd.dns, d->hosts[i].name,
					 t == 0 ? DNS_T_A : DNS_T_AAAA,
					 fwd_addr_cb, q);
			if (q->q != NULL)
				d->outstanding++;
			else
				d->hosts[i].tempfail = 1;
		}
	if (d->outstanding == 0) {
		struct result r;

		result_set(&r, 451, "4.4.3", "resolver unavailable");
		fwd_fail_route(d, &r);
	}
}

static void
fwd_mx_cb(void *arg, const struct dns_result *res)
{
	struct delivery *d = arg;
	struct result r;
	int i, nnull = 0;

	d->mxq = NULL;
	switch (res->status) {
	case DNS_NXDOMAIN:
	case DNS_TEMPFAIL:
	case DNS_BOGUS:
		/* temporary for a configured domain (route_dns.h) */
		route_dns_mx_fail(d->id, d->domain,
				  policy_find_domain(backmxd.cfg->policy,
						     d->domain) != NULL,
				  res, &r);
		fwd_fail_route(d, &r);
		return;
	case DNS_NODATA:
		/* implicit MX: the domain's own A/AAAA, preference 0 */
		d->nhosts = 1;
		snprintf(d->hosts[0].name, sizeof(d->hosts[0].name), "%s",
			 d->domain);
		d->hosts[0].pref = 0;
		/* named in the deferral if the A/AAAA give nothing either */
		snprintf(d->hosts[0].dnswhy, sizeof(d->hosts[0].dnswhy),
			 "MX NODATA");
		fwd_resolve_hosts(d);
		return;
	case DNS_OK:
		break;
	}
	d->nhosts = 0;
	for (i = 0; i < res->n; i++) {
		if (res->mx[i].host[0] == '\0') {
			nnull++;
			continue;
		}
		if (d->nhosts == FWD_HOSTS_MAX)
			continue;
		snprintf(d->hosts[d->nhosts].name, sizeof(d->hosts[0].name),
			 "%s", res->mx[i].host);
		d->hosts[d->nhosts].pref = res->mx[i].pref;
		d->nhosts++;
	}
	if (d->nhosts == 0) {
		if (nnull > 0)
			result_set(&r, 556, "5.1.10", "recipient domain %s has "
				   "a null MX", d->domain);
		else
			result_set(&r, 451, "4.4.4", "unable to find primary "
				   "relay for %s", d->domain);
		fwd_fail_route(d, &r);
		return;
	}
	fwd_resolve_hosts(d);
}

/* fwd_try_next - connect to the next address in MX order */
static void
fwd_try_next(struct delivery *d)
{
	struct smtp_client_params p;

	while (d->oi < d->norder) {
		struct fwd_host *h = &d->hosts[d->order[d->oi]];

		if (d->ai >= h->naddr) {
			d->oi++;
			d->ai = 0;
			continue;
		}
		if (d->ai == 0) {
			int t = fwd_host_tls(d);

			if (t == 0)
				return;		/* the TLSA answer comes back */
			if (t < 0) {
				d->oi++;	/* d->last says why */
				continue;
			}
		}
		memset(&p, 0, sizeof(p));
		p.addr = h->addr[d->ai++];
		if (fwd_is_own_addr(&p.addr, d->port)) {
			result_set(&d->last, 451, "4.4.6", "%s is one of our "
				   "own addresses: not sending to myself",
				   h->name);
			continue;
		}
		if (p.addr.ss_family == AF_INET6)
			((struct sockaddr_in6 *)(void *)&p.addr)->sin6_port =
			    htons((uint16_t)d->port);
		else
			((struct sockaddr_in *)(void *)&p.addr)->sin_port =
			    htons((uint16_t)d->port);
		p.cfg = backmxd.cfg;
		p.helo = backmxd.cfg->hostname;
		p.mxhost = h->name;
		p.tls = d->cur_tls;
		if (p.tls == POLICY_TLS_DANE) {
			p.tlsa = d->tlsa;
			p.ntlsa = d->ntlsa;
		}
		p.no_starttls = d->plain && p.tls == POLICY_TLS_MAY;
		d->plain = 0;
		d->client = smtp_client_new(backmxd.loop, &p, fwd_client_cb, d);
		if (d->client != NULL)
			return;
		result_set(&d->last, 451, "4.3.0", "out of memory");
	}
	if (d->last.code == 0)
		result_set(&d->last, 451, "4.4.1", "no address to try");
	fwd_fail_route(d, &d->last);
}

/* fwd_send - a ready client: start d's transaction on it */
static void
fwd_send(struct delivery *d)
{
	int i;

	snprintf(d->tlsdesc, sizeof(d->tlsdesc), "%s",
		 smtp_client_tls(d->client) != NULL ? smtp_client_tls(d->client)
						    : "none");
	for (i = 0; i < d->nrcpt; i++) {
		char *lb;

		snprintf(d->relay[i], sizeof(d->relay[i]), "%s",
			 smtp_client_relay(d->client));
		snprintf(d->mta[i], sizeof(d->mta[i]), "%s", d->relay[i]);
		if ((lb = strchr(d->mta[i], '[')) != NULL)
			*lb = '\0';
	}
	d->dsn = smtp_client_has(d->client, SMTP_CAP_DSN);
	d->tx.spool = backmxd.spool;
	smtp_client_times(d->client, &d->setup, &d->conn_use);
	d->tx.env = d->env;
	d->tx.nrcpt = d->nrcpt;
	d->tx.rcpt = d->rcpt;
	d->tx.res = d->res;
	d->tx.remote = d->remote;
	d->t_send = ev_now(backmxd.loop);
	if (smtp_client_send(d->client, &d->tx) < 0) {
		struct smtp_client *c = d->client;

		d->client = NULL;
		if (!smtp_client_usable(c)) {
			smtp_client_free(c);
			c = NULL;
		}
		fwd_done(d, c);
	}
}

static void
fwd_client_cb(void *arg, struct smtp_client *c, const struct result *r)
{
	struct delivery *d = arg;

	if (d->tx.res == NULL) {
		/* connect phase */
		if (r->code / 100 == 2) {
			d->connected = 1;
			fwd_send(d);
			return;
		}
		d->last = *r;
		if (smtp_client_tls_failed(c) && d->cur_tls == POLICY_TLS_MAY) {
			/*
			 * tls may: a broken TLS stack at the primary must not
			 * stop the mail; the same address once more in clear,
			 * as it would be had it not offered STARTTLS.
			 */
			log_msg(d->id, "%s; tls may: trying %s again without "
				"STARTTLS", r->text, smtp_client_relay(c));
			d->plain = 1;
			d->ai--;
		}
		smtp_client_free(c);
		d->client = NULL;
		fwd_try_next(d);
		return;
	}
	d->client = NULL;
	if (smtp_client_usable(c))
		fwd_done(d, c);
	else {
		smtp_client_free(c);
		fwd_done(d, NULL);
	}
}

/*
 * fwd_start - begin delivering the recipients idx[0..n) of e (one
 * destination).  Takes ownership of e.
 */
static void
fwd_start(struct spool_envelope *e, const int *idx, int n,
	  struct fwd_dest *dest)
{
	struct delivery *d;
	char key[FWD_KEY_MAX];
	int i;

	d = calloc(1, sizeof(*d));
	if (d == NULL || (d->rcpt = calloc((size_t)n, sizeof(int))) == NULL ||
	    (d->res = calloc((size_t)n, sizeof(*d->res))) == NULL ||
	    (d->remote = calloc((size_t)n, sizeof(int))) == NULL ||
	    (d->relay = calloc((size_t)n, sizeof(*d->relay))) == NULL ||
	    (d->mta = calloc((size_t)n, sizeof(*d->mta))) == NULL) {
		if (d != NULL) {
			free(d->rcpt);
			free(d->res);
			free(d->remote);
			free(d->relay);
			free(d);
		}
		schedule_set(backmxd.sched, e->id, fwd_now() + 60);
		spool_envelope_free(e);
		return;
	}
	memcpy(d->rcpt, idx, (size_t)n * sizeof(int));
	d->nrcpt = n;
	d->env = e;
	snprintf(d->id, sizeof(d->id), "%s", e->id);
	fwd_route(e, idx[0], key, sizeof(key), d, NULL);
	d->dest = dest;
	d->started = fwd_now();
	dest->active++;
	fwd_active++;
	stats.deliveries_active = (uint64_t)fwd_active;
	d->next = fwd_list;
	if (fwd_list != NULL)
		fwd_list->prev = d;
	fwd_list = d;

	if (fwd_suspended(dest, 1)) {	/* d itself is counted */
		struct result r;

		d->suspended = 1;
		result_set(&r, 451, "4.4.1", FWD_SUSPENDED_TEXT "%.200s",
			   dest->dead_why);
		fwd_fail_route(d, &r);
		return;
	}
	if (dest->dead_until > fwd_now())
		dest->last_probe = ev_now(backmxd.loop);
	if (dest->idle != NULL) {
		/* connection reuse: RSET, then this message */
		d->client = dest->idle;
		dest->idle = NULL;
		d->connected = 1;
		smtp_client_set_cb(d->client, fwd_client_cb, d);
		fwd_send(d);
		return;
	}
	if (d->is_static) {
		d->nhosts = 1;
		snprintf(d->hosts[0].name, sizeof(d->hosts[0].name), "%s",
			 d->literal ? d->host : d->host);
		if (d->literal) {
			struct fwd_host *h = &d->hosts[0];
			struct sockaddr_in *s4 = (void *)&h->addr[0];
			struct sockaddr_in6 *s6 = (void *)&h->addr[0];
			const char *a = d->host;

			if (!strncasecmp(a, "IPv6:", 5))
				a += 5;
			memset(&h->addr[0], 0, sizeof(h->addr[0]));
			if (inet_pton(AF_INET, a, &s4->sin_addr) == 1) {
				s4->sin_family = AF_INET;
				h->naddr = 1;
			} else if (inet_pton(AF_INET6, a, &s6->sin6_addr) == 1) {
				s6->sin6_family = AF_INET6;
				h->naddr = 1;
			}
			fwd_hosts_ready(d);
			return;
		}
		fwd_resolve_hosts(d);
		return;
	}
	d->mxq = dns_query(backmxd.dns, d->domain, DNS_T_MX, fwd_mx_cb, d);
	if (d->mxq == NULL) {
		struct result r;

		result_set(&r, 451, "4.4.3", "resolver unavailable");
		fwd_fail_route(d, &r);
	}
	(void)i;
}

/* fwd_expire_now - fail every pending recipient of e: time is up */
static void
fwd_expire_now(struct spool_envelope *e, const char *why)
{
	struct bounce_item *it = bounce_calloc((size_t)e->nrcpt, sizeof(*it));
	int i, nit = 0;
	int64_t now = fwd_now();

	for (i = 0; i < e->nrcpt; i++) {
		struct spool_rcpt *rc = &e->rcpt[i];

		if (rc->state != SPOOL_RCPT_PENDING)
			continue;
		rc->state = SPOOL_RCPT_FAILED;
		rc->flags |= SPOOL_RCPT_F_BOUNCE;
		if (why != NULL) {
			/* what a rebuilt bounce says (fwd_dsn_owed) */
			char buf[400];

			snprintf(buf, sizeof(buf), "5.0.0 %s", why);
			free(rc->last_error);
			rc->last_error = strdup(buf);
		}
		if (it != NULL) {
			it[nit].rcpt = i;
			if (why != NULL)
				result_set(&it[nit].res, 0, "5.0.0", "%s", why);
			else
				result_set(&it[nit].res, 0, "4.4.7",
					   "delivery time expired%s%s",
					   rc->last_error ? "; last error: "
							  : "",
					   rc->last_error ? rc->last_error
							  : "");
			it[nit].last_attempt = now;
			nit++;
		}
		log_msg(e->id, "to=<%s>, relay=none, delay=%lld, dsn=%s, "
			"status=%s (%s)", rc->address,
			(long long)(now - e->arrival),
			why ? "5.0.0" : "4.4.7",
			why ? "bounced" : "expired, returned to sender",
			why ? why : rc->last_error ? rc->last_error
						   : "delivery time expired");
		stats.bounced++;
	}
	fwd_commit(e, it, nit);
	free(it);
}

/*
 * fwd_process - one due message.  Only its recipients whose own time has
 * come are tried (a recipient a live primary deferred keeps its schedule
 * while its siblings go); when none has, the message was made due out of
 * its schedule (flush, ETRN, a recovered destination, the operator) and
 * every pending recipient is tried once.
 */
static void
fwd_process(const char *id)
{
	struct spool_envelope *e;
	int *idx, i, j, n, started = 0, blocked = 0, anydue = 0, warned;
	struct fwd_dest *wait = NULL;
	char (*keys)[FWD_KEY_MAX];
	char *done;
	int maxpd = fwd_maxpd();
	int64_t now = fwd_now();

	if (fwd_msg_inflight(id))
		return;		/* its end reschedules it */
	e = spool_envelope_get(backmxd.spool, id);
	if (e == NULL) {
		if (spool_errno(backmxd.spool) != SPOOL_ENOTFOUND) {
			log_err("%s: %s", id, spool_error(backmxd.spool));
			schedule_set(backmxd.sched, id, fwd_now() + 60);
		}
		return;
	}
	if (e->held) {
		spool_envelope_free(e);
		return;
	}
	if (fwd_dsn_owes(e)) {
		/* first the bounce an allocation failure held back */
		fwd_commit(e, NULL, 0);
		spool_envelope_free(e);
		return;
	}
	if (fwd_expired(e, now)) {
		fwd_expire_now(e, NULL);
		spool_envelope_free(e);
		return;
	}
	warned = fwd_dsn_delay_warn(e, now, fwd_lifetime(e));
	for (i = 0; i < e->nrcpt; i++)
		if (e->rcpt[i].state == SPOOL_RCPT_PENDING &&
		    e->rcpt[i].next_attempt <= now)
			anydue = 1;
	if (warned && !anydue) {
		/* woken for the warning only */
		fwd_reschedule(e);
		spool_envelope_free(e);
		return;
	}
	n = e->nrcpt;
	idx = calloc((size_t)n + 1, sizeof(int));
	keys = calloc((size_t)n + 1, sizeof(*keys));
	done = calloc((size_t)n + 1, 1);
	if (idx == NULL || keys == NULL || done == NULL) {
		free(idx);
		free(keys);
		free(done);
		schedule_set(backmxd.sched, id, fwd_now() + 60);
		spool_envelope_free(e);
		return;
	}
	for (i = 0; i < n; i++) {
		struct result r;

		if (e->rcpt[i].state != SPOOL_RCPT_PENDING ||
		    (anydue && e->rcpt[i].next_attempt > now)) {
			done[i] = 1;
			continue;
		}
		if (fwd_route(e, i, keys[i], sizeof(keys[i]), NULL, &r) < 0) {
			/* not routable now: a temporary error */
			struct spool_rcpt *rc = &e->rcpt[i];

			rc->attempts++;
			free(rc->last_error);
			rc->last_error = NULL;
			{
				char buf[400];

				snprintf(buf, sizeof(buf), "%s %s", r.enh,
					 r.text);
				rc->last_error = strdup(buf);
			}
			rc->next_attempt = schedule_deferral(
			    backmxd.cfg->retry, backmxd.cfg->nretry, &rc->step,
			    rc->next_attempt, now, now,
			    e->arrival + fwd_lifetime(e),
			    fwd_jitter_seed(e->id));
			rc->flags |= SPOOL_RCPT_F_CONN;
			fwd_log(e, i, NULL, &r, "deferred", 0);
			stats.deferred++;
			done[i] = 1;
			blocked = -1;	/* envelope changed */
		}
	}
	if (blocked < 0) {
		spool_envelope_put(backmxd.spool, e);
		blocked = 0;
	}
	for (i = 0; i < n; i++) {
		struct fwd_dest *dest;
		int m = 0;

		if (done[i])
			continue;
		for (j = i; j < n; j++)
			if (!done[j] && !strcmp(keys[j], keys[i])) {
				idx[m++] = j;
				done[j] = 1;
			}
		dest = fwd_dest_get(keys[i]);
		if (dest == NULL) {
			blocked++;
			continue;
		}
		if (dest->active >= maxpd && dest->idle == NULL) {
			/* wait for a slot; pending recipients of other
			 * destinations start now, these when it frees */
			if (started == 0)
				wait = dest;
			blocked++;
			continue;
		}
		{
			struct spool_envelope *copy =
			    spool_envelope_get(backmxd.spool, id);

			if (copy != NULL) {
				fwd_start(copy, idx, m, dest);
				started++;
			}
		}
	}
	if (started == 0 && wait != NULL)
		fwd_wait_add(wait, id);
	else if (started == 0 && blocked > 0)
		schedule_set(backmxd.sched, id, fwd_now() + 1);
	else if (started == 0)
		fwd_reschedule(e);
	free(idx);
	free(keys);
	free(done);
	spool_envelope_free(e);
}

static void
fwd_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	char id[SPOOL_ID_LEN + 1];
	int maxd = fwd_maxd();
	int64_t now = fwd_now();

	if (fwd_stopped)
		return;
	if (fwd_release_pending && fwd_release_depth == 0) {
		fwd_release_pending = 0;
		fwd_wait_release_all();
	}
	while (fwd_active < maxd && fwd_nwaiting < FWD_WAIT_MAX &&
	       schedule_pop_due(backmxd.sched, now, id) == 1)
		fwd_process(id);
	fwd_arm();
}

/* fwd_arm - the timer at the earliest due time, nothing when empty */
static void
fwd_arm(void)
{
	int64_t t;
	char id[SPOOL_ID_LEN + 1];
	double delay;

	if (fwd_stopped)
		return;
	ev_timer_stop(backmxd.loop, &fwd_timer);
	if (fwd_active >= fwd_maxd())
		return;		/* the end of a delivery re-arms */
	if (fwd_release_pending) {
		ev_timer_set(&fwd_timer, 0., 0.);
		ev_timer_start(backmxd.loop, &fwd_timer);
		return;
	}
	if (fwd_nwaiting >= FWD_WAIT_MAX)
		return;		/* as the waiting drains */
	if (schedule_peek(backmxd.sched, &t, id) != 1)
		return;
	delay = (double)t - ev_now(backmxd.loop);
	if (delay < 0)
		delay = 0;
	ev_timer_set(&fwd_timer, delay, 0.);
	ev_timer_start(backmxd.loop, &fwd_timer);
}

static int
fwd_init_cb(void *arg, const struct spool_envelope *e)
{
	fwd_reschedule(e);
	return 0;
}

int
forward_init(void)
{
	const char *fail = getenv("BACKMXD_TEST_BOUNCE_ENOMEM");

	/* the integration tests' allocation-failure injection */
	if (fail != NULL)
		bounce_fail_allocs(atoi(fail));
	ev_timer_init(&fwd_timer, fwd_timer_cb, 0., 0.);
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());
	if (spool_scan(backmxd.spool, "", 0, fwd_init_cb, NULL) < 0)
		return -1;
	fwd_arm();
	return 0;
}

/* ------------------------------------------------------------------ */
/* Operator and session entry points */

struct fwd_collect {
	const char *domain;	/* match recipients at domain, or NULL */
	const char *key;	/* match recipients routed to key, or NULL */
	int pending_only;	/* only pending recipients count */
	int conn_only;		/* only those deferred without an answer */
	int skip_held;
	char (*ids)[SPOOL_ID_LEN + 1];
	int n, cap;
};

static int
fwd_collect_cb(void *arg, const struct spool_envelope *e)
{
	struct fwd_collect *c = arg;
	int i, hit = 0;

	if (c->skip_held && e->held)
		return 0;
	for (i = 0; i < e->nrcpt && !hit; i++) {
		char key[FWD_KEY_MAX];

		if (c->pending_only && e->rcpt[i].state != SPOOL_RCPT_PENDING)
			continue;
		if (c->conn_only && !(e->rcpt[i].flags & SPOOL_RCPT_F_CONN))
			continue;
		if (c->domain != NULL &&
		    strcasecmp(fwd_rcpt_domain(e->rcpt[i].address),
			       c->domain) != 0)
			continue;
		if (c->key != NULL &&
		    (fwd_route(e, i, key, sizeof(key), NULL, NULL) < 0 ||
		     strcmp(key, c->key) != 0))
			continue;
		hit = 1;
	}
	if (!hit)
		return 0;
	if (c->n == c->cap) {
		int nc = c->cap ? c->cap * 2 : 64;
		char (*n)[SPOOL_ID_LEN + 1] =
		    realloc(c->ids, (size_t)nc * sizeof(*n));

		if (n == NULL)
			return 1;
		c->ids = n;
		c->cap = nc;
	}
	snprintf(c->ids[c->n++], SPOOL_ID_LEN + 1, "%s", e->id);
	return 0;
}

/* fwd_flush_unknown - schedule_advance_tag: does untagged id match? */
static int
fwd_flush_unknown(void *arg, const char *id)
{
	struct fwd_collect *c = arg;
	struct spool_envelope *e = spool_envelope_get(backmxd.spool, id);
	int n0 = c->n, hit;

	if (e == NULL)
		return 0;
	(void)fwd_collect_cb(c, e);
	hit = c->n > n0;
	c->n = n0;
	spool_envelope_free(e);
	return hit;
}

/*
 * fwd_dest_serves - is dest (a key "m:DOMAIN:TLS" or "s:HOST:PORT:TLS")
 * where mail for domain goes?  Its MX destination, or its static route.
 */
static int
fwd_dest_serves(const struct fwd_dest *dest, const char *domain)
{
	const struct policy_domain *pd =
	    policy_find_domain(backmxd.cfg->policy, domain);
	size_t dl = strlen(domain);
	char key[FWD_KEY_MAX];

	if (!strncmp(dest->key, "m:", 2) &&
	    !strncasecmp(dest->key + 2, domain, dl) && dest->key[2 + dl] == ':')
		return 1;
	if (pd == NULL || !pd->route_static)
		return 0;
	snprintf(key, sizeof(key), "s:%s:%d:%d", pd->route_host,
		 pd->route_port > 0 && pd->route_port <= 65535 ? pd->route_port
							      : 25, pd->tls);
	return !strcmp(dest->key, key);
}

/*
 * fwd_flush_match - make matching pending messages due now (drain_rate);
 * conn_only: only those deferred by a connection-level failure (a
 * recovered destination), never ones its primary deferred itself
 */
static int
fwd_flush_match(const char *domain, const char *key, int conn_only)
{
	struct fwd_collect c = {0};
	int i, rate = backmxd.cfg->drain_rate, n = 0;
	int64_t now = fwd_now();
	char mxdom[POLICY_DOMAIN_MAX + 1];

	c.domain = domain;
	c.key = key;
	c.pending_only = 1;
	c.conn_only = conn_only;
	c.skip_held = 1;
	/* the operator (or the primary, by ETRN) says: try now; a flush
	 * of one domain ends only the suspension of its destinations */
	for (struct fwd_dest *dd = fwd_dests; dd != NULL; dd = dd->next)
		if (key != NULL ? !strcmp(dd->key, key)
		    : domain == NULL || fwd_dest_serves(dd, domain)) {
			if (dd->dead_until > now && !conn_only)
				log_info("delivery to %s resumed by a flush "
					 "(was suspended: %.200s)", dd->key + 2,
					 dd->dead_why);
			dd->dead_until = 0;
		}
	if (conn_only) {
		/* a recovered destination: by the schedule's flags, reading
		 * only envelopes of flagged messages it cannot tell apart */
		uint32_t tag = 0;

		if (!strncmp(key, "m:", 2)) {
			const char *colon = strrchr(key + 2, ':');
			size_t len = colon ? (size_t)(colon - key - 2) : 0;

			if (len > 0 && len < sizeof(mxdom)) {
				memcpy(mxdom, key + 2, len);
				mxdom[len] = '\0';
				tag = fwd_domain_tag(mxdom);
			}
		}
		n = (int)schedule_advance_match(backmxd.sched, now, tag,
						FWD_SCHED_CONN,
						fwd_flush_unknown, &c);
		free(c.ids);
		fwd_arm();
		return n;
	}
	if (domain == NULL && key == NULL && rate <= 0) {
		/*
		 * Everything: the schedule holds every pending message that
		 * is neither held nor in flight (or waiting for a slot), so
		 * no envelope is read: O(n) in memory, a few ms for a
		 * million, where a spool scan stalls the loop for seconds.
		 */
		n = (int)schedule_advance_all(backmxd.sched, now);
		for (struct delivery *d = fwd_list; d != NULL; d = d->next)
			n++;
		fwd_arm();
		return n + (int)fwd_nwaiting;
	}
	if (key != NULL && domain == NULL && !strncmp(key, "m:", 2)) {
		/* an MX-routed destination ("m:DOMAIN:TLS") is its domain */
		const char *colon = strrchr(key + 2, ':');
		size_t len = colon ? (size_t)(colon - key - 2) : 0;

		if (len > 0 && len < sizeof(mxdom)) {
			memcpy(mxdom, key + 2, len);
			mxdom[len] = '\0';
			domain = mxdom;
		}
	}
	if (domain != NULL && rate <= 0) {
		/* one domain (ETRN, a recovered MX destination): by the
		 * entries' domain tags, reading only the envelopes of
		 * messages for several domains */
		c.domain = domain;
		n = (int)schedule_advance_tag(backmxd.sched, now,
					      fwd_domain_tag(domain),
					      fwd_flush_unknown, &c);
		for (struct delivery *d = fwd_list; d != NULL; d = d->next)
			if (!strcasecmp(d->domain, domain))
				n++;
		free(c.ids);
		fwd_arm();
		return n;
	}
	if (spool_scan(backmxd.spool, "", 0, fwd_collect_cb, &c) < 0) {
		free(c.ids);
		return -1;
	}
	for (i = 0; i < c.n; i++) {
		if (fwd_msg_inflight(c.ids[i]))
			continue;
		schedule_set(backmxd.sched, c.ids[i],
			     rate > 0 ? now + n / rate : now);
		n++;
	}
	free(c.ids);
	fwd_arm();
	/* every pending message counts, those in flight too */
	return c.n;
}

void
forward_presuspend(struct spool_envelope *e)
{
	int64_t now = fwd_now();
	int i;

	if (fwd_stopped || e->held)
		return;
	for (i = 0; i < e->nrcpt; i++) {
		struct spool_rcpt *rc = &e->rcpt[i];
		struct fwd_dest *dest;
		char key[FWD_KEY_MAX], buf[400];

		if (rc->state != SPOOL_RCPT_PENDING || rc->attempts > 0 ||
		    fwd_route(e, i, key, sizeof(key), NULL, NULL) < 0 ||
		    (dest = fwd_dest_find(key)) == NULL ||
		    !fwd_suspended(dest, 0))
			continue;
		snprintf(buf, sizeof(buf), "4.4.1 " FWD_SUSPENDED_TEXT "%.200s",
			 dest->dead_why);
		free(rc->last_error);
		if ((rc->last_error = strdup(buf)) == NULL)
			continue;
		rc->attempts = 1;
		rc->step = 1;
		rc->flags |= SPOOL_RCPT_F_CONN;
		rc->next_attempt = schedule_backoff(
		    backmxd.cfg->retry, backmxd.cfg->nretry, 1, now,
		    fwd_jitter_seed(e->id));
		if (rc->next_attempt > e->arrival + fwd_lifetime(e))
			rc->next_attempt = e->arrival + fwd_lifetime(e);
		if (rc->next_attempt <= now)
			rc->next_attempt = now + 1;
	}
}

/* forward_domain_suspended - for callout.c: is the destination that
 * mail for pd goes to suspended (nobody answered lately)? */
int
forward_domain_suspended(const struct policy_domain *pd, char *why,
			 size_t whylen)
{
	struct fwd_dest *dest;
	char key[FWD_KEY_MAX];

	if (pd->route_static)
		snprintf(key, sizeof(key), "s:%s:%d:%d", pd->route_host,
			 pd->route_port > 0 ? pd->route_port : 25, pd->tls);
	else
		snprintf(key, sizeof(key), "m:%s:%d", pd->name, pd->tls);
	if ((dest = fwd_dest_find(key)) == NULL ||
	    dest->dead_until <= fwd_now())
		return 0;
	snprintf(why, whylen, "%s", dest->dead_why);
	return 1;
}

void
forward_queued(const struct spool_envelope *e)
{
	int i;

	if (e->held)
		return;
	/* the deferrals forward_presuspend wrote with the message */
	for (i = 0; i < e->nrcpt; i++) {
		const struct spool_rcpt *rc = &e->rcpt[i];
		struct result r;

		if (rc->state != SPOOL_RCPT_PENDING || rc->attempts != 1 ||
		    rc->last_error == NULL || strlen(rc->last_error) < 6 ||
		    strncmp(rc->last_error + 6, FWD_SUSPENDED_TEXT,
			    sizeof(FWD_SUSPENDED_TEXT) - 1) != 0)
			continue;
		result_set(&r, 451, "4.4.1", "%s", rc->last_error + 6);
		fwd_log(e, i, NULL, &r, "deferred", 0);
		stats.deferred++;
	}
	fwd_reschedule(e);
	if (!fwd_stopped)
		fwd_arm();
}

int
forward_flush(const char *domain)
{
	return fwd_flush_match(domain, NULL, 0);
}

/* fwd_wake_dests - end the suspension of e's pending destinations */
static void
fwd_wake_dests(const struct spool_envelope *e)
{
	struct fwd_dest *dest;
	char key[FWD_KEY_MAX];
	int i;

	for (i = 0; i < e->nrcpt; i++)
		if (e->rcpt[i].state == SPOOL_RCPT_PENDING &&
		    fwd_route(e, i, key, sizeof(key), NULL, NULL) == 0 &&
		    (dest = fwd_dest_find(key)) != NULL)
			dest->dead_until = 0;
}

int
forward_flush_id(const char *id, int requeue)
{
	struct spool_envelope *e;
	int64_t now = fwd_now();
	int i, changed = 0;

	if (fwd_msg_inflight(id))
		return 1;
	if ((e = spool_envelope_get(backmxd.spool, id)) == NULL)
		return spool_errno(backmxd.spool) == SPOOL_ENOTFOUND ? 0 : -1;
	if (e->held) {
		spool_envelope_free(e);
		return 0;
	}
	for (i = 0; i < e->nrcpt; i++) {
		struct spool_rcpt *rc = &e->rcpt[i];

		if (rc->state != SPOOL_RCPT_PENDING)
			continue;
		changed = 1;
		if (requeue) {
			rc->attempts = 0;
			rc->next_attempt = now;
		}
	}
	if (!changed) {
		spool_envelope_free(e);
		return 0;
	}
	if (requeue && spool_envelope_put(backmxd.spool, e) < 0) {
		log_err("%s: cannot update the spool: %s", id,
			spool_error(backmxd.spool));
		spool_envelope_free(e);
		return -1;
	}
	fwd_wake_dests(e);
	if (requeue)
		log_msg(id, "requeued by the operator");
	/* one waiting for a destination slot is taken back from its FIFO
	 * (fwd_wait_release skips ids the schedule holds) */
	schedule_set(backmxd.sched, id, now);
	spool_envelope_free(e);
	fwd_arm();
	return 1;
}

static int
fwd_is_id(const char *s)
{
	size_t i;

	if (strlen(s) != SPOOL_ID_LEN)
		return 0;
	for (i = 0; i < SPOOL_ID_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f') ||
		      (s[i] >= 'A' && s[i] <= 'F')))
			return 0;
	return 1;
}

static int
fwd_hold_one(const char *id, int hold)
{
	struct spool_envelope *e = spool_envelope_get(backmxd.spool, id);
	int i;

	if (e == NULL)
		return -1;
	if ((e->held != 0) == (hold != 0)) {
		spool_envelope_free(e);
		return 0;
	}
	e->held = hold;
	if (!hold)
		for (i = 0; i < e->nrcpt; i++)
			if (e->rcpt[i].state == SPOOL_RCPT_PENDING &&
			    e->rcpt[i].next_attempt > fwd_now())
				e->rcpt[i].next_attempt = fwd_now();
	if (spool_envelope_put(backmxd.spool, e) < 0) {
		log_err("%s: cannot update the spool: %s", id,
			spool_error(backmxd.spool));
		spool_envelope_free(e);
		return -1;
	}
	log_msg(id, "%s by the operator", hold ? "held" : "released");
	if (hold)
		schedule_remove(backmxd.sched, id);
	else
		fwd_reschedule(e);
	spool_envelope_free(e);
	return 1;
}

int
forward_hold(const char *id_or_domain, int hold)
{
	struct fwd_collect c = {0};
	int i, n = 0;

	if (fwd_is_id(id_or_domain)) {
		char id[SPOOL_ID_LEN + 1];

		for (i = 0; i <= SPOOL_ID_LEN; i++)
			id[i] = (char)(id_or_domain[i] >= 'A' &&
						   id_or_domain[i] <= 'F'
					       ? id_or_domain[i] + 32
					       : id_or_domain[i]);
		n = fwd_hold_one(id, hold);
		if (n >= 0) {
			fwd_arm();
			return n;
		}
		/* fall through: maybe a domain that looks like hex */
	}
	c.domain = id_or_domain;
	if (spool_scan(backmxd.spool, "", 0, fwd_collect_cb, &c) < 0) {
		free(c.ids);
		return -1;
	}
	if (c.n == 0) {
		free(c.ids);
		return -1;
	}
	n = 0;
	for (i = 0; i < c.n; i++)
		if (fwd_hold_one(c.ids[i], hold) > 0)
			n++;
	free(c.ids);
	fwd_arm();
	return n;
}

/* fwd_abort_msg - stop deliveries of id without recording results */
static void
fwd_abort_msg(const char *id)
{
	struct delivery *d, *next;

	for (d = fwd_list; d != NULL; d = next) {
		next = d->next;
		if (!strcmp(d->id, id))
			fwd_delivery_free(d);
	}
}

int
forward_delete(const char *id)
{
	struct spool_envelope *e = spool_envelope_get(backmxd.spool, id);

	if (e == NULL)
		return -1;
	spool_envelope_free(e);
	fwd_abort_msg(id);
	schedule_remove(backmxd.sched, id);
	if (spool_message_delete(backmxd.spool, id) < 0) {
		log_err("%s: cannot remove from the spool: %s", id,
			spool_error(backmxd.spool));
		return -1;
	}
	log_msg(id, "removed by the operator");
	fwd_wait_release_all();
	fwd_arm();
	return 0;
}

int
forward_bounce(const char *id)
{
	struct spool_envelope *e = spool_envelope_get(backmxd.spool, id);

	if (e == NULL)
		return -1;
	fwd_abort_msg(id);
	schedule_remove(backmxd.sched, id);
	fwd_expire_now(e, "delivery cancelled by the operator");
	spool_envelope_free(e);
	fwd_wait_release_all();
	fwd_arm();
	return 0;
}

void
forward_shutdown(void)
{
	struct fwd_dest *dd;

	fwd_stopped = 1;
	if (backmxd.loop != NULL)
		ev_timer_stop(backmxd.loop, &fwd_timer);
	while (fwd_list != NULL)
		fwd_delivery_free(fwd_list);
	while ((dd = fwd_dests) != NULL) {
		fwd_dests = dd->next;
		smtp_client_free(dd->idle);
		if (dd->wait != NULL)
			schedule_free(dd->wait);
		free(dd);
	}
	fwd_nwaiting = 0;
}
