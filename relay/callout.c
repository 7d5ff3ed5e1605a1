/*
 * callout.c - asking a domain's primary whether it knows an address
 * (see callout.h): the destinations (one per primary: limits, rate,
 * suspension, health, the queue of addresses waiting for a connection),
 * the questions (one per address, shared by every request for it, with
 * its own deadline) and the scheduling that opens connections for them.
 * The dialogue of one connection is callout_conn.c.
 *
 * Called by rcpt_verify.c; calls callout_conn.c, forward_domain_suspended.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "callout_int.h"
#include "forward.h"
#include "log.h"

struct callout_stats callout_stats;
static struct callout_dest *callout_dests;
callout_store_fn callout_store_hook;

void
callout_set_store(callout_store_fn fn)
{
	callout_store_hook = fn;
}

/* ------------------------------------------------------------------ */
/* destinations */

/* dest_key - as the forwarder names the destination (fwd_dest keys) */
static void
dest_key(const struct policy_domain *pd, char *key, size_t len)
{
	if (pd->route_static)
		snprintf(key, len, "s:%s:%d:%d", pd->route_host,
		         pd->route_port > 0 ? pd->route_port : 25, pd->tls);
	else
		snprintf(key, len, "m:%s:%d", pd->name, pd->tls);
}

static void dest_retry_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* dest_fill - where pd's primary is (a destination the forwarder told
 * us about first knows only its key) */
static void
dest_fill(struct callout_dest *d, const struct policy_domain *pd)
{
	snprintf(d->domain, sizeof(d->domain), "%s", pd->name);
	d->is_static = pd->route_static;
	d->literal = pd->route_literal;
	d->port = pd->route_port > 0 ? pd->route_port : 25;
	d->tls = pd->tls;
	snprintf(d->host, sizeof(d->host), "%s", pd->route_host);
	d->partial = 0;
}

static struct callout_dest *
dest_new(const char *key)
{
	struct callout_dest *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return NULL;
	snprintf(d->key, sizeof(d->key), "%s", key);
	/* for logs until dest_fill: the domain or host of the key */
	snprintf(d->domain, sizeof(d->domain), "%.*s",
	         (int)strcspn(key + 2, ":"), key + 2);
	d->partial = 1;
	d->qtail = &d->qhead;
	ev_timer_init(&d->retry, dest_retry_cb, 1., 0.);
	d->retry.data = d;
	d->next = callout_dests;
	callout_dests = d;
	return d;
}

static struct callout_dest *
dest_find(const char *key)
{
	struct callout_dest *d;

	for (d = callout_dests; d != NULL; d = d->next)
		if (!strcmp(d->key, key))
			return d;
	return NULL;
}

static struct callout_dest *
dest_get(const struct policy_domain *pd, int create)
{
	struct callout_dest *d;
	char key[sizeof(d->key)];

	dest_key(pd, key, sizeof(key));
	if ((d = dest_find(key)) == NULL && create)
		d = dest_new(key);
	if (d != NULL && d->partial && create)
		dest_fill(d, pd);
	return d;
}

double
callout_now(void)
{
	return ev_now(backmxd.loop);
}

/* dest_down - suspended by us or by the forwarder? */
static int
dest_down(struct callout_dest *d, const struct policy_domain *pd, char *why,
          size_t len)
{
	if (d != NULL && d->dead_until > callout_now()) {
		snprintf(why, len, "%s", d->dead_why);
		return 1;
	}
	if (pd != NULL && forward_domain_suspended(pd, why, len))
		return 1;
	return 0;
}

/* callout_dest_dead - nobody answered: suspend as the forwarder does */
void
callout_dest_dead(struct callout_dest *d, const char *why)
{
	long t = backmxd.cfg->nretry > 0 ? backmxd.cfg->retry[0] : 300;

	if (t < 1)
		t = 1;
	if (t > 300)
		t = 300;
	d->dead_until = callout_now() + t;
	d->last_fail = callout_now();
	snprintf(d->dead_why, sizeof(d->dead_why), "%s", why);
	log_info("callout: primary of %s suspended for %lds: %s", d->domain, t,
	         why);
}

/*
 * The health of a primary, for accept_when: the forwarder's suspension
 * (refreshed by its own attempts while mail waits) says down; otherwise
 * the last minute's evidence, from deliveries (callout_note_primary) and
 * callouts alike, the newest winning.  Without any, the caller probes,
 * so an idle primary is asked at most once a minute.
 */
int
callout_primary_state(const struct policy_domain *pd, char *why, size_t whylen)
{
	struct callout_dest *d = dest_get(pd, 0);
	double now = callout_now();

	if (forward_domain_suspended(pd, why, whylen))
		return -1;
	if (d == NULL)
		return 0;
	if (d->last_ok > 0 && now - d->last_ok < CALLOUT_HEALTH_FRESH &&
	    d->last_ok >= d->last_fail)
		return 1;
	if (d->last_fail > 0 && now - d->last_fail < CALLOUT_HEALTH_FRESH) {
		snprintf(why, whylen, "%s", d->dead_why);
		return -1;
	}
	return 0;
}

void
callout_note_primary(const char *key, int answered, const char *why)
{
	struct callout_dest *d = dest_find(key);

	if (d == NULL && (d = dest_new(key)) == NULL)
		return;
	/* logged when the news changes the picture */
	if (answered && !(d->last_ok > 0 && d->last_ok >= d->last_fail))
		log_info("callout: primary of %s answers (a delivery reached "
		         "it)",
		         d->domain);
	if (!answered && !(d->last_fail > d->last_ok))
		log_info("callout: primary of %s does not answer (a delivery):"
		         " %.200s",
		         d->domain, why != NULL ? why : "-");
	if (answered) {
		d->last_ok = callout_now();
		/* a delivery that got through ends our suspension too */
		d->dead_until = 0;
	} else {
		d->last_fail = callout_now();
		snprintf(d->dead_why, sizeof(d->dead_why), "%s",
		         why != NULL ? why : "delivery failed");
	}
}

/* ------------------------------------------------------------------ */
/* questions */

/* callout_q_answer - tell every waiter, free the question */
void
callout_q_answer(struct callout_q *q, const struct result *r)
{
	struct callout_dest *d = q->dest;
	struct callout_q **pp;
	struct callout_req *req, *next;

	ev_timer_stop(backmxd.loop, &q->deadline);
	for (pp = &d->all; *pp != NULL; pp = &(*pp)->next)
		if (*pp == q) {
			*pp = q->next;
			break;
		}
	if (q->queued) {
		struct callout_q **qp;

		for (qp = &d->qhead; *qp != NULL; qp = &(*qp)->qnext)
			if (*qp == q) {
				*qp = q->qnext;
				break;
			}
		d->qtail = &d->qhead;
		while (*d->qtail != NULL)
			d->qtail = &(*d->qtail)->qnext;
	}
	if (q->conn != NULL && q->conn->cur == q)
		q->conn->cur = NULL;
	for (req = q->reqs; req != NULL; req = next) {
		next = req->next;
		req->cb(req->arg, r);
		free(req);
	}
	free(q);
}

static void
q_deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct callout_q *q = w->data;
	struct callout_conn *c = q->conn;
	struct result r;

	result_set(&r, 451, "4.4.3",
	           "primary of %s did not answer within "
	           "%lds",
	           q->dest->domain, backmxd.cfg->callout_timeout);
	if (c != NULL && c->cur == q) {
		/* a tarpit: this connection is no use for the others */
		q->conn = NULL;
		c->cur = NULL;
		callout_q_answer(q, &r);
		callout_conn_fail(c, 1, "timeout");
		return;
	}
	callout_q_answer(q, &r);
}

struct callout_q *
callout_q_take(struct callout_dest *d)
{
	struct callout_q *q = d->qhead;

	if (q == NULL)
		return NULL;
	d->qhead = q->qnext;
	if (d->qhead == NULL)
		d->qtail = &d->qhead;
	q->qnext = NULL;
	q->queued = 0;
	return q;
}

/* callout_dest_fail_queue - every queued question of d gets r */
void
callout_dest_fail_queue(struct callout_dest *d, const struct result *r)
{
	struct callout_q *q;

	while ((q = callout_q_take(d)) != NULL)
		callout_q_answer(q, r);
}

/* ------------------------------------------------------------------ */
/* scheduling */

static void
dest_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	callout_dest_kick(w->data);
}

static int
dest_qlen(const struct callout_dest *d)
{
	int n = 0;

	for (const struct callout_q *q = d->qhead; q != NULL; q = q->qnext)
		n++;
	return n;
}

/* callout_dest_kick - open connections for waiting questions, within limits */
void
callout_dest_kick(struct callout_dest *d)
{
	const struct config *cfg = backmxd.cfg;
	double now = callout_now();
	int limit = cfg->callout_limit > 0 ? cfg->callout_limit : 1;

	/* a connection takes every waiting question in turn: open another
	 * only while more wait than the connections being set up will take */
	while (d->qhead != NULL && d->nconn < limit &&
	       dest_qlen(d) > d->nsetup) {
		char why[200];
		struct result r;

		if (d->dead_until > now && d->nconn > 0 &&
		    now - d->last_try < CALLOUT_HEALTH_FRESH)
			return; /* the one try below is on its way */
		if (d->dead_until > now && d->nconn == 0 &&
		    now - d->last_fail >= CALLOUT_HEALTH_FRESH &&
		    now - d->last_try >= CALLOUT_HEALTH_FRESH) {
			/* suspended, but a minute without news: one
			 * connection tries again and takes the queue (its
			 * failure suspends anew) */
			d->last_try = now;
		} else if (d->dead_until > now) {
			snprintf(why, sizeof(why), "%s", d->dead_why);
			result_set(&r, 451, "4.4.3",
			           "primary of %s "
			           "suspended: %s",
			           d->domain, why);
			callout_stats.suspended++;
			callout_dest_fail_queue(d, &r);
			return;
		}
		if (now - d->window >= 60.) {
			d->window = now;
			d->window_count = 0;
		}
		if (cfg->callout_rate > 0 &&
		    d->window_count >= cfg->callout_rate) {
			/* over the rate: wait for the next minute, the
			 * questions' own deadlines bound the wait */
			if (!ev_is_active(&d->retry)) {
				ev_timer_set(&d->retry,
				             d->window + 60. - now + 0.01, 0.);
				ev_timer_start(backmxd.loop, &d->retry);
			}
			return;
		}
		d->window_count++;
		if (callout_conn_new(d) == NULL)
			return;
	}
}

struct callout_req *
callout_start(const struct policy_domain *pd, const char *address,
              callout_cb cb, void *arg)
{
	struct callout_dest *d = dest_get(pd, 1);
	struct callout_req *req;
	struct callout_q *q;
	char why[200];
	struct result r;

	if (d == NULL || (req = calloc(1, sizeof(*req))) == NULL)
		return NULL;
	req->cb = cb;
	req->arg = arg;
	if (address == NULL)
		address = "";
	for (q = d->all; q != NULL; q = q->next)
		if (!strcasecmp(q->address, address))
			break;
	if (q == NULL) {
		if ((q = calloc(1, sizeof(*q))) == NULL) {
			free(req);
			return NULL;
		}
		q->dest = d;
		snprintf(q->address, sizeof(q->address), "%s", address);
		ev_timer_init(&q->deadline, q_deadline_cb,
		              (double)backmxd.cfg->callout_timeout, 0.);
		q->deadline.data = q;
		ev_timer_start(backmxd.loop, &q->deadline);
		q->next = d->all;
		d->all = q;
		q->queued = 1;
		*d->qtail = q;
		d->qtail = &q->qnext;
		if (address[0] == '\0')
			callout_stats.probes++;
		if (dest_down(d, pd, why, sizeof(why)) &&
		    d->dead_until <= callout_now()) {
			/* the forwarder's suspension: adopt it */
			d->dead_until = callout_now() + 1.;
			snprintf(d->dead_why, sizeof(d->dead_why), "%s", why);
		}
	}
	req->q = q;
	req->next = q->reqs;
	q->reqs = req;
	/* from the loop, never inside this call: the caller is not ready */
	if (!ev_is_active(&d->retry)) {
		ev_timer_set(&d->retry, 0., 0.);
		ev_timer_start(backmxd.loop, &d->retry);
	}
	(void)r;
	return req;
}

void
callout_cancel(struct callout_req *req)
{
	struct callout_q *q;
	struct callout_req **pp;

	if (req == NULL)
		return;
	q = req->q;
	for (pp = &q->reqs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == req) {
			*pp = req->next;
			break;
		}
	free(req);
	/* the question goes on: its answer is cached for the next one */
}

void
callout_shutdown(void)
{
	struct callout_dest *d;
	struct result r;

	result_set(&r, 421, "4.3.2", "shutting down");
	for (d = callout_dests; d != NULL; d = d->next) {
		ev_timer_stop(backmxd.loop, &d->retry);
		while (d->all != NULL) {
			struct callout_q *q = d->all;

			if (q->conn != NULL && q->conn->cur == q)
				q->conn->cur = NULL;
			q->conn = NULL;
			callout_q_answer(q, &r);
		}
	}
}
