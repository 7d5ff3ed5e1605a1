/*
 * fwd_ops.c - the forwarder's entry points for operators and peers:
 * flush (all, a domain by ETRN, a recovered destination), flush/requeue
 * of one id, hold and release, delete, bounce now.  They change the
 * schedule and the spool and end suspensions; the queue walk
 * (forward.c) then does the work.  Callers: control.c, control_queue.c,
 * smtpd.c (ETRN), fwd_result.c (a destination recovered).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fwd_int.h"
#include "fwd_load.h"
#include "log.h"

struct fwd_collect {
	struct forwarder *fw;
	const char *domain; /* match recipients at domain, or NULL */
	const char *key;    /* match recipients routed to key, or NULL */
	int pending_only;   /* only pending recipients count */
	int conn_only;      /* only those deferred without an answer */
	int skip_held;
	char (*ids)[SPOOL_ID_LEN + 1];
	int n, cap;
};

static int
fwd_collect_cb(void *arg, const struct spool_envelope *e)
{
	struct fwd_collect *c = arg;
	const struct forwarder *fw = c->fw;
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
		    (fwd_route(fw, e, i, key, sizeof(key), NULL, NULL) < 0 ||
		     strcmp(key, c->key) != 0))
			continue;
		hit = 1;
	}
	if (!hit)
		return 0;
	if (c->n == c->cap) {
		int nc = c->cap ? c->cap * 2 : 64;
		char(*n)[SPOOL_ID_LEN + 1] =
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
	struct spool_envelope *e = spool_envelope_get(c->fw->spool, id);
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
fwd_dest_serves(const struct forwarder *fw, const struct fwd_dest *dest,
                const char *domain)
{
	const struct policy_domain *pd =
	    policy_find_domain(fwd_cfg(fw)->policy, domain);
	size_t dl = strlen(domain);
	char key[FWD_KEY_MAX];

	if (!strncmp(dest->key, "m:", 2) &&
	    !strncasecmp(dest->key + 2, domain, dl) && dest->key[2 + dl] == ':')
		return 1;
	if (pd == NULL || !pd->route_static)
		return 0;
	snprintf(key, sizeof(key), "s:%s:%d:%d", pd->route_host,
	         pd->route_port > 0 && pd->route_port <= 65535 ? pd->route_port
	                                                       : 25,
	         pd->tls);
	return !strcmp(dest->key, key);
}

/*
 * fwd_flush_match - make matching pending messages due now (drain_rate);
 * conn_only: only those deferred by a connection-level failure (a
 * recovered destination), never ones its primary deferred itself
 */
int
fwd_flush_match(struct forwarder *fw, const char *domain, const char *key,
                int conn_only)
{
	struct fwd_collect c = {0};
	int i, rate = fwd_cfg(fw)->drain_rate, n = 0;
	int64_t now = fwd_now(fw);
	char mxdom[POLICY_DOMAIN_MAX + 1];

	c.fw = fw;
	/* every queued message must be in the schedule first */
	fwd_load_finish(fw);
	c.domain = domain;
	c.key = key;
	c.pending_only = 1;
	c.conn_only = conn_only;
	c.skip_held = 1;
	/* the operator (or the primary, by ETRN) says: try now; a flush
	 * of one domain ends only the suspension of its destinations */
	for (struct fwd_dest *dd = fw->dests; dd != NULL; dd = dd->next)
		if (key != NULL
		        ? !strcmp(dd->key, key)
		        : domain == NULL || fwd_dest_serves(fw, dd, domain)) {
			if (dd->dead_until > now && !conn_only)
				log_info("delivery to %s resumed by a flush "
				         "(was suspended: %.200s)",
				         dd->key + 2, dd->dead_why);
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
		n = (int)schedule_advance_match(
		    fw->sched, now, tag, FWD_SCHED_CONN, fwd_flush_unknown, &c);
		free(c.ids);
		fwd_arm(fw);
		return n;
	}
	if (domain == NULL && key == NULL && rate <= 0) {
		/*
		 * Everything: the schedule holds every pending message that
		 * is neither held nor in flight (or waiting for a slot), so
		 * no envelope is read: O(n) in memory, a few ms for a
		 * million, where a spool scan stalls the loop for seconds.
		 */
		n = (int)schedule_advance_all(fw->sched, now);
		for (struct delivery *d = fw->list; d != NULL; d = d->next)
			n++;
		fwd_arm(fw);
		return n + (int)fw->nwaiting;
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
		n = (int)schedule_advance_tag(fw->sched, now,
		                              fwd_domain_tag(domain),
		                              fwd_flush_unknown, &c);
		for (struct delivery *d = fw->list; d != NULL; d = d->next)
			if (!strcasecmp(d->domain, domain))
				n++;
		free(c.ids);
		fwd_arm(fw);
		return n;
	}
	if (spool_scan(fw->spool, "", 0, fwd_collect_cb, &c) < 0) {
		free(c.ids);
		return -1;
	}
	for (i = 0; i < c.n; i++) {
		if (fwd_msg_inflight(fw, c.ids[i]))
			continue;
		schedule_set(fw->sched, c.ids[i],
		             rate > 0 ? now + n / rate : now);
		n++;
	}
	free(c.ids);
	fwd_arm(fw);
	/* every pending message counts, those in flight too */
	return c.n;
}
/* fwd_wake_dests - end the suspension of e's pending destinations */
static void
fwd_wake_dests(struct forwarder *fw, const struct spool_envelope *e)
{
	struct fwd_dest *dest;
	char key[FWD_KEY_MAX];
	int i;

	for (i = 0; i < e->nrcpt; i++)
		if (e->rcpt[i].state == SPOOL_RCPT_PENDING &&
		    fwd_route(fw, e, i, key, sizeof(key), NULL, NULL) == 0 &&
		    (dest = fwd_dest_find(fw, key)) != NULL)
			dest->dead_until = 0;
}

int
fwd_flush_id(struct forwarder *fw, const char *id, int requeue)
{
	struct spool_envelope *e;
	int64_t now = fwd_now(fw);
	int i, changed = 0;

	if (fwd_msg_inflight(fw, id))
		return 1;
	if ((e = spool_envelope_get(fw->spool, id)) == NULL)
		return spool_errno(fw->spool) == SPOOL_ENOTFOUND ? 0 : -1;
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
	if (requeue && spool_envelope_put(fw->spool, e) < 0) {
		log_err("%s: cannot update the spool: %s", id,
		        spool_error(fw->spool));
		spool_envelope_free(e);
		return -1;
	}
	fwd_wake_dests(fw, e);
	if (requeue)
		log_msg(id, "requeued by the operator");
	/* one waiting for a destination slot is taken back from its FIFO
	 * (fwd_wait_release skips ids the schedule holds) */
	schedule_set(fw->sched, id, now);
	spool_envelope_free(e);
	fwd_arm(fw);
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
fwd_hold_one(struct forwarder *fw, const char *id, int hold)
{
	struct spool_envelope *e = spool_envelope_get(fw->spool, id);
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
			    e->rcpt[i].next_attempt > fwd_now(fw))
				e->rcpt[i].next_attempt = fwd_now(fw);
	if (spool_envelope_put(fw->spool, e) < 0) {
		log_err("%s: cannot update the spool: %s", id,
		        spool_error(fw->spool));
		spool_envelope_free(e);
		return -1;
	}
	log_msg(id, "%s by the operator", hold ? "held" : "released");
	if (hold)
		schedule_remove(fw->sched, id);
	else
		fwd_reschedule(fw, e);
	spool_envelope_free(e);
	return 1;
}

int
fwd_hold(struct forwarder *fw, const char *id_or_domain, int hold)
{
	struct fwd_collect c = {0};
	int i, n = 0;

	c.fw = fw;
	if (fwd_is_id(id_or_domain)) {
		char id[SPOOL_ID_LEN + 1];

		for (i = 0; i <= SPOOL_ID_LEN; i++)
			id[i] = (char)(id_or_domain[i] >= 'A' &&
			                       id_or_domain[i] <= 'F'
			                   ? id_or_domain[i] + 32
			                   : id_or_domain[i]);
		n = fwd_hold_one(fw, id, hold);
		if (n >= 0) {
			fwd_arm(fw);
			return n;
		}
		/* fall through: maybe a domain that looks like hex */
	}
	c.domain = id_or_domain;
	if (spool_scan(fw->spool, "", 0, fwd_collect_cb, &c) < 0) {
		free(c.ids);
		return -1;
	}
	if (c.n == 0) {
		free(c.ids);
		return -1;
	}
	n = 0;
	for (i = 0; i < c.n; i++)
		if (fwd_hold_one(fw, c.ids[i], hold) > 0)
			n++;
	free(c.ids);
	fwd_arm(fw);
	return n;
}

/* fwd_abort_msg - stop deliveries of id without recording results */
static void
fwd_abort_msg(struct forwarder *fw, const char *id)
{
	struct delivery *d, *next;

	for (d = fw->list; d != NULL; d = next) {
		next = d->next;
		if (!strcmp(d->id, id))
			fwd_delivery_free(d);
	}
}

int
fwd_delete(struct forwarder *fw, const char *id)
{
	struct spool_envelope *e = spool_envelope_get(fw->spool, id);

	if (e == NULL)
		return -1;
	spool_envelope_free(e);
	fwd_abort_msg(fw, id);
	schedule_remove(fw->sched, id);
	if (spool_message_delete(fw->spool, id) < 0) {
		log_err("%s: cannot remove from the spool: %s", id,
		        spool_error(fw->spool));
		return -1;
	}
	log_msg(id, "removed by the operator");
	fwd_wait_release_all(fw);
	fwd_arm(fw);
	return 0;
}

int
fwd_bounce(struct forwarder *fw, const char *id)
{
	struct spool_envelope *e = spool_envelope_get(fw->spool, id);

	if (e == NULL)
		return -1;
	fwd_abort_msg(fw, id);
	schedule_remove(fw->sched, id);
	fwd_expire_now(fw, e, "delivery cancelled by the operator");
	spool_envelope_free(e);
	fwd_wait_release_all(fw);
	fwd_arm(fw);
	return 0;
}
