/*
 * bounce.h - RFC 3464 delivery status notifications (RFC 6522
 * multipart/report) for recipients that failed for good, queued as new
 * spool messages from <> to the original sender.  fwd_dsn.c calls it
 * with the failed batch of one message; it never bounces a bounce or a
 * null sender, and honours NOTIFY.
 *
 * Ownership: bounce_compose_report returns a malloc'd buffer the caller
 * frees; bounce_create returns a new envelope the caller frees with
 * spool_envelope_free().
 */
#ifndef BACKMX_BOUNCE_H
#define BACKMX_BOUNCE_H

#include <stddef.h>
#include <stdint.h>

#include "policy.h"
#include "spool.h"

/* messages at most this big are returned whole when RET was not given */
#define BOUNCE_FULL_MAX (256 * 1024)
/* header bytes returned at most for RET=HDRS */
#define BOUNCE_HDRS_MAX (256 * 1024)

struct bounce_item {
	int rcpt;               /* index into e->rcpt */
	struct result res;      /* enh = the Status */
	const char *remote_mta; /* host name when res is a remote
	                           SMTP reply, else NULL (local) */
	int64_t last_attempt;   /* unix time */
};

enum bounce_kind {
	BOUNCE_FAILED = 0, /* Action: failed (a bounce) */
	BOUNCE_DELAYED,    /* Action: delayed (delay_warning) */
	BOUNCE_RELAYED,    /* Action: relayed (RFC 3461 5.2.2) */
};

/* bounce_wanted - may a failure DSN be sent for recipient i of e? */
int bounce_wanted(const struct spool_envelope *e, int i);
/* bounce_wanted_kind - the same for a DSN of that kind: NOTIFY (none:
 * FAILURE,DELAY), never NEVER, never for <> or a bounce */
int bounce_wanted_kind(const struct spool_envelope *e, int i,
                       enum bounce_kind kind);

/* bounce_return_full - return the whole message (1) or headers only (0) */
int bounce_return_full(const struct spool_envelope *e);

/*
 * bounce_compose_report - the DSN up to the returned content: top-level
 * header, text/plain part, delivery-status part, and the header of the
 * third part (message/rfc822 when full, else text/rfc822-headers),
 * CRLF line endings.  The content and the closing boundary
 * "--ID/HOSTNAME--" complete it.  msgid is the new message's id.  Returns NULL
 * on ENOMEM.
 */
char *bounce_compose_report(const struct spool_envelope *e,
                            const struct bounce_item *it, int n,
                            const char *hostname, const char *msgid,
                            int64_t now, int full, size_t *len);

/*
 * bounce_compose - as bounce_compose_report for a DSN of kind; until is
 * the Will-Retry-Until time of a delayed DSN.
 */
char *bounce_compose(const struct spool_envelope *e,
                     const struct bounce_item *it, int n, enum bounce_kind kind,
                     const char *hostname, const char *msgid, int64_t now,
                     int64_t until, int full, size_t *len);

/*
 * bounce_create - queue one DSN for the items (those not wanted are
 * skipped).  Returns 1 and *out (pending, due now) when a DSN was queued,
 * 0 when none was wanted, -1 on spool failure (err set).
 */
int bounce_create(struct spool *s, const struct spool_envelope *e,
                  const struct bounce_item *it, int n, const char *hostname,
                  int64_t now, struct spool_envelope **out, char *err,
                  size_t errlen);
/* bounce_create_kind - bounce_create for a DSN of kind (until: above);
 * delayed and relayed DSNs return the header unless RET=FULL */
int bounce_create_kind(struct spool *s, const struct spool_envelope *e,
                       const struct bounce_item *it, int n,
                       enum bounce_kind kind, const char *hostname, int64_t now,
                       int64_t until, struct spool_envelope **out, char *err,
                       size_t errlen);

/* bounce_fail_allocs - tests: the next n allocations of bounce items
 * and bounce envelopes fail (0 = none) */
void bounce_fail_allocs(int n);
/* bounce_calloc - calloc that the hook above can make fail (fwd_result.c
 * and fwd_dsn.c allocate their bounce items with it) */
void *bounce_calloc(size_t n, size_t size);

#endif
