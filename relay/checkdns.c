/*
 * checkdns.c - `backmxctl check-dns DOMAIN`: audits a domain's public DNS
 * for the mistakes that break a backup MX (we are absent, best or equal-
 * best; IP-literal, CNAME or addressless targets; a single MX; null MX;
 * SPF; MTA-STS; our TLSA for DANE).  Called by control.c; uses dns.h for
 * every lookup and reports through the caller's line/done callbacks once
 * all lookups are back, in a fixed order, so output is reproducible.
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
#include "config.h"
#include "dns.h"
#include "mtasts.h"
#include "policy.h"

#define CHECKDNS_MX_MAX 32   /* MX records examined */
#define CHECKDNS_ADDR_MAX 16 /* addresses kept per name */
#define CHECKDNS_TXT_MAX 16  /* TXT strings kept per name */
#define CHECKDNS_LINE_MAX 768
#define CHECKDNS_FETCH_TIMEOUT 15. /* seconds, MTA-STS policy fetch */

struct checkdns;

struct checkdns_lookup {
	struct checkdns *c;
	struct dns_query *q;
	void (*take)(struct checkdns_lookup *, const struct dns_result *);
	int index; /* MX target for target lookups */
	int started;
	int done;
	enum dns_status status;
	int secure;
	char why[160];
};

struct checkdns_addrs {
	struct sockaddr_storage a[CHECKDNS_ADDR_MAX];
	int n;
};

struct checkdns_target {
	char host[POLICY_DOMAIN_MAX + 1];
	int pref;
	int literal; /* an IP address where a name belongs */
	int self;    /* our hostname or an alias */
	struct checkdns_lookup a, aaaa;
	char canon[POLICY_DOMAIN_MAX + 1]; /* CNAME target, "" if none */
	struct checkdns_addrs addrs;
};

struct checkdns_txt {
	char *s[CHECKDNS_TXT_MAX];
	int n;
};

struct checkdns {
	struct dns *dns;
	checkdns_line_cb line_cb;
	checkdns_done_cb done_cb;
	void *arg;

	char domain[POLICY_DOMAIN_MAX + 1]; /* lowercase, no trailing dot */
	char hostname[POLICY_DOMAIN_MAX + 1];
	char **own; /* hostname and aliases */
	int nown;
	int configured; /* domain has a block in the config */
	enum policy_tls tls;

	int pending;
	int reporting;
	int cancelled;
	int nfail;

	struct checkdns_lookup mx_l;
	struct policy_mx mx[CHECKDNS_MX_MAX];
	int nmx;
	int mx_more; /* records beyond CHECKDNS_MX_MAX */

	struct checkdns_lookup txt_l; /* TXT DOMAIN (SPF) */
	struct checkdns_txt txt;
	struct checkdns_lookup sts_l; /* TXT _mta-sts.DOMAIN */
	struct checkdns_txt sts;
	char sts_id[MTASTS_ID_MAX + 1];
	int sts_valid;                    /* exactly one valid v=STSv1 */
	struct checkdns_lookup stshost_l; /* A mta-sts.DOMAIN */
	struct ev_loop *loop;             /* NULL: policies are not fetched */
	char *cafile;                     /* tls_ca, NULL = system store */
	struct mtasts_fetch *fetch;
	int fetch_done;
	int fetch_ok;
	struct mtasts_policy policy;
	char fetch_err[512];
	struct checkdns_lookup tlsa_l; /* TLSA _25._tcp.HOSTNAME */
	int ntlsa, ntlsa_usable;
	struct checkdns_lookup self_a, self_aaaa;
	struct checkdns_addrs self_addrs;

	struct checkdns_target *targets;
	int ntargets;
};

static void checkdns_report(struct checkdns *c);

/*
 * checkdns_name_norm - lowercase copy of name without a trailing dot;
 * -1 unless it is a host name: LDH or '_' labels of 1-63 octets.
 */
static int
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

static int
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
	for (i = 0; i < c->txt.n; i++)
		free(c->txt.s[i]);
	for (i = 0; i < c->sts.n; i++)
		free(c->sts.s[i]);
	free(c->targets);
	free(c->cafile);
	free(c);
}

/* checkdns_cancel_all - drop every lookup still in flight */
static void
checkdns_cancel_all(struct checkdns *c)
{
	struct checkdns_lookup *ls[] = {&c->mx_l,     &c->txt_l,  &c->sts_l,
	                                &c->tlsa_l,   &c->self_a, &c->self_aaaa,
	                                &c->stshost_l};
	size_t i;
	int t;

	for (i = 0; i < sizeof(ls) / sizeof(ls[0]); i++)
		if (ls[i]->q != NULL) {
			dns_cancel(ls[i]->q);
			ls[i]->q = NULL;
		}
	if (c->fetch != NULL) {
		mtasts_fetch_cancel(c->fetch);
		c->fetch = NULL;
	}
	for (t = 0; t < c->ntargets; t++) {
		if (c->targets[t].a.q != NULL)
			dns_cancel(c->targets[t].a.q);
		if (c->targets[t].aaaa.q != NULL)
			dns_cancel(c->targets[t].aaaa.q);
		c->targets[t].a.q = c->targets[t].aaaa.q = NULL;
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
static int
checkdns_lookup_start(struct checkdns *c, struct checkdns_lookup *l,
                      const char *name, int rrtype,
                      void (*take)(struct checkdns_lookup *,
                                   const struct dns_result *))
{
	l->c = c;
	l->take = take;
	l->started = 1;
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

static void
checkdns_addrs_take(struct checkdns_addrs *a, const struct dns_result *r)
{
	int i;

	if (r->status != DNS_OK)
		return;
	for (i = 0; i < r->n && a->n < CHECKDNS_ADDR_MAX; i++)
		a->a[a->n++] = r->addr[i];
}

static void
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
}

/* checkdns_fetch_cb - the MTA-STS policy, or why there is none */
static void
checkdns_fetch_cb(void *arg, const struct mtasts_policy *policy,
                  const char *err)
{
	struct checkdns *c = arg;

	c->fetch = NULL;
	c->fetch_done = 1;
	if (policy != NULL) {
		c->fetch_ok = 1;
		c->policy = *policy;
	} else
		snprintf(c->fetch_err, sizeof(c->fetch_err), "%s",
		         err != NULL ? err : "failed");
	if (--c->pending == 0)
		checkdns_report(c);
}

/* checkdns_take_stshost - mta-sts.DOMAIN resolved: fetch the policy */
static void
checkdns_take_stshost(struct checkdns_lookup *l, const struct dns_result *r)
{
	struct checkdns *c = l->c;
	char err[200];
	socklen_t salen;

	if (r->status != DNS_OK || r->n == 0) {
		c->fetch_done = 1;
		snprintf(c->fetch_err, sizeof(c->fetch_err), "mta-sts.%s: %s",
		         c->domain,
		         r->status == DNS_OK ? "no address" : r->why);
		return;
	}
	salen = r->addr[0].ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
	                                         : sizeof(struct sockaddr_in);
	c->fetch = mtasts_fetch_start(c->loop, c->domain,
	                              (const struct sockaddr *)&r->addr[0],
	                              salen, c->cafile, CHECKDNS_FETCH_TIMEOUT,
	                              checkdns_fetch_cb, c, err, sizeof(err));
	if (c->fetch == NULL) {
		c->fetch_done = 1;
		snprintf(c->fetch_err, sizeof(c->fetch_err), "%s", err);
		return;
	}
	c->pending++;
}

static int checkdns_lookup_start(struct checkdns *, struct checkdns_lookup *,
                                 const char *, int,
                                 void (*)(struct checkdns_lookup *,
                                          const struct dns_result *));

/* checkdns_take_sts - _mta-sts TXT; a valid record leads to the policy */
static void
checkdns_take_sts(struct checkdns_lookup *l, const struct dns_result *r)
{
	struct checkdns *c = l->c;
	char name[POLICY_DOMAIN_MAX + 16];

	checkdns_txt_take(&c->sts, r);
	if (c->sts.n == 0 || mtasts_txt_select(c->sts.s, c->sts.n, c->sts_id,
	                                       sizeof(c->sts_id)) == -1)
		return;
	c->sts_valid = 1;
	if (c->loop == NULL)
		return;
	snprintf(name, sizeof(name), "mta-sts.%s", c->domain);
	checkdns_lookup_start(c, &c->stshost_l, name, DNS_T_A,
	                      checkdns_take_stshost);
}

static void
checkdns_take_self(struct checkdns_lookup *l, const struct dns_result *r)
{
	checkdns_addrs_take(&l->c->self_addrs, r);
}

static void
checkdns_take_tlsa(struct checkdns_lookup *l, const struct dns_result *r)
{
	int i;

	if (r->status != DNS_OK)
		return;
	l->c->ntlsa = r->n;
	for (i = 0; i < r->n; i++)
		if (r->tlsa[i].usage == 2 || r->tlsa[i].usage == 3)
			l->c->ntlsa_usable++;
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
	for (i = 0;
	     i < backmxd.nown_addrs && c->self_addrs.n < CHECKDNS_ADDR_MAX; i++)
		c->self_addrs.a[c->self_addrs.n++] = backmxd.own_addrs[i];
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

static void checkdns_line(struct checkdns *c, const char *level,
                          const char *check, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
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

static const char *
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

static int
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
static void
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

static void
checkdns_report_self(struct checkdns *c)
{
	int i, j, best = -1, ours = -1, nreal = 0, nhosts = 0;
	char shared[256] = "";
	const char *primary = NULL;

	for (i = 0; i < c->ntargets; i++) {
		const struct checkdns_target *t = &c->targets[i];

		nreal++;
		if (best == -1 || t->pref < best)
			best = t->pref;
		if (t->self && (ours == -1 || t->pref < ours))
			ours = t->pref;
		for (j = 0; j < i; j++)
			if (strcmp(t->host, c->targets[j].host) == 0)
				break;
		if (j == i)
			nhosts++; /* first time this host is listed */
	}
	if (nreal == 0)
		return;
	for (i = 0; i < c->ntargets; i++) {
		const struct checkdns_target *t = &c->targets[i];
		size_t o;

		if (t->self)
			continue;
		if (t->pref == best && primary == NULL)
			primary = t->host;
		if (ours != -1 && t->pref == ours) {
			o = strlen(shared);
			if (snprintf(shared + o, sizeof(shared) - o, "%s%s",
			             o ? ", " : "", t->host) < 0)
				shared[o] = '\0';
		}
	}

	if (c->hostname[0] == '\0')
		checkdns_line(c, "FAIL", "self",
		              "no hostname configured: "
		              "cannot tell where this backup MX stands");
	else if (ours == -1)
		checkdns_line(
		    c, "FAIL", "self",
		    "%s is not in the MX set: "
		    "senders never try this backup MX; publish "
		    "\"MX %d %s.\" (a preference above the primary's %d)",
		    c->hostname, best + 10, c->hostname, best);
	else if (ours == best && shared[0] == '\0')
		checkdns_line(
		    c, "FAIL", "self",
		    "%s is the best MX (%d): "
		    "mail for %s comes to us first and has no primary to go "
		    "to (it would loop back to us); the primary needs a "
		    "lower preference",
		    c->hostname, ours, c->domain);
	else if (ours == best)
		checkdns_line(
		    c, "FAIL", "self",
		    "%s shares the best "
		    "preference %d with %s: senders pick us at random "
		    "instead of the primary; give us a higher number",
		    c->hostname, ours, shared);
	else
		checkdns_line(c, "OK", "self",
		              "%s is MX %d, behind the "
		              "primary %s (%d)",
		              c->hostname, ours,
		              primary != NULL ? primary : "?", best);

	if (ours != -1) {
		if (shared[0] != '\0')
			checkdns_line(
			    c, "WARN", "equal-pref",
			    "preference "
			    "%d is shared by %s and %s: equal preferences "
			    "share the load at random, they do not fail "
			    "over; if failover was meant, use distinct "
			    "numbers",
			    ours, c->hostname, shared);
		else
			checkdns_line(c, "OK", "equal-pref",
			              "no other MX "
			              "shares our preference %d",
			              ours);
	}

	if (nhosts == 1)
		checkdns_line(c, "WARN", "redundancy",
		              "single MX host (%s): "
		              "no redundancy",
		              c->targets[0].host);
	else
		checkdns_line(c, "OK", "redundancy", "%d MX hosts", nhosts);
}

static void
checkdns_report_target(struct checkdns *c, const struct checkdns_target *t)
{
	char addrs[512];
	int i, j;

	if (t->literal) {
		checkdns_line(
		    c, "FAIL", "target",
		    "%s (%d) is an IP address, "
		    "not a host name: MX data must be a name with A/AAAA "
		    "records (RFC 5321 5.1); senders look it up as a name "
		    "and find nothing",
		    t->host, t->pref);
		return;
	}
	checkdns_addrs_text(&t->addrs, addrs, sizeof(addrs));
	if (t->addrs.n == 0) {
		const struct checkdns_lookup *bad = NULL;

		if (t->a.status == DNS_BOGUS || t->aaaa.status == DNS_BOGUS) {
			bad = t->a.status == DNS_BOGUS ? &t->a : &t->aaaa;
			checkdns_line(c, "FAIL", "target", "%s (%d): %s",
			              t->host, t->pref, bad->why);
		} else if (t->a.status == DNS_TEMPFAIL ||
		           t->aaaa.status == DNS_TEMPFAIL) {
			bad = t->a.status == DNS_TEMPFAIL ? &t->a : &t->aaaa;
			checkdns_line(c, "WARN", "target",
			              "%s (%d): address "
			              "lookup failed: %s",
			              t->host, t->pref, bad->why);
		} else if (t->canon[0] != '\0')
			checkdns_line(
			    c, "FAIL", "target",
			    "%s (%d) is a CNAME "
			    "to %s, which has no A or AAAA record: senders "
			    "cannot reach it",
			    t->host, t->pref, t->canon);
		else if (t->a.status == DNS_NXDOMAIN)
			checkdns_line(
			    c, "FAIL", "target",
			    "%s (%d) does not "
			    "exist (NXDOMAIN): senders cannot reach it",
			    t->host, t->pref);
		else
			checkdns_line(c, "FAIL", "target",
			              "%s (%d) has no A "
			              "or AAAA record: senders cannot reach it",
			              t->host, t->pref);
		return;
	}
	if (t->canon[0] != '\0')
		checkdns_line(
		    c, "WARN", "target",
		    "%s (%d) is a CNAME to %s "
		    "(%s): MX targets must not be aliases (RFC 2181 10.3); "
		    "strict senders refuse it, point the MX at %s",
		    t->host, t->pref, t->canon, addrs, t->canon);
	else
		checkdns_line(c, "OK", "target", "%s (%d): %s%s", t->host,
		              t->pref, addrs, t->self ? " (us)" : "");
	if (t->self)
		return;
	for (i = 0; i < t->addrs.n; i++)
		for (j = 0; j < c->self_addrs.n; j++)
			if (checkdns_addr_eq(&t->addrs.a[i],
			                     &c->self_addrs.a[j])) {
				char one[INET6_ADDRSTRLEN];

				checkdns_line(
				    c, "WARN", "target",
				    "%s (%d) "
				    "has our address %s but is neither our "
				    "hostname nor a hostname_alias: backmx "
				    "will "
				    "not know itself in the MX set (add "
				    "\"hostname_alias %s\")",
				    t->host, t->pref,
				    checkdns_addr_str(&t->addrs.a[i], one,
				                      sizeof(one)),
				    t->host);
				return;
			}
}

/* checkdns_cidr_covers - does "ADDR[/BITS]" cover one of addrs? */
static int
checkdns_cidr_covers(const char *spec, int family,
                     const struct checkdns_addrs *addrs)
{
	char buf[64], *slash;
	unsigned char net[16];
	int bits, max = family == AF_INET ? 32 : 128, i;

	if (strlen(spec) >= sizeof(buf))
		return 0;
	snprintf(buf, sizeof(buf), "%s", spec);
	bits = max;
	if ((slash = strchr(buf, '/')) != NULL) {
		char *ep;
		long b;

		*slash = '\0';
		b = strtol(slash + 1, &ep, 10);
		if (*ep != '\0' || slash[1] == '\0' || b < 0 || b > max)
			return 0;
		bits = (int)b;
	}
	if (inet_pton(family, buf, net) != 1)
		return 0;
	for (i = 0; i < addrs->n; i++) {
		const unsigned char *a;
		int full = bits / 8, rest = bits % 8;

		if (addrs->a[i].ss_family != family)
			continue;
		a = family == AF_INET
		        ? (const unsigned char *)&(
		              (const struct sockaddr_in *)&addrs->a[i])
		              ->sin_addr
		        : (const unsigned char *)&(
		              (const struct sockaddr_in6 *)&addrs->a[i])
		              ->sin6_addr;
		if (memcmp(a, net, full) != 0)
			continue;
		if (rest != 0 &&
		    ((a[full] ^ net[full]) & (0xff << (8 - rest)) & 0xff) != 0)
			continue;
		return 1;
	}
	return 0;
}

static void
checkdns_report_spf(struct checkdns *c)
{
	const char *spf = NULL;
	char buf[512], *tok, *save;
	int i, nspf = 0, mx = 0, covered = 0, indirect = 0;

	if (c->txt_l.status == DNS_TEMPFAIL || c->txt_l.status == DNS_BOGUS) {
		checkdns_line(c, "WARN", "spf", "TXT lookup for %s failed: %s",
		              c->domain, c->txt_l.why);
		return;
	}
	for (i = 0; i < c->txt.n; i++)
		if (strncasecmp(c->txt.s[i], "v=spf1", 6) == 0 &&
		    (c->txt.s[i][6] == '\0' || c->txt.s[i][6] == ' ')) {
			spf = c->txt.s[i];
			nspf++;
		}
	if (nspf == 0) {
		checkdns_line(
		    c, "WARN", "spf",
		    "no SPF record (v=spf1) for "
		    "%s: receivers cannot tell its mail from forgeries; "
		    "publish one (\"v=spf1 mx -all\" covers this backup MX)",
		    c->domain);
		return;
	}
	if (nspf > 1) {
		checkdns_line(c, "FAIL", "spf",
		              "%d SPF records for %s: RFC "
		              "7208 4.5 makes that a permanent error at every "
		              "receiver; merge them into one",
		              nspf, c->domain);
		return;
	}
	snprintf(buf, sizeof(buf), "%s", spf);
	for (tok = strtok_r(buf + 6, " ", &save); tok != NULL;
	     tok = strtok_r(NULL, " ", &save)) {
		char q = '+';

		if (strchr("+-~?", *tok) != NULL)
			q = *tok++;
		if (strcasecmp(tok, "mx") == 0 ||
		    strncasecmp(tok, "mx:", 3) == 0 ||
		    strncasecmp(tok, "mx/", 3) == 0) {
			if (q == '+')
				mx = 1;
		} else if (strncasecmp(tok, "ip4:", 4) == 0) {
			if (q == '+' && checkdns_cidr_covers(tok + 4, AF_INET,
			                                     &c->self_addrs))
				covered = 1;
		} else if (strncasecmp(tok, "ip6:", 4) == 0) {
			if (q == '+' && checkdns_cidr_covers(tok + 4, AF_INET6,
			                                     &c->self_addrs))
				covered = 1;
		} else if (strncasecmp(tok, "include:", 8) == 0 ||
		           strncasecmp(tok, "redirect=", 9) == 0 ||
		           strcasecmp(tok, "a") == 0 ||
		           strncasecmp(tok, "a:", 2) == 0 ||
		           strncasecmp(tok, "a/", 2) == 0 ||
		           strncasecmp(tok, "exists:", 7) == 0)
			indirect = 1;
	}
	if (mx)
		checkdns_line(c, "OK", "spf",
		              "\"%.200s\" uses mx: every MX "
		              "host, this backup included, may send as %s",
		              spf, c->domain);
	else if (covered)
		checkdns_line(c, "OK", "spf", "\"%.200s\" lists our address",
		              spf);
	else
		checkdns_line(
		    c, "WARN", "spf",
		    "\"%.200s\" does not use mx "
		    "and does not list our address%s: relaying through us "
		    "keeps the original sender, which is fine as long as the "
		    "primary does not SPF-check mail from its backup MX; "
		    "but bounces and notices we send for %s would fail SPF "
		    "(add mx)",
		    spf, indirect ? " (include:/a/redirect= not expanded)" : "",
		    c->domain);
}

static void
checkdns_report_sts(struct checkdns *c)
{
	const char *us = c->hostname[0] != '\0' ? c->hostname : "our hostname";
	char miss[512] = "";
	size_t o;
	int i, nsts = 0, enforce;

	if (c->sts_l.status == DNS_TEMPFAIL || c->sts_l.status == DNS_BOGUS) {
		checkdns_line(c, "WARN", "mta-sts",
		              "TXT lookup for "
		              "_mta-sts.%s failed: %s",
		              c->domain, c->sts_l.why);
		return;
	}
	for (i = 0; i < c->sts.n; i++)
		if (strncmp(c->sts.s[i], "v=STSv1", 7) == 0)
			nsts++;
	if (nsts == 0) {
		checkdns_line(c, "OK", "mta-sts",
		              "no MTA-STS record "
		              "(_mta-sts.%s): no policy that must list us",
		              c->domain);
		return;
	}
	if (!c->sts_valid) {
		checkdns_line(
		    c, "WARN", "mta-sts",
		    "_mta-sts.%s TXT is "
		    "invalid or there are %d v=STSv1 records: senders see no "
		    "policy (RFC 8461 3.1)",
		    c->domain, nsts);
		return;
	}
	checkdns_line(c, "OK", "mta-sts", "MTA-STS record present (id=%s)",
	              c->sts_id);
	if (!c->fetch_done) {
		checkdns_line(
		    c, "WARN", "mta-sts",
		    "policy not fetched (no "
		    "event loop to fetch it on): make sure the mx: lines of "
		    "https://mta-sts.%s/.well-known/mta-sts.txt match %s, or "
		    "senders enforcing the policy will never use this backup "
		    "MX",
		    c->domain, us);
		return;
	}
	if (!c->fetch_ok) {
		checkdns_line(
		    c, "WARN", "mta-sts",
		    "policy fetch from "
		    "https://mta-sts.%s/.well-known/mta-sts.txt failed: %s "
		    "(senders without a cached policy act as if there were "
		    "none)",
		    c->domain, c->fetch_err);
		return;
	}
	if (c->policy.mode == MTASTS_MODE_NONE) {
		checkdns_line(c, "OK", "mta-sts",
		              "policy mode none: not "
		              "enforced");
		return;
	}
	for (i = 0; i < c->ntargets; i++) {
		const char *h = c->targets[i].host;

		if (c->targets[i].self || mtasts_mx_match(&c->policy, h))
			continue;
		o = strlen(miss);
		if (snprintf(miss + o, sizeof(miss) - o, "%s%s", o ? ", " : "",
		             h) < 0)
			miss[o] = '\0';
	}
	enforce = c->policy.mode == MTASTS_MODE_ENFORCE;
	if (c->hostname[0] != '\0' && !mtasts_mx_match(&c->policy, us))
		checkdns_line(
		    c, enforce ? "FAIL" : "WARN", "mta-sts",
		    "policy "
		    "(mode %s) has no mx: pattern matching %s: senders %s "
		    "never deliver to this backup MX; add \"mx: %s\"",
		    mtasts_mode_str(c->policy.mode), us,
		    enforce ? "enforcing it" : "would, once it is enforced,",
		    us);
	else
		checkdns_line(c, "OK", "mta-sts",
		              "policy (mode %s) matches "
		              "%s",
		              mtasts_mode_str(c->policy.mode), us);
	if (miss[0] != '\0')
		checkdns_line(
		    c, enforce ? "FAIL" : "WARN", "mta-sts",
		    "policy "
		    "(mode %s) does not match MX host(s) %s: enforcing "
		    "senders skip them",
		    mtasts_mode_str(c->policy.mode), miss);
}

static void
checkdns_report_tlsa(struct checkdns *c)
{
	const struct checkdns_lookup *l = &c->tlsa_l;

	if (!l->started)
		return;
	switch (l->status) {
	case DNS_OK:
		if (!l->secure)
			checkdns_line(
			    c, "WARN", "tlsa",
			    "_25._tcp.%s has %d "
			    "TLSA record(s) but they are not DNSSEC-validated "
			    "(unsigned zone, or no dns_trust_anchor): DANE "
			    "senders ignore them",
			    c->hostname, c->ntlsa);
		else if (c->ntlsa_usable == 0)
			checkdns_line(
			    c, "WARN", "tlsa",
			    "_25._tcp.%s has %d "
			    "TLSA record(s), none DANE-TA(2) or DANE-EE(3): "
			    "senders require TLS but authenticate nothing",
			    c->hostname, c->ntlsa);
		else
			checkdns_line(c, "OK", "tlsa",
			              "_25._tcp.%s: %d "
			              "usable TLSA record(s), DNSSEC-validated",
			              c->hostname, c->ntlsa_usable);
		break;
	case DNS_NODATA:
	case DNS_NXDOMAIN:
		checkdns_line(
		    c, "FAIL", "tlsa",
		    "%s uses DANE (tls dane) but "
		    "_25._tcp.%s has no TLSA record: DANE senders reach this "
		    "backup MX without authentication, a downgrade path "
		    "around the primary's TLSA",
		    c->domain, c->hostname);
		break;
	case DNS_BOGUS:
		checkdns_line(c, "FAIL", "tlsa", "_25._tcp.%s: %s", c->hostname,
		              l->why);
		break;
	case DNS_TEMPFAIL:
		checkdns_line(c, "WARN", "tlsa",
		              "TLSA lookup for _25._tcp.%s "
		              "failed: %s",
		              c->hostname, l->why);
		break;
	}
}

/* checkdns_report - every lookup is back: say it all, then done_cb */
static void
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
	/* a null MX domain wants no mail: its SPF/MTA-STS are moot */
	if (c->mx_l.status != DNS_NXDOMAIN &&
	    !(c->mx_l.status == DNS_OK && c->ntargets == 0)) {
		checkdns_report_spf(c);
		checkdns_report_sts(c);
	}
	checkdns_report_tlsa(c);
	/* still reporting: a checkdns_cancel from done_cb changes nothing */
	if (!c->cancelled)
		c->done_cb(c->arg, c->nfail);
	checkdns_free(c);
}
