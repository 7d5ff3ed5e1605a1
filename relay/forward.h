/*
 * forward.h - the forwarder: takes due messages from the schedule,
 * resolves their route (static, or MX with the backup-MX cut), delivers
 * them with smtp_client, records per-recipient results in the spool,
 * retries on the `retry` schedule and bounces (bounce.c) when it must.
 *
 * Callers: main.c (init/shutdown), smtpd.c and smtpd_body.c (a message
 * was queued, presuspend), smtpd_cmd.c (ETRN), control_queue.c (flush,
 * hold, release, delete, bounce), callout.c (suspended?).  Implemented
 * by fwd_glue.c on the daemon's struct forwarder (fwd_int.h).
 */
#ifndef BACKMX_FORWARD_H
#define BACKMX_FORWARD_H

#include "spool.h"

/* forward_init - rebuild the schedule from the spool, start the timers */
int forward_init(void);
/* forward_shutdown - abort deliveries in flight (they stay pending) */
void forward_shutdown(void);
/*
 * forward_presuspend - before a new message is committed: recipients
 * whose destination is suspended (none of its addresses answered) get
 * their deferral written in the same commit (attempts 1, last_error,
 * next_attempt), so the forwarder does not touch them now.
 */
void forward_presuspend(struct spool_envelope *e);
/*
 * forward_domain_suspended - is the destination of pd's mail suspended
 * (none of its addresses answered lately)?  1 with why filled, else 0.
 */
struct policy_domain;
int forward_domain_suspended(const struct policy_domain *pd, char *why,
                             size_t whylen);
/* forward_queued - a message was committed and synced: deliver it soon */
void forward_queued(const struct spool_envelope *e);
/*
 * forward_flush - make every pending, not-held recipient (of domain, or
 * all when NULL) due now.  Returns the number of messages affected.
 */
int forward_flush(const char *domain);
/* in a worker process (worker_child.c): forward_queued/forward_flush
 * go to the parent's forwarder through these; presuspend and
 * domain_suspended do nothing there */
extern void (*forward_queued_hook)(const struct spool_envelope *e);
extern int (*forward_flush_hook)(const char *domain);
/* forward_hold - hold (hold=1) or release (0) a message id or a domain;
 * returns the number of messages changed, -1 when nothing matched */
int forward_hold(const char *id_or_domain, int hold);
/*
 * forward_flush_id - make one message's pending recipients due now and
 * end the suspension of its destinations; requeue=1 also resets their
 * retry schedule (attempts 0, next attempt now: the route is looked up
 * anew at once).  Held messages are left alone.  1 when the message was
 * affected (scheduled, or in flight), 0 when not, -1 on a spool error.
 */
int forward_flush_id(const char *id, int requeue);
/* forward_delete - remove a message (aborting its delivery); 0 / -1 */
int forward_delete(const char *id);
/* forward_bounce - give up now, bounce to the sender, remove; 0 / -1 */
int forward_bounce(const char *id);

#endif
