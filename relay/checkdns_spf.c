/*
 * checkdns_spf.c - the check-dns verdict on a domain's SPF record (RFC
 * 7208): present, only one, within the limit of 10 DNS-querying terms
 * (4.6.4, counted through include: and redirect=), and what check_host()
 * gives for each of this backup MX's addresses.
 *
 * Two phases.  Fetching (checkdns_spf_start, from the domain's TXT
 * answer): every name the record leads to is looked up once, whatever
 * the address - the TXT of include:/redirect= targets, A/AAAA of a: and
 * exists:, MX and the MX hosts' A/AAAA of mx: - on the audit's lookup
 * chain (so cancelling reaches them); at most CHECKDNS_SPF_NODES names.
 * Judging (checkdns_report_spf, all answers in): check_host() per
 * address over those answers, in record order, with the 10-term and the
 * 2-void-lookup limits, and the static count of the whole tree.
 * Not evaluated: macros (%{...}: the term does not match, and the
 * report says so) and ptr (does not match; RFC 7208 5.5 says not to use
 * it).  exp= and unknown modifiers are ignored, as the RFC asks.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <stdarg.h>
#include <stddef.h>
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

#define SPF_TERMS_MAX 64 /* terms parsed per record */
#define SPF_DNS_LIMIT 10 /* RFC 7208 4.6.4 */
#define SPF_VOID_LIMIT 2 /* RFC 7208 4.6.4 */
#define SPF_MX_LIMIT 10  /* MX names an mx term may look at */
#define SPF_DEPTH_MAX 24 /* nesting, whatever the counts say */

enum spf_node_kind { SPF_N_TXT, SPF_N_ADDR, SPF_N_MX };

struct checkdns_spfnode {
	struct checkdns_spfnode *next;
	int kind;
	char name[POLICY_DOMAIN_MAX + 1];
	struct checkdns_lookup l, l6; /* TXT or A or MX; l6: AAAA */
	struct checkdns_txt txt;
	struct checkdns_addrs addrs;
	struct checkdns_spfnode *mxt[SPF_MX_LIMIT]; /* MX hosts (ADDR) */
	int nmxt;
	int mx_over; /* more MX names than SPF_MX_LIMIT */
};

enum spf_kind {
	SPF_ALL,
	SPF_INCLUDE,
	SPF_A,
	SPF_MX,
	SPF_PTR,
	SPF_IP4,
	SPF_IP6,
	SPF_EXISTS,
	SPF_REDIRECT,
	SPF_MOD, /* exp= or an unknown modifier: ignored */
	SPF_BAD
};

struct spf_term {
	char q; /* + - ~ ? */
	int kind;
	char dom[POLICY_DOMAIN_MAX + 1]; /* target, "" = the current domain */
	char net[64];                    /* ip4:/ip6: network[/bits] */
	int c4, c6;                      /* a/mx dual-cidr lengths */
	int macro;                       /* domain-spec has a macro */
	char text[96];                   /* as written, for the report */
};

enum spf_res { /* from 1: 0 is "no result yet" in spf_record */
	       SPF_R_NONE = 1,
	       SPF_R_NEUTRAL,
	       SPF_R_PASS,
	       SPF_R_FAIL,
	       SPF_R_SOFTFAIL,
	       SPF_R_TEMPERROR,
	       SPF_R_PERMERROR
};

static const char *const spf_res_names[] = {
    "", "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror",
};

struct spf_eval {
	const struct sockaddr_storage *ip;
	int dns, voids, depth;
	int macro, ptr;  /* a term that could not be evaluated */
	int limit;       /* the permerror is the 10-term limit */
	char why[256];   /* for temperror / permerror */
	char match[256]; /* the term that matched, through includes */
};

/* ------------------------------------------------------------------ */
/* parsing */

static int
spf_is_dns_term(int kind)
{
	return kind == SPF_INCLUDE || kind == SPF_A || kind == SPF_MX ||
	       kind == SPF_PTR || kind == SPF_EXISTS || kind == SPF_REDIRECT;
}

/* spf_cidr - "/N" at *s (max bits): advance; -1 when malformed */
static int
spf_cidr(const char **s, int max)
{
	const char *p = *s + 1;
	int v = 0, n = 0;

	while (isdigit((unsigned char)*p) && n < 4) {
		v = v * 10 + (*p++ - '0');
		n++;
	}
	if (n == 0 || v > max || (n > 1 && (*s)[1] == '0'))
		return -1;
	*s = p;
	return v;
}

/*
 * spf_domain - copy a domain-spec of len octets; -1 when it is not one.
 * A macro is kept as written (t->macro set), it is not looked up.
 */
static int
spf_domain(struct spf_term *t, const char *s, size_t len)
{
	char buf[POLICY_DOMAIN_MAX + 1];

	if (len == 0 || len > POLICY_DOMAIN_MAX)
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (memchr(buf, '%', len) != NULL) {
		t->macro = 1;
		snprintf(t->dom, sizeof(t->dom), "%s", buf);
		return 0;
	}
	return checkdns_name_norm(buf, t->dom, sizeof(t->dom));
}

/* spf_net_ok - "ADDR[/BITS]" of family, as ip4:/ip6: need it */
static int
spf_net_ok(const char *s, int family)
{
	char buf[64];
	unsigned char a[16];
	const char *slash = strchr(s, '/');
	size_t n = slash != NULL ? (size_t)(slash - s) : strlen(s);

	if (n == 0 || n >= sizeof(buf))
		return 0;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (inet_pton(family, buf, a) != 1)
		return 0;
	return slash == NULL ||
	       (spf_cidr(&slash, family == AF_INET ? 32 : 128) >= 0 &&
	        *slash == '\0');
}

/* spf_parse_term - one space-separated term into t */
static void
spf_parse_term(const char *tok, struct spf_term *t)
{
	static const struct {
		const char *name;
		int kind;
	} mech[] = {
	    {"all", SPF_ALL}, {"include", SPF_INCLUDE}, {"a", SPF_A},
	    {"mx", SPF_MX},   {"ptr", SPF_PTR},         {"ip4", SPF_IP4},
	    {"ip6", SPF_IP6}, {"exists", SPF_EXISTS},
	};
	const char *s = tok, *arg;
	size_t nlen, i;

	memset(t, 0, sizeof(*t));
	snprintf(t->text, sizeof(t->text), "%s", tok);
	t->q = '+';
	t->kind = SPF_BAD;
	t->c4 = 32;
	t->c6 = 128;
	if (strchr("+-~?", *s) != NULL)
		t->q = *s++;
	nlen = strcspn(s, ":/=");
	if (s[nlen] == '=') { /* a modifier */
		if (t->q != '+' || s != tok || nlen == 0)
			return;
		if (nlen == 8 && strncasecmp(s, "redirect", 8) == 0) {
			if (spf_domain(t, s + 9, strlen(s + 9)) == 0)
				t->kind = SPF_REDIRECT;
			return;
		}
		for (i = 0; i < nlen; i++)
			if (!isalnum((unsigned char)s[i]) && s[i] != '-' &&
			    s[i] != '_' && s[i] != '.')
				return;
		t->kind = SPF_MOD;
		return;
	}
	for (i = 0; i < sizeof(mech) / sizeof(mech[0]); i++)
		if (strlen(mech[i].name) == nlen &&
		    strncasecmp(s, mech[i].name, nlen) == 0)
			break;
	if (i == sizeof(mech) / sizeof(mech[0]))
		return;
	arg = s + nlen;
	switch (mech[i].kind) {
	case SPF_ALL:
		if (*arg == '\0')
			t->kind = SPF_ALL;
		return;
	case SPF_INCLUDE:
	case SPF_EXISTS:
		if (*arg == ':' && spf_domain(t, arg + 1, strlen(arg + 1)) == 0)
			t->kind = mech[i].kind;
		return;
	case SPF_IP4:
	case SPF_IP6:
		if (*arg == ':' &&
		    spf_net_ok(arg + 1,
		               mech[i].kind == SPF_IP4 ? AF_INET : AF_INET6)) {
			snprintf(t->net, sizeof(t->net), "%s", arg + 1);
			t->kind = mech[i].kind;
		}
		return;
	case SPF_PTR:
		if (*arg == '\0' ||
		    (*arg == ':' &&
		     spf_domain(t, arg + 1, strlen(arg + 1)) == 0))
			t->kind = SPF_PTR;
		return;
	default: /* a, mx: [:domain][/c4][//c6] */
		if (*arg == ':') {
			size_t dl = strcspn(arg + 1, "/");

			if (spf_domain(t, arg + 1, dl) < 0)
				return;
			arg += 1 + dl;
		}
		if (arg[0] == '/' && arg[1] != '/' &&
		    (t->c4 = spf_cidr(&arg, 32)) < 0)
			return;
		if (arg[0] == '/' && arg[1] == '/') {
			arg++;
			if ((t->c6 = spf_cidr(&arg, 128)) < 0)
				return;
		}
		if (*arg == '\0')
			t->kind = mech[i].kind;
		return;
	}
}

/* spf_parse - the terms of a "v=spf1 ..." record; -1: too many */
static int
spf_parse(const char *rec, struct spf_term *t, int max)
{
	char buf[4096], *tok, *save;
	int n = 0;

	snprintf(buf, sizeof(buf), "%s", rec + 6);
	for (tok = strtok_r(buf, " ", &save); tok != NULL;
	     tok = strtok_r(NULL, " ", &save)) {
		if (n == max)
			return -1;
		spf_parse_term(tok, &t[n++]);
	}
	return n;
}

/* spf_pick - the one v=spf1 record of t: 1, 0 none, or the count > 1 */
static int
spf_pick(const struct checkdns_txt *t, const char **rec)
{
	int i, n = 0;

	*rec = NULL;
	for (i = 0; i < t->n; i++)
		if (strncasecmp(t->s[i], "v=spf1", 6) == 0 &&
		    (t->s[i][6] == '\0' || t->s[i][6] == ' ')) {
			*rec = t->s[i];
			n++;
		}
	return n;
}

/* ------------------------------------------------------------------ */
/* fetching */

#define SPF_NODE_OF(lp, field)                                                 \
	((struct checkdns_spfnode *)(void *)((char *)(lp)-offsetof(            \
	    struct checkdns_spfnode, field)))

static struct checkdns_spfnode *spf_node_get(struct checkdns *c, int kind,
                                             const char *name, int counted);

static void spf_fetch_record(struct checkdns *c, const char *domain,
                             const struct checkdns_txt *txt);

static void
spf_take_txt(struct checkdns_lookup *l, const struct dns_result *r)
{
	struct checkdns_spfnode *n = SPF_NODE_OF(l, l);

	checkdns_txt_take(&n->txt, r);
	spf_fetch_record(l->c, n->name, &n->txt);
}

static void
spf_take_a(struct checkdns_lookup *l, const struct dns_result *r)
{
	checkdns_addrs_take(&SPF_NODE_OF(l, l)->addrs, r);
}

static void
spf_take_aaaa(struct checkdns_lookup *l, const struct dns_result *r)
{
	checkdns_addrs_take(&SPF_NODE_OF(l, l6)->addrs, r);
}

static void
spf_take_mx(struct checkdns_lookup *l, const struct dns_result *r)
{
	struct checkdns_spfnode *n = SPF_NODE_OF(l, l), *t;
	int i;

	if (r->status != DNS_OK)
		return;
	for (i = 0; i < r->n; i++) {
		if (r->mx[i].host[0] == '\0')
			continue; /* null MX: no host */
		if (n->nmxt == SPF_MX_LIMIT) {
			n->mx_over = 1;
			break;
		}
		if ((t = spf_node_get(l->c, SPF_N_ADDR, r->mx[i].host, 0)) !=
		    NULL)
			n->mxt[n->nmxt++] = t;
	}
}

static struct checkdns_spfnode *
spf_node_find(struct checkdns *c, int kind, const char *name)
{
	struct checkdns_spfnode *n;

	for (n = c->spf_nodes; n != NULL; n = n->next)
		if (n->kind == kind && strcmp(n->name, name) == 0)
			return n;
	return NULL;
}

/*
 * spf_node_get - the node of (kind, name), its lookups started when it
 * is new; NULL when it cannot be made.  counted: it comes from a term,
 * so it counts against CHECKDNS_SPF_NODES (MX hosts do not: at most
 * SPF_MX_LIMIT per counted MX node).
 */
static struct checkdns_spfnode *
spf_node_get(struct checkdns *c, int kind, const char *name, int counted)
{
	struct checkdns_spfnode *n;
	char norm[POLICY_DOMAIN_MAX + 1];

	if (checkdns_name_norm(name, norm, sizeof(norm)) < 0)
		return NULL;
	if ((n = spf_node_find(c, kind, norm)) != NULL)
		return n;
	if (counted && c->nspf_nodes >= CHECKDNS_SPF_NODES)
		return NULL;
	if ((n = calloc(1, sizeof(*n))) == NULL)
		return NULL;
	n->kind = kind;
	snprintf(n->name, sizeof(n->name), "%s", norm);
	n->next = c->spf_nodes;
	c->spf_nodes = n;
	c->nspf_nodes += counted;
	switch (kind) {
	case SPF_N_TXT:
		checkdns_lookup_start(c, &n->l, norm, DNS_T_TXT, spf_take_txt);
		break;
	case SPF_N_ADDR:
		checkdns_lookup_start(c, &n->l, norm, DNS_T_A, spf_take_a);
		checkdns_lookup_start(c, &n->l6, norm, DNS_T_AAAA,
		                      spf_take_aaaa);
		break;
	default:
		checkdns_lookup_start(c, &n->l, norm, DNS_T_MX, spf_take_mx);
		break;
	}
	return n;
}

/* spf_fetch_record - look up what domain's SPF record (in txt) names */
static void
spf_fetch_record(struct checkdns *c, const char *domain,
                 const struct checkdns_txt *txt)
{
	struct spf_term *t;
	const char *rec;
	int i, n;

	if (spf_pick(txt, &rec) != 1)
		return;
	if ((t = calloc(SPF_TERMS_MAX, sizeof(*t))) == NULL)
		return;
	n = spf_parse(rec, t, SPF_TERMS_MAX);
	for (i = 0; i < n; i++) {
		const char *target = t[i].dom[0] != '\0' ? t[i].dom : domain;

		if (t[i].macro)
			continue;
		switch (t[i].kind) {
		case SPF_INCLUDE:
		case SPF_REDIRECT:
			spf_node_get(c, SPF_N_TXT, target, 1);
			break;
		case SPF_A:
		case SPF_EXISTS:
			spf_node_get(c, SPF_N_ADDR, target, 1);
			break;
		case SPF_MX:
			spf_node_get(c, SPF_N_MX, target, 1);
			break;
		default:
			break;
		}
	}
	free(t);
}

void
checkdns_spf_start(struct checkdns *c)
{
	spf_fetch_record(c, c->domain, &c->txt);
}

void
checkdns_spf_free(struct checkdns *c)
{
	struct checkdns_spfnode *n;

	while ((n = c->spf_nodes) != NULL) {
		c->spf_nodes = n->next;
		checkdns_txt_free(&n->txt);
		free(n);
	}
}

/* ------------------------------------------------------------------ */
/* judging */

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

/* spf_addr_in - is ip within /c4 (/c6) of one of the node's addresses? */
static int
spf_addr_in(const struct sockaddr_storage *ip,
            const struct checkdns_addrs *addrs, int c4, int c6)
{
	struct checkdns_addrs one;
	char a[INET6_ADDRSTRLEN], spec[INET6_ADDRSTRLEN + 8];
	int i;

	one.n = 1;
	one.a[0] = *ip;
	for (i = 0; i < addrs->n; i++) {
		if (addrs->a[i].ss_family != ip->ss_family)
			continue;
		snprintf(spec, sizeof(spec), "%s/%d",
		         checkdns_addr_str(&addrs->a[i], a, sizeof(a)),
		         ip->ss_family == AF_INET ? c4 : c6);
		if (checkdns_cidr_covers(spec, ip->ss_family, &one))
			return 1;
	}
	return 0;
}

static int spf_fail(struct spf_eval *ev, int res, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
spf_fail(struct spf_eval *ev, int res, const char *fmt, ...)
{
	va_list ap;

	if (ev->why[0] == '\0') {
		va_start(ap, fmt);
		vsnprintf(ev->why, sizeof(ev->why), fmt, ap);
		va_end(ap);
	}
	return res;
}

/* spf_status - a lookup's outcome as SPF sees it: 0 answer, 1 void,
 * or SPF_R_TEMPERROR */
static int
spf_status(const struct checkdns_lookup *l)
{
	if (!l->started || l->status == DNS_TEMPFAIL || l->status == DNS_BOGUS)
		return SPF_R_TEMPERROR;
	return l->status == DNS_OK ? 0 : 1;
}

/* spf_void - count a void lookup; SPF_R_PERMERROR past the limit */
static int
spf_void(struct spf_eval *ev, const char *name)
{
	if (++ev->voids > SPF_VOID_LIMIT)
		return spf_fail(ev, SPF_R_PERMERROR,
		                "more than %d void lookups (the last for %s), "
		                "RFC 7208 4.6.4",
		                SPF_VOID_LIMIT, name);
	return 0;
}

/* spf_prefix - "HEAD > TAIL" into buf, cut to fit */
static void
spf_prefix(char *buf, size_t len, const char *head, const char *tail)
{
	size_t o = 0, k;

	for (k = 0; head[k] != '\0' && o + 1 < len; k++)
		buf[o++] = head[k];
	for (k = 0; " > "[k] != '\0' && o + 1 < len; k++)
		buf[o++] = " > "[k];
	for (k = 0; tail[k] != '\0' && o + 1 < len; k++)
		buf[o++] = tail[k];
	buf[o] = '\0';
}

static int spf_check_host(struct checkdns *c, struct spf_eval *ev,
                          const char *domain);

/* spf_match - does mechanism t match?  1 yes, 0 no, or an SPF_R_ error */
static int
spf_match(struct checkdns *c, struct spf_eval *ev, const struct spf_term *t,
          const char *domain)
{
	const char *target = t->dom[0] != '\0' ? t->dom : domain;
	struct checkdns_spfnode *n;
	struct checkdns_addrs one;
	int r, i, s;

	if (t->macro) {
		ev->macro = 1;
		return 0;
	}
	switch (t->kind) {
	case SPF_ALL:
		return 1;
	case SPF_IP4:
	case SPF_IP6:
		one.n = 1;
		one.a[0] = *ev->ip;
		return checkdns_cidr_covers(
		    t->net, t->kind == SPF_IP4 ? AF_INET : AF_INET6, &one);
	case SPF_PTR:
		ev->ptr = 1;
		return 0;
	case SPF_INCLUDE: {
		char saved[sizeof(ev->match)];

		r = spf_check_host(c, ev, target);
		if (r == SPF_R_PASS) {
			snprintf(saved, sizeof(saved), "%s", ev->match);
			spf_prefix(ev->match, sizeof(ev->match), t->text,
			           saved);
			return 1;
		}
		if (r == SPF_R_NONE)
			return spf_fail(ev, SPF_R_PERMERROR,
			                "%s: %s has no SPF record", t->text,
			                target);
		if (r == SPF_R_TEMPERROR || r == SPF_R_PERMERROR)
			return r;
		return 0;
	}
	case SPF_A:
	case SPF_EXISTS:
		if ((n = spf_node_find(c, SPF_N_ADDR, target)) == NULL)
			return spf_fail(ev, SPF_R_TEMPERROR, "%s not looked up",
			                target);
		{
			const struct checkdns_lookup *l =
			    t->kind == SPF_EXISTS ||
			            ev->ip->ss_family == AF_INET
			        ? &n->l
			        : &n->l6;

			if ((s = spf_status(l)) == SPF_R_TEMPERROR)
				return spf_fail(ev, SPF_R_TEMPERROR,
				                "%s: lookup of %s failed: %s",
				                t->text, target, l->why);
			if (t->kind == SPF_EXISTS) {
				for (i = 0; i < n->addrs.n; i++)
					if (n->addrs.a[i].ss_family == AF_INET)
						return 1;
			} else if (spf_addr_in(ev->ip, &n->addrs, t->c4, t->c6))
				return 1;
			if (s == 1 && (r = spf_void(ev, target)) != 0)
				return r;
			return 0;
		}
	case SPF_MX:
		if ((n = spf_node_find(c, SPF_N_MX, target)) == NULL)
			return spf_fail(ev, SPF_R_TEMPERROR, "%s not looked up",
			                target);
		if ((s = spf_status(&n->l)) == SPF_R_TEMPERROR)
			return spf_fail(ev, SPF_R_TEMPERROR,
			                "%s: MX lookup of %s failed: %s",
			                t->text, target, n->l.why);
		if (n->mx_over)
			return spf_fail(ev, SPF_R_PERMERROR,
			                "%s: %s has more than %d MX hosts, RFC "
			                "7208 4.6.4",
			                t->text, target, SPF_MX_LIMIT);
		if (s == 1 && (r = spf_void(ev, target)) != 0)
			return r;
		for (i = 0; i < n->nmxt; i++)
			if (spf_addr_in(ev->ip, &n->mxt[i]->addrs, t->c4,
			                t->c6))
				return 1;
		return 0;
	default:
		return 0;
	}
}

/* spf_count_dns - a DNS-querying term: SPF_R_PERMERROR past the limit */
static int
spf_count_dns(struct spf_eval *ev, const struct spf_term *t)
{
	if (++ev->dns > SPF_DNS_LIMIT) {
		ev->limit = 1;
		return spf_fail(ev, SPF_R_PERMERROR,
		                "%s is DNS-querying term %d: RFC 7208 4.6.4 "
		                "allows %d",
		                t->text, ev->dns, SPF_DNS_LIMIT);
	}
	return 0;
}

/* spf_record - domain's record: 0 and *rec, or an SPF_R_ result */
static int
spf_record(struct checkdns *c, struct spf_eval *ev, const char *domain,
           const char **rec)
{
	const struct checkdns_txt *txt;
	const struct checkdns_lookup *l;
	struct checkdns_spfnode *n;
	int k;

	if (strcmp(domain, c->domain) == 0) {
		txt = &c->txt;
		l = &c->txt_l;
	} else if ((n = spf_node_find(c, SPF_N_TXT, domain)) != NULL) {
		txt = &n->txt;
		l = &n->l;
	} else
		return spf_fail(ev, SPF_R_TEMPERROR,
		                "%s not looked up (more than %d names)", domain,
		                CHECKDNS_SPF_NODES);
	if (spf_status(l) == SPF_R_TEMPERROR)
		return spf_fail(ev, SPF_R_TEMPERROR, "TXT lookup of %s: %s",
		                domain, l->why);
	if ((k = spf_pick(txt, rec)) == 0)
		return SPF_R_NONE;
	if (k > 1)
		return spf_fail(ev, SPF_R_PERMERROR, "%s has %d SPF records",
		                domain, k);
	return 0;
}

/* spf_check_host - RFC 7208 4: the result for ev->ip at domain */
static int
spf_check_host(struct checkdns *c, struct spf_eval *ev, const char *domain)
{
	struct spf_term *t;
	const char *rec;
	const struct spf_term *redirect = NULL;
	int i, n, r, all = 0;

	if (++ev->depth > SPF_DEPTH_MAX)
		return spf_fail(ev, SPF_R_PERMERROR,
		                "includes nested too deep");
	if ((r = spf_record(c, ev, domain, &rec)) != 0)
		goto out;
	if ((t = calloc(SPF_TERMS_MAX, sizeof(*t))) == NULL) {
		r = spf_fail(ev, SPF_R_TEMPERROR, "out of memory");
		goto out;
	}
	if ((n = spf_parse(rec, t, SPF_TERMS_MAX)) < 0) {
		r = spf_fail(ev, SPF_R_PERMERROR, "%s: more than %d terms",
		             domain, SPF_TERMS_MAX);
		goto done;
	}
	for (i = 0; i < n; i++) {
		if (t[i].kind == SPF_BAD) {
			r = spf_fail(ev, SPF_R_PERMERROR,
			             "%s: \"%s\" is not an SPF term", domain,
			             t[i].text);
			goto done;
		}
		if (t[i].kind == SPF_ALL)
			all = 1;
		if (t[i].kind == SPF_REDIRECT && redirect == NULL)
			redirect = &t[i];
	}
	r = SPF_R_NEUTRAL;
	for (i = 0; i < n; i++) {
		int m;

		if (t[i].kind == SPF_REDIRECT || t[i].kind == SPF_MOD)
			continue;
		if (spf_is_dns_term(t[i].kind) &&
		    (m = spf_count_dns(ev, &t[i])) != 0) {
			r = m;
			goto done;
		}
		if ((m = spf_match(c, ev, &t[i], domain)) > 1) {
			r = m;
			goto done;
		}
		if (m == 1) {
			if (t[i].kind != SPF_INCLUDE)
				snprintf(ev->match, sizeof(ev->match), "%s",
				         t[i].text);
			r = t[i].q == '-'   ? SPF_R_FAIL
			    : t[i].q == '~' ? SPF_R_SOFTFAIL
			    : t[i].q == '?' ? SPF_R_NEUTRAL
			                    : SPF_R_PASS;
			goto done;
		}
	}
	/* RFC 7208 6.1: redirect= only when no mechanism matched, and
	 * never beside "all" */
	if (redirect != NULL && !all && !redirect->macro) {
		if ((r = spf_count_dns(ev, redirect)) != 0)
			goto done;
		r = spf_check_host(c, ev, redirect->dom);
		if (r == SPF_R_NONE)
			r = spf_fail(ev, SPF_R_PERMERROR,
			             "%s: %s has no SPF record", redirect->text,
			             redirect->dom);
	} else if (redirect != NULL && redirect->macro)
		ev->macro = 1;
done:
	free(t);
out:
	ev->depth--;
	return r;
}

/*
 * spf_count_tree - DNS-querying terms of domain's record and of every
 * record it includes or redirects to: the count a receiver reaches when
 * no mechanism matches (the mail of a forger, or of a sender the record
 * forgot), against the limit of 10.
 */
static int
spf_count_tree(struct checkdns *c, const char *domain, int depth)
{
	struct spf_eval ev;
	struct spf_term *t;
	const char *rec;
	int i, n, sum = 0, all = 0;

	memset(&ev, 0, sizeof(ev));
	if (depth > SPF_DEPTH_MAX)
		return 1000; /* a loop: unbounded */
	if (spf_record(c, &ev, domain, &rec) != 0)
		return 0;
	if ((t = calloc(SPF_TERMS_MAX, sizeof(*t))) == NULL)
		return 0;
	n = spf_parse(rec, t, SPF_TERMS_MAX);
	for (i = 0; i < n; i++)
		all |= t[i].kind == SPF_ALL;
	for (i = 0; i < n && sum < 1000; i++) {
		if (!spf_is_dns_term(t[i].kind) ||
		    (t[i].kind == SPF_REDIRECT && all))
			continue;
		sum++;
		if ((t[i].kind == SPF_INCLUDE || t[i].kind == SPF_REDIRECT) &&
		    !t[i].macro)
			sum += spf_count_tree(c, t[i].dom, depth + 1);
	}
	free(t);
	return sum;
}

void
checkdns_report_spf(struct checkdns *c)
{
	struct checkdns_addrs ours;
	struct spf_eval ev;
	const char *spf = NULL;
	char a[INET6_ADDRSTRLEN];
	int i, nspf, total, limit_said = 0;

	if (c->txt_l.status == DNS_TEMPFAIL || c->txt_l.status == DNS_BOGUS) {
		checkdns_line(c, "WARN", "spf", "TXT lookup for %s failed: %s",
		              c->domain, c->txt_l.why);
		return;
	}
	if ((nspf = spf_pick(&c->txt, &spf)) == 0) {
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
	total = spf_count_tree(c, c->domain, 0);
	if (total > SPF_DNS_LIMIT) {
		if (total >= 1000)
			checkdns_line(
			    c, "FAIL", "spf",
			    "permerror: \"%.200s\" includes itself "
			    "(a loop): RFC 7208 4.6.4's limit of %d "
			    "DNS-querying terms ends every evaluation "
			    "that gets there",
			    spf, SPF_DNS_LIMIT);
		else
			checkdns_line(
			    c, "FAIL", "spf",
			    "permerror: \"%.200s\" takes %d DNS-querying "
			    "terms (include, a, mx, ptr, exists, redirect, "
			    "counted through includes); RFC 7208 4.6.4 "
			    "allows %d, so receivers give permerror for mail "
			    "no earlier term matches; flatten includes or "
			    "use ip4:/ip6:",
			    spf, total, SPF_DNS_LIMIT);
		limit_said = 1;
	}
	/* what others see of us, and the machine's own addresses */
	ours = c->pub;
	for (i = 0; i < c->self_addrs.n; i++)
		checkdns_addrs_add(&ours, &c->self_addrs.a[i]);
	if (ours.n == 0) {
		checkdns_line(c, "WARN", "spf",
		              "\"%.200s\": none of our addresses is known (our "
		              "hostname has no A/AAAA): cannot tell whether it "
		              "lets this backup MX send for %s",
		              spf, c->domain);
		return;
	}
	for (i = 0; i < ours.n; i++) {
		int r;

		memset(&ev, 0, sizeof(ev));
		ev.ip = &ours.a[i];
		r = spf_check_host(c, &ev, c->domain);
		checkdns_addr_str(&ours.a[i], a, sizeof(a));
		if (r == SPF_R_PASS) {
			if (strcasecmp(ev.match, "mx") == 0)
				checkdns_line(
				    c, "OK", "spf",
				    "\"%.200s\" passes for our address "
				    "%s: it uses mx, so every MX host, "
				    "this backup included, may send as %s",
				    spf, a, c->domain);
			else
				checkdns_line(
				    c, "OK", "spf",
				    "\"%.200s\" passes for our address "
				    "%s (matched by %s)",
				    spf, a, ev.match);
		} else if (r == SPF_R_PERMERROR && ev.limit && limit_said)
			continue; /* said above */
		else if (r == SPF_R_PERMERROR)
			checkdns_line(c, "FAIL", "spf",
			              "permerror for our address %s: %s; "
			              "receivers treat the mail as not "
			              "authenticated, fix the record",
			              a, ev.why);
		else if (r == SPF_R_TEMPERROR)
			checkdns_line(c, "WARN", "spf",
			              "temperror for our address %s: %s", a,
			              ev.why);
		else
			checkdns_line(
			    c, "WARN", "spf",
			    "\"%.200s\" gives %s for our address %s%s: "
			    "relaying through us keeps the original sender, "
			    "which is fine as long as the primary does not "
			    "SPF-check mail from its backup MX; but bounces "
			    "and notices we send for %s would not pass SPF "
			    "(add mx)",
			    spf, spf_res_names[r], a,
			    ev.macro ? " (a term with macros was not expanded)"
			    : ev.ptr ? " (ptr was not evaluated)"
			             : "",
			    c->domain);
	}
}
