/*
 * forward.c - the forwarder's queue: one ev_timer armed at the earliest
 * entry of the schedule; due messages are split by destination (static
 * route or the domain's MX set) and handed to fwd_session.c, one delivery
 * per message and destination.  Owns the destinations: their concurrency
 * limits, the FIFO of messages waiting for a slot (a delivery's end hands
 * its connection to the next of them) and their suspension when nobody
 * answers.  Routing is fwd_route.c, results fwd_result.c, operator
 * commands fwd_ops.c.  Everything reaches the daemon through the struct
 * forwarder it is given (fwd_int.h); fwd_glue.c makes the daemon's one
 * and gives the public forward_* API on it (main.c, smtpd.c, callout.c,
 * control.c call that).  The time is fw->now(), never the wall clock.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bounce.h"
#include "fwd_dsn.h"
#include "fwd_int.h"
#include "fwd_load.h"
#include "log.h"
#include "mirror.h"
#include "smtp_client.h"
#include "stats.h"

/*
 * Messages blocked by max_per_destination wait in their destination's
 * FIFO (fwd_dest.wait), not in the schedule: a delivery's end hands its
 * connection to the next of them, so a flush of n messages costs O(n)
 * envelope reads, not O(n^2).  At most FWD_WAIT_MAX wait in all (as
 * Postfix's qmgr_message_active_limit); beyond that the rest stays in the
 * schedule until the waiting drains.
 */
#define FWD_WAIT_MAX 20000

static void fwd_timer_cb(struct ev_loop *, ev_timer *, int);
static void fwd_process(struct forwarder *fw, const char *id);

/* fwd_now - the forwarder's clock in whole seconds */
int64_t
fwd_now(const struct forwarder *fw)
{
	return (int64_t)fw->now(fw);
}
const char *
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
uint32_t
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
unsigned
fwd_jitter_seed(const char *id)
{
	return (unsigned)fwd_domain_tag(id);
}

/* fwd_dest_find - the destination of key, or NULL (never creates) */
struct fwd_dest *
fwd_dest_find(struct forwarder *fw, const char *key)
{
	struct fwd_dest *d;

	for (d = fw->dests; d != NULL; d = d->next)
		if (!strcmp(d->key, key))
			return d;
	return NULL;
}

static struct fwd_dest *
fwd_dest_get(struct forwarder *fw, const char *key)
{
	struct fwd_dest *d;

	if ((d = fwd_dest_find(fw, key)) != NULL)
		return d;
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	snprintf(d->key, sizeof(d->key), "%s", key);
	d->next = fw->dests;
	fw->dests = d;
	return d;
}
long
fwd_lifetime(const struct forwarder *fw, const struct spool_envelope *e)
{
	long lt = fwd_cfg(fw)->queue_lifetime;
	int i;

	for (i = 0; i < e->nrcpt; i++) {
		const struct policy_domain *pd = policy_find_domain(
		    fwd_cfg(fw)->policy, fwd_rcpt_domain(e->rcpt[i].address));

		if (pd != NULL && pd->queue_lifetime > 0) {
			lt = pd->queue_lifetime;
			break;
		}
	}
	return lt > 0 ? lt : 5 * 86400;
}

int
fwd_msg_inflight(const struct forwarder *fw, const char *id)
{
	struct delivery *d;

	for (d = fw->list; d != NULL; d = d->next)
		if (!strcmp(d->id, id))
			return 1;
	return 0;
}

static int
fwd_maxpd(const struct forwarder *fw)
{
	return fwd_cfg(fw)->max_per_destination > 0
	           ? fwd_cfg(fw)->max_per_destination
	           : 20;
}

static int
fwd_maxd(const struct forwarder *fw)
{
	return fwd_cfg(fw)->max_deliveries > 0 ? fwd_cfg(fw)->max_deliveries
	                                       : 100;
}

/* fwd_wait_add - id waits for a free slot of dest */
static void
fwd_wait_add(struct forwarder *fw, struct fwd_dest *dest, const char *id)
{
	size_t before;

	if (dest->wait == NULL && (dest->wait = schedule_new()) == NULL) {
		schedule_set(fw->sched, id, fwd_now(fw) + 1);
		return;
	}
	before = schedule_size(dest->wait);
	if (schedule_set(dest->wait, id, dest->wseq++) < 0) {
		schedule_set(fw->sched, id, fwd_now(fw) + 1);
		return;
	}
	fw->nwaiting += schedule_size(dest->wait) - before;
}

/*
 * fwd_wait_release - start waiting messages while dest has free slots
 * (and the global limit allows), the first on dest->idle if set.  A
 * message the schedule owns again (its delivery to another destination
 * ended and rescheduled it) is left to the schedule.
 */
static void
fwd_wait_release(struct forwarder *fw, struct fwd_dest *dest)
{
	char id[SPOOL_ID_LEN + 1];

	if (fw->release_depth >= 4) {
		fw->release_pending = 1;
		return;
	}
	fw->release_depth++;
	while (dest->wait != NULL && !fw->stopped &&
	       dest->active < fwd_maxpd(fw) && fw->active < fwd_maxd(fw) &&
	       schedule_pop_due(dest->wait, INT64_MAX, id) == 1) {
		fw->nwaiting--;
		if (schedule_when(fw->sched, id) >= 0)
			continue;
		fwd_process(fw, id);
	}
	fw->release_depth--;
}

/* fwd_wait_release_all - capacity freed somewhere: every destination */
void
fwd_wait_release_all(struct forwarder *fw)
{
	struct fwd_dest *dd;

	for (dd = fw->dests; dd != NULL && fw->active < fwd_maxd(fw);
	     dd = dd->next)
		if (dd->wait != NULL && schedule_size(dd->wait) > 0)
			fwd_wait_release(fw, dd);
}

/* fwd_reschedule - the next attempt of e's pending recipients */
void
fwd_reschedule(struct forwarder *fw, const struct spool_envelope *e)
{
	int64_t t = -1;
	uint32_t tag = 0;
	int i, mixed = 0;
	unsigned flags = 0;

	if (e->held || fwd_msg_inflight(fw, e->id))
		return;
	for (i = 0; i < e->nrcpt; i++)
		if (e->rcpt[i].state == SPOOL_RCPT_PENDING) {
			uint32_t h =
			    fwd_domain_tag(fwd_rcpt_domain(e->rcpt[i].address));

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
			t = e->rcpt[i].next_attempt; /* a bounce owed */
	t = fwd_dsn_warn_wakeup(fw, e, t, fwd_now(fw), fwd_lifetime(fw, e));
	if (t >= 0 && schedule_set(fw->sched, e->id, t) == 0) {
		/* one domain: ETRN and flush DOMAIN find it without
		 * reading the envelope; several: they read it */
		schedule_set_tag(fw->sched, e->id, mixed ? 0 : tag);
		/* a recovered destination makes due only these */
		schedule_set_flags(fw->sched, e->id, flags);
	}
}
/*
 * fwd_suspended - would one more delivery to dest be deferred at once?
 * own: deliveries of the caller already counted in dest->active.
 */
int
fwd_suspended(const struct forwarder *fw, const struct fwd_dest *dest, int own)
{
	return dest->idle == NULL && dest->dead_until > fwd_now(fw) &&
	       (dest->active > own || fw->now(fw) - dest->last_probe < 1.0);
}
/*
 * fwd_dest_dead - nobody answered: suspend the destination for the first
 * retry step (1 s to 5 min); a flush, an ETRN or a delivery that gets
 * through ends it at once.
 */
void
fwd_dest_dead(struct forwarder *fw, struct fwd_dest *dest, const char *why)
{
	long t = fwd_cfg(fw)->nretry > 0 ? fwd_cfg(fw)->retry[0] : 300;

	if (t < 1)
		t = 1;
	if (t > 300)
		t = 300;
	dest->dead_until = fwd_now(fw) + t;
	snprintf(dest->dead_why, sizeof(dest->dead_why), "%s", why);
}
/* fwd_done - d is over: record, free, start what may start now */
void
fwd_done(struct delivery *d, struct smtp_client *reusable)
{
	struct forwarder *fw = d->fw;
	struct fwd_dest *dest = d->dest;

	/* unlink first so the message counts as no longer in flight */
	if (d->prev != NULL)
		d->prev->next = d->next;
	else if (fw->list == d)
		fw->list = d->next;
	if (d->next != NULL)
		d->next->prev = d->prev;
	d->next = d->prev = NULL;
	fwd_session_to(d, FWD_DONE);
	fwd_results(d);
	d->client = NULL;
	fwd_delivery_free(d);
	if (fw->stopped) {
		fw->io->client_free(reusable);
		return;
	}
	if (dest != NULL) {
		/* the next message waiting for this destination takes the
		 * connection over; then due messages may */
		dest->idle = reusable;
		fwd_wait_release(fw, dest);
		if (dest->idle != NULL)
			fwd_run(fw);
		if (dest->idle != NULL) {
			fw->io->client_quit(dest->idle);
			dest->idle = NULL;
		}
	} else if (reusable != NULL)
		fw->io->client_quit(reusable);
	fwd_wait_release_all(fw);
	fwd_arm(fw);
}
/*
 * fwd_process - one due message.  Only its recipients whose own time has
 * come are tried (a recipient a live primary deferred keeps its schedule
 * while its siblings go); when none has, the message was made due out of
 * its schedule (flush, ETRN, a recovered destination, the operator) and
 * every pending recipient is tried once.
 */
static void
fwd_process(struct forwarder *fw, const char *id)
{
	struct spool_envelope *e;
	int *idx, i, j, n, started = 0, blocked = 0, anydue = 0, warned;
	struct fwd_dest *wait = NULL;
	char(*keys)[FWD_KEY_MAX];
	char *done;
	int maxpd = fwd_maxpd(fw);
	int64_t now = fwd_now(fw);

	if (fwd_msg_inflight(fw, id))
		return; /* its end reschedules it */
	e = spool_envelope_get(fw->spool, id);
	if (e == NULL) {
		if (spool_errno(fw->spool) != SPOOL_ENOTFOUND) {
			log_err("%s: %s", id, spool_error(fw->spool));
			schedule_set(fw->sched, id, fwd_now(fw) + 60);
		}
		return;
	}
	if (e->held) {
		spool_envelope_free(e);
		return;
	}
	if (fwd_dsn_owes(e)) {
		/* first the bounce an allocation failure held back */
		fwd_commit(fw, e, NULL, 0);
		spool_envelope_free(e);
		return;
	}
	if (fwd_expired(fw, e, now)) {
		fwd_expire_now(fw, e, NULL);
		spool_envelope_free(e);
		return;
	}
	warned = fwd_dsn_delay_warn(fw, e, now, fwd_lifetime(fw, e));
	for (i = 0; i < e->nrcpt; i++)
		if (e->rcpt[i].state == SPOOL_RCPT_PENDING &&
		    e->rcpt[i].next_attempt <= now)
			anydue = 1;
	if (warned && !anydue) {
		/* woken for the warning only */
		fwd_reschedule(fw, e);
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
		schedule_set(fw->sched, id, fwd_now(fw) + 60);
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
		if (fwd_route(fw, e, i, keys[i], sizeof(keys[i]), NULL, &r) <
		    0) {
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
			    fwd_cfg(fw)->retry, fwd_cfg(fw)->nretry, &rc->step,
			    rc->next_attempt, now, now,
			    e->arrival + fwd_lifetime(fw, e),
			    fwd_jitter_seed(e->id));
			rc->flags |= SPOOL_RCPT_F_CONN;
			fwd_log(fw, e, i, NULL, &r, "deferred", 0);
			stats.deferred++;
			done[i] = 1;
			blocked = -1; /* envelope changed */
		}
	}
	if (blocked < 0) {
		spool_envelope_put(fw->spool, e);
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
		dest = fwd_dest_get(fw, keys[i]);
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
			    spool_envelope_get(fw->spool, id);

			if (copy != NULL) {
				fwd_start(fw, copy, idx, m, dest);
				started++;
			}
		}
	}
	if (started == 0 && wait != NULL)
		fwd_wait_add(fw, wait, id);
	else if (started == 0 && blocked > 0)
		schedule_set(fw->sched, id, fwd_now(fw) + 1);
	else if (started == 0)
		fwd_reschedule(fw, e);
	free(idx);
	free(keys);
	free(done);
	spool_envelope_free(e);
}

/*
 * fwd_run - start what is due: a cut-off release first, then due
 * messages of the schedule while the limits allow; re-arms the timer
 */
void
fwd_run(struct forwarder *fw)
{
	char id[SPOOL_ID_LEN + 1];
	int maxd = fwd_maxd(fw);
	int64_t now = fwd_now(fw);

	if (fw->stopped)
		return;
	if (mirror_forward_held()) {
		/* a mirror node at start: first the peer's word on what it
		 * delivered for us (relay/mirror_takeover.c) */
		ev_timer_stop(fw->loop, &fw->timer);
		ev_timer_set(&fw->timer, 0.5, 0.);
		ev_timer_start(fw->loop, &fw->timer);
		return;
	}
	if (fw->release_pending && fw->release_depth == 0) {
		fw->release_pending = 0;
		fwd_wait_release_all(fw);
	}
	while (fw->active < maxd && fw->nwaiting < FWD_WAIT_MAX &&
	       schedule_pop_due(fw->sched, now, id) == 1)
		fwd_process(fw, id);
	fwd_arm(fw);
}

static void
fwd_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	fwd_run(w->data);
}

/* fwd_arm - the timer at the earliest due time, nothing when empty */
void
fwd_arm(struct forwarder *fw)
{
	int64_t t;
	char id[SPOOL_ID_LEN + 1];
	double delay;

	if (fw->stopped)
		return;
	ev_timer_stop(fw->loop, &fw->timer);
	if (fw->active >= fwd_maxd(fw))
		return; /* the end of a delivery re-arms */
	if (fw->release_pending) {
		ev_timer_set(&fw->timer, 0., 0.);
		ev_timer_start(fw->loop, &fw->timer);
		return;
	}
	if (fw->nwaiting >= FWD_WAIT_MAX)
		return; /* as the waiting drains */
	if (schedule_peek(fw->sched, &t, id) != 1)
		return;
	delay = (double)t - fw->now(fw);
	if (delay < 0)
		delay = 0;
	ev_timer_set(&fw->timer, delay, 0.);
	ev_timer_start(fw->loop, &fw->timer);
}

/*
 * fwd_init - fw's loop, clock, spool, schedule, resolver, config and io
 * are set: clear its state and start loading the schedule from the
 * spool's next-attempt index on the loop (fwd_load.c).  0.
 */
int
fwd_init(struct forwarder *fw)
{
	fw->list = NULL;
	fw->dests = NULL;
	fw->active = 0;
	fw->stopped = 0;
	fw->nwaiting = 0;
	fw->release_depth = fw->release_pending = 0;
	ev_timer_init(&fw->timer, fwd_timer_cb, 0., 0.);
	fw->timer.data = fw;
	/* the schedule from next.db, on the loop after the banner */
	fwd_load_start(fw);
	return 0;
}
void
fwd_presuspend(struct forwarder *fw, struct spool_envelope *e)
{
	int64_t now = fwd_now(fw);
	int i;

	if (fw->stopped || e->held)
		return;
	for (i = 0; i < e->nrcpt; i++) {
		struct spool_rcpt *rc = &e->rcpt[i];
		struct fwd_dest *dest;
		char key[FWD_KEY_MAX], buf[400];

		if (rc->state != SPOOL_RCPT_PENDING || rc->attempts > 0 ||
		    fwd_route(fw, e, i, key, sizeof(key), NULL, NULL) < 0 ||
		    (dest = fwd_dest_find(fw, key)) == NULL ||
		    !fwd_suspended(fw, dest, 0))
			continue;
		snprintf(buf, sizeof(buf), "4.4.1 " FWD_SUSPENDED_TEXT "%.200s",
		         dest->dead_why);
		free(rc->last_error);
		if ((rc->last_error = strdup(buf)) == NULL)
			continue;
		rc->attempts = 1;
		rc->step = 1;
		rc->flags |= SPOOL_RCPT_F_CONN;
		rc->next_attempt =
		    schedule_backoff(fwd_cfg(fw)->retry, fwd_cfg(fw)->nretry, 1,
		                     now, fwd_jitter_seed(e->id));
		if (rc->next_attempt > e->arrival + fwd_lifetime(fw, e))
			rc->next_attempt = e->arrival + fwd_lifetime(fw, e);
		if (rc->next_attempt <= now)
			rc->next_attempt = now + 1;
	}
}

/* fwd_domain_suspended - for callout.c: is the destination that
 * mail for pd goes to suspended (nobody answered lately)? */
int
fwd_domain_suspended(struct forwarder *fw, const struct policy_domain *pd,
                     char *why, size_t whylen)
{
	struct fwd_dest *dest;
	char key[FWD_KEY_MAX];

	if (pd->route_static)
		snprintf(key, sizeof(key), "s:%s:%d:%d", pd->route_host,
		         pd->route_port > 0 ? pd->route_port : 25, pd->tls);
	else
		snprintf(key, sizeof(key), "m:%s:%d", pd->name, pd->tls);
	if ((dest = fwd_dest_find(fw, key)) == NULL ||
	    dest->dead_until <= fwd_now(fw))
		return 0;
	snprintf(why, whylen, "%s", dest->dead_why);
	return 1;
}

void
fwd_queued(struct forwarder *fw, const struct spool_envelope *e)
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
		fwd_log(fw, e, i, NULL, &r, "deferred", 0);
		stats.deferred++;
	}
	fwd_reschedule(fw, e);
	if (!fw->stopped)
		fwd_arm(fw);
}
void
fwd_shutdown(struct forwarder *fw)
{
	struct fwd_dest *dd;

	fw->stopped = 1;
	fwd_load_stop(fw);
	if (fw->loop != NULL)
		ev_timer_stop(fw->loop, &fw->timer);
	while (fw->list != NULL)
		fwd_delivery_free(fw->list);
	while ((dd = fw->dests) != NULL) {
		fw->dests = dd->next;
		fw->io->client_free(dd->idle);
		if (dd->wait != NULL)
			schedule_free(dd->wait);
		free(dd);
	}
	fw->nwaiting = 0;
}
