/*
 * metrics_domain.h - per-domain delivery metrics for the Prometheus page.
 *
 * Recipients sent/deferred/bounced, TLS outcomes, and two histograms,
 * all labelled by recipient domain: the domains of the config; any other
 * (e.g. a bounce's recipient) is counted as domain="other", so label
 * cardinality stays bounded.
 *   backmx_domain_recipients_total{domain,status}   counter
 *   backmx_domain_tls_total{domain,tls}             counter, tls = none |
 *       trusted | untrusted | verified | dane (how the connection that
 *       carried the attempt was protected) | failed (TLS could not be
 *       set up as the policy requires: 4.7.x, no connection used)
 *   backmx_queue_residence_seconds{domain}          histogram, arrival to
 *       the final outcome (sent or bounced) of a recipient
 *   backmx_delivery_latency_seconds{domain}         histogram, connection
 *       setup + transaction of an attempt that reached a server, any
 *       outcome
 * fwd_result.c calls metrics_domain_record() where it logs a delivery
 * line; metrics.c appends metrics_domain_page().  The per-domain queue
 * gauges are metrics_queue.h's.
 */
#ifndef BACKMX_METRICS_DOMAIN_H
#define BACKMX_METRICS_DOMAIN_H

#include "json.h"

/*
 * metrics_domain_record - one recipient's attempt: addr its address,
 * status "sent" | "deferred" | "bounced", residence seconds since
 * arrival, latency seconds of setup + transmission (< 0: no server was
 * reached), tls NULL (no connection), "none" (in clear) or the TLS
 * description ("TLSv1.3 verified"), enh the enhanced status ("" none).
 */
void metrics_domain_record(const char *addr, const char *status,
                           double residence, double latency, const char *tls,
                           const char *enh);
void metrics_domain_page(struct json_buf *b);

#endif
