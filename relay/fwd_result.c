/*
 * fwd_result.c - what a delivery's replies mean: each recipient's result
 * becomes delivered, deferred (its own retry step: no retry storm),
 * failed or expired; the delivery log lines (Postfix's format), the
 * counters, the bounce and the "relayed" DSN (fwd_dsn.c), the envelope
 * written back or removed, and whether the destination is suspended or
 * has recovered.  Caller: forward.c (fwd_done, fwd_process), fwd_ops.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bounce.h"
#include "callout.h"
#include "fwd_dsn.h"
#include "fwd_int.h"
#include "log.h"
#include "metrics_domain.h"
#include "stats.h"

/* the delivery whose results fwd_results is logging (delays=, conn_use=) */
static const struct delivery *fwd_log_d;

/* fwd_delay_fmt - Postfix's delays= number: two significant digits,
 * at most two decimals, no trailing zeros */
static void
fwd_delay_fmt(char *buf, size_t n, double v)
{
	char *p;

	if (v < 0)
		v = 0;
	snprintf(buf, n, v >= 10 ? "%.0f" : v >= 1 ? "%.1f" : "%.2f", v);
	if (strchr(buf, '.') != NULL) {
		for (p = buf + strlen(buf) - 1; *p == '0'; p--)
			*p = '\0';
		if (*p == '.')
			*p = '\0';
	}
}

/*
 * fwd_log_tls - the delivery line, as Postfix's smtp logs it:
 *   ID: to=<x@y>, relay=H[A]:25, [conn_use=N, ]delay=D, delays=a/b/c/d,
 *   dsn=X.Y.Z, status=sent|deferred|bounced (...)
 * delays: a before the queue (0: the message is queued as it arrives),
 * b in the queue, c connection setup, d transmission.  tls (the
 * connection's TLS state, "none" in clear, NULL when no connection
 * carried it) is appended as tls=...
 */
static void
fwd_log_tls(const struct forwarder *fw, const struct spool_envelope *e, int i,
            const char *relay, const struct result *r, const char *status,
            int remote, const char *tls)
{
	char dsn[16], tl[80], cu[32], db[16], dc[16], dd[16];
	const struct delivery *d = fwd_log_d;
	/* arrival has whole seconds: the delay is shown to 0.1 s as
	 * operators expect (delay=0.4), never negative */
	double now = fw->now(fw);
	double delay = now - (double)e->arrival, c = 0, x = 0;

	if (delay < 0)
		delay = 0;
	tl[0] = cu[0] = '\0';
	if (tls != NULL && tls[0] != '\0')
		snprintf(tl, sizeof(tl), ", tls=%s", tls);
	if (d != NULL && relay != NULL && d->t_send > 0) {
		x = now - d->t_send;
		c = d->setup;
		if (d->conn_use > 1)
			snprintf(cu, sizeof(cu), "conn_use=%d, ", d->conn_use);
	}
	if (x > delay)
		x = delay;
	if (c > delay - x)
		c = delay - x;
	fwd_delay_fmt(db, sizeof(db), delay - x - c);
	fwd_delay_fmt(dc, sizeof(dc), c);
	fwd_delay_fmt(dd, sizeof(dd), x);

	metrics_domain_record(
	    e->rcpt[i].address, status, delay,
	    d != NULL && relay != NULL && d->t_send > 0 ? c + x : -1, tls,
	    r->enh);
	if (r->enh[0] != '\0')
		snprintf(dsn, sizeof(dsn), "%s", r->enh);
	else
		snprintf(dsn, sizeof(dsn), "%d.0.0",
		         r->code / 100 >= 2 && r->code / 100 <= 5
		             ? r->code / 100
		             : 4);
	if (remote && r->code / 100 != 2)
		log_svc(relay ? "smtp" : "qmgr", LOG_INFO, e->id,
		        "to=<%s>, relay=%s, %sdelay=%.1f, "
		        "delays=0/%s/%s/%s, dsn=%s, "
		        "status=%s (host %s said: %d %s%s%s)%s",
		        e->rcpt[i].address, relay ? relay : "none", cu, delay,
		        db, dc, dd, dsn, status, relay ? relay : "none",
		        r->code, r->enh, r->enh[0] ? " " : "", r->text, tl);
	else if (remote)
		log_svc(relay ? "smtp" : "qmgr", LOG_INFO, e->id,
		        "to=<%s>, relay=%s, %sdelay=%.1f, "
		        "delays=0/%s/%s/%s, dsn=%s, "
		        "status=%s (%d %s%s%s)%s",
		        e->rcpt[i].address, relay ? relay : "none", cu, delay,
		        db, dc, dd, dsn, status, r->code, r->enh,
		        r->enh[0] ? " " : "", r->text, tl);
	else
		log_svc(relay ? "smtp" : "qmgr", LOG_INFO, e->id,
		        "to=<%s>, relay=%s, %sdelay=%.1f, "
		        "delays=0/%s/%s/%s, dsn=%s, "
		        "status=%s (%s)%s",
		        e->rcpt[i].address, relay ? relay : "none", cu, delay,
		        db, dc, dd, dsn, status, r->text, tl);
}

void
fwd_log(const struct forwarder *fw, const struct spool_envelope *e, int i,
        const char *relay, const struct result *r, const char *status,
        int remote)
{
	fwd_log_tls(fw, e, i, relay, r, status, remote, NULL);
}

static void
fwd_set_error(struct spool_rcpt *rc, const struct result *r, int remote,
              const char *relay)
{
	char buf[600];

	if (remote)
		snprintf(buf, sizeof(buf), "%s host %s said: %d %s%s%s",
		         r->enh[0] ? r->enh
		                   : (r->code / 100 == 5 ? "5.0.0" : "4.0.0"),
		         relay ? relay : "", r->code, r->enh,
		         r->enh[0] ? " " : "", r->text);
	else
		snprintf(buf, sizeof(buf), "%s %s",
		         r->enh[0] ? r->enh : "4.0.0", r->text);
	free(rc->last_error);
	rc->last_error = strdup(buf);
}

/*
 * fwd_commit - write e back (or delete it when every recipient is
 * final), bounce the failed batch first: a crash in between may send a
 * DSN twice, never lose one.
 */
void
fwd_commit(struct forwarder *fw, struct spool_envelope *e,
           struct bounce_item *it, int nit)
{
	int i, open = 0, owed = 0;
	int64_t now = fwd_now(fw);

	if (nit > 0 && fwd_dsn_send(fw, e, it, nit, BOUNCE_FAILED, 0, now) == 0)
		for (i = 0; i < nit; i++)
			e->rcpt[it[i].rcpt].flags &= ~SPOOL_RCPT_F_BOUNCE;
	/* those an allocation or the spool failed before */
	fwd_dsn_owed(fw, e, now);
	for (i = 0; i < e->nrcpt; i++) {
		struct spool_rcpt *rc = &e->rcpt[i];

		if (rc->state == SPOOL_RCPT_PENDING)
			open++;
		else if (rc->state == SPOOL_RCPT_FAILED &&
		         (rc->flags & SPOOL_RCPT_F_BOUNCE)) {
			/* the message stays until its bounce is queued */
			rc->next_attempt = now + fwd_dsn_owed_wait(fw);
			owed++;
		}
	}
	if (open == 0 && owed == 0) {
		schedule_remove(fw->sched, e->id);
		if (spool_message_delete(fw->spool, e->id) < 0) {
			/* (disk full) the spool still says pending: keep it
			 * scheduled, a later attempt or flush sends it again
			 * (a duplicate, never a loss) and removes it */
			log_err("%s: cannot remove from the spool: %s", e->id,
			        spool_error(fw->spool));
			schedule_set(fw->sched, e->id, fwd_now(fw) + 60);
		} else
			log_msg(e->id, "removed");
		return;
	}
	if (spool_envelope_put(fw->spool, e) < 0)
		log_err("%s: cannot update the spool: %s", e->id,
		        spool_error(fw->spool));
	fwd_reschedule(fw, e);
}

/*
 * fwd_expire - after a temporary failure, or when a message comes due:
 * has its time run out?  Then the pending recipient fails with 4.4.7.
 */
int
fwd_expired(const struct forwarder *fw, const struct spool_envelope *e,
            int64_t now)
{
	return now >= e->arrival + fwd_lifetime(fw, e);
}
/* fwd_all_temporary - every result of d is a 4xx */
static int
fwd_all_temporary(const struct delivery *d)
{
	int i;

	for (i = 0; i < d->nrcpt; i++)
		if (d->res[i].code / 100 != 4)
			return 0;
	return d->nrcpt > 0;
}
/* fwd_results - apply d's per-recipient results to the spool */
void
fwd_results(struct delivery *d)
{
	struct forwarder *fw = d->fw;
	struct spool_envelope *e;
	struct bounce_item *it;
	struct bounce_item *rl;
	int64_t now = fwd_now(fw);
	int i, nit = 0, nrl = 0, ok = 0, bad = 0, conn = 0;

	e = spool_envelope_get(fw->spool, d->id);
	if (e == NULL) {
		/* deleted meanwhile, or unreadable now: then try again */
		if (spool_errno(fw->spool) != SPOOL_ENOTFOUND) {
			log_err("%s: %s", d->id, spool_error(fw->spool));
			schedule_set(fw->sched, d->id, fwd_now(fw) + 60);
		}
		return;
	}
	/* a failed allocation leaves the recipients flagged: the message
	 * stays queued and fwd_commit tries their bounce again */
	it = bounce_calloc((size_t)d->nrcpt, sizeof(*it));
	rl = bounce_calloc((size_t)d->nrcpt, sizeof(*rl));
	fwd_log_d = d;
	for (i = 0; i < d->nrcpt; i++) {
		int k = d->rcpt[i];
		struct spool_rcpt *rc;
		const struct result *r = &d->res[i];
		const char *relay = d->relay[i][0] ? d->relay[i] : NULL;
		const char *tls = relay != NULL ? d->tlsdesc : NULL;
		int cls = r->code / 100;

		if (k >= e->nrcpt)
			continue;
		rc = &e->rcpt[k];
		if (rc->state != SPOOL_RCPT_PENDING)
			continue;
		rc->attempts++;
		if (cls == 2) {
			rc->state = SPOOL_RCPT_DELIVERED;
			free(rc->last_error);
			rc->last_error = NULL;
			fwd_log_tls(fw, e, k, relay, r, "sent", 1, tls);
			stats.delivered++;
			if (tls != NULL && strcmp(tls, "none") != 0) {
				stats.tls_outbound++;
				if (strstr(tls, " dane") != NULL)
					stats.tls_outbound_dane++;
				else if (strstr(tls, " verified") != NULL)
					stats.tls_outbound_verified++;
			}
			ok++;
			/* RFC 3461 5.2.2: the next hop will not report the
			 * delivery, so we say it was relayed */
			if (!d->dsn && (rc->notify & SPOOL_NOTIFY_SUCCESS) &&
			    rl != NULL) {
				rl[nrl].rcpt = k;
				rl[nrl].res = *r;
				rl[nrl].remote_mta = relay ? d->mta[i] : NULL;
				rl[nrl].last_attempt = now;
				nrl++;
			}
			continue;
		}
		fwd_set_error(rc, r, d->remote[i], relay);
		if (cls == 5 || (cls == 4 && fwd_expired(fw, e, now))) {
			rc->state = SPOOL_RCPT_FAILED;
			rc->flags |= SPOOL_RCPT_F_BOUNCE;
			if (it != NULL) {
				it[nit].rcpt = k;
				it[nit].res = *r;
				it[nit].remote_mta =
				    d->remote[i] && relay ? d->mta[i] : NULL;
				it[nit].last_attempt = now;
				if (cls == 4) {
					result_set(&it[nit].res, 0, "4.4.7",
					           "delivery time expired; "
					           "last error: %s",
					           rc->last_error);
					it[nit].remote_mta = NULL;
				}
				nit++;
			}
			if (cls == 4)
				log_msg(e->id,
				        "to=<%s>, relay=%s, delay=%lld, "
				        "dsn=4.4.7, status=expired, returned "
				        "to sender (%s)",
				        rc->address, relay ? relay : "none",
				        (long long)(now - e->arrival),
				        rc->last_error);
			else
				fwd_log_tls(fw, e, k, relay, r, "bounced",
				            d->remote[i], tls);
			stats.bounced++;
			bad++;
			continue;
		}
		/* its own schedule, whatever else went to the destination:
		 * an early attempt (flush) keeps the step and the time */
		rc->next_attempt = schedule_deferral(
		    fwd_cfg(fw)->retry, fwd_cfg(fw)->nretry, &rc->step,
		    rc->next_attempt, d->started, now,
		    e->arrival + fwd_lifetime(fw, e), fwd_jitter_seed(e->id));
		if (d->remote[i])
			rc->flags &= ~SPOOL_RCPT_F_CONN;
		else {
			rc->flags |= SPOOL_RCPT_F_CONN;
			conn++;
		}
		fwd_log_tls(fw, e, k, relay, r, "deferred", d->remote[i], tls);
		stats.deferred++;
		if (!d->remote[i] && (!strncmp(r->enh, "4.7.4", 5) ||
		                      !strncmp(r->enh, "4.7.5", 5)))
			stats.tls_deferred++;
		bad++;
	}
	fwd_log_d = NULL;
	/* before fwd_commit, which may delete the body it quotes */
	if (nrl > 0)
		(void)fwd_dsn_send(fw, e, rl, nrl, BOUNCE_RELAYED, 0, now);
	free(rl);
	/* the fw->list entry is removed by the caller first, so the
	 * reschedule in fwd_commit sees the message as not in flight */
	fwd_commit(fw, e, it, nit);
	free(it);
	spool_envelope_free(e);
	if (d->dest != NULL) {
		/* the primary's health for accept_when (callout.c) */
		if (d->connected || !d->suspended)
			callout_note_primary(d->dest->key, d->connected,
			                     d->res[0].text);
		if (ok > 0)
			d->dest->dead_until = 0;
		else if (bad > 0 && !d->connected && !d->suspended &&
		         fwd_all_temporary(d))
			fwd_dest_dead(fw, d->dest, d->res[0].text);
		/*
		 * Only connection-level failures count: a live primary that
		 * defers one recipient (450) has not "recovered" when it
		 * accepts the next message, and its recipient keeps its own
		 * schedule.  A recovery makes due only the messages deferred
		 * without an answer for their recipients.
		 */
		if (ok > 0) {
			if (d->dest->failures > 0) {
				int n;

				d->dest->failures = 0;
				n = fwd_flush_match(fw, NULL, d->dest->key, 1);
				if (n > 0)
					log_info("destination %s recovered: "
					         "%d message(s) made due",
					         d->is_static ? d->host
					                      : d->domain,
					         n);
			}
		} else if (conn > 0)
			d->dest->failures++;
	}
}
/* fwd_expire_now - fail every pending recipient of e: time is up */
void
fwd_expire_now(struct forwarder *fw, struct spool_envelope *e, const char *why)
{
	struct bounce_item *it = bounce_calloc((size_t)e->nrcpt, sizeof(*it));
	int i, nit = 0;
	int64_t now = fwd_now(fw);

	for (i = 0; i < e->nrcpt; i++) {
		struct spool_rcpt *rc = &e->rcpt[i];

		if (rc->state != SPOOL_RCPT_PENDING)
			continue;
		rc->state = SPOOL_RCPT_FAILED;
		rc->flags |= SPOOL_RCPT_F_BOUNCE;
		if (why != NULL) {
			/* what a rebuilt bounce says (fwd_dsn_owed) */
			char buf[400];

			snprintf(buf, sizeof(buf), "5.0.0 %s", why);
			free(rc->last_error);
			rc->last_error = strdup(buf);
		}
		if (it != NULL) {
			it[nit].rcpt = i;
			if (why != NULL)
				result_set(&it[nit].res, 0, "5.0.0", "%s", why);
			else
				result_set(
				    &it[nit].res, 0, "4.4.7",
				    "delivery time expired%s%s",
				    rc->last_error ? "; last error: " : "",
				    rc->last_error ? rc->last_error : "");
			it[nit].last_attempt = now;
			nit++;
		}
		log_msg(e->id,
		        "to=<%s>, relay=none, delay=%lld, dsn=%s, "
		        "status=%s (%s)",
		        rc->address, (long long)(now - e->arrival),
		        why ? "5.0.0" : "4.4.7",
		        why ? "bounced" : "expired, returned to sender",
		        why              ? why
		        : rc->last_error ? rc->last_error
		                         : "delivery time expired");
		stats.bounced++;
	}
	fwd_commit(fw, e, it, nit);
	free(it);
}
