/*
 * fwd_load.c - the forwarder's schedule at start, from the spool's
 * next-attempt index (next.db, spool/next.c) instead of every envelope.
 *
 * forward_init only arms a zero timer; the load runs on the loop, one
 * batch of FWD_LOAD_BATCH index keys per loop iteration, so the
 * listener serves banners from the first iteration on and a million
 * queued messages never stall a session for more than a batch.  The
 * index is in time order: due mail is scheduled by the first batch and
 * delivered while the rest loads.  The forwarder's timer is re-armed
 * when a batch changes the schedule's first entry.
 *
 * An entry the running daemon has already scheduled (a message accepted,
 * flushed or attempted since the start) or that is in flight is left
 * alone: the daemon's own decision is newer than the index it wrote.
 * An entry that may owe a delay warning before its next attempt
 * (SPOOL_NEXT_WARN, the warning window within reach of its id's time)
 * is scheduled from its envelope (fwd_reschedule), the only case that
 * reads one.  flush, ETRN and a recovered destination need the whole
 * schedule: fwd_flush_match calls fwd_load_finish first.
 * The state is fw->load; the batch size and pause are the creator's
 * (fw->load_batch, fw->load_pause: fwd_glue.c reads them from the
 * environment for the integration tests).
 * Callers: forward.c (init, shutdown), fwd_ops.c (flush).
 */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fwd_dsn.h"
#include "fwd_int.h"
#include "fwd_load.h"
#include "log.h"

#define FWD_LOAD_BATCH 2048
/* an id's time and its arrival differ by the DATA phase (and ids may
 * run ahead of a clock that stood still): the window is widened so */
#define FWD_LOAD_SLACK 3600

/* fwd_load_warnings - the shortest and longest delay_warning in force */
static void
fwd_load_warnings(struct forwarder *fw)
{
	struct fwd_load *fl = &fw->load;
	const struct policy *p = fwd_cfg(fw)->policy;
	long g = fwd_cfg(fw)->delay_warning;
	int i;

	fl->wmin = fl->wmax = g > 0 ? g : 0;
	for (i = 0; i < p->ndomains; i++) {
		long w = p->domains[i]->delay_warning;

		if (w == 0 || w < 0)
			continue; /* the global one, or off */
		if (fl->wmin == 0 || w < fl->wmin)
			fl->wmin = w;
		if (w > fl->wmax)
			fl->wmax = w;
	}
}

/* fwd_load_id_time - the seconds an id was made at (spool_id_next) */
static int64_t
fwd_load_id_time(const char *id)
{
	char h[9];

	memcpy(h, id, 8);
	h[8] = '\0';
	return (int64_t)strtoul(h, NULL, 16);
}

/*
 * fwd_load_may_warn - could n's delay warning fall between now and its
 * next attempt (fwd_dsn_warn_wakeup would then wake it earlier)?
 */
static int
fwd_load_may_warn(const struct fwd_load *fl, const struct spool_next *n,
                  int64_t now)
{
	int64_t made;

	if (!(n->flags & SPOOL_NEXT_WARN) || fl->wmax == 0 || n->t <= now)
		return 0;
	made = fwd_load_id_time(n->id);
	return made - FWD_LOAD_SLACK + fl->wmin < n->t &&
	       made + FWD_LOAD_SLACK + fl->wmax > now;
}

struct fwd_load_arg {
	struct forwarder *fw;
	int64_t now;
};

static int
fwd_load_one(void *arg, const struct spool_next *n)
{
	struct forwarder *fw = ((struct fwd_load_arg *)arg)->fw;
	struct fwd_load *fl = &fw->load;
	int64_t now = ((struct fwd_load_arg *)arg)->now;
	struct spool_envelope *e;

	fl->last = *n;
	fl->have = 1;
	fl->loaded++;
	if (fwd_msg_inflight(fw, n->id) || schedule_when(fw->sched, n->id) >= 0)
		return 0;
	if (fwd_load_may_warn(fl, n, now)) {
		if ((e = spool_envelope_get(fw->spool, n->id)) != NULL) {
			int64_t wt =
			    fwd_dsn_warn_time(fw, e, fwd_lifetime(fw, e));

			fl->envelopes++;
			fl->scheduled++;
			fwd_reschedule(fw, e);
			/* a warning that fell due while we were down or
			 * loading: now, not at the next attempt */
			if (wt >= 0 && wt <= now &&
			    schedule_when(fw->sched, n->id) > now)
				schedule_set(fw->sched, n->id, now);
			spool_envelope_free(e);
			return 0;
		}
		if (spool_errno(fw->spool) == SPOOL_ENOTFOUND)
			return 0;
		/* unreadable now: its attempt reads it again */
	}
	if (schedule_set(fw->sched, n->id, n->t) == 0) {
		schedule_set_tag(fw->sched, n->id, n->tag);
		schedule_set_flags(fw->sched, n->id,
		                   n->flags & SPOOL_NEXT_CONN ? FWD_SCHED_CONN
		                                              : 0);
		fl->scheduled++;
	}
	return 0;
}

static void
fwd_load_done(struct forwarder *fw, const char *how)
{
	struct fwd_load *fl = &fw->load;

	fl->active = 0;
	ev_timer_stop(fw->loop, &fl->w);
	log_info("queue loaded%s: %zu message(s) scheduled from the index in "
	         "%.2f s (%zu envelope(s) read)",
	         how, fl->scheduled, ev_time() - fl->started, fl->envelopes);
}

/* fwd_load_batch - max keys (0 = all); 1 while keys are left */
static int
fwd_load_batch(struct forwarder *fw, int max)
{
	struct fwd_load *fl = &fw->load;
	struct fwd_load_arg a = {fw, fwd_now(fw)};
	int n;

	fwd_load_warnings(fw);
	n = spool_next_scan(fw->spool, fl->have ? &fl->last : NULL, max,
	                    fwd_load_one, &a);
	if (n < 0) {
		log_err("loading the queue: %s (trying again in 1 s)",
		        spool_error(fw->spool));
		return 1;
	}
	if (max == 0 || n < max) {
		fwd_load_done(fw, max == 0 ? " (the rest at once for a flush)"
		                           : "");
		return 0;
	}
	return 1;
}

static void
fwd_load_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct forwarder *fw = w->data;
	struct fwd_load *fl = &fw->load;
	size_t before = fl->loaded;
	char id0[SPOOL_ID_LEN + 1], id1[SPOOL_ID_LEN + 1];
	int64_t t0 = -1, t1 = -1;
	int had, has;

	if (!fl->active)
		return;
	had = schedule_peek(fw->sched, &t0, id0) == 1;
	if (fwd_load_batch(fw, fw->load_batch > 0 ? fw->load_batch
	                                          : FWD_LOAD_BATCH)) {
		/* the next batch on the next loop iteration, after the I/O
		 * it has waiting; after an error, a second later */
		ev_timer_set(w, fl->loaded == before ? 1. : fw->load_pause, 0.);
		ev_timer_start(loop, w);
	}
	/*
	 * Re-arm the forwarder only when the batch put an earlier entry
	 * first: fwd_arm restarts its timer, and a timer restarted every
	 * iteration while due never fires (due mail would wait for the
	 * whole load).
	 */
	has = schedule_peek(fw->sched, &t1, id1) == 1;
	if (has && (!had || t1 != t0 || strcmp(id0, id1) != 0))
		fwd_arm(fw);
}

void
fwd_load_start(struct forwarder *fw)
{
	struct fwd_load *fl = &fw->load;

	memset(fl, 0, sizeof(*fl));
	fl->active = 1;
	fl->started = ev_time();
	ev_timer_init(&fl->w, fwd_load_cb, 0., 0.);
	fl->w.data = fw;
	ev_timer_start(fw->loop, &fl->w);
}

int
fwd_load_finish(struct forwarder *fw)
{
	struct fwd_load *fl = &fw->load;

	if (!fl->active)
		return 0;
	if (fwd_load_batch(fw, 0) != 0)
		return -1;
	fwd_arm(fw);
	return 0;
}

int
fwd_load_pending(const struct forwarder *fw)
{
	return fw->load.active;
}

void
fwd_load_stop(struct forwarder *fw)
{
	struct fwd_load *fl = &fw->load;

	if (fl->active && fw->loop != NULL)
		ev_timer_stop(fw->loop, &fl->w);
	fl->active = 0;
}
