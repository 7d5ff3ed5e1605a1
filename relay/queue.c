/*
 * queue.c - the forwarder (forward.h): one ev_timer on the schedule's
 * earliest entry; due messages are split into jobs (one per message and
 * destination), jobs wait on their destination until a connection slot
 * is free (max_deliveries, max_per_destination), connections resolve the
 * route (static, percent hack, or MX with the backup-MX cut), try every
 * address in order, and send the destination's waiting jobs one after
 * the other on the same connection.  Results go back into the spool
 * envelope; 5xx and expired recipients are bounced through dsn.c.
 */
#include <sys/queue.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "backmxd.h"
#include "client.h"
#include "dns.h"
#include "dsn.h"
#include "forward.h"
#include "log.h"
#include "stats.h"

#define QUEUE_MX_MAX 16
#define QUEUE_ADDR_MAX 8
#define QUEUE_KEY_MAX (POLICY_DOMAIN_MAX + 16)
#define QUEUE_DESTS_KEEP 1000	/* idle failed destinations remembered */
#define QUEUE_TLSA_MAX 8
#define QUEUE_TLSA_LEN 128

enum queue_kind {
	DEST_MX,	/* MX records of name */
	DEST_HOST,	/* A/AAAA of name */
	DEST_LITERAL,	/* name is an address */
};

struct queue_job {
	TAILQ_ENTRY(queue_job) entry;
	char id[SPOOL_ID_LEN + 1];
	int n;
	int *idx;			/* recipient indices */
	struct spool_envelope *env;	/* while sending */
	struct result *res;
	int *remote;
	struct client_tx tx;
};
TAILQ_HEAD(queue_jobs, queue_job);

struct queue_dest {
	TAILQ_ENTRY(queue_dest) entry;
	char key[QUEUE_KEY_MAX];
	enum queue_kind kind;
	char name[POLICY_DOMAIN_MAX + 1];
	int port;
	int tls;
	int nconn;
	int failed;		/* the last connection attempt failed */
	struct queue_jobs jobs;	/* waiting for a connection */
};

struct queue_mx {
	char host[POLICY_DOMAIN_MAX + 1];
	int pref;
	int self;
	struct sockaddr_storage addr[QUEUE_ADDR_MAX];
	int naddr;
	int nodata;		/* lookups said: no such address */
	struct dns_query *qa, *qaaaa;
};

struct queue_conn {
	TAILQ_ENTRY(queue_conn) entry;
	struct queue_dest *d;
	struct queue_job *job;
	struct dns_query *qmx;
	struct queue_mx mx[QUEUE_MX_MAX];
	int nmx, mxi, ai, pending, implicit, cut;
	struct client *c;
	struct result err;
	char relay[POLICY_DOMAIN_MAX + 80];
	int no_starttls;	/* retry this address in clear (tls may) */
	/* DANE: TLSA records of host mx[tlsa_for] */
	struct dns_query *qtlsa;
	int tlsa_for;
	struct dns_tlsa tlsa[QUEUE_TLSA_MAX];
	uint8_t tlsadata[QUEUE_TLSA_MAX][QUEUE_TLSA_LEN];
	int ntlsa;
};

/* a message with jobs in flight */
struct queue_msg {
	LIST_ENTRY(queue_msg) entry;
	char id[SPOOL_ID_LEN + 1];
	int njobs;
};

static TAILQ_HEAD(, queue_dest) queue_dests =
    TAILQ_HEAD_INITIALIZER(queue_dests);
static TAILQ_HEAD(, queue_conn) queue_conns =
    TAILQ_HEAD_INITIALIZER(queue_conns);
static LIST_HEAD(, queue_msg) queue_msgs = LIST_HEAD_INITIALIZER(queue_msgs);
static ev_timer queue_timer;
static ev_prepare queue_prepare;
static int queue_started;
static int queue_dirty;		/* envelopes changed since the last sync */
static int queue_nconn;
static int queue_ndests;

static void queue_conn_next(struct queue_conn *q);
static void queue_conn_end(struct queue_conn *q);
static void queue_dispatch(void);

static int64_t
queue_now(void)
{
	return (int64_t)time(NULL);
}

static unsigned
queue_rnd(unsigned n)
{
	return n ? (unsigned)random() % n : 0;
}

/* ------------------------------------------------------------------ */
/* schedule timer */

/* queue_rearm - timer at the schedule's earliest entry */
static void
queue_rearm(void)
{
	char id[SPOOL_ID_LEN + 1];
	int64_t t, now = queue_now();
	double after;

	if (!queue_started)
		return;
	ev_timer_stop(backmxd.loop, &queue_timer);
	if (!schedule_peek(backmxd.sched, &t, id))
		return;
	after = t > now ? (double)(t - now) : 0.;
	ev_timer_set(&queue_timer, after, 0.);
	ev_timer_start(backmxd.loop, &queue_timer);
}

static struct queue_msg *
queue_msg_find(const char *id)
{
	struct queue_msg *m;

	LIST_FOREACH(m, &queue_msgs, entry)
		if (strcmp(m->id, id) == 0)
			return m;
	return NULL;
}

static long
queue_lifetime(const char *domain)
{
	const struct config *cfg = backmxd.cfg;
	const struct policy_domain *d = policy_find_domain(cfg->policy, domain);

	if (d != NULL && d->queue_lifetime > 0)
		return d->queue_lifetime;
	return cfg->queue_lifetime;
}

static const char *
queue_rcpt_domain(const char *address)
{
	const char *at = strrchr(address, '@');

	return at ? at + 1 : "";
}

/*
 * queue_rcpt_dest - the destination key of a recipient and its parts;
 * -1 when the recipient's domain is no longer ours.
 */
static int
queue_rcpt_dest(const struct spool_envelope *e, const struct spool_rcpt *r,
		char key[QUEUE_KEY_MAX], enum queue_kind *kind,
		char name[POLICY_DOMAIN_MAX + 1], int *port, int *tls)
{
	const struct policy_domain *d;
	const char *dom = queue_rcpt_domain(r->address);
	struct in6_addr a6;
	struct in_addr a4;

	*tls = POLICY_TLS_MAY;
	*port = 25;
	if (r->route != NULL && r->route[0] != '\0') {
		const char *colon = strrchr(r->route, ':');
		size_t hl = colon ? (size_t)(colon - r->route)
				  : strlen(r->route);
		const char *h = r->route;

		if (colon)
			*port = atoi(colon + 1);
		if (*port <= 0 || *port > 65535)
			*port = 25;
		if (hl > 1 && h[0] == '[' && h[hl - 1] == ']') {
			h++;
			hl -= 2;
		}
		if (hl > POLICY_DOMAIN_MAX)
			hl = POLICY_DOMAIN_MAX;
		memcpy(name, h, hl);
		name[hl] = '\0';
		*kind = inet_pton(AF_INET, name, &a4) == 1 ||
				inet_pton(AF_INET6, name, &a6) == 1
			    ? DEST_LITERAL
			    : DEST_HOST;
		if ((d = policy_find_domain(backmxd.cfg->policy, dom)))
			*tls = d->tls;
		snprintf(key, QUEUE_KEY_MAX, "route:%s:%d", name, *port);
		return 0;
	}
	d = policy_find_domain(backmxd.cfg->policy, dom);
	if (d == NULL && !e->is_bounce)
		return -1;
	if (d != NULL && d->route_static) {
		snprintf(name, POLICY_DOMAIN_MAX + 1, "%s", d->route_host);
		*port = d->route_port > 0 ? d->route_port : 25;
		*kind = d->route_literal ? DEST_LITERAL : DEST_HOST;
		*tls = d->tls;
		snprintf(key, QUEUE_KEY_MAX, "route:%s:%d", name, *port);
		return 0;
	}
	snprintf(name, POLICY_DOMAIN_MAX + 1, "%s", dom);
	for (char *p = name; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	*kind = DEST_MX;
	if (d != NULL)
		*tls = d->tls;
	snprintf(key, QUEUE_KEY_MAX, "mx:%s", name);
	return 0;
}

static struct queue_dest *
queue_dest_get(const char *key, enum queue_kind kind, const char *name,
	       int port, int tls)
{
	struct queue_dest *d;

	TAILQ_FOREACH(d, &queue_dests, entry)
		if (strcmp(d->key, key) == 0) {
			d->tls = tls;
			return d;
		}
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	snprintf(d->key, sizeof(d->key), "%s", key);
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->kind = kind;
	d->port = port;
	d->tls = tls;
	TAILQ_INIT(&d->jobs);
	TAILQ_INSERT_TAIL(&queue_dests, d, entry);
	queue_ndests++;
	return d;
}

/*
 * queue_dest_gc - forget an idle destination (bounces create one per
 * sender domain); one that failed last is kept for the auto-flush
 * unless there are many.
 */
static void
queue_dest_gc(struct queue_dest *d)
{
	if (d->nconn > 0 || !TAILQ_EMPTY(&d->jobs))
		return;
	if (d->failed && queue_ndests <= QUEUE_DESTS_KEEP)
		return;
	TAILQ_REMOVE(&queue_dests, d, entry);
	queue_ndests--;
	free(d);
}

static void
queue_job_free(struct queue_job *j)
{
	if (j == NULL)
		return;
	spool_envelope_free(j->env);
	free(j->idx);
	free(j->res);
	free(j->remote);
	free(j);
}

/* ------------------------------------------------------------------ */
/* Recording results */

/* queue_next_time - earliest next attempt of a pending rcpt, or -1 */
static int64_t
queue_next_time(const struct spool_envelope *e)
{
	int64_t t = -1;

	for (int i = 0; i < e->nrcpt; i++)
		if (e->rcpt[i].state == SPOOL_RCPT_PENDING &&
		    (t < 0 || e->rcpt[i].next_attempt < t))
			t = e->rcpt[i].next_attempt;
	return t;
}

/* queue_msg_settle - no job left: reschedule or remove the message */
static void
queue_msg_settle(const char *id)
{
	struct spool_envelope *e;
	int64_t t;

	if ((e = spool_envelope_get(backmxd.spool, id)) == NULL) {
		schedule_remove(backmxd.sched, id);
		return;
	}
	t = queue_next_time(e);
	if (t < 0) {
		schedule_remove(backmxd.sched, id);
		queue_dirty = 1;
		if (spool_message_delete(backmxd.spool, id) < 0) {
			/* e.g. a full disk: try again on the retry clock */
			log_warn("%s: cannot remove from the spool: %s", id,
				 spool_error(backmxd.spool));
			schedule_set(backmxd.sched, id,
				     queue_now() + (backmxd.cfg->nretry > 0
						    ? backmxd.cfg->retry[0]
						    : 60));
		} else
			log_msg(id, "removed");
	} else if (!e->held)
		schedule_set(backmxd.sched, id, t);
	spool_envelope_free(e);
}

static void
queue_set_error(struct spool_rcpt *r, const struct result *res)
{
	char buf[400];

	snprintf(buf, sizeof(buf), "%s %s", res->enh, res->text);
	free(r->last_error);
	r->last_error = strdup(buf);
}

/*
 * queue_record - results of recipients idx[0..n) of message id: update
 * the envelope, log, bounce what failed, settle the message when no job
 * of it is left (njobs_done: this was one of its jobs).
 */
static void
queue_record(const char *id, const int *idx, int n, const struct result *res,
	     const int *remote, const char *relay, int job_done)
{
	struct spool_envelope *e;
	struct queue_msg *m;
	struct dsn_item *items = NULL;
	int nitems = 0;
	int64_t now = queue_now();
	double delay;

	e = spool_envelope_get(backmxd.spool, id);
	if (e != NULL && (items = calloc((size_t)n + 1, sizeof(*items))) == NULL) {
		spool_envelope_free(e);
		e = NULL;
	}
	for (int k = 0; e != NULL && k < n; k++) {
		struct spool_rcpt *r;
		struct result rr = res[k];
		const char *status;

		if (idx[k] < 0 || idx[k] >= e->nrcpt)
			continue;
		r = &e->rcpt[idx[k]];
		if (r->state != SPOOL_RCPT_PENDING)
			continue;
		delay = ev_time() - (double)e->arrival;
		if (rr.code / 100 == 2) {
			r->state = SPOOL_RCPT_DELIVERED;
			free(r->last_error);
			r->last_error = NULL;
			status = "sent";
			stats.delivered++;
		} else if (rr.code / 100 == 5 && rr.enh[0] == '5' &&
			   strcmp(rr.enh, "5.4.6") != 0) {
			r->state = SPOOL_RCPT_FAILED;
			queue_set_error(r, &rr);
			status = "bounced";
			stats.bounced++;
		} else {
			r->attempts++;
			if (e->arrival + queue_lifetime(queue_rcpt_domain(
					     r->address)) <= now) {
				struct result ex;

				result_set(&ex, 554, "4.4.7",
					   "delivery time expired (last error: "
					   "%.160s)", rr.text);
				rr = ex;
				r->state = SPOOL_RCPT_FAILED;
				queue_set_error(r, &rr);
				status = "bounced";
				stats.bounced++;
			} else {
				r->next_attempt = schedule_backoff(
				    backmxd.cfg->retry, backmxd.cfg->nretry,
				    r->attempts, now,
				    (unsigned)random() | 1u);
				queue_set_error(r, &rr);
				status = "deferred";
				stats.deferred++;
			}
		}
		if (remote[k])
			log_msg(e->id, "to=<%s>, relay=%s, delay=%.1f, dsn=%s, "
				"status=%s (host %.*s said: %d %s %s)",
				r->address, relay, delay, rr.enh, status,
				(int)strcspn(relay, "]") + 1, relay, rr.code,
				rr.enh, rr.text);
		else
			log_msg(e->id, "to=<%s>, relay=%s, delay=%.1f, dsn=%s, "
				"status=%s (%s)", r->address, relay, delay,
				rr.enh, status, rr.text);
		if (r->state == SPOOL_RCPT_FAILED) {
			items[nitems].rcpt = idx[k];
			items[nitems].res = rr;
			items[nitems].remote = remote[k];
			snprintf(items[nitems].remote_mta,
				 sizeof(items[nitems].remote_mta), "%s",
				 remote[k] ? relay : "");
			items[nitems].last_attempt = now;
			nitems++;
		}
	}
	if (e != NULL) {
		queue_dirty = 1;
		if (spool_envelope_put(backmxd.spool, e) < 0)
			log_warn("%s: cannot update the spool: %s", id,
				 spool_error(backmxd.spool));
		if (nitems > 0)
			dsn_bounce(e, items, nitems, now);
	}
	spool_envelope_free(e);
	free(items);
	if (job_done && (m = queue_msg_find(id)) != NULL && --m->njobs <= 0) {
		LIST_REMOVE(m, entry);
		free(m);
	}
	if (queue_msg_find(id) == NULL)
		queue_msg_settle(id);
	queue_rearm();
}

/* queue_job_finish_all - every recipient of j gets r (local, no relay) */
static void
queue_job_result(struct queue_job *j, const struct result *r,
		 const char *relay, int remote)
{
	for (int k = 0; k < j->n; k++) {
		j->res[k] = *r;
		j->remote[k] = remote;
	}
	queue_record(j->id, j->idx, j->n, j->res, j->remote, relay, 1);
	queue_job_free(j);
}

/* ------------------------------------------------------------------ */
/* Connections */

static void
queue_conn_fail_all(struct queue_conn *q, const struct result *r)
{
	struct queue_job *j;
	struct result rr = *r;
	const char *relay = q->relay[0] ? q->relay : "none";

	if (q->job != NULL) {
		j = q->job;
		q->job = NULL;
		queue_job_result(j, &rr, relay, 0);
	}
	/* the other waiting jobs of this destination share the verdict */
	while ((j = TAILQ_FIRST(&q->d->jobs)) != NULL) {
		TAILQ_REMOVE(&q->d->jobs, j, entry);
		queue_job_result(j, &rr, relay, 0);
	}
}

static void
queue_conn_end(struct queue_conn *q)
{
	if (q->qmx)
		dns_cancel(q->qmx);
	if (q->qtlsa)
		dns_cancel(q->qtlsa);
	for (int i = 0; i < q->nmx; i++) {
		if (q->mx[i].qa)
			dns_cancel(q->mx[i].qa);
		if (q->mx[i].qaaaa)
			dns_cancel(q->mx[i].qaaaa);
	}
	if (q->c)
		client_free(q->c);
	if (q->job) {
		/* not sent: back to waiting */
		TAILQ_INSERT_HEAD(&q->d->jobs, q->job, entry);
		q->job = NULL;
	}
	q->d->nconn--;
	queue_nconn--;
	if (stats.deliveries_active > 0)
		stats.deliveries_active--;
	TAILQ_REMOVE(&queue_conns, q, entry);
	queue_dest_gc(q->d);
	free(q);
	queue_dispatch();
}

static int
queue_addr_is_own(const struct sockaddr_storage *a)
{
	for (int i = 0; i < backmxd.nown_addrs; i++) {
		const struct sockaddr_storage *o = &backmxd.own_addrs[i];

		if (o->ss_family != a->ss_family)
			continue;
		if (a->ss_family == AF_INET &&
		    ((const struct sockaddr_in *)o)->sin_addr.s_addr ==
			((const struct sockaddr_in *)a)->sin_addr.s_addr)
			return 1;
		if (a->ss_family == AF_INET6 &&
		    memcmp(&((const struct sockaddr_in6 *)o)->sin6_addr,
			   &((const struct sockaddr_in6 *)a)->sin6_addr,
			   16) == 0)
			return 1;
	}
	return 0;
}

/* queue_conn_resolved - every MX host looked up: cut, then connect */
static void
queue_conn_resolved(struct queue_conn *q)
{
	struct policy_mx pm[QUEUE_MX_MAX];
	struct queue_mx sorted[QUEUE_MX_MAX];
	struct result r;
	int n = q->nmx, before = q->nmx, anyaddr = 0, alltemp = 1;
	enum policy_mx_verdict v;

	if (q->d->kind == DEST_MX && !q->implicit) {
		for (int i = 0; i < n; i++) {
			snprintf(pm[i].host, sizeof(pm[i].host), "%s",
				 q->mx[i].host);
			pm[i].pref = q->mx[i].pref;
			pm[i].self = 0;
			for (int a = 0; a < q->mx[i].naddr; a++)
				if (queue_addr_is_own(&q->mx[i].addr[a]))
					pm[i].self = 1;
		}
		v = policy_mx_cut(backmxd.cfg->policy, pm, &n, queue_rnd);
		if (v == POLICY_MX_SELF_BEST) {
			result_set(&r, 450, "5.4.6",
				   "mail for %s loops back to myself",
				   q->d->name);
			queue_conn_fail_all(q, &r);
			queue_conn_end(q);
			return;
		}
		if (v == POLICY_MX_NULL) {
			result_set(&r, 550, "5.1.10",
				   "%s does not accept mail (null MX)",
				   q->d->name);
			queue_conn_fail_all(q, &r);
			queue_conn_end(q);
			return;
		}
		/* reorder q->mx by the cut's order */
		for (int i = 0; i < n; i++) {
			for (int k = 0; k < q->nmx; k++)
				if (strcmp(q->mx[k].host, pm[i].host) == 0 &&
				    q->mx[k].pref == pm[i].pref &&
				    q->mx[k].host[0] != '\0') {
					sorted[i] = q->mx[k];
					q->mx[k].host[0] = '\0';
					break;
				}
		}
		memcpy(q->mx, sorted, sizeof(sorted[0]) * (size_t)n);
		q->nmx = n;
		q->cut = n < before;
	}
	if (q->implicit) {
		/* no MX: the domain's own address must not be us */
		for (int a = 0; a < q->mx[0].naddr; a++)
			if (queue_addr_is_own(&q->mx[0].addr[a]) ||
			    policy_is_own_name(backmxd.cfg->policy,
					       q->mx[0].host)) {
				result_set(&r, 450, "5.4.6",
					   "mail for %s loops back to myself",
					   q->d->name);
				queue_conn_fail_all(q, &r);
				queue_conn_end(q);
				return;
			}
	}
	for (int i = 0; i < q->nmx; i++) {
		if (q->mx[i].naddr > 0)
			anyaddr = 1;
		if (!q->mx[i].nodata)
			alltemp = 0;
	}
	if (!anyaddr) {
		if (q->cut || q->nmx == 0)
			result_set(&r, 451, "4.4.4",
				   "unable to find primary relay for %s",
				   q->d->name);
		else if (alltemp && q->implicit)
			result_set(&r, 550, "5.1.2",
				   "host or domain name not found: %s has no "
				   "MX and no address", q->d->name);
		else
			result_set(&r, 451, "4.4.3",
				   "no address found for the hosts of %s",
				   q->d->name);
		queue_conn_fail_all(q, &r);
		queue_conn_end(q);
		return;
	}
	q->mxi = 0;
	q->ai = 0;
	result_set(&q->err, 451, "4.4.1", "no usable address for %s",
		   q->d->name);
	queue_conn_next(q);
}

static void
queue_addr_cb(void *arg, const struct dns_result *r, int aaaa)
{
	struct queue_mx *m = arg;
	struct queue_conn *q = NULL, *it;

	/* find the owner: arg points into a conn's mx array */
	TAILQ_FOREACH(it, &queue_conns, entry)
		if (m >= it->mx && m < it->mx + QUEUE_MX_MAX) {
			q = it;
			break;
		}
	if (aaaa)
		m->qaaaa = NULL;
	else
		m->qa = NULL;
	if (q == NULL)
		return;
	if (r->status == DNS_OK) {
		for (int i = 0; i < r->n && m->naddr < QUEUE_ADDR_MAX; i++)
			m->addr[m->naddr++] = r->addr[i];
	} else if (r->status != DNS_NODATA && r->status != DNS_NXDOMAIN)
		m->nodata = 0;
	if (--q->pending == 0)
		queue_conn_resolved(q);
}

static void
queue_a_cb(void *arg, const struct dns_result *r)
{
	queue_addr_cb(arg, r, 0);
}

static void
queue_aaaa_cb(void *arg, const struct dns_result *r)
{
	queue_addr_cb(arg, r, 1);
}

/* queue_conn_lookup_addrs - A and AAAA of every host, in parallel */
static void
queue_conn_lookup_addrs(struct queue_conn *q)
{
	q->pending = 0;
	for (int i = 0; i < q->nmx; i++) {
		q->mx[i].nodata = 1;
		q->mx[i].qa = dns_query(backmxd.dns, q->mx[i].host, DNS_T_A,
					queue_a_cb, &q->mx[i]);
		if (q->mx[i].qa)
			q->pending++;
		q->mx[i].qaaaa = dns_query(backmxd.dns, q->mx[i].host,
					   DNS_T_AAAA, queue_aaaa_cb,
					   &q->mx[i]);
		if (q->mx[i].qaaaa)
			q->pending++;
	}
	if (q->pending == 0) {
		struct result r;

		result_set(&r, 451, "4.4.3", "cannot start DNS lookups for %s",
			   q->d->name);
		queue_conn_fail_all(q, &r);
		queue_conn_end(q);
	}
}

static void
queue_mx_cb(void *arg, const struct dns_result *r)
{
	struct queue_conn *q = arg;
	struct result res;

	q->qmx = NULL;
	switch (r->status) {
	case DNS_NXDOMAIN:
		result_set(&res, 550, "5.1.2",
			   "host or domain name not found: %s (%s)",
			   q->d->name, r->why[0] ? r->why : "NXDOMAIN");
		goto fail;
	case DNS_TEMPFAIL:
	case DNS_BOGUS:
		result_set(&res, 451, "4.4.3",
			   "MX lookup of %s failed: %s", q->d->name,
			   r->why[0] ? r->why : dns_status_str(r->status));
		goto fail;
	case DNS_NODATA:
		q->implicit = 1;
		q->nmx = 1;
		snprintf(q->mx[0].host, sizeof(q->mx[0].host), "%s",
			 q->d->name);
		q->mx[0].pref = 0;
		break;
	case DNS_OK:
		for (int i = 0; i < r->n; i++)
			if (r->mx[i].host[0] == '\0') {
				result_set(&res, 550, "5.1.10",
					   "%s does not accept mail (null MX)",
					   q->d->name);
				goto fail;
			}
		for (int i = 0; i < r->n && q->nmx < QUEUE_MX_MAX; i++) {
			snprintf(q->mx[q->nmx].host, sizeof(q->mx[0].host),
				 "%s", r->mx[i].host);
			q->mx[q->nmx].pref = r->mx[i].pref;
			q->nmx++;
		}
		if (q->nmx == 0) {
			result_set(&res, 451, "4.4.3", "no MX for %s",
				   q->d->name);
			goto fail;
		}
		break;
	}
	queue_conn_lookup_addrs(q);
	return;
fail:
	queue_conn_fail_all(q, &res);
	queue_conn_end(q);
}

static void queue_client_cb(void *arg, struct client *c, int event,
			    const struct result *r);

/* queue_send_job - load the job's envelope and start its transaction */
static void
queue_send_job(struct queue_conn *q)
{
	struct queue_job *j;

	for (;;) {
		j = q->job;
		if (j == NULL) {
			if ((j = TAILQ_FIRST(&q->d->jobs)) == NULL) {
				client_quit(q->c);
				q->c = NULL;
				queue_conn_end(q);
				return;
			}
			TAILQ_REMOVE(&q->d->jobs, j, entry);
			q->job = j;
		}
		j->env = spool_envelope_get(backmxd.spool, j->id);
		if (j->env == NULL) {
			/* deleted meanwhile */
			q->job = NULL;
			queue_record(j->id, j->idx, 0, j->res, j->remote,
				     q->relay, 1);
			queue_job_free(j);
			continue;
		}
		j->tx.spool = backmxd.spool;
		j->tx.env = j->env;
		j->tx.nrcpt = j->n;
		j->tx.rcpt = j->idx;
		j->tx.res = j->res;
		j->tx.remote = j->remote;
		if (client_send(q->c, &j->tx) == 0)
			return;
		/* this server cannot take it: results are filled */
		q->job = NULL;
		for (int k = 0; k < j->n; k++)
			j->remote[k] = 0;
		queue_record(j->id, j->idx, j->n, j->res, j->remote,
			     q->relay, 1);
		queue_job_free(j);
	}
}

/* queue_autoflush - the destination works again: its mail is due now */
static void queue_autoflush(struct queue_dest *d);

static void
queue_client_cb(void *arg, struct client *c, int event,
		const struct result *r)
{
	struct queue_conn *q = arg;
	struct queue_job *j;
	int ok = 0;

	switch (event) {
	case CLIENT_READY:
		snprintf(q->relay, sizeof(q->relay), "%s", client_relay(c));
		if (client_tls(c) != NULL)
			log_info("TLS connection established to %s: %s",
				 q->relay, client_tls(c));
		queue_send_job(q);
		return;
	case CLIENT_FAILED:
		q->c = NULL;
		if (q->job != NULL && q->job->env != NULL) {
			client_free(c);
			/* failed inside a transaction: results are filled */
			j = q->job;
			q->job = NULL;
			queue_record(j->id, j->idx, j->n, j->res, j->remote,
				     q->relay, 1);
			queue_job_free(j);
			queue_conn_end(q);
			return;
		}
		q->err = *r;
		q->d->failed = 1;
		if (client_tls_failed(c) && !q->no_starttls &&
		    (q->d->tls == POLICY_TLS_MAY ||
		     (q->d->tls == POLICY_TLS_DANE && q->ntlsa == 0))) {
			/* opportunistic TLS broke: same address in clear */
			log_info("%s: %s; retrying in clear", q->relay, r->text);
			q->no_starttls = 1;
		} else {
			q->no_starttls = 0;
			q->ai++;
		}
		q->c = NULL;
		client_free(c);
		queue_conn_next(q);
		return;
	case CLIENT_DONE:
		j = q->job;
		q->job = NULL;
		if (client_tls(c) != NULL)
			stats.tls_outbound++;
		for (int k = 0; k < j->n; k++) {
			if (j->res[k].code / 100 == 2)
				ok = 1;
			else if (j->res[k].code / 100 == 4)
				q->d->failed = 1;
		}
		if (ok && q->d->failed) {
			q->d->failed = 0;
			queue_autoflush(q->d);
		}
		queue_record(j->id, j->idx, j->n, j->res, j->remote, q->relay,
			     1);
		queue_job_free(j);
		if (!client_usable(c)) {
			queue_conn_end(q);
			return;
		}
		queue_send_job(q);
		return;
	}
}

static void
queue_tlsa_cb(void *arg, const struct dns_result *r)
{
	struct queue_conn *q = arg;

	q->qtlsa = NULL;
	q->ntlsa = 0;
	q->tlsa_for = q->mxi;
	if (r->status == DNS_TEMPFAIL || r->status == DNS_BOGUS) {
		/* RFC 7672 2.2: a host whose TLSA lookup fails is unusable */
		result_set(&q->err, 451, "4.7.5", "TLSA lookup for %s failed: "
			   "%s", q->mx[q->mxi].host,
			   r->why[0] ? r->why : dns_status_str(r->status));
		q->mxi++;
		q->ai = 0;
	} else if (r->status == DNS_OK && r->secure) {
		for (int i = 0; i < r->n && q->ntlsa < QUEUE_TLSA_MAX; i++) {
			if (r->tlsa[i].len > QUEUE_TLSA_LEN)
				continue;
			q->tlsa[q->ntlsa] = r->tlsa[i];
			memcpy(q->tlsadata[q->ntlsa], r->tlsa[i].data,
			       r->tlsa[i].len);
			q->tlsa[q->ntlsa].data = q->tlsadata[q->ntlsa];
			q->ntlsa++;
		}
	}
	queue_conn_next(q);
}

/* queue_conn_next - connect to the next address, or give up */
static void
queue_conn_next(struct queue_conn *q)
{
	const struct config *cfg = backmxd.cfg;
	struct client_params p;
	struct result r;

	while (q->mxi < q->nmx) {
		struct queue_mx *m = &q->mx[q->mxi];

		if (q->ai >= m->naddr) {
			q->mxi++;
			q->ai = 0;
			continue;
		}
		if (q->d->tls == POLICY_TLS_DANE && q->tlsa_for != q->mxi) {
			char name[POLICY_DOMAIN_MAX + 32];

			snprintf(name, sizeof(name), "_%d._tcp.%s", q->d->port,
				 m->host);
			q->qtlsa = dns_query(backmxd.dns, name, DNS_T_TLSA,
					     queue_tlsa_cb, q);
			if (q->qtlsa != NULL)
				return;
			q->tlsa_for = q->mxi;
			q->ntlsa = 0;
		}
		memset(&p, 0, sizeof(p));
		p.cfg = cfg;
		p.no_starttls = q->no_starttls;
		if (q->d->tls == POLICY_TLS_DANE) {
			p.tlsa = q->tlsa;
			p.ntlsa = q->ntlsa;
		}
		p.helo = cfg->hostname;
		p.mxhost = m->host;
		p.addr = m->addr[q->ai];
		if (p.addr.ss_family == AF_INET6)
			((struct sockaddr_in6 *)&p.addr)->sin6_port =
			    htons((uint16_t)q->d->port);
		else
			((struct sockaddr_in *)&p.addr)->sin_port =
			    htons((uint16_t)q->d->port);
		p.tls = q->d->tls;
		p.connect_timeout = cfg->connect_timeout;
		p.command_timeout = cfg->command_timeout;
		p.data_timeout = cfg->data_timeout;
		q->c = client_new(backmxd.loop, &p, queue_client_cb, q);
		if (q->c != NULL) {
			snprintf(q->relay, sizeof(q->relay), "%s",
				 client_relay(q->c));
			return;
		}
		q->ai++;
	}
	/* every address failed: defer with the last error */
	r = q->err;
	if (r.code / 100 != 4) {
		r.code = 451;
		if (r.enh[0] == '5')
			r.enh[0] = '4';
	}
	queue_conn_fail_all(q, &r);
	queue_conn_end(q);
}

/* queue_conn_start - a connection for d, sending job j first */
static void
queue_conn_start(struct queue_dest *d, struct queue_job *j)
{
	struct queue_conn *q;
	struct result r;

	if ((q = calloc(1, sizeof(*q))) == NULL) {
		TAILQ_INSERT_HEAD(&d->jobs, j, entry);
		return;
	}
	q->d = d;
	q->job = j;
	q->tlsa_for = -1;
	d->nconn++;
	queue_nconn++;
	stats.deliveries_active++;
	TAILQ_INSERT_TAIL(&queue_conns, q, entry);
	if (d->kind == DEST_LITERAL) {
		struct sockaddr_in *s4 = (void *)&q->mx[0].addr[0];
		struct sockaddr_in6 *s6 = (void *)&q->mx[0].addr[0];

		q->nmx = 1;
		snprintf(q->mx[0].host, sizeof(q->mx[0].host), "%s", d->name);
		if (inet_pton(AF_INET, d->name, &s4->sin_addr) == 1) {
			s4->sin_family = AF_INET;
			q->mx[0].naddr = 1;
		} else if (inet_pton(AF_INET6, d->name, &s6->sin6_addr) == 1) {
			s6->sin6_family = AF_INET6;
			q->mx[0].naddr = 1;
		}
		result_set(&q->err, 451, "4.4.1", "bad address %s", d->name);
		queue_conn_next(q);
		return;
	}
	if (d->kind == DEST_HOST) {
		q->nmx = 1;
		snprintf(q->mx[0].host, sizeof(q->mx[0].host), "%s", d->name);
		queue_conn_lookup_addrs(q);
		return;
	}
	q->qmx = dns_query(backmxd.dns, d->name, DNS_T_MX, queue_mx_cb, q);
	if (q->qmx == NULL) {
		result_set(&r, 451, "4.4.3", "cannot start the MX lookup of %s",
			   d->name);
		queue_conn_fail_all(q, &r);
		queue_conn_end(q);
	}
}

/* queue_dispatch - start connections for waiting jobs while slots last */
static void
queue_dispatch(void)
{
	const struct config *cfg = backmxd.cfg;
	int maxd = cfg->max_deliveries > 0 ? cfg->max_deliveries : 20;
	int maxp = cfg->max_per_destination > 0 ? cfg->max_per_destination
						: 5;
	struct queue_dest *d;
	struct queue_job *j;
	int progress = 1;

	if (!queue_started)
		return;
	while (progress && queue_nconn < maxd) {
		progress = 0;
		TAILQ_FOREACH(d, &queue_dests, entry) {
			if (queue_nconn >= maxd)
				break;
			if (d->nconn >= maxp ||
			    (j = TAILQ_FIRST(&d->jobs)) == NULL)
				continue;
			TAILQ_REMOVE(&d->jobs, j, entry);
			queue_conn_start(d, j);
			progress = 1;
			break;	/* the list may have changed */
		}
	}
}

/* ------------------------------------------------------------------ */
/* Turning due messages into jobs */

/* queue_msg_start - jobs for the due recipients of id */
static void
queue_msg_start(const char *id, int64_t now)
{
	struct spool_envelope *e;
	struct queue_msg *m;
	int *done = NULL, *bad = NULL, nbad = 0;

	if (queue_msg_find(id) != NULL)
		return;	/* in flight: settles itself */
	if ((e = spool_envelope_get(backmxd.spool, id)) == NULL)
		return;
	if (e->held) {
		spool_envelope_free(e);
		return;
	}
	if ((done = calloc((size_t)e->nrcpt + 1, sizeof(int))) == NULL ||
	    (bad = calloc((size_t)e->nrcpt + 1, sizeof(int))) == NULL ||
	    (m = calloc(1, sizeof(*m))) == NULL) {
		free(done);
		free(bad);
		schedule_set(backmxd.sched, id, now + 60);
		spool_envelope_free(e);
		return;
	}
	snprintf(m->id, sizeof(m->id), "%s", id);
	LIST_INSERT_HEAD(&queue_msgs, m, entry);
	for (int i = 0; i < e->nrcpt; i++) {
		char key[QUEUE_KEY_MAX], name[POLICY_DOMAIN_MAX + 1];
		char k2[QUEUE_KEY_MAX], n2[POLICY_DOMAIN_MAX + 1];
		enum queue_kind kind, kind2;
		int port, tls, port2, tls2;
		struct queue_dest *d;
		struct queue_job *j;
		struct spool_rcpt *r = &e->rcpt[i];

		if (done[i] || r->state != SPOOL_RCPT_PENDING ||
		    r->next_attempt > now)
			continue;
		if (queue_rcpt_dest(e, r, key, &kind, name, &port, &tls) < 0) {
			done[i] = 1;
			bad[nbad++] = i;
			continue;
		}
		if ((j = calloc(1, sizeof(*j))) == NULL ||
		    (j->idx = calloc((size_t)e->nrcpt, sizeof(int))) == NULL ||
		    (j->res = calloc((size_t)e->nrcpt, sizeof(*j->res))) ==
			NULL ||
		    (j->remote = calloc((size_t)e->nrcpt, sizeof(int))) ==
			NULL ||
		    (d = queue_dest_get(key, kind, name, port, tls)) == NULL) {
			queue_job_free(j);
			break;
		}
		snprintf(j->id, sizeof(j->id), "%s", id);
		for (int k = i; k < e->nrcpt; k++) {
			struct spool_rcpt *rk = &e->rcpt[k];

			if (done[k] || rk->state != SPOOL_RCPT_PENDING ||
			    rk->next_attempt > now)
				continue;
			if (queue_rcpt_dest(e, rk, k2, &kind2, n2, &port2,
					    &tls2) < 0 ||
			    strcmp(k2, key) != 0)
				continue;
			done[k] = 1;
			j->idx[j->n++] = k;
		}
		m->njobs++;
		TAILQ_INSERT_TAIL(&d->jobs, j, entry);
	}
	free(done);
	spool_envelope_free(e);
	if (m->njobs == 0) {
		LIST_REMOVE(m, entry);
		free(m);
	}
	if (nbad > 0) {
		/* the domain left the configuration: retry, then expire */
		struct result *res = calloc((size_t)nbad, sizeof(*res));
		int *zero = calloc((size_t)nbad, sizeof(int));

		for (int k = 0; res && zero && k < nbad; k++)
			result_set(&res[k], 451, "4.3.5",
				   "recipient domain is not configured");
		if (res && zero)
			queue_record(id, bad, nbad, res, zero, "none", 0);
		free(res);
		free(zero);
	} else if (queue_msg_find(id) == NULL)
		queue_msg_settle(id);
	free(bad);
}

static void
queue_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	char id[SPOOL_ID_LEN + 1];
	int64_t now = queue_now();
	int n = 0;

	while (n++ < 1000 && schedule_pop_due(backmxd.sched, now, id))
		queue_msg_start(id, now);
	queue_dispatch();
	queue_rearm();
}

/* ------------------------------------------------------------------ */
/* Scans over the spool */

struct queue_scan {
	const char *domain;	/* match recipients at this domain */
	const char *key;	/* or at this destination */
	int pending_only;	/* pending, not held */
	char (*ids)[SPOOL_ID_LEN + 1];
	int n, cap;
	int64_t *when;		/* forward_init: first attempt */
};

static int
queue_scan_match(const struct queue_scan *s, const struct spool_envelope *e,
		 const struct spool_rcpt *r)
{
	if (s->domain != NULL &&
	    strcasecmp(queue_rcpt_domain(r->address), s->domain) != 0)
		return 0;
	if (s->key != NULL) {
		char key[QUEUE_KEY_MAX], name[POLICY_DOMAIN_MAX + 1];
		enum queue_kind kind;
		int port, tls;

		if (queue_rcpt_dest(e, r, key, &kind, name, &port, &tls) < 0 ||
		    strcmp(key, s->key) != 0)
			return 0;
	}
	return 1;
}

static int
queue_scan_cb(void *arg, const struct spool_envelope *e)
{
	struct queue_scan *s = arg;
	int hit = 0;
	int64_t t = -1;

	for (int i = 0; i < e->nrcpt; i++) {
		const struct spool_rcpt *r = &e->rcpt[i];

		if (s->pending_only && r->state != SPOOL_RCPT_PENDING)
			continue;
		if (!queue_scan_match(s, e, r))
			continue;
		hit = 1;
		if (r->state == SPOOL_RCPT_PENDING &&
		    (t < 0 || r->next_attempt < t))
			t = r->next_attempt;
	}
	if (s->pending_only && e->held)
		hit = 0;
	if (!hit)
		return 0;
	if (s->n == s->cap) {
		int ncap = s->cap ? s->cap * 2 : 64;
		void *ni = realloc(s->ids, (size_t)ncap * sizeof(*s->ids));
		void *nw;

		if (ni == NULL)
			return 1;
		s->ids = ni;
		nw = realloc(s->when, (size_t)ncap * sizeof(*s->when));
		if (nw == NULL)
			return 1;
		s->when = nw;
		s->cap = ncap;
	}
	memcpy(s->ids[s->n], e->id, SPOOL_ID_LEN + 1);
	s->when[s->n] = t;
	s->n++;
	return 0;
}

static void
queue_scan_free(struct queue_scan *s)
{
	free(s->ids);
	free(s->when);
}

/* queue_make_due - matching pending rcpts of id due at t; 1 if changed */
static int
queue_make_due(const char *id, const struct queue_scan *s, int64_t t)
{
	struct spool_envelope *e = spool_envelope_get(backmxd.spool, id);
	int hit = 0;

	if (e == NULL)
		return 0;
	if (e->held) {
		spool_envelope_free(e);
		return 0;
	}
	queue_dirty = 1;
	for (int i = 0; i < e->nrcpt; i++) {
		struct spool_rcpt *r = &e->rcpt[i];

		if (r->state != SPOOL_RCPT_PENDING || !queue_scan_match(s, e, r))
			continue;
		if (r->next_attempt > t)
			r->next_attempt = t;
		hit = 1;
	}
	if (hit) {
		if (spool_envelope_put(backmxd.spool, e) < 0)
			hit = 0;
		else if (queue_msg_find(id) == NULL)
			schedule_set(backmxd.sched, id, t);
	}
	spool_envelope_free(e);
	return hit;
}

static void
queue_autoflush(struct queue_dest *d)
{
	struct queue_scan s = { .key = d->key, .pending_only = 1 };
	int64_t now = queue_now();
	int rate = backmxd.cfg->drain_rate, n = 0;

	if (spool_scan(backmxd.spool, "", 0, queue_scan_cb, &s) < 0) {
		queue_scan_free(&s);
		return;
	}
	for (int i = 0; i < s.n; i++)
		if (queue_make_due(s.ids[i], &s,
				   rate > 0 ? now + n / rate : now))
			n++;
	if (n > 0)
		log_info("auto-flush: %s answers again, %d message%s due",
			 d->name, n, n == 1 ? "" : "s");
	queue_scan_free(&s);
	queue_rearm();
}

/*
 * queue_prepare_cb - make the results of this loop iteration durable
 * with one fsync: a delivery recorded but lost in a crash is sent again.
 */
static void
queue_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	if (!queue_dirty)
		return;
	queue_dirty = 0;
	if (spool_sync(backmxd.spool) < 0)
		log_warn("forwarder: spool sync: %s",
			 spool_error(backmxd.spool));
}

/* ------------------------------------------------------------------ */
/* forward.h */

int
forward_init(void)
{
	struct queue_scan s = { 0 };
	int64_t now = queue_now();

	ev_init(&queue_timer, queue_timer_cb);
	ev_prepare_init(&queue_prepare, queue_prepare_cb);
	ev_prepare_start(backmxd.loop, &queue_prepare);
	ev_unref(backmxd.loop);	/* the prepare watcher keeps nothing alive */
	queue_started = 1;
	srandom((unsigned)now ^ (unsigned)getpid());
	if (spool_scan(backmxd.spool, "", 0, queue_scan_cb, &s) < 0) {
		queue_scan_free(&s);
		return -1;
	}
	/* schedules what is pending, removes what is all final */
	for (int i = 0; i < s.n; i++)
		queue_msg_settle(s.ids[i]);
	log_info("forwarder: %d message%s in the queue", s.n,
		 s.n == 1 ? "" : "s");
	queue_scan_free(&s);
	queue_rearm();
	(void)now;
	return 0;
}

void
forward_shutdown(void)
{
	struct queue_conn *q;
	struct queue_dest *d;
	struct queue_job *j;
	struct queue_msg *m;

	if (!queue_started)
		return;
	ev_timer_stop(backmxd.loop, &queue_timer);
	ev_ref(backmxd.loop);
	ev_prepare_stop(backmxd.loop, &queue_prepare);
	queue_prepare_cb(backmxd.loop, &queue_prepare, 0);
	queue_started = 0;
	while ((q = TAILQ_FIRST(&queue_conns)) != NULL)
		queue_conn_end(q);
	while ((d = TAILQ_FIRST(&queue_dests)) != NULL) {
		while ((j = TAILQ_FIRST(&d->jobs)) != NULL) {
			TAILQ_REMOVE(&d->jobs, j, entry);
			queue_job_free(j);
		}
		TAILQ_REMOVE(&queue_dests, d, entry);
		free(d);
	}
	queue_ndests = 0;
	while ((m = LIST_FIRST(&queue_msgs)) != NULL) {
		LIST_REMOVE(m, entry);
		free(m);
	}
	stats.deliveries_active = 0;
}

void
forward_queued(const struct spool_envelope *e)
{
	int64_t t = queue_next_time(e);

	if (!queue_started || e->held || t < 0)
		return;
	if (queue_msg_find(e->id) == NULL)
		schedule_set(backmxd.sched, e->id, t);
	queue_rearm();
}

int
forward_flush(const char *domain)
{
	struct queue_scan s = { .domain = domain, .pending_only = 1 };
	int64_t now = queue_now();
	int n = 0;

	if (spool_scan(backmxd.spool, "", 0, queue_scan_cb, &s) < 0) {
		queue_scan_free(&s);
		return -1;
	}
	for (int i = 0; i < s.n; i++)
		n += queue_make_due(s.ids[i], &s, now);
	queue_scan_free(&s);
	queue_rearm();
	return n;
}

static int
queue_is_id(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (!isxdigit((unsigned char)s[i]))
			return 0;
	return i == SPOOL_ID_LEN;
}

/* queue_hold_one - set the held flag of id; 1 when changed, -1 none */
static int
queue_hold_one(const char *id, int hold)
{
	struct spool_envelope *e = spool_envelope_get(backmxd.spool, id);
	int64_t t;

	if (e == NULL)
		return -1;
	if (!!e->held == !!hold) {
		spool_envelope_free(e);
		return 0;
	}
	e->held = hold ? 1 : 0;
	queue_dirty = 1;
	if (spool_envelope_put(backmxd.spool, e) < 0) {
		spool_envelope_free(e);
		return -1;
	}
	if (hold)
		schedule_remove(backmxd.sched, id);
	else if ((t = queue_next_time(e)) >= 0 && queue_msg_find(id) == NULL)
		schedule_set(backmxd.sched, id, t);
	log_msg(id, "%s by operator", hold ? "held" : "released");
	spool_envelope_free(e);
	return 1;
}

int
forward_hold(const char *id_or_domain, int hold)
{
	struct queue_scan s = { .domain = id_or_domain };
	char id[SPOOL_ID_LEN + 1];
	int n = 0, r;

	if (queue_is_id(id_or_domain)) {
		for (int i = 0; i <= SPOOL_ID_LEN; i++)
			id[i] = (char)toupper((unsigned char)id_or_domain[i]);
		if ((r = queue_hold_one(id_or_domain, hold)) >= 0 ||
		    (r = queue_hold_one(id, hold)) >= 0) {
			queue_rearm();
			return r;
		}
	}
	if (spool_scan(backmxd.spool, "", 0, queue_scan_cb, &s) < 0) {
		queue_scan_free(&s);
		return -1;
	}
	if (s.n == 0) {
		queue_scan_free(&s);
		return -1;
	}
	for (int i = 0; i < s.n; i++)
		if (queue_hold_one(s.ids[i], hold) > 0)
			n++;
	queue_scan_free(&s);
	queue_rearm();
	return n;
}

int
forward_delete(const char *id)
{
	if (spool_message_delete(backmxd.spool, id) < 0)
		return -1;
	queue_dirty = 1;
	schedule_remove(backmxd.sched, id);
	log_msg(id, "deleted by operator");
	queue_rearm();
	return 0;
}

int
forward_bounce(const char *id)
{
	struct spool_envelope *e = spool_envelope_get(backmxd.spool, id);
	int *idx, *remote, n = 0;
	struct result *res;

	if (e == NULL)
		return -1;
	idx = calloc((size_t)e->nrcpt + 1, sizeof(int));
	remote = calloc((size_t)e->nrcpt + 1, sizeof(int));
	res = calloc((size_t)e->nrcpt + 1, sizeof(*res));
	if (idx == NULL || remote == NULL || res == NULL) {
		free(idx);
		free(remote);
		free(res);
		spool_envelope_free(e);
		return -1;
	}
	for (int i = 0; i < e->nrcpt; i++)
		if (e->rcpt[i].state == SPOOL_RCPT_PENDING) {
			idx[n] = i;
			result_set(&res[n], 550, "5.0.0",
				   "delivery cancelled by the operator");
			n++;
		}
	spool_envelope_free(e);
	queue_record(id, idx, n, res, remote, "none", 0);
	free(idx);
	free(remote);
	free(res);
	if ((e = spool_envelope_get(backmxd.spool, id)) != NULL) {
		spool_envelope_free(e);
		forward_delete(id);
	}
	return 0;
}

int
forward_pending_for(const char *domain)
{
	struct queue_scan s = { .domain = domain, .pending_only = 1 };
	int n;

	if (spool_scan(backmxd.spool, "", 0, queue_scan_cb, &s) < 0) {
		queue_scan_free(&s);
		return -1;
	}
	n = s.n;
	queue_scan_free(&s);
	return n;
}
