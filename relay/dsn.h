/*
 * dsn.h - RFC 3464 delivery status notifications (RFC 6522
 * multipart/report) for recipients that failed for good, queued as new
 * spool messages from <> (is_bounce) to the original sender.  queue.c
 * calls dsn_bounce() once per failed batch of a message; it never
 * bounces a bounce or a null sender, and honours NOTIFY.
 *
 * Ownership: dsn_compose() returns a malloc'd buffer the caller frees.
 */
#ifndef BACKMX_DSN_H
#define BACKMX_DSN_H

#include <stddef.h>
#include <stdint.h>

#include "policy.h"
#include "spool.h"

/* returned whole when RET=FULL, else headers only; bigger: headers only */
#define DSN_FULL_MAX (10 * 1024 * 1024)
#define DSN_HDRS_MAX (256 * 1024)

struct dsn_item {
	int rcpt;			/* index into e->rcpt */
	struct result res;		/* enh = the Status */
	int remote;			/* res is the remote server's reply */
	char remote_mta[POLICY_DOMAIN_MAX + 80]; /* "host[addr]:port" */
	int64_t last_attempt;		/* unix time */
};

/* dsn_wanted - may a failure DSN be sent for recipient i of e? */
int dsn_wanted(const struct spool_envelope *e, int i);

/*
 * dsn_compose - the DSN up to the returned content: header, text/plain
 * part, message/delivery-status part and the header of the third part
 * (message/rfc822 when full, else text/rfc822-headers), CRLF line ends.
 * The caller appends the content and dsn_trailer().  boundary is used
 * as given.  Items not wanted are skipped.  NULL on ENOMEM.
 */
char *dsn_compose(const struct spool_envelope *e, const struct dsn_item *it,
		  int n, const char *hostname, const char *boundary,
		  int64_t now, int full, size_t *len);
/* dsn_trailer - "\r\n--BOUNDARY--\r\n" into buf; returns its length */
size_t dsn_trailer(const char *boundary, char *buf, size_t buflen);

/*
 * dsn_bounce - queue one DSN for the wanted items and hand it to the
 * forwarder.  Returns 1 when queued, 0 when none was wanted, -1 on error
 * (logged).
 */
int dsn_bounce(const struct spool_envelope *e, const struct dsn_item *it,
	       int n, int64_t now);

#endif
