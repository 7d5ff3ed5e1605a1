/*
 * metrics_queue.h - the per-domain queue gauges of the Prometheus page:
 *   backmx_domain_queue_messages{domain}        messages with a pending
 *       recipient in the domain (a message to two domains counts in both)
 *   backmx_domain_oldest_message_age_seconds{domain}   age of the oldest
 *       of them, 0 when none
 * one sample per configured domain.  Counting walks the envelopes: up to
 * METRICS_QUEUE_SYNC_MAX messages it is done during the scrape, so the
 * page is exact; above, a pass of METRICS_QUEUE_BATCH envelopes per loop
 * turn runs in the background and the page shows the last finished pass
 * (backmx_domain_queue_scan_age_seconds says how old it is), so a
 * scrape of a huge spool never stalls the loop.
 */
#ifndef BACKMX_METRICS_QUEUE_H
#define BACKMX_METRICS_QUEUE_H

#include "json.h"

#define METRICS_QUEUE_SYNC_MAX 10000
#define METRICS_QUEUE_BATCH 2000
#define METRICS_QUEUE_MAX_AGE 15 /* seconds: a scrape starts a new pass */

void metrics_queue_page(struct json_buf *b);
/* metrics_queue_stop - end a background pass (metrics_close) */
void metrics_queue_stop(void);

#endif
