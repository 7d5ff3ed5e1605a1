/*
 * fwd_route.c - where a delivery goes: a recipient's route (stored
 * route, the domain's static route, or its MX set) as a destination key;
 * for a delivery, the MX lookup, A/AAAA of every host, our own addresses
 * marked and the backup-MX preference cut (policy_mx_cut in policy/).
 * Ends in fwd_try_next (fwd_session.c) or a route-level failure.
 * Caller: fwd_session.c (fwd_start), forward.c and fwd_ops.c (keys).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dns.h"
#include "fwd_int.h"
#include "route_dns.h"

/* fwd_rnd - policy_mx_cut's source of randomness */
static unsigned
fwd_rnd(unsigned n)
{
	return n ? (unsigned)random() % n : 0;
}
/*
 * fwd_route - where recipient i of e goes: key for grouping, and the
 * route fields in d (when d != NULL).  Returns 0, or -1 when the domain
 * is no longer ours (and the mail is not a bounce): r says why.
 */
int
fwd_route(const struct forwarder *fw, const struct spool_envelope *e, int i,
          char *key, size_t keylen, struct delivery *d, struct result *r)
{
	const struct spool_rcpt *rc = &e->rcpt[i];
	const char *dom = fwd_rcpt_domain(rc->address);
	const struct policy_domain *pd;
	char host[POLICY_DOMAIN_MAX + 1];
	int port = 25, literal = 0, is_static = 0, tls = POLICY_TLS_MAY;

	pd = policy_find_domain(fwd_cfg(fw)->policy, dom);
	if (pd != NULL)
		tls = pd->tls;
	host[0] = '\0';
	if (rc->route != NULL && rc->route[0] != '\0') {
		const char *s = rc->route, *colon;
		size_t hl;

		if (*s == '[') {
			const char *rb = strchr(s, ']');

			if (rb == NULL)
				goto bad;
			hl = (size_t)(rb - s - 1);
			if (hl >= sizeof(host))
				goto bad;
			memcpy(host, s + 1, hl);
			host[hl] = '\0';
			literal = 1;
			colon = rb[1] == ':' ? rb + 1 : NULL;
		} else {
			colon = strrchr(s, ':');
			hl = colon ? (size_t)(colon - s) : strlen(s);
			if (hl >= sizeof(host))
				goto bad;
			memcpy(host, s, hl);
			host[hl] = '\0';
		}
		if (colon != NULL)
			port = atoi(colon + 1);
		is_static = 1;
	} else if (pd != NULL && pd->route_static) {
		snprintf(host, sizeof(host), "%s", pd->route_host);
		literal = pd->route_literal;
		port = pd->route_port > 0 ? pd->route_port : 25;
		is_static = 1;
	} else if (pd == NULL && !e->is_bounce) {
		if (r != NULL)
			result_set(r, 451, "4.3.5",
			           "domain %s is no longer "
			           "configured here",
			           dom);
		return -1;
	}
	if (port <= 0 || port > 65535)
		port = 25;
	if (is_static)
		snprintf(key, keylen, "s:%s:%d:%d", host, port, tls);
	else
		snprintf(key, keylen, "m:%s:%d", dom, tls);
	if (d != NULL) {
		d->is_static = is_static;
		d->literal = literal;
		d->port = port;
		d->tls = tls;
		snprintf(d->domain, sizeof(d->domain), "%s", dom);
		snprintf(d->host, sizeof(d->host), "%s", host);
	}
	return 0;
bad:
	if (r != NULL)
		result_set(r, 451, "4.4.4", "bad stored route %s", rc->route);
	return -1;
}
/* fwd_listen_port - is port one of our SMTP listening ports? */
static int
fwd_listen_port(const struct forwarder *fw, int port)
{
	const struct config *cfg = fwd_cfg(fw);

	for (int i = 0; i < cfg->nlisten; i++) {
		const struct sockaddr_storage *l = &cfg->listen[i].ss;
		int lp =
		    l->ss_family == AF_INET6
		        ? ntohs(((const struct sockaddr_in6 *)(const void *)l)
		                    ->sin6_port)
		        : ntohs(((const struct sockaddr_in *)(const void *)l)
		                    ->sin_port);

		if (lp == port)
			return 1;
	}
	return 0;
}

/*
 * fwd_is_own_addr - would connecting to ss:port reach our own listener?
 * Our listening addresses carry their port; interface addresses (from a
 * wildcard listen) carry port 0 and match any of our listening ports.  A
 * static route to another port of this host (a primary on 127.0.0.1:2526
 * next to us on :25) is not ourselves.
 */
int
fwd_is_own_addr(const struct forwarder *fw, const struct sockaddr_storage *ss,
                int port)
{
	int i;

	for (i = 0; i < *fw->nown_addrs; i++) {
		const struct sockaddr_storage *o = &(*fw->own_addrs)[i];
		int oport;

		if (o->ss_family != ss->ss_family)
			continue;
		if (ss->ss_family == AF_INET) {
			if (memcmp(
			        &((const struct sockaddr_in *)(const void *)o)
			             ->sin_addr,
			        &((const struct sockaddr_in *)(const void *)ss)
			             ->sin_addr,
			        4))
				continue;
			oport =
			    ntohs(((const struct sockaddr_in *)(const void *)o)
			              ->sin_port);
		} else if (ss->ss_family == AF_INET6) {
			if (memcmp(
			        &((const struct sockaddr_in6 *)(const void *)o)
			             ->sin6_addr,
			        &((const struct sockaddr_in6 *)(const void *)ss)
			             ->sin6_addr,
			        16))
				continue;
			oport =
			    ntohs(((const struct sockaddr_in6 *)(const void *)o)
			              ->sin6_port);
		} else
			continue;
		if (oport == port || (oport == 0 && fwd_listen_port(fw, port)))
			return 1;
	}
	return 0;
}
/* fwd_hosts_ready - every address lookup is back: cut and connect */
void
fwd_hosts_ready(struct delivery *d)
{
	struct policy_mx mx[FWD_HOSTS_MAX];
	struct result r;
	int i, j, n = d->nhosts, any = 0;
	enum policy_mx_verdict v;

	for (i = 0; i < d->nhosts; i++) {
		/* sizeof does not read mx[i]: a cppcheck false positive */
		/* cppcheck-suppress legacyUninitvar */
		snprintf(mx[i].host, sizeof(mx[i].host), "%s",
		         d->hosts[i].name);
		mx[i].pref = d->hosts[i].pref;
		mx[i].self = 0;
		for (j = 0; j < d->hosts[i].naddr; j++)
			if (fwd_is_own_addr(d->fw, &d->hosts[i].addr[j],
			                    d->port))
				mx[i].self = 1;
	}
	if (d->is_static) {
		d->norder = 0;
		for (i = 0; i < n; i++)
			d->order[d->norder++] = i;
	} else {
		/*
		 * If we are a backup MX, do not relay to MXs with a
		 * greater (or equal) preference value than ours.
		 */
		v = policy_mx_cut(fwd_cfg(d->fw)->policy, mx, &n, fwd_rnd);
		if (v == POLICY_MX_SELF_BEST) {
			result_set(&r, 451, "4.4.6",
			           "mail for %s loops back "
			           "to myself",
			           d->domain);
			fwd_fail_route(d, &r);
			return;
		}
		if (v == POLICY_MX_NULL) {
			result_set(&r, 556, "5.1.10",
			           "recipient domain %s "
			           "has a null MX",
			           d->domain);
			fwd_fail_route(d, &r);
			return;
		}
		d->norder = 0;
		for (i = 0; i < n; i++)
			for (j = 0; j < d->nhosts; j++)
				if (!strcmp(mx[i].host, d->hosts[j].name)) {
					d->order[d->norder++] = j;
					break;
				}
	}
	for (i = 0; i < d->norder; i++)
		if (d->hosts[d->order[i]].naddr > 0)
			any = 1;
	if (!any) {
		const char *names[FWD_HOSTS_MAX], *whys[FWD_HOSTS_MAX];

		for (i = 0; i < d->norder; i++) {
			names[i] = d->hosts[d->order[i]].name;
			whys[i] = d->hosts[d->order[i]].dnswhy;
		}
		route_dns_noaddr(d->id, d->domain, d->is_static, names, whys,
		                 d->norder, &r);
		fwd_fail_route(d, &r);
		return;
	}
	d->oi = d->ai = 0;
	if (d->tls == POLICY_TLS_MTASTS && !d->is_static && !d->sts_done) {
		/* the policy filters the MX hosts: learn it first */
		fwd_sts_start(d);
		return;
	}
	fwd_try_next(d);
}

static void
fwd_addr_cb(void *arg, const struct dns_result *res)
{
	struct fwd_query *q = arg;
	struct delivery *d = q->d;
	struct fwd_host *h = &d->hosts[q->host];
	int i;

	q->q = NULL;
	if (res->status == DNS_OK) {
		for (i = 0; i < res->n && h->naddr < FWD_ADDR_MAX; i++)
			h->addr[h->naddr++] = res->addr[i];
	} else if (res->status == DNS_TEMPFAIL || res->status == DNS_BOGUS)
		h->tempfail = 1;
	if (res->status != DNS_OK || res->n == 0)
		route_dns_addr_note(h->dnswhy, sizeof(h->dnswhy), res);
	/* DANE needs every answer about the host's addresses secure */
	if (res->status == DNS_BOGUS)
		h->bogus = 1;
	else if (res->status != DNS_TEMPFAIL && !res->secure)
		h->insecure = 1;
	if (--d->outstanding == 0)
		fwd_hosts_ready(d);
}

/* fwd_resolve_hosts - A and AAAA for every host of d */
static void
fwd_resolve_hosts(struct delivery *d)
{
	struct forwarder *fw = d->fw;
	int i, t;

	fwd_session_to(d, FWD_ADDR);
	d->nqs = 0;
	d->outstanding = 0;
	for (i = 0; i < d->nhosts; i++)
		for (t = 0; t < 2; t++) {
			struct fwd_query *q = &d->qs[d->nqs++];

			q->d = d;
			q->host = i;
			q->q = fw->io->dns_query(fw, d->hosts[i].name,
			                         t == 0 ? DNS_T_A : DNS_T_AAAA,
			                         fwd_addr_cb, q);
			if (q->q != NULL)
				d->outstanding++;
			else
				d->hosts[i].tempfail = 1;
		}
	if (d->outstanding == 0) {
		struct result r;

		result_set(&r, 451, "4.4.3", "resolver unavailable");
		fwd_fail_route(d, &r);
	}
}

static void
fwd_mx_cb(void *arg, const struct dns_result *res)
{
	struct delivery *d = arg;
	const struct forwarder *fw = d->fw;
	struct result r;
	int i, nnull = 0;

	d->mxq = NULL;
	switch (res->status) {
	case DNS_NXDOMAIN:
	case DNS_TEMPFAIL:
	case DNS_BOGUS:
		/* temporary for a configured domain (route_dns.h) */
		route_dns_mx_fail(
		    d->id, d->domain,
		    policy_find_domain(fwd_cfg(fw)->policy, d->domain) != NULL,
		    res, &r);
		fwd_fail_route(d, &r);
		return;
	case DNS_NODATA:
		/* implicit MX: the domain's own A/AAAA, preference 0 */
		d->nhosts = 1;
		snprintf(d->hosts[0].name, sizeof(d->hosts[0].name), "%s",
		         d->domain);
		d->hosts[0].pref = 0;
		/* named in the deferral if the A/AAAA give nothing either */
		snprintf(d->hosts[0].dnswhy, sizeof(d->hosts[0].dnswhy),
		         "MX NODATA");
		fwd_resolve_hosts(d);
		return;
	case DNS_OK:
		break;
	}
	d->nhosts = 0;
	for (i = 0; i < res->n; i++) {
		if (res->mx[i].host[0] == '\0') {
			nnull++;
			continue;
		}
		if (d->nhosts == FWD_HOSTS_MAX)
			continue;
		snprintf(d->hosts[d->nhosts].name, sizeof(d->hosts[0].name),
		         "%s", res->mx[i].host);
		d->hosts[d->nhosts].pref = res->mx[i].pref;
		d->nhosts++;
	}
	if (d->nhosts == 0) {
		if (nnull > 0)
			result_set(&r, 556, "5.1.10",
			           "recipient domain %s has "
			           "a null MX",
			           d->domain);
		else
			result_set(&r, 451, "4.4.4",
			           "unable to find primary "
			           "relay for %s",
			           d->domain);
		fwd_fail_route(d, &r);
		return;
	}
	fwd_resolve_hosts(d);
}

/* fwd_route_start - d has no connection to reuse: find its hosts */
void
fwd_route_start(struct delivery *d)
{
	struct forwarder *fw = d->fw;

	if (d->is_static) {
		d->nhosts = 1;
		snprintf(d->hosts[0].name, sizeof(d->hosts[0].name), "%s",
		         d->literal ? d->host : d->host);
		if (d->literal) {
			struct fwd_host *h = &d->hosts[0];
			struct sockaddr_in *s4 = (void *)&h->addr[0];
			struct sockaddr_in6 *s6 = (void *)&h->addr[0];
			const char *a = d->host;

			if (!strncasecmp(a, "IPv6:", 5))
				a += 5;
			memset(&h->addr[0], 0, sizeof(h->addr[0]));
			if (inet_pton(AF_INET, a, &s4->sin_addr) == 1) {
				s4->sin_family = AF_INET;
				h->naddr = 1;
			} else if (inet_pton(AF_INET6, a, &s6->sin6_addr) ==
			           1) {
				s6->sin6_family = AF_INET6;
				h->naddr = 1;
			}
			fwd_hosts_ready(d);
			return;
		}
		fwd_resolve_hosts(d);
		return;
	}
	fwd_session_to(d, FWD_MX);
	d->mxq = fw->io->dns_query(fw, d->domain, DNS_T_MX, fwd_mx_cb, d);
	if (d->mxq == NULL) {
		struct result r;

		result_set(&r, 451, "4.4.3", "resolver unavailable");
		fwd_fail_route(d, &r);
	}
}
