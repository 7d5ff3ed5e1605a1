/*
 * metrics_domain.h - per-domain delivery metrics for the Prometheus page:
 * recipients sent/deferred/bounced and TLS outcomes by recipient domain
 * (the domains of the config; any other, e.g. a bounce's recipient, is
 * counted as domain="other", so label cardinality stays bounded), and a
 * histogram of the delay from arrival to the final outcome (the queue
 * residence of a recipient).  forward.c calls metrics_domain_record()
 * where it logs a delivery line; metrics.c appends the families.
 */
#ifndef BACKMX_METRICS_DOMAIN_H
#define BACKMX_METRICS_DOMAIN_H

#include "json.h"

/* status "sent" | "deferred" | "bounced"; tls NULL (no connection),
 * "none" (in clear) or the TLS description */
void metrics_domain_record(const char *addr, const char *status,
			   double delay, const char *tls);
void metrics_domain_page(struct json_buf *b);

#endif
