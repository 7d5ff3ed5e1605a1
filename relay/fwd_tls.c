/*
 * fwd_tls.c - the TLS policy of each host a delivery tries: DANE (TLSA
 * lookup, RFC 7672) first, then MTA-STS (the domain's policy: TXT record,
 * HTTPS fetch, the cache in the spool directory, RFC 8461).  Decided
 * before the host's first address; the lookups resume fwd_try_next
 * (fwd_session.c).  Caller: fwd_session.c, fwd_route.c.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dns.h"
#include "fwd_int.h"
#include "log.h"
#include "mtasts.h"

#define FWD_STS_TIMEOUT 60 /* MTA-STS policy fetch, seconds (as mox) */

static struct mtasts_cache *fwd_sts_cache; /* policies, for max_age */

static void
fwd_tlsa_clear(struct delivery *d)
{
	free(d->tlsa);
	d->tlsa = NULL;
	d->ntlsa = 0;
	d->tlsa_for = 0;
	d->tlsa_state = FWD_TLSA_NONE;
}

/*
 * fwd_tlsa_usable - RFC 7672 3.1: DANE-TA(2) and DANE-EE(3) only, with a
 * selector and matching type OpenSSL knows; PKIX usages 0 and 1 are
 * unusable for SMTP (no agreed trust store between MTAs)
 */
static int
fwd_tlsa_usable(const struct dns_tlsa *t)
{
	return (t->usage == 2 || t->usage == 3) && t->selector <= 1 &&
	       t->mtype <= 2 && t->len > 0;
}

/* fwd_tlsa_take - keep the usable records of a secure answer */
static void
fwd_tlsa_take(struct delivery *d, const struct dns_result *res)
{
	size_t sz = 0, off = 0;
	uint8_t *data;
	int i, n = 0;

	for (i = 0; i < res->n; i++)
		if (fwd_tlsa_usable(&res->tlsa[i])) {
			n++;
			sz += res->tlsa[i].len;
		}
	if (n == 0) {
		/* records, but none usable: TLS still mandatory (2.2) */
		d->tlsa_state = FWD_TLSA_UNUSABLE;
		return;
	}
	if ((d->tlsa = malloc((size_t)n * sizeof(*d->tlsa) + sz)) == NULL) {
		result_set(&d->last, 451, "4.3.0", "out of memory");
		d->tlsa_state = FWD_TLSA_ERROR;
		return;
	}
	data = (uint8_t *)(d->tlsa + n);
	for (i = 0; i < res->n; i++) {
		const struct dns_tlsa *t = &res->tlsa[i];

		if (!fwd_tlsa_usable(t))
			continue;
		d->tlsa[d->ntlsa] = *t;
		memcpy(data + off, t->data, t->len);
		d->tlsa[d->ntlsa++].data = data + off;
		off += t->len;
	}
	d->tlsa_state = FWD_TLSA_USABLE;
}

/* fwd_tlsa_cb - _25._tcp.<host>: decide, then go on where we stopped */
static void
fwd_tlsa_cb(void *arg, const struct dns_result *res)
{
	struct delivery *d = arg;

	d->tlsaq = NULL;
	d->tlsa_for = d->order[d->oi] + 1;
	switch (res->status) {
	case DNS_BOGUS:
	case DNS_TEMPFAIL:
		/* never downgrade: an attacker can make lookups fail */
		d->tlsa_state = FWD_TLSA_ERROR;
		result_set(&d->last, 451, "4.7.5",
		           "TLSA lookup error for %s: "
		           "%s",
		           res->qname, res->why);
		break;
	case DNS_OK:
		/* insecure records, which anyone could forge, mean nothing */
		if (res->secure)
			fwd_tlsa_take(d, res);
		else
			d->tlsa_state = FWD_TLSA_NONE;
		break;
	default:
		d->tlsa_state = FWD_TLSA_NONE;
		break;
	}
	fwd_try_next(d);
}

/*
 * fwd_host_tls - the TLS policy of the connections to the host at d->oi,
 * before its first address: 1 decided (d->cur_tls; d->tlsa for DANE), 0
 * a TLSA lookup is under way (its callback calls fwd_try_next again), -1
 * the host must not be used (d->last says why).
 */
int
fwd_host_tls(struct delivery *d)
{
	struct forwarder *fw = d->fw;
	int hi = d->order[d->oi], fresh = 0;
	const struct fwd_host *h = &d->hosts[hi];

	d->cur_tls = d->tls;
	if (d->tls != POLICY_TLS_DANE && d->tls != POLICY_TLS_MTASTS)
		return 1;
	if (h->bogus) {
		result_set(&d->last, 451, "4.7.5",
		           "DNSSEC validation of the "
		           "address records of %s failed",
		           h->name);
		return -1;
	}
	if (d->tlsa_for != hi + 1) {
		fwd_tlsa_clear(d);
		fresh = 1;
		/*
		 * RFC 7672 2.2.2: TLSA records count only when the host's
		 * address records are DNSSEC-secure as well; an address
		 * literal has no name to look up.
		 */
		if (!h->insecure && !d->literal) {
			char name[POLICY_DOMAIN_MAX + 16];

			snprintf(name, sizeof(name), "_25._tcp.%s", h->name);
			d->tlsaq = fw->io->dns_query(fw, name, DNS_T_TLSA,
			                             fwd_tlsa_cb, d);
			if (d->tlsaq != NULL) {
				fwd_session_to(d, FWD_TLSA);
				return 0;
			}
			result_set(&d->last, 451, "4.7.5",
			           "TLSA lookup error "
			           "for %s: resolver unavailable",
			           name);
			d->tlsa_state = FWD_TLSA_ERROR;
		}
		d->tlsa_for = hi + 1;
	}
	switch (d->tlsa_state) {
	case FWD_TLSA_ERROR:
		return -1;
	case FWD_TLSA_USABLE:
		/* DANE wins over MTA-STS (RFC 8461 2) */
		d->cur_tls = POLICY_TLS_DANE;
		return 1;
	case FWD_TLSA_UNUSABLE:
		d->cur_tls = POLICY_TLS_ENCRYPT;
		return 1;
	case FWD_TLSA_NONE:
		break;
	}
	d->cur_tls = POLICY_TLS_MAY;
	if (d->tls == POLICY_TLS_MTASTS && d->sts_mode != MTASTS_MODE_NONE) {
		int match = mtasts_mx_match(&d->sts, h->name);

		if (d->sts_mode == MTASTS_MODE_ENFORCE) {
			if (!match) {
				result_set(&d->last, 451, "4.7.5",
				           "MX host %s "
				           "does not match the MTA-STS policy "
				           "of %s",
				           h->name, d->domain);
				return -1;
			}
			/* RFC 8461 4.2: a WebPKI certificate naming the
			 * MX host, or no delivery to it */
			d->cur_tls = POLICY_TLS_VERIFY;
		} else if (!match && fresh)
			log_msg(d->id,
			        "MTA-STS policy of %s (mode testing): "
			        "MX host %s does not match; delivering anyway",
			        d->domain, h->name);
	}
	return 1;
}

/*
 * fwd_sts_ready - the MTA-STS policy of d->domain is known: the one just
 * fetched, else a cached one still within its max_age (RFC 8461 5.1:
 * even when the TXT record or the fetch fails now), else none.
 */
static void
fwd_sts_ready(struct delivery *d, const struct mtasts_policy *fetched)
{
	const struct forwarder *fw = d->fw;
	const struct mtasts_policy *p = fetched;

	d->sts_done = 1;
	if (p == NULL && fwd_sts_cache != NULL)
		p = mtasts_cache_get(fwd_sts_cache, d->domain, NULL,
		                     (time_t)fwd_now(fw), NULL);
	if (p != NULL && p->mode != MTASTS_MODE_NONE) {
		d->sts = *p;
		d->sts_mode = p->mode;
	}
	d->oi = d->ai = 0;
	fwd_try_next(d);
}

/* the MTA-STS cache file in the spool directory */
static void
fwd_sts_cache_path(const struct forwarder *fw, char *buf, size_t len)
{
	snprintf(buf, len, "%s/mta-sts.cache", fwd_cfg(fw)->spool);
}

static void
fwd_sts_cache_save(const struct forwarder *fw)
{
	char path[4096];

	fwd_sts_cache_path(fw, path, sizeof(path));
	if (mtasts_cache_save(fwd_sts_cache, path) < 0)
		log_warn("cannot save the MTA-STS policies to %s: %s", path,
		         strerror(errno));
}

/* fwd_sts_cache_open - the cache, loaded from the spool the first time */
static int
fwd_sts_cache_open(const struct forwarder *fw)
{
	char path[4096];
	int n;

	if (fwd_sts_cache != NULL)
		return 0;
	if ((fwd_sts_cache = mtasts_cache_new()) == NULL)
		return -1;
	fwd_sts_cache_path(fw, path, sizeof(path));
	n = mtasts_cache_load(fwd_sts_cache, path, (time_t)fwd_now(fw));
	if (n < 0)
		log_warn("cannot read the MTA-STS policies in %s: %s", path,
		         strerror(errno));
	else if (n > 0)
		log_info("%d MTA-STS policies loaded from %s", n, path);
	return 0;
}

static void
fwd_sts_fetch_cb(void *arg, const struct mtasts_policy *p, const char *err)
{
	struct delivery *d = arg;
	const struct forwarder *fw = d->fw;

	d->stsf = NULL;
	if (p == NULL) {
		log_msg(d->id, "MTA-STS policy fetch for %s failed: %s",
		        d->domain, err != NULL ? err : "unknown error");
		fwd_sts_ready(d, NULL);
		return;
	}
	log_msg(d->id,
	        "MTA-STS policy of %s fetched: id=%s, mode=%s, "
	        "max_age=%ld, mx patterns=%d",
	        d->domain, d->sts_id, mtasts_mode_str(p->mode), p->max_age,
	        p->nmx);
	if (mtasts_cache_put(fwd_sts_cache, d->domain, d->sts_id, p,
	                     (time_t)fwd_now(fw)) < 0)
		log_warn("MTA-STS policy of %s: cannot cache it", d->domain);
	else
		fwd_sts_cache_save(fw);
	fwd_sts_ready(d, p);
}

/* fwd_sts_addr_cb - mta-sts.<domain> resolved (A, then AAAA): fetch */
static void
fwd_sts_addr_cb(void *arg, const struct dns_result *res)
{
	struct delivery *d = arg;
	struct forwarder *fw = d->fw;
	char err[256];
	socklen_t salen;

	d->stsq = NULL;
	if (res->status != DNS_OK || res->n == 0) {
		if (res->rrtype == DNS_T_A) {
			d->stsq = fw->io->dns_query(fw, res->qname, DNS_T_AAAA,
			                            fwd_sts_addr_cb, d);
			if (d->stsq != NULL)
				return;
		}
		log_msg(d->id, "MTA-STS policy fetch for %s failed: %s: %s",
		        d->domain, res->qname,
		        res->status == DNS_OK ? "no address" : res->why);
		fwd_sts_ready(d, NULL);
		return;
	}
	salen = res->addr[0].ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
	                                           : sizeof(struct sockaddr_in);
	d->stsf = mtasts_fetch_start(
	    fw->loop, d->domain, (const struct sockaddr *)&res->addr[0], salen,
	    fwd_cfg(fw)->tls_ca, FWD_STS_TIMEOUT, fwd_sts_fetch_cb, d, err,
	    sizeof(err));
	if (d->stsf == NULL) {
		log_msg(d->id, "MTA-STS policy fetch for %s failed: %s",
		        d->domain, err);
		fwd_sts_ready(d, NULL);
	}
}

/*
 * fwd_sts_txt_cb - _mta-sts.<domain>: a valid record whose id differs
 * from the cached policy's (or no usable cache, or a day old) means a
 * fetch; anything else keeps what the cache has (RFC 8461 3.1, 5.1)
 */
static void
fwd_sts_txt_cb(void *arg, const struct dns_result *res)
{
	struct delivery *d = arg;
	struct forwarder *fw = d->fw;
	char name[POLICY_DOMAIN_MAX + 16];
	int refetch = 0;

	d->stsq = NULL;
	if (res->status != DNS_OK ||
	    mtasts_txt_select(res->txt, res->n, d->sts_id, sizeof(d->sts_id)) ==
	        -1) {
		fwd_sts_ready(d, NULL);
		return;
	}
	if (fwd_sts_cache_open(fw) < 0) {
		fwd_sts_ready(d, NULL);
		return;
	}
	(void)mtasts_cache_get(fwd_sts_cache, d->domain, d->sts_id,
	                       (time_t)fwd_now(fw), &refetch);
	if (!refetch) {
		fwd_sts_ready(d, NULL);
		return;
	}
	snprintf(name, sizeof(name), "mta-sts.%s", d->domain);
	d->stsq = fw->io->dns_query(fw, name, DNS_T_A, fwd_sts_addr_cb, d);
	if (d->stsq == NULL)
		fwd_sts_ready(d, NULL);
}

/* fwd_sts_start - tls mta-sts: learn the domain's policy, then connect */
void
fwd_sts_start(struct delivery *d)
{
	struct forwarder *fw = d->fw;
	char name[POLICY_DOMAIN_MAX + 16];

	fwd_session_to(d, FWD_STS);
	/* the saved policies count even when the TXT lookup fails */
	(void)fwd_sts_cache_open(fw);
	snprintf(name, sizeof(name), "_mta-sts.%s", d->domain);
	d->stsq = fw->io->dns_query(fw, name, DNS_T_TXT, fwd_sts_txt_cb, d);
	if (d->stsq == NULL)
		fwd_sts_ready(d, NULL);
}
