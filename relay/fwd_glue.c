/*
 * fwd_glue.c - the daemon's one forwarder: filled from the global
 * `backmxd` (main.c) by forward_init, and the public forward_* API
 * (forward.h) on it.  The only forwarder file that reads `backmxd`;
 * everything else gets its struct forwarder passed.  The config and the
 * own-address list are reached through pointers to backmxd's fields, so
 * a SIGHUP reload (reload.c swaps backmxd.cfg) is seen at once.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backmxd.h"
#include "forward.h"
#include "fwd_int.h"

static struct forwarder fwd_daemon;

/* set in a worker process (worker_child.c): the forwarder runs in the
 * parent, so a queued message and a flush go there */
void (*forward_queued_hook)(const struct spool_envelope *e);
int (*forward_flush_hook)(const char *domain);

/* fwd_ev_now - the daemon's clock: the loop's time */
static double
fwd_ev_now(const struct forwarder *fw)
{
	return ev_now(fw->loop);
}

int
forward_init(void)
{
	struct forwarder *fw = &fwd_daemon;
	const char *fail = getenv("BACKMXD_TEST_BOUNCE_ENOMEM");
	const char *batch = getenv("BACKMXD_TEST_LOAD_BATCH");

	/* the integration tests' allocation-failure injection */
	if (fail != NULL)
		bounce_fail_allocs(atoi(fail));
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());
	fw->loop = backmxd.loop;
	fw->now = fwd_ev_now;
	fw->spool = backmxd.spool;
	fw->sched = backmxd.sched;
	fw->dns = backmxd.dns;
	fw->cfg = &backmxd.cfg;
	fw->own_addrs = &backmxd.own_addrs;
	fw->nown_addrs = &backmxd.nown_addrs;
	fw->io = &fwd_io_real;
	/* the integration tests' small, slow load batches: "KEYS[:SECONDS]" */
	if (batch != NULL && atoi(batch) > 0)
		fw->load_batch = atoi(batch);
	if (batch != NULL && strchr(batch, ':') != NULL &&
	    atof(strchr(batch, ':') + 1) > 0)
		fw->load_pause = atof(strchr(batch, ':') + 1);
	return fwd_init(fw);
}

void
forward_shutdown(void)
{
	fwd_shutdown(&fwd_daemon);
}

void
forward_presuspend(struct spool_envelope *e)
{
	if (forward_queued_hook != NULL)
		return; /* a worker knows no destination's state */
	fwd_presuspend(&fwd_daemon, e);
}

int
forward_domain_suspended(const struct policy_domain *pd, char *why,
                         size_t whylen)
{
	if (forward_queued_hook != NULL)
		return 0;
	return fwd_domain_suspended(&fwd_daemon, pd, why, whylen);
}

void
forward_queued(const struct spool_envelope *e)
{
	if (forward_queued_hook != NULL) {
		forward_queued_hook(e);
		return;
	}
	fwd_queued(&fwd_daemon, e);
}

int
forward_flush(const char *domain)
{
	if (forward_flush_hook != NULL)
		return forward_flush_hook(domain);
	return fwd_flush_match(&fwd_daemon, domain, NULL, 0);
}

int
forward_hold(const char *id_or_domain, int hold)
{
	return fwd_hold(&fwd_daemon, id_or_domain, hold);
}

int
forward_flush_id(const char *id, int requeue)
{
	return fwd_flush_id(&fwd_daemon, id, requeue);
}

int
forward_delete(const char *id)
{
	return fwd_delete(&fwd_daemon, id);
}

int
forward_bounce(const char *id)
{
	return fwd_bounce(&fwd_daemon, id);
}
