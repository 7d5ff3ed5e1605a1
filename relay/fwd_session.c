/*
 * fwd_session.c - one delivery: a message's recipients for one
 * destination, from its start (a connection handed over, or a route to
 * find) through each host and address in order (fwd_try_next), the
 * SMTP client connection (smtp_client.c) and the transaction, to its end
 * (fwd_done in forward.c, which records the results with fwd_result.c).
 * Its state (enum fwd_state) changes only in fwd_session_to, logged at
 * debug level (backmxd -d): "ID: delivery to KEY: MX -> ADDR".
 * Caller: forward.c (fwd_start).
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backmxd.h"
#include "dns.h"
#include "fwd_int.h"
#include "log.h"
#include "mtasts.h"
#include "smtp_client.h"
#include "stats.h"

static void fwd_client_cb(void *arg, struct smtp_client *c,
			  const struct result *r);

/* fwd_state_name - the name of a state, for logs */
const char *
fwd_state_name(enum fwd_state s)
{
	static const char *const names[] = {"NEW", "MX", "ADDR", "STS",
					    "TLSA", "CONNECT", "SEND", "DONE"};

	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s]
							       : "?";
}

/* fwd_session_to - the one transition of a delivery's state */
void
fwd_session_to(struct delivery *d, enum fwd_state next)
{
	log_debug("%s: delivery to %s: %s -> %s", d->id,
		  d->dest != NULL ? d->dest->key : "?",
		  fwd_state_name(d->state), fwd_state_name(next));
	d->state = next;
}

/* fwd_all - the same result for every recipient of d */
static void
fwd_all(struct delivery *d, const struct result *r, int remote)
{
	int i;

	for (i = 0; i < d->nrcpt; i++) {
		d->res[i] = *r;
		d->remote[i] = remote;
	}
}

void
fwd_delivery_free(struct delivery *d)
{
	int i;

	if (d->mxq != NULL)
		dns_cancel(d->mxq);
	for (i = 0; i < d->nqs; i++)
		if (d->qs[i].q != NULL)
			dns_cancel(d->qs[i].q);
	if (d->tlsaq != NULL)
		dns_cancel(d->tlsaq);
	if (d->stsq != NULL)
		dns_cancel(d->stsq);
	if (d->stsf != NULL)
		mtasts_fetch_cancel(d->stsf);
	free(d->tlsa);
	smtp_client_free(d->client);
	if (d->prev != NULL)
		d->prev->next = d->next;
	else if (fwd_list == d)
		fwd_list = d->next;
	if (d->next != NULL)
		d->next->prev = d->prev;
	if (d->dest != NULL)
		d->dest->active--;
	fwd_active--;
	stats.deliveries_active = (uint64_t)(fwd_active > 0 ? fwd_active : 0);
	spool_envelope_free(d->env);
	free(d->rcpt);
	free(d->res);
	free(d->remote);
	free(d->relay);
	free(d->mta);
	free(d);
}
/* fwd_fail_route - a route-level verdict for every recipient */
void
fwd_fail_route(struct delivery *d, const struct result *r)
{
	fwd_all(d, r, 0);
	fwd_done(d, NULL);
}
/* fwd_try_next - connect to the next address in MX order */
void
fwd_try_next(struct delivery *d)
{
	struct smtp_client_params p;

	while (d->oi < d->norder) {
		struct fwd_host *h = &d->hosts[d->order[d->oi]];

		if (d->ai >= h->naddr) {
			d->oi++;
			d->ai = 0;
			continue;
		}
		if (d->ai == 0) {
			int t = fwd_host_tls(d);

			if (t == 0)
				return;		/* the TLSA answer comes back */
			if (t < 0) {
				d->oi++;	/* d->last says why */
				continue;
			}
		}
		memset(&p, 0, sizeof(p));
		p.addr = h->addr[d->ai++];
		if (fwd_is_own_addr(&p.addr, d->port)) {
			result_set(&d->last, 451, "4.4.6", "%s is one of our "
				   "own addresses: not sending to myself",
				   h->name);
			continue;
		}
		if (p.addr.ss_family == AF_INET6)
			((struct sockaddr_in6 *)(void *)&p.addr)->sin6_port =
			    htons((uint16_t)d->port);
		else
			((struct sockaddr_in *)(void *)&p.addr)->sin_port =
			    htons((uint16_t)d->port);
		p.cfg = backmxd.cfg;
		p.helo = backmxd.cfg->hostname;
		p.mxhost = h->name;
		p.tls = d->cur_tls;
		if (p.tls == POLICY_TLS_DANE) {
			p.tlsa = d->tlsa;
			p.ntlsa = d->ntlsa;
		}
		p.no_starttls = d->plain && p.tls == POLICY_TLS_MAY;
		d->plain = 0;
		d->client = smtp_client_new(backmxd.loop, &p, fwd_client_cb, d);
		if (d->client != NULL) {
			fwd_session_to(d, FWD_CONNECT);
			return;
		}
		result_set(&d->last, 451, "4.3.0", "out of memory");
	}
	if (d->last.code == 0)
		result_set(&d->last, 451, "4.4.1", "no address to try");
	fwd_fail_route(d, &d->last);
}

/* fwd_send - a ready client: start d's transaction on it */
static void
fwd_send(struct delivery *d)
{
	int i;

	snprintf(d->tlsdesc, sizeof(d->tlsdesc), "%s",
		 smtp_client_tls(d->client) != NULL ? smtp_client_tls(d->client)
						    : "none");
	for (i = 0; i < d->nrcpt; i++) {
		char *lb;

		snprintf(d->relay[i], sizeof(d->relay[i]), "%s",
			 smtp_client_relay(d->client));
		snprintf(d->mta[i], sizeof(d->mta[i]), "%s", d->relay[i]);
		if ((lb = strchr(d->mta[i], '[')) != NULL)
			*lb = '\0';
	}
	d->dsn = smtp_client_has(d->client, SMTP_CAP_DSN);
	d->tx.spool = backmxd.spool;
	smtp_client_times(d->client, &d->setup, &d->conn_use);
	d->tx.env = d->env;
	d->tx.nrcpt = d->nrcpt;
	d->tx.rcpt = d->rcpt;
	d->tx.res = d->res;
	d->tx.remote = d->remote;
	d->t_send = ev_now(backmxd.loop);
	fwd_session_to(d, FWD_SEND);
	if (smtp_client_send(d->client, &d->tx) < 0) {
		struct smtp_client *c = d->client;

		d->client = NULL;
		if (!smtp_client_usable(c)) {
			smtp_client_free(c);
			c = NULL;
		}
		fwd_done(d, c);
	}
}

static void
fwd_client_cb(void *arg, struct smtp_client *c, const struct result *r)
{
	struct delivery *d = arg;

	if (d->tx.res == NULL) {
		/* connect phase */
		if (r->code / 100 == 2) {
			d->connected = 1;
			fwd_send(d);
			return;
		}
		d->last = *r;
		if (smtp_client_tls_failed(c) && d->cur_tls == POLICY_TLS_MAY) {
			/*
			 * tls may: a broken TLS stack at the primary must not
			 * stop the mail; the same address once more in clear,
			 * as it would be had it not offered STARTTLS.
			 */
			log_msg(d->id, "%s; tls may: trying %s again without "
				"STARTTLS", r->text, smtp_client_relay(c));
			d->plain = 1;
			d->ai--;
		}
		smtp_client_free(c);
		d->client = NULL;
		fwd_try_next(d);
		return;
	}
	d->client = NULL;
	if (smtp_client_usable(c))
		fwd_done(d, c);
	else {
		smtp_client_free(c);
		fwd_done(d, NULL);
	}
}

/*
 * fwd_start - begin delivering the recipients idx[0..n) of e (one
 * destination).  Takes ownership of e.
 */
void
fwd_start(struct spool_envelope *e, const int *idx, int n,
	  struct fwd_dest *dest)
{
	struct delivery *d;
	char key[FWD_KEY_MAX];
	int i;

	d = calloc(1, sizeof(*d));
	if (d == NULL || (d->rcpt = calloc((size_t)n, sizeof(int))) == NULL ||
	    (d->res = calloc((size_t)n, sizeof(*d->res))) == NULL ||
	    (d->remote = calloc((size_t)n, sizeof(int))) == NULL ||
	    (d->relay = calloc((size_t)n, sizeof(*d->relay))) == NULL ||
	    (d->mta = calloc((size_t)n, sizeof(*d->mta))) == NULL) {
		if (d != NULL) {
			free(d->rcpt);
			free(d->res);
			free(d->remote);
			free(d->relay);
			free(d);
		}
		schedule_set(backmxd.sched, e->id, fwd_now() + 60);
		spool_envelope_free(e);
		return;
	}
	memcpy(d->rcpt, idx, (size_t)n * sizeof(int));
	d->nrcpt = n;
	d->env = e;
	snprintf(d->id, sizeof(d->id), "%s", e->id);
	fwd_route(e, idx[0], key, sizeof(key), d, NULL);
	d->dest = dest;
	d->started = fwd_now();
	dest->active++;
	fwd_active++;
	stats.deliveries_active = (uint64_t)fwd_active;
	d->next = fwd_list;
	if (fwd_list != NULL)
		fwd_list->prev = d;
	fwd_list = d;

	if (fwd_suspended(dest, 1)) {	/* d itself is counted */
		struct result r;

		d->suspended = 1;
		result_set(&r, 451, "4.4.1", FWD_SUSPENDED_TEXT "%.200s",
			   dest->dead_why);
		fwd_fail_route(d, &r);
		return;
	}
	if (dest->dead_until > fwd_now())
		dest->last_probe = ev_now(backmxd.loop);
	if (dest->idle != NULL) {
		/* connection reuse: RSET, then this message */
		d->client = dest->idle;
		dest->idle = NULL;
		d->connected = 1;
		smtp_client_set_cb(d->client, fwd_client_cb, d);
		fwd_send(d);
		return;
	}
	fwd_route_start(d);
	(void)i;
}
