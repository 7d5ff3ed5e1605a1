/*
 * checkdns.c - `backmxctl check-dns DOMAIN`: audits a domain's public DNS
 * for the mistakes that break a backup MX.  This file owns one audit's
 * life: it starts the first lookups through dns.h (the other files start
 * the ones that follow from answers), keeps every lookup on one chain so
 * cancelling is one walk, and once all are back calls the reports of
 * checkdns_mx.c (MX set, targets), checkdns_host.c (HELO name, PTR),
 * checkdns_spf.c, checkdns_dmarc.c (DMARC, TLS-RPT) and checkdns_tls.c
 * (MTA-STS, TLSA) in a fixed order, so output is reproducible; the line
 * and address helpers they share are here too.
 * Called by control.c; see checkdns.h for the callbacks and who frees.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backmxd.h"
#include "checkdns.h"
#include "checkdns_int.h"
#include "config.h"
#include "dns.h"
#include "mtasts.h"
#include "policy.h"

/*
 * checkdns_name_norm - lowercase copy of name without a trailing dot;
 * -1 unless it is a host name: LDH or '_' labels of 1-63 octets.
 */
int
checkdns_name_norm(const char *name, char *out, size_t outlen)
{
	size_t i, label = 0, len = strlen(name);

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len >= outlen)
		return -1;
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)name[i];

		if (ch == '.') {
			if (label == 0)
				return -1;
			label = 0;
		} else if (isalnum(ch) || ch == '-' || ch == '_') {
			if (++label > 63)
				return -1;
		} else
			return -1;
		out[i] = (char)tolower(ch);
	}
	if (label == 0)
		return -1;
	out[len] = '\0';
	return 0;
}

int
checkdns_is_own(const struct checkdns *c, const char *host)
{
	int i;

	for (i = 0; i < c->nown; i++)
		if (strcasecmp(c->own[i], host) == 0)
			return 1;
	return 0;
}

static void
checkdns_free(struct checkdns *c)
{
	int i;

	if (c == NULL)
		return;
	for (i = 0; i < c->nown; i++)
		free(c->own[i]);
	free(c->own);
	checkdns_txt_free(&c->sts);
	checkdns_txt_free(&c->dmarc);
	checkdns_txt_free(&c->tlsrpt);
	checkdns_txt_free(&c->txt);
	checkdns_spf_free(c);
	checkdns_host_free(c);
	free(c->targets);
	free(c->cafile);
	free(c);
}

/* checkdns_cancel_all - drop every lookup still in flight */
static void
checkdns_cancel_all(struct checkdns *c)
{
	struct checkdns_lookup *l;

	for (l = c->live; l != NULL; l = l->live_next)
		if (l->q != NULL) {
			dns_cancel(l->q);
			l->q = NULL;
		}
	if (c->fetch != NULL) {
		mtasts_fetch_cancel(c->fetch);
		c->fetch = NULL;
	}
}

void
checkdns_cancel(struct checkdns *c)
{
	if (c == NULL)
		return;
	if (c->reporting) {
		/* inside line_cb: checkdns_report frees it when it returns */
		c->cancelled = 1;
		return;
	}
	checkdns_cancel_all(c);
	checkdns_free(c);
}

/* ------------------------------------------------------------------ */
/* lookups */

static void
checkdns_lookup_cb(void *arg, const struct dns_result *r)
{
	struct checkdns_lookup *l = arg;
	struct checkdns *c = l->c;

	l->q = NULL;
	l->done = 1;
	l->status = r->status;
	l->secure = r->secure;
	snprintf(l->why, sizeof(l->why), "%s", r->why);
	if (l->take != NULL)
		l->take(l, r);
	if (--c->pending == 0)
		checkdns_report(c);
}

/* checkdns_lookup_start - 0, or -1 when the query could not start */
int
checkdns_lookup_start(struct checkdns *c, struct checkdns_lookup *l,
                      const char *name, int rrtype,
                      void (*take)(struct checkdns_lookup *,
                                   const struct dns_result *))
{
	l->c = c;
	l->take = take;
	l->started = 1;
	l->done = 0;
	l->status = DNS_OK;
	l->secure = 0;
	l->why[0] = '\0';
	if (!l->linked) {
		l->linked = 1;
		l->live_next = c->live;
		c->live = l;
	}
	l->q = dns_query(c->dns, name, rrtype, checkdns_lookup_cb, l);
	if (l->q == NULL) {
		l->done = 1;
		l->status = DNS_TEMPFAIL;
		snprintf(l->why, sizeof(l->why), "could not start the lookup");
		return -1;
	}
	c->pending++;
	return 0;
}

int
checkdns_addrs_has(const struct checkdns_addrs *a,
                   const struct sockaddr_storage *ss)
{
	int i;

	for (i = 0; i < a->n; i++)
		if (checkdns_addr_eq(&a->a[i], ss))
			return 1;
	return 0;
}

/* checkdns_addrs_add - ss unless a has it already or is full */
void
checkdns_addrs_add(struct checkdns_addrs *a, const struct sockaddr_storage *ss)
{
	if (a->n < CHECKDNS_ADDR_MAX && !checkdns_addrs_has(a, ss))
		a->a[a->n++] = *ss;
}

void
checkdns_addrs_take(struct checkdns_addrs *a, const struct dns_result *r)
{
	int i;

	if (r->status != DNS_OK)
		return;
	for (i = 0; i < r->n; i++)
		checkdns_addrs_add(a, &r->addr[i]);
}

void
checkdns_txt_free(struct checkdns_txt *t)
{
	int i;

	for (i = 0; i < t->n; i++)
		free(t->s[i]);
	t->n = 0;
}

void
checkdns_txt_take(struct checkdns_txt *t, const struct dns_result *r)
{
	int i;

	if (r->status != DNS_OK)
		return;
	for (i = 0; i < r->n && t->n < CHECKDNS_TXT_MAX; i++)
		if ((t->s[t->n] = strdup(r->txt[i])) != NULL)
			t->n++;
}

static void
checkdns_take_txt(struct checkdns_lookup *l, const struct dns_result *r)
{
	checkdns_txt_take(&l->c->txt, r);
	checkdns_spf_start(l->c);
}

/*
 * checkdns_self_known - our hostname's addresses are in (or there is no
 * hostname): what others see of us is known, so the lookups that depend
 * on it (PTR, SPF evaluation) can start.
 */
static void
checkdns_self_known(struct checkdns *c)
{
	int i;

	for (i = 0; i < c->host_addrs.n; i++)
		checkdns_addrs_add(&c->pub, &c->host_addrs.a[i]);
	for (i = 0; i < c->listen_addrs.n; i++)
		checkdns_addrs_add(&c->pub, &c->listen_addrs.a[i]);
	checkdns_host_start(c);
}

static void
checkdns_take_self(struct checkdns_lookup *l, const struct dns_result *r)
{
	struct checkdns *c = l->c;

	checkdns_addrs_take(&c->self_addrs, r);
	checkdns_addrs_take(&c->host_addrs, r);
	if (c->self_a.done && c->self_aaaa.done)
		checkdns_self_known(c);
}

static void
checkdns_take_target(struct checkdns_lookup *l, const struct dns_result *r)
{
	struct checkdns_target *t = &l->c->targets[l->index];
	char canon[POLICY_DOMAIN_MAX + 1];

	checkdns_addrs_take(&t->addrs, r);
	if (r->canonname != NULL && t->canon[0] == '\0' &&
	    checkdns_name_norm(r->canonname, canon, sizeof(canon)) == 0 &&
	    strcmp(canon, t->host) != 0)
		snprintf(t->canon, sizeof(t->canon), "%s", canon);
}

static int
checkdns_mx_cmp(const void *a, const void *b)
{
	const struct policy_mx *x = a, *y = b;

	if (x->pref != y->pref)
		return x->pref < y->pref ? -1 : 1;
	return strcmp(x->host, y->host);
}

/* checkdns_take_mx - keep the set sorted, then look up every target */
static void
checkdns_take_mx(struct checkdns_lookup *l, const struct dns_result *r)
{
	struct checkdns *c = l->c;
	struct in_addr in;
	int i;

	if (r->status != DNS_OK)
		return;
	for (i = 0; i < r->n; i++) {
		if (c->nmx == CHECKDNS_MX_MAX) {
			c->mx_more++;
			continue;
		}
		c->mx[c->nmx++] = r->mx[i];
	}
	qsort(c->mx, c->nmx, sizeof(c->mx[0]), checkdns_mx_cmp);
	if ((c->targets = calloc(c->nmx, sizeof(*c->targets))) == NULL)
		return;
	for (i = 0; i < c->nmx; i++) {
		struct checkdns_target *t;

		if (c->mx[i].host[0] == '\0')
			continue; /* null MX */
		t = &c->targets[c->ntargets++];
		snprintf(t->host, sizeof(t->host), "%s", c->mx[i].host);
		t->pref = c->mx[i].pref;
		t->self = checkdns_is_own(c, t->host);
		if (inet_pton(AF_INET, t->host, &in) == 1) {
			t->literal = 1;
			continue;
		}
		t->a.index = t->aaaa.index = (int)(t - c->targets);
		checkdns_lookup_start(c, &t->a, t->host, DNS_T_A,
		                      checkdns_take_target);
		checkdns_lookup_start(c, &t->aaaa, t->host, DNS_T_AAAA,
		                      checkdns_take_target);
	}
}

/* checkdns_addr_wildcard - 0.0.0.0 or :: (listen on every address) */
static int
checkdns_addr_wildcard(const struct sockaddr_storage *ss)
{
	static const unsigned char zero[16];

	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == 0;
	if (ss->ss_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)ss)->sin6_addr,
		              zero, 16) == 0;
	return 1;
}

struct checkdns *
checkdns_start(struct dns *d, const struct config *cfg, const char *domain,
               checkdns_line_cb line_cb, checkdns_done_cb done_cb, void *arg)
{
	struct checkdns *c;
	const struct policy *p = cfg != NULL ? cfg->policy : NULL;
	const struct policy_domain *pd;
	char name[POLICY_DOMAIN_MAX + 32];
	int i, started = 0;

	if (d == NULL || domain == NULL || line_cb == NULL || done_cb == NULL)
		return NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->dns = d;
	c->line_cb = line_cb;
	c->done_cb = done_cb;
	c->arg = arg;
	c->loop = backmxd.loop;
	/* the addresses we listen on count as ours, like our name's */
	for (i = 0; i < backmxd.nown_addrs; i++) {
		checkdns_addrs_add(&c->self_addrs, &backmxd.own_addrs[i]);
		checkdns_addrs_add(&c->own_addrs, &backmxd.own_addrs[i]);
	}
	for (i = 0; cfg != NULL && i < cfg->nlisten; i++)
		if (!checkdns_addr_wildcard(&cfg->listen[i].ss))
			checkdns_addrs_add(&c->listen_addrs,
			                   &cfg->listen[i].ss);
	if (checkdns_name_norm(domain, c->domain, sizeof(c->domain)) == -1 ||
	    strlen(c->domain) > 240)
		goto fail;
	if (p != NULL) {
		snprintf(c->hostname, sizeof(c->hostname), "%s", p->hostname);
		if ((c->own = calloc(p->naliases + 1, sizeof(*c->own))) == NULL)
			goto fail;
		if ((c->own[c->nown] = strdup(p->hostname)) == NULL)
			goto fail;
		c->nown++;
		for (i = 0; i < p->naliases; i++) {
			if ((c->own[c->nown] = strdup(p->aliases[i])) == NULL)
				goto fail;
			c->nown++;
		}
		if (cfg->tls_ca != NULL &&
		    (c->cafile = strdup(cfg->tls_ca)) == NULL)
			goto fail;
		if ((pd = policy_find_domain(p, c->domain)) != NULL) {
			c->configured = 1;
			c->tls = pd->tls;
		}
	}

	started += checkdns_lookup_start(c, &c->mx_l, c->domain, DNS_T_MX,
	                                 checkdns_take_mx) == 0;
	started += checkdns_lookup_start(c, &c->txt_l, c->domain, DNS_T_TXT,
	                                 checkdns_take_txt) == 0;
	snprintf(name, sizeof(name), "_dmarc.%s", c->domain);
	started += checkdns_lookup_start(c, &c->dmarc_l, name, DNS_T_TXT,
	                                 checkdns_take_dmarc) == 0;
	snprintf(name, sizeof(name), "_smtp._tls.%s", c->domain);
	started += checkdns_lookup_start(c, &c->tlsrpt_l, name, DNS_T_TXT,
	                                 checkdns_take_tlsrpt) == 0;
	snprintf(name, sizeof(name), "_mta-sts.%s", c->domain);
	started += checkdns_lookup_start(c, &c->sts_l, name, DNS_T_TXT,
	                                 checkdns_take_sts) == 0;
	if (c->hostname[0] != '\0') {
		started +=
		    checkdns_lookup_start(c, &c->self_a, c->hostname, DNS_T_A,
		                          checkdns_take_self) == 0;
		started +=
		    checkdns_lookup_start(c, &c->self_aaaa, c->hostname,
		                          DNS_T_AAAA, checkdns_take_self) == 0;
		if (c->configured && c->tls == POLICY_TLS_DANE) {
			snprintf(name, sizeof(name), "_25._tcp.%s",
			         c->hostname);
			started += checkdns_lookup_start(
			               c, &c->tlsa_l, name, DNS_T_TLSA,
			               checkdns_take_tlsa) == 0;
		}
	}
	if (!c->self_a.started || (c->self_a.done && c->self_aaaa.done))
		checkdns_self_known(c); /* no hostname, or neither started */
	started += c->pending > 0;
	if (started == 0)
		goto fail;
	return c;
fail:
	checkdns_cancel_all(c);
	checkdns_free(c);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* the report */

void
checkdns_line(struct checkdns *c, const char *level, const char *check,
              const char *fmt, ...)
{
	char text[CHECKDNS_LINE_MAX];
	va_list ap;

	if (c->cancelled)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (strcmp(level, "FAIL") == 0)
		c->nfail++;
	c->line_cb(c->arg, level, check, text);
}

const char *
checkdns_addr_str(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	const void *a =
	    ss->ss_family == AF_INET6
	        ? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
	        : (const void *)&((const struct sockaddr_in *)ss)->sin_addr;

	if (inet_ntop(ss->ss_family, a, buf, len) == NULL)
		snprintf(buf, len, "?");
	return buf;
}

int
checkdns_addr_eq(const struct sockaddr_storage *x,
                 const struct sockaddr_storage *y)
{
	if (x->ss_family != y->ss_family)
		return 0;
	if (x->ss_family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)x)->sin_addr,
		              &((const struct sockaddr_in *)y)->sin_addr,
		              4) == 0;
	if (x->ss_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)x)->sin6_addr,
		              &((const struct sockaddr_in6 *)y)->sin6_addr,
		              16) == 0;
	return 0;
}

/* checkdns_addrs_text - "a, b, c" into buf */
void
checkdns_addrs_text(const struct checkdns_addrs *a, char *buf, size_t len)
{
	char one[INET6_ADDRSTRLEN];
	size_t o = 0;
	int i;

	buf[0] = '\0';
	for (i = 0; i < a->n && o < len; i++) {
		int w = snprintf(buf + o, len - o, "%s%s", i ? ", " : "",
		                 checkdns_addr_str(&a->a[i], one, sizeof(one)));

		if (w < 0)
			break;
		o += (size_t)w;
	}
}

/* checkdns_report - every lookup is back: say it all, then done_cb */
void
checkdns_report(struct checkdns *c)
{
	char list[1024];
	size_t o = 0;
	int i, nnull = 0;

	c->reporting = 1;
	if (!c->configured)
		checkdns_line(c, "WARN", "domain",
		              "%s has no domain block in "
		              "this configuration: audited anyway",
		              c->domain);

	switch (c->mx_l.status) {
	case DNS_OK:
		list[0] = '\0';
		for (i = 0; i < c->nmx && o < sizeof(list); i++) {
			int w = snprintf(
			    list + o, sizeof(list) - o, "%s%d %s",
			    i ? ", " : "", c->mx[i].pref,
			    c->mx[i].host[0] != '\0' ? c->mx[i].host : ".");

			if (w < 0)
				break;
			o += (size_t)w;
			if (c->mx[i].host[0] == '\0')
				nnull++;
		}
		checkdns_line(c, "OK", "mx", "MX set of %s: %s%s", c->domain,
		              list, c->mx_more ? " (and more)" : "");
		if (nnull > 0 && c->ntargets == 0)
			checkdns_line(
			    c, "FAIL", "null-mx",
			    "%s publishes a "
			    "null MX (\"MX 0 .\", RFC 7505): it accepts no "
			    "mail at all, so there is nothing to back up; "
			    "remove its domain block or its null MX",
			    c->domain);
		else if (nnull > 0)
			checkdns_line(
			    c, "FAIL", "null-mx",
			    "%s mixes a null "
			    "MX with other MX records: RFC 7505 requires the "
			    "null MX to be the only one; senders may refuse "
			    "all its mail",
			    c->domain);
		checkdns_report_self(c);
		for (i = 0; i < c->ntargets; i++)
			checkdns_report_target(c, &c->targets[i]);
		break;
	case DNS_NODATA:
		checkdns_line(
		    c, "FAIL", "mx",
		    "%s has no MX records: senders "
		    "deliver to its A/AAAA address (implicit MX) and never "
		    "try a backup MX",
		    c->domain);
		break;
	case DNS_NXDOMAIN:
		checkdns_line(c, "FAIL", "mx", "%s does not exist (NXDOMAIN)",
		              c->domain);
		break;
	case DNS_TEMPFAIL:
	case DNS_BOGUS:
		checkdns_line(c, "FAIL", "mx", "MX lookup for %s failed: %s",
		              c->domain, c->mx_l.why);
		break;
	}
	/* about us, whatever the domain: what receivers see of our mail */
	checkdns_report_helo(c);
	checkdns_report_ptr(c);
	/* a null MX domain wants no mail: its SPF/DMARC/TLS are moot */
	if (c->mx_l.status != DNS_NXDOMAIN &&
	    !(c->mx_l.status == DNS_OK && c->ntargets == 0)) {
		checkdns_report_spf(c);
		checkdns_report_dmarc(c);
		checkdns_report_tlsrpt(c);
		checkdns_report_sts(c);
	}
	checkdns_report_tlsa(c);
	/* still reporting: a checkdns_cancel from done_cb changes nothing */
	if (!c->cancelled)
		c->done_cb(c->arg, c->nfail);
	checkdns_free(c);
}
