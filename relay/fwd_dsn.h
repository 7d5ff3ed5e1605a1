/*
 * fwd_dsn.h - DSNs of the forwarder (fwd_dsn.c): queue one of a kind,
 * retry owed bounces, delay warnings.  Used by forward.c and fwd_result.c
 * (and tests/unit/test_forwarder.c).
 */
#ifndef BACKMX_FWD_DSN_H
#define BACKMX_FWD_DSN_H

#include <stdint.h>

#include "bounce.h"
#include "spool.h"

struct forwarder;

/*
 * fwd_dsn_send - queue a DSN of kind for the items (until: the delayed
 * DSN's Will-Retry-Until) and schedule it: 0 when queued or not wanted,
 * -1 when it could not be queued (logged)
 */
int fwd_dsn_send(struct forwarder *fw, const struct spool_envelope *e,
                 struct bounce_item *it, int n, enum bounce_kind kind,
                 int64_t until, int64_t now);
/* fwd_dsn_owed_wait - seconds an owed bounce waits: retry[0], 1..60 */
long fwd_dsn_owed_wait(const struct forwarder *fw);
/* fwd_dsn_owes - has e a failed recipient whose DSN is not queued? */
int fwd_dsn_owes(const struct spool_envelope *e);
/* fwd_dsn_owed - queue the owed bounces (rebuilt from last_error); the
 * flag of each queued one is cleared in e (the caller writes e) */
void fwd_dsn_owed(struct forwarder *fw, struct spool_envelope *e, int64_t now);
/* fwd_dsn_warn_time - when e's delay warning is due, -1 for never */
int64_t fwd_dsn_warn_time(const struct forwarder *fw,
                          const struct spool_envelope *e, long lifetime);
/* fwd_dsn_warn_wakeup - the schedule time t, earlier when the warning
 * comes first */
int64_t fwd_dsn_warn_wakeup(const struct forwarder *fw,
                            const struct spool_envelope *e, int64_t t,
                            int64_t now, long lifetime);
/* fwd_dsn_delay_warn - send the delay warning when due: 1 when sent (e
 * rewritten in the spool with delay_warned), else 0 */
int fwd_dsn_delay_warn(struct forwarder *fw, struct spool_envelope *e,
                       int64_t now, long lifetime);

#endif
