/*
 * mirror_gate.c - `peer_ack peer`: the final reply to DATA / BDAT LAST
 * waits until the peer has acknowledged our spool up to the commit the
 * message was written in (see mirror.h).
 *
 * Commits are made one after another on the loop's thread, so the
 * commit LSNs of the waiting messages increase in the order they wait:
 * one FIFO, popped from the head by an ACK that covers the head's LSN
 * (done(arg, 1)) or by the head's deadline (done(arg, 0)).  One timer,
 * always armed for the head.  done is never called from inside
 * mirror_gate_commit.
 */
#include <stdlib.h>

#include "backmxd.h"
#include "log.h"
#include "mirror.h"
#include "mirror_int.h"

struct mirror_gate {
	struct spool_lsn lsn;
	double deadline;
	mirror_gate_fn *done;
	void *arg;
	struct mirror_gate *next;
};

static int gate_on;
static double gate_timeout;
static struct mirror_gate *gate_head, **gate_tail = &gate_head;
static ev_timer gate_timer;
static struct spool_lsn gate_acked;
static uint64_t gate_waiting;
static struct mirror_gate_stats gate_stats;

static void
gate_arm(void)
{
	ev_timer_stop(backmxd.loop, &gate_timer);
	if (gate_head == NULL)
		return;
	ev_timer_set(&gate_timer, gate_head->deadline - ev_now(backmxd.loop),
	             0.);
	ev_timer_start(backmxd.loop, &gate_timer);
}

/* gate_pop - unlink the head and tell its owner */
static void
gate_pop(int ok)
{
	struct mirror_gate *g = gate_head;

	if ((gate_head = g->next) == NULL)
		gate_tail = &gate_head;
	gate_waiting--;
	if (ok)
		gate_stats.acked++;
	else
		gate_stats.timeouts++;
	g->done(g->arg, ok);
	free(g);
}

static void
gate_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	double now = ev_now(loop);

	(void)w;
	(void)revents;
	while (gate_head != NULL && gate_head->deadline <= now)
		gate_pop(0);
	gate_arm();
}

void
mirror_gate_init(double timeout)
{
	gate_on = 1;
	gate_timeout = timeout;
	ev_init(&gate_timer, gate_timer_cb);
}

int
mirror_gate_commit(mirror_gate_fn *done, void *arg)
{
	struct spool_lsn lsn;
	struct mirror_gate *g;

	if (!gate_on)
		return MIRROR_GATE_NONE;
	gate_stats.gated++;
	lsn = spool_repl_last_perm(backmxd.spool);
	if (spool_lsn_cmp(&lsn, &gate_acked) <= 0) {
		gate_stats.acked++;
		return MIRROR_GATE_NONE; /* already on the peer's disk */
	}
	/* the link has been down longer than we would wait: no point in
	 * holding the client for the whole bound */
	if (mirror_own_down_for() >= gate_timeout) {
		gate_stats.timeouts++;
		gate_stats.link_down++;
		return MIRROR_GATE_FAILED;
	}
	if ((g = calloc(1, sizeof(*g))) == NULL) {
		gate_stats.timeouts++;
		return MIRROR_GATE_FAILED;
	}
	g->lsn = lsn;
	g->deadline = ev_now(backmxd.loop) + gate_timeout;
	g->done = done;
	g->arg = arg;
	*gate_tail = g;
	gate_tail = &g->next;
	gate_waiting++;
	if (!ev_is_active(&gate_timer))
		gate_arm();
	return MIRROR_GATE_WAIT;
}

void
mirror_gate_acked(const struct spool_lsn *acked)
{
	if (spool_lsn_cmp(acked, &gate_acked) > 0)
		gate_acked = *acked;
	if (!gate_on)
		return;
	while (gate_head != NULL &&
	       spool_lsn_cmp(&gate_head->lsn, &gate_acked) <= 0)
		gate_pop(1);
	gate_arm();
}

void
mirror_gate_flush(void)
{
	if (!gate_on)
		return;
	while (gate_head != NULL)
		gate_pop(0);
	ev_timer_stop(backmxd.loop, &gate_timer);
}

double
mirror_gate_timeout(void)
{
	return gate_on ? gate_timeout : 0;
}

void
mirror_gate_status(struct mirror_gate_stats *st)
{
	*st = gate_stats;
	st->waiting = gate_waiting;
}
