/*
 * callout.h - recipient verification against a domain's primary: a
 * small SMTP client of its own (EHLO, STARTTLS per the domain's tls,
 * MAIL FROM:<>, RCPT TO per address, RSET/QUIT, never DATA) on the
 * daemon's loop.
 *
 * Per primary (the domain's route, or its MX hosts better than us):
 * at most callout_limit connections and callout_rate new ones a
 * minute; addresses waiting for a connection share the next one (one
 * connection verifies several addresses); concurrent requests for one
 * address share one question.  A primary that does not answer (refused,
 * timeout, garbage) is suspended for the first retry step, and the
 * forwarder's suspension of the same destination counts too, so a dead
 * primary gets no callout storm.
 *
 * Ownership: callout_start returns a handle the caller cancels with
 * callout_cancel unless the callback has run; the callback never runs
 * inside callout_start.
 */
#ifndef BACKMX_CALLOUT_H
#define BACKMX_CALLOUT_H

#include "policy.h"

struct callout_req;

/*
 * cb(arg, r): r->code 2xx the primary accepted the address, 5xx it
 * refused it (r->text holds its reply), 4xx it could not be asked or
 * answered 4xx (r says why).  For a probe (address NULL) 2xx means the
 * primary answered SMTP.
 */
typedef void (*callout_cb)(void *arg, const struct result *r);

/* callout_start - ask d's primary about address (NULL: health probe) */
struct callout_req *callout_start(const struct policy_domain *d,
                                  const char *address, callout_cb cb,
                                  void *arg);
void callout_cancel(struct callout_req *q);

/*
 * callout_primary_state - what is known of d's primary: -1 down (a
 * callout or the forwarder could not reach it lately; *why says how),
 * 1 up (answered SMTP within the last minute: a delivery, a callout or
 * a probe), 0 unknown (probe it).
 */
int callout_primary_state(const struct policy_domain *d, char *why,
                          size_t whylen);
/*
 * callout_note_primary - the forwarder's word on the destination named
 * key (its fwd_dest key, the same as ours): answered, a delivery reached
 * the primary's SMTP (whatever it said of the recipients); else nobody
 * answered (why).  Feeds callout_primary_state.
 */
void callout_note_primary(const char *key, int answered, const char *why);
/* callout_set_store - fn(domain, address, r) after every 2xx/5xx answer */
typedef void (*callout_store_fn)(const char *domain, const char *address,
                                 const struct result *r);
void callout_set_store(callout_store_fn fn);
/* callout_shutdown - fail every request (4xx) and close connections */
void callout_shutdown(void);

/* counters for stats/metrics */
struct callout_stats {
	unsigned long long callouts; /* questions sent (RCPT TO) */
	unsigned long long connections;
	unsigned long long probes;
	unsigned long long suspended; /* requests answered by a suspension */
};
extern struct callout_stats callout_stats;

#endif
