/*
 * fwd_dsn.c - the forwarder's delivery status notifications beyond the
 * plain bounce: delay warnings (delay_warning, RFC 3464 Action: delayed,
 * once per message, remembered in the envelope), bounces owed after a
 * failed allocation or spool write (SPOOL_RCPT_F_BOUNCE: the message
 * stays until its bounce is queued), and the queueing of any DSN with
 * its log lines.  forward.c calls it; it composes with bounce.c and hands
 * the new message to fwd_queued().  Time and lifetime are parameters.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fwd_dsn.h"
#include "fwd_int.h"
#include "log.h"
#include "stats.h"

static const char *
fwd_dsn_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at ? at + 1 : "";
}

/*
 * fwd_dsn_send - queue a DSN of kind for the items and schedule it: 0
 * when queued or not wanted, -1 when it could not be queued (the caller
 * keeps what it needs to try again)
 */
int
fwd_dsn_send(struct forwarder *fw, const struct spool_envelope *e,
             struct bounce_item *it, int n, enum bounce_kind kind,
             int64_t until, int64_t now)
{
	static const char *const what[] = {"bounce", "delay notification",
	                                   "delivery notification"};
	static const char *const line[] = {"non-delivery", "delay",
	                                   "delivery status"};
	struct spool_envelope *b = NULL;
	char err[256];
	int r;

	if (n == 0)
		return 0;
	r = bounce_create_kind(fw->spool, e, it, n, kind, fwd_cfg(fw)->hostname,
	                       now, until, &b, err, sizeof(err));
	if (r < 0) {
		log_err("%s: cannot queue the %s: %s", e->id, what[kind], err);
		return -1;
	}
	if (r == 0) {
		if (kind == BOUNCE_FAILED)
			log_msg(e->id, "no bounce: %s",
			        e->is_bounce ? "the message is a bounce"
			        : e->sender[0] == '\0'
			            ? "null sender"
			            : "NOTIFY does not ask for it");
		return 0;
	}
	stats.dsn_sent++;
	log_svc("bounce", LOG_INFO, e->id, "sender %s notification: %s",
	        line[kind], b->id);
	log_msg(b->id, "from=<>, size=%llu, nrcpt=1 (queue active)",
	        (unsigned long long)b->size);
	fwd_queued(fw, b);
	spool_envelope_free(b);
	return 0;
}

/* fwd_dsn_owed_wait - how long a DSN that could not be queued waits */
long
fwd_dsn_owed_wait(const struct forwarder *fw)
{
	long t = fwd_cfg(fw)->nretry > 0 ? fwd_cfg(fw)->retry[0] : 60;

	return t < 1 ? 1 : t > 60 ? 60 : t;
}

/* fwd_status_of - the enhanced code leading a stored last error */
static int
fwd_dsn_status_of(const char *err, char *enh, size_t len)
{
	size_t n = 0;

	if (err == NULL)
		return 0;
	while (err[n] != '\0' && err[n] != ' ' && n + 1 < len &&
	       (isdigit((unsigned char)err[n]) || err[n] == '.'))
		n++;
	if (n < 5 || (err[n] != ' ' && err[n] != '\0') || err[1] != '.')
		return 0;
	memcpy(enh, err, n);
	enh[n] = '\0';
	return 1;
}

/*
 * fwd_dsn_owed - the DSNs of recipients that failed while their bounce
 * could not be queued (SPOOL_RCPT_F_BOUNCE), rebuilt from the stored
 * last error; the flag is cleared once queued
 */
void
fwd_dsn_owed(struct forwarder *fw, struct spool_envelope *e, int64_t now)
{
	struct bounce_item *it;
	int i, n = 0;

	for (i = 0; i < e->nrcpt; i++)
		if (e->rcpt[i].state == SPOOL_RCPT_FAILED &&
		    (e->rcpt[i].flags & SPOOL_RCPT_F_BOUNCE))
			n++;
	if (n == 0)
		return;
	if ((it = bounce_calloc((size_t)n, sizeof(*it))) == NULL) {
		log_err("%s: cannot queue the bounce: out of memory", e->id);
		return;
	}
	n = 0;
	for (i = 0; i < e->nrcpt; i++) {
		const struct spool_rcpt *rc = &e->rcpt[i];
		char enh[16];

		if (rc->state != SPOOL_RCPT_FAILED ||
		    !(rc->flags & SPOOL_RCPT_F_BOUNCE))
			continue;
		it[n].rcpt = i;
		it[n].last_attempt = now;
		if (fwd_dsn_status_of(rc->last_error, enh, sizeof(enh)) &&
		    enh[0] == '5')
			result_set(&it[n].res, 0, enh, "%s",
			           rc->last_error + strlen(enh) + 1);
		else
			result_set(&it[n].res, 0, "4.4.7",
			           "delivery time "
			           "expired%s%s",
			           rc->last_error ? "; last error: " : "",
			           rc->last_error ? rc->last_error : "");
		n++;
	}
	if (fwd_dsn_send(fw, e, it, n, BOUNCE_FAILED, 0, now) == 0)
		for (i = 0; i < n; i++)
			e->rcpt[it[i].rcpt].flags &= ~SPOOL_RCPT_F_BOUNCE;
	free(it);
}

/* fwd_dsn_delay_warning - delay_warning of e's domain, else the global one */
static long
fwd_dsn_delay_warning(const struct forwarder *fw,
                      const struct spool_envelope *e)
{
	long w = fwd_cfg(fw)->delay_warning;
	int i;

	for (i = 0; i < e->nrcpt; i++) {
		const struct policy_domain *pd = policy_find_domain(
		    fwd_cfg(fw)->policy, fwd_dsn_domain(e->rcpt[i].address));

		if (pd != NULL && pd->delay_warning != 0) {
			w = pd->delay_warning > 0 ? pd->delay_warning : 0;
			break;
		}
	}
	return w;
}

/*
 * fwd_dsn_warn_time - when e's delayed DSN is due, -1 when none will be: off,
 * sent already, a bounce or <>, no pending recipient asking for it
 * (NOTIFY), or the lifetime ends first
 */
int64_t
fwd_dsn_warn_time(const struct forwarder *fw, const struct spool_envelope *e,
                  long lifetime)
{
	long w;
	int i;

	if (e->delay_warned || e->is_bounce || e->sender == NULL ||
	    e->sender[0] == '\0' || (w = fwd_dsn_delay_warning(fw, e)) <= 0 ||
	    w >= lifetime)
		return -1;
	for (i = 0; i < e->nrcpt; i++)
		if (e->rcpt[i].state == SPOOL_RCPT_PENDING &&
		    bounce_wanted_kind(e, i, BOUNCE_DELAYED))
			return e->arrival + w;
	return -1;
}

/* fwd_dsn_warn_wakeup - schedule time t, earlier when the warning is due */
int64_t
fwd_dsn_warn_wakeup(const struct forwarder *fw, const struct spool_envelope *e,
                    int64_t t, int64_t now, long lifetime)
{
	int64_t wt = fwd_dsn_warn_time(fw, e, lifetime);

	if (t < 0 || wt < 0 || wt <= now || wt >= t)
		return t;
	return wt;
}

/*
 * fwd_dsn_delay_warn - RFC 3464 Action: delayed for e's pending recipients
 * once it has been queued delay_warning: 1 when sent now (e rewritten
 * with delay_warned, so a restart does not send it again), 0 otherwise.
 * A failure leaves it for the next attempt.
 */
int
fwd_dsn_delay_warn(struct forwarder *fw, struct spool_envelope *e, int64_t now,
                   long lifetime)
{
	struct bounce_item *it;
	int64_t wt = fwd_dsn_warn_time(fw, e, lifetime);
	int i, n = 0;

	if (wt < 0 || now < wt)
		return 0;
	if ((it = bounce_calloc((size_t)e->nrcpt, sizeof(*it))) == NULL)
		return 0;
	for (i = 0; i < e->nrcpt; i++) {
		const struct spool_rcpt *rc = &e->rcpt[i];
		char enh[16];

		if (rc->state != SPOOL_RCPT_PENDING ||
		    !bounce_wanted_kind(e, i, BOUNCE_DELAYED))
			continue;
		it[n].rcpt = i;
		if (fwd_dsn_status_of(rc->last_error, enh, sizeof(enh)) &&
		    enh[0] == '4')
			result_set(&it[n].res, 0, enh, "%s",
			           rc->last_error + strlen(enh) + 1);
		else if (rc->last_error != NULL)
			result_set(&it[n].res, 0, "4.0.0", "%s",
			           rc->last_error);
		else
			result_set(&it[n].res, 0, "4.0.0", "not yet delivered");
		n++;
	}
	if (fwd_dsn_send(fw, e, it, n, BOUNCE_DELAYED, e->arrival + lifetime,
	                 now) < 0) {
		free(it);
		return 0;
	}
	free(it);
	e->delay_warned = 1;
	if (spool_envelope_put(fw->spool, e) < 0)
		log_err("%s: cannot update the spool: %s", e->id,
		        spool_error(fw->spool));
	return 1;
}

/* fwd_dsn_owes - has e a failed recipient whose DSN is not queued? */
int
fwd_dsn_owes(const struct spool_envelope *e)
{
	int i;

	for (i = 0; i < e->nrcpt; i++)
		if (e->rcpt[i].state == SPOOL_RCPT_FAILED &&
		    (e->rcpt[i].flags & SPOOL_RCPT_F_BOUNCE))
			return 1;
	return 0;
}
