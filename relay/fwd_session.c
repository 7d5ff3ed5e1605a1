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

#include "dns.h"
#include "fwd_int.h"
#include "log.h"
#include "mtasts.h"
#include "smtp_client.h"
#include "stats.h"

static void fwd_client_cb(void *arg, struct smtp_client *c,
                          const struct result *r);

static struct dns_query *
fwd_real_dns_query(struct forwarder *fw, const char *name, int rrtype,
                   dns_cb cb, void *arg)
{
	return dns_query(fw->dns, name, rrtype, cb, arg);
}

static void
fwd_real_dns_cancel(struct forwarder *fw, struct dns_query *q)
{
	dns_cancel(q);
}

static struct smtp_client *
fwd_real_client_new(struct forwarder *fw, const struct smtp_client_params *p,
                    smtp_client_cb cb, void *arg)
{
	return smtp_client_new(fw->loop, p, cb, arg);
}

/* fwd_io_real - the resolver and the SMTP client of the daemon */
const struct fwd_io fwd_io_real = {
    .dns_query = fwd_real_dns_query,
    .dns_cancel = fwd_real_dns_cancel,
    .client_new = fwd_real_client_new,
    .client_send = smtp_client_send,
    .client_set_cb = smtp_client_set_cb,
    .client_usable = smtp_client_usable,
    .client_relay = smtp_client_relay,
    .client_tls = smtp_client_tls,
    .client_times = smtp_client_times,
    .client_tls_failed = smtp_client_tls_failed,
    .client_has = smtp_client_has,
    .client_quit = smtp_client_quit,
    .client_free = smtp_client_free,
};

/* fwd_state_name - the name of a state, for logs */
const char *
fwd_state_name(enum fwd_state s)
{
	static const char *const names[] = {"NEW",  "MX",      "ADDR", "STS",
	                                    "TLSA", "CONNECT", "SEND", "DONE"};

	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
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
	struct forwarder *fw = d->fw;
	int i;

	if (d->mxq != NULL)
		fw->io->dns_cancel(fw, d->mxq);
	for (i = 0; i < d->nqs; i++)
		if (d->qs[i].q != NULL)
			fw->io->dns_cancel(fw, d->qs[i].q);
	if (d->tlsaq != NULL)
		fw->io->dns_cancel(fw, d->tlsaq);
	if (d->stsq != NULL)
		fw->io->dns_cancel(fw, d->stsq);
	if (d->stsf != NULL)
		mtasts_fetch_cancel(d->stsf);
	free(d->tlsa);
	fw->io->client_free(d->client);
	if (d->prev != NULL)
		d->prev->next = d->next;
	else if (fw->list == d)
		fw->list = d->next;
	if (d->next != NULL)
		d->next->prev = d->prev;
	if (d->dest != NULL)
		d->dest->active--;
	fw->active--;
	stats.deliveries_active = (uint64_t)(fw->active > 0 ? fw->active : 0);
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
	struct forwarder *fw = d->fw;
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
				return; /* the TLSA answer comes back */
			if (t < 0) {
				d->oi++; /* d->last says why */
				continue;
			}
		}
		memset(&p, 0, sizeof(p));
		p.addr = h->addr[d->ai++];
		if (fwd_is_own_addr(fw, &p.addr, d->port)) {
			result_set(&d->last, 451, "4.4.6",
			           "%s is one of our "
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
		p.cfg = fwd_cfg(fw);
		p.helo = fwd_cfg(fw)->hostname;
		p.mxhost = h->name;
		p.tls = d->cur_tls;
		if (p.tls == POLICY_TLS_DANE) {
			p.tlsa = d->tlsa;
			p.ntlsa = d->ntlsa;
		}
		p.no_starttls = d->plain && p.tls == POLICY_TLS_MAY;
		d->plain = 0;
		d->client = fw->io->client_new(fw, &p, fwd_client_cb, d);
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
	struct forwarder *fw = d->fw;
	int i;

	snprintf(d->tlsdesc, sizeof(d->tlsdesc), "%s",
	         fw->io->client_tls(d->client) != NULL
	             ? fw->io->client_tls(d->client)
	             : "none");
	for (i = 0; i < d->nrcpt; i++) {
		char *lb;

		snprintf(d->relay[i], sizeof(d->relay[i]), "%s",
		         fw->io->client_relay(d->client));
		snprintf(d->mta[i], sizeof(d->mta[i]), "%s", d->relay[i]);
		if ((lb = strchr(d->mta[i], '[')) != NULL)
			*lb = '\0';
	}
	d->dsn = fw->io->client_has(d->client, SMTP_CAP_DSN);
	d->tx.spool = fw->spool;
	fw->io->client_times(d->client, &d->setup, &d->conn_use);
	d->tx.env = d->env;
	d->tx.nrcpt = d->nrcpt;
	d->tx.rcpt = d->rcpt;
	d->tx.res = d->res;
	d->tx.remote = d->remote;
	d->t_send = fw->now(fw);
	fwd_session_to(d, FWD_SEND);
	if (fw->io->client_send(d->client, &d->tx) < 0) {
		struct smtp_client *c = d->client;

		d->client = NULL;
		if (!fw->io->client_usable(c)) {
			fw->io->client_free(c);
			c = NULL;
		}
		fwd_done(d, c);
	}
}

static void
fwd_client_cb(void *arg, struct smtp_client *c, const struct result *r)
{
	struct delivery *d = arg;
	struct forwarder *fw = d->fw;

	if (d->tx.res == NULL) {
		/* connect phase */
		if (r->code / 100 == 2) {
			d->connected = 1;
			fwd_send(d);
			return;
		}
		d->last = *r;
		if (fw->io->client_tls_failed(c) &&
		    d->cur_tls == POLICY_TLS_MAY) {
			/*
			 * tls may: a broken TLS stack at the primary must not
			 * stop the mail; the same address once more in clear,
			 * as it would be had it not offered STARTTLS.
			 */
			log_msg(d->id,
			        "%s; tls may: trying %s again without "
			        "STARTTLS",
			        r->text, fw->io->client_relay(c));
			d->plain = 1;
			d->ai--;
		}
		fw->io->client_free(c);
		d->client = NULL;
		fwd_try_next(d);
		return;
	}
	d->client = NULL;
	if (fw->io->client_usable(c))
		fwd_done(d, c);
	else {
		fw->io->client_free(c);
		fwd_done(d, NULL);
	}
}

/*
 * fwd_start - begin delivering the recipients idx[0..n) of e (one
 * destination).  Takes ownership of e.
 */
void
fwd_start(struct forwarder *fw, struct spool_envelope *e, const int *idx, int n,
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
		schedule_set(fw->sched, e->id, fwd_now(fw) + 60);
		spool_envelope_free(e);
		return;
	}
	memcpy(d->rcpt, idx, (size_t)n * sizeof(int));
	d->nrcpt = n;
	d->env = e;
	d->fw = fw;
	snprintf(d->id, sizeof(d->id), "%s", e->id);
	fwd_route(fw, e, idx[0], key, sizeof(key), d, NULL);
	d->dest = dest;
	d->started = fwd_now(fw);
	dest->active++;
	fw->active++;
	stats.deliveries_active = (uint64_t)fw->active;
	d->next = fw->list;
	if (fw->list != NULL)
		fw->list->prev = d;
	fw->list = d;

	if (fwd_suspended(fw, dest, 1)) { /* d itself is counted */
		struct result r;

		d->suspended = 1;
		result_set(&r, 451, "4.4.1", FWD_SUSPENDED_TEXT "%.200s",
		           dest->dead_why);
		fwd_fail_route(d, &r);
		return;
	}
	if (dest->dead_until > fwd_now(fw))
		dest->last_probe = fw->now(fw);
	if (dest->idle != NULL) {
		/* connection reuse: RSET, then this message */
		d->client = dest->idle;
		dest->idle = NULL;
		d->connected = 1;
		fw->io->client_set_cb(d->client, fwd_client_cb, d);
		fwd_send(d);
		return;
	}
	fwd_route_start(d);
	(void)i;
}
