/*
 * dns.c - the implementation of dns.h: asynchronous DNS on the libev
 * loop with libunbound running on that loop itself (its pluggable event
 * API, unbound-event.h, over libev: relay/ub_ev.c; the wire-format
 * answers of ub_resolve_event() parsed by relay/dns_packet.c; an ev_timer
 * per query), and the pure RDATA parsers (MX, TXT, TLSA, uncompressed
 * names) that turn a ub_result into a dns_result.  No thread; libevent
 * stays loaded as libunbound's dependency but is never called, so the
 * link order of libev and libevent no longer matters.
 * Callers: fwd_route.c (MX, A/AAAA), fwd_tls.c (TLSA, MTA-STS TXT),
 * callout_conn.c, dnsbl.c, checkdns*.c, tests/integration/dnsq.c.
 * Callbacks never run inside dns_query(); libunbound's own callback runs
 * from its watchers on our loop (or inside ub_resolve_event() for local
 * and cached answers: handed over from a timer).
 */
#include <sys/queue.h>
#include <sys/socket.h>

#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unbound-event.h>
#include <unbound.h>
#include <unistd.h>

#include "dns.h"
#include "dns_packet.h"
#include "log.h"
#include "ub_ev.h"

struct dns_query {
	TAILQ_ENTRY(dns_query) entry;
	struct dns *dns;
	char *name;
	int rrtype;
	dns_cb cb;
	void *arg;
	int ub_id;
	int ub_active;  /* ub_resolve_event accepted it, not answered */
	int in_resolve; /* inside ub_resolve_event */
	int deferred;   /* timer delivers the stashed result */
	int deferred_err;
	struct ub_result *deferred_res;
	char deferred_why[160];
	ev_timer timer;
};

TAILQ_HEAD(dns_query_list, dns_query);

struct dns {
	struct ev_loop *loop;
	struct ub_ctx *ctx;
	struct ub_event_base *evb; /* libunbound's view of our loop */
	double timeout;
	int closing; /* freed inside a libunbound callback: after it */
	struct dns_query_list queries;
};

/* dns_status_str - short lowercase name for logs */
const char *
dns_status_str(enum dns_status s)
{
	switch (s) {
	case DNS_OK:
		return "ok";
	case DNS_NODATA:
		return "nodata";
	case DNS_NXDOMAIN:
		return "nxdomain";
	case DNS_TEMPFAIL:
		return "tempfail";
	case DNS_BOGUS:
		return "bogus";
	}
	return "unknown";
}

/*
 * dns_parse_name - uncompressed wire-format name at p (at most len bytes)
 * into out as lowercase text without the trailing dot ("" for the root).
 * Labels may hold letters, digits, '-' and '_' only: an MX host is a host
 * name, and a '.' or control byte inside a label must not be misread.
 * Returns the bytes consumed, or -1.
 */
int
dns_parse_name(const uint8_t *p, size_t len, char *out, size_t outlen)
{
	size_t i = 0, o = 0;

	if (p == NULL || out == NULL || outlen == 0)
		return -1;
	for (;;) {
		size_t l, k;

		if (i >= len)
			return -1;
		l = p[i++];
		if (l == 0)
			break;
		if (l > 63) /* compression pointers or extended labels */
			return -1;
		if (l > len - i)
			return -1;
		if (i + l > 255) /* wire name at most 255 octets */
			return -1;
		if (o != 0) {
			if (o + 1 >= outlen)
				return -1;
			out[o++] = '.';
		}
		for (k = 0; k < l; k++) {
			unsigned char c = p[i + k];

			if (!isalnum(c) && c != '-' && c != '_')
				return -1;
			if (o + 1 >= outlen)
				return -1;
			out[o++] = (char)tolower(c);
		}
		i += l;
	}
	if (i > 255)
		return -1;
	out[o] = '\0';
	return (int)i;
}

/* dns_parse_mx_rdata - preference and exchange; host "" is a null MX */
int
dns_parse_mx_rdata(const uint8_t *p, size_t len, struct policy_mx *out)
{
	int n;

	if (p == NULL || out == NULL || len < 3)
		return -1;
	memset(out, 0, sizeof(*out));
	out->pref = p[0] << 8 | p[1];
	n = dns_parse_name(p + 2, len - 2, out->host, sizeof(out->host));
	if (n < 0 || (size_t)n != len - 2) {
		out->host[0] = '\0';
		return -1;
	}
	return 0;
}

/*
 * dns_parse_txt_rdata - the character-strings of one TXT RR joined into
 * out, NUL-terminated.  Refuses a NUL byte inside (it would truncate what
 * a policy parser sees) and anything that does not fit.  Returns the
 * length of the text, or -1.
 */
int
dns_parse_txt_rdata(const uint8_t *p, size_t len, char *out, size_t outlen)
{
	size_t i = 0, o = 0;

	if (p == NULL || out == NULL || outlen == 0)
		return -1;
	if (len == 0)
		return -1;
	while (i < len) {
		size_t l = p[i++];

		if (l > len - i)
			return -1;
		if (l >= outlen - o)
			return -1;
		if (memchr(p + i, '\0', l) != NULL)
			return -1;
		memcpy(out + o, p + i, l);
		o += l;
		i += l;
	}
	out[o] = '\0';
	return (int)o;
}

/* dns_parse_tlsa_rdata - usage, selector, type; data points into p */
int
dns_parse_tlsa_rdata(const uint8_t *p, size_t len, struct dns_tlsa *out)
{
	if (p == NULL || out == NULL || len < 4)
		return -1;
	out->usage = p[0];
	out->selector = p[1];
	out->mtype = p[2];
	out->data = p + 3;
	out->len = len - 3;
	return 0;
}

/* dns_result_free - the arrays dns_result_fill allocated */
static void
dns_result_free(struct dns_result *res)
{
	int i;

	free(res->mx);
	free(res->addr);
	free(res->tlsa);
	if (res->txt != NULL) {
		for (i = 0; i < res->n; i++)
			free(res->txt[i]);
		free(res->txt);
	}
	res->mx = NULL;
	res->addr = NULL;
	res->tlsa = NULL;
	res->txt = NULL;
}

/* dns_result_records - parse r's rdata into res's array; 0 or -1 */
static int
dns_result_records(struct dns_result *res, const struct ub_result *r)
{
	int count, i, n = 0;

	for (count = 0; r->data[count] != NULL; count++)
		;
	if (count == 0)
		return -1;
	switch (res->rrtype) {
	case DNS_T_MX:
		if ((res->mx = calloc(count, sizeof(*res->mx))) == NULL)
			return -1;
		for (i = 0; i < count; i++)
			if (dns_parse_mx_rdata((uint8_t *)r->data[i],
			                       (size_t)r->len[i],
			                       &res->mx[n]) == 0)
				n++;
		break;
	case DNS_T_A:
	case DNS_T_AAAA:
		if ((res->addr = calloc(count, sizeof(*res->addr))) == NULL)
			return -1;
		for (i = 0; i < count; i++) {
			if (res->rrtype == DNS_T_A && r->len[i] == 4) {
				struct sockaddr_in *sin =
				    (struct sockaddr_in *)&res->addr[n++];

				sin->sin_family = AF_INET;
				memcpy(&sin->sin_addr, r->data[i], 4);
			} else if (res->rrtype == DNS_T_AAAA &&
			           r->len[i] == 16) {
				struct sockaddr_in6 *sin6 =
				    (struct sockaddr_in6 *)&res->addr[n++];

				sin6->sin6_family = AF_INET6;
				memcpy(&sin6->sin6_addr, r->data[i], 16);
			}
		}
		break;
	case DNS_T_TLSA:
		if ((res->tlsa = calloc(count, sizeof(*res->tlsa))) == NULL)
			return -1;
		for (i = 0; i < count; i++)
			if (dns_parse_tlsa_rdata((uint8_t *)r->data[i],
			                         (size_t)r->len[i],
			                         &res->tlsa[n]) == 0)
				n++;
		break;
	case DNS_T_TXT:
		if ((res->txt = calloc(count, sizeof(*res->txt))) == NULL)
			return -1;
		for (i = 0; i < count; i++) {
			size_t sz = (size_t)r->len[i] + 1;

			if ((res->txt[n] = malloc(sz)) == NULL)
				break;
			if (dns_parse_txt_rdata((uint8_t *)r->data[i],
			                        (size_t)r->len[i], res->txt[n],
			                        sz) >= 0)
				n++;
			else
				free(res->txt[n]);
		}
		break;
	case DNS_T_PTR:
		if ((res->txt = calloc(count, sizeof(*res->txt))) == NULL)
			return -1;
		for (i = 0; i < count; i++) {
			char name[POLICY_DOMAIN_MAX + 2];

			if (dns_parse_name((uint8_t *)r->data[i],
			                   (size_t)r->len[i], name,
			                   sizeof(name)) < 0 ||
			    name[0] == '\0')
				continue;
			if ((res->txt[n] = strdup(name)) != NULL)
				n++;
		}
		break;
	default:
		/* other types: the caller only learns that data exists */
		n = count;
		break;
	}
	res->n = n;
	if (n < count)
		log_warn("dns: %s type %d: ignored %d malformed record(s) "
		         "of %d",
		         res->qname, res->rrtype, count - n, count);
	return n > 0 ? 0 : -1;
}

/*
 * dns_canon_norm - r->canonname lowercased without the trailing dot into
 * out; NULL when there is none or it is the query name (no CNAME).
 */
static const char *
dns_canon_norm(const char *canon, const char *qname, char *out, size_t outlen)
{
	size_t i, len, qlen;

	if (canon == NULL)
		return NULL;
	len = strlen(canon);
	if (len > 0 && canon[len - 1] == '.')
		len--;
	if (len == 0 || len >= outlen)
		return NULL;
	for (i = 0; i < len; i++)
		out[i] = (char)tolower((unsigned char)canon[i]);
	out[len] = '\0';
	qlen = strlen(qname);
	if (qlen > 0 && qname[qlen - 1] == '.')
		qlen--;
	if (qlen == len && strncasecmp(out, qname, len) == 0)
		return NULL;
	return out;
}

/* dns_result_fill - classify one libunbound answer into res */
static void
dns_result_fill(struct dns_result *res, int err, struct ub_result *r,
                char *canon, size_t canonlen)
{
	if (err != 0) {
		res->status = DNS_TEMPFAIL;
		snprintf(res->why, sizeof(res->why), "resolver error: %s",
		         ub_strerror(err));
		return;
	}
	if (r == NULL) {
		res->status = DNS_TEMPFAIL;
		snprintf(res->why, sizeof(res->why),
		         "resolver error: no result");
		return;
	}
	if (r->bogus) {
		res->status = DNS_BOGUS;
		snprintf(res->why, sizeof(res->why),
		         "DNSSEC validation failed: %s",
		         r->why_bogus != NULL ? r->why_bogus : "bogus");
		return;
	}
	res->secure = r->secure ? 1 : 0;
	res->ttl = r->ttl > 0 ? r->ttl : 0;
	res->canonname =
	    dns_canon_norm(r->canonname, res->qname, canon, canonlen);
	if (r->nxdomain || r->rcode == 3) {
		res->status = DNS_NXDOMAIN;
		snprintf(res->why, sizeof(res->why), "name does not exist");
		return;
	}
	if (r->rcode != 0) {
		res->status = DNS_TEMPFAIL;
		snprintf(res->why, sizeof(res->why),
		         "server answered rcode %d%s", r->rcode,
		         r->rcode == 2 ? " (SERVFAIL)" : "");
		return;
	}
	if (!r->havedata) {
		res->status = DNS_NODATA;
		snprintf(res->why, sizeof(res->why), "no records of this type");
		return;
	}
	if (dns_result_records(res, r) == -1) {
		dns_result_free(res);
		res->n = 0;
		res->status = DNS_TEMPFAIL;
		snprintf(res->why, sizeof(res->why),
		         "malformed or unusable records (or out of memory)");
		return;
	}
	res->status = DNS_OK;
}

/* dns_query_free - unlink and free; the ub query must be finished */
static void
dns_query_free(struct dns_query *q)
{
	if (q->dns != NULL) {
		TAILQ_REMOVE(&q->dns->queries, q, entry);
		ev_timer_stop(q->dns->loop, &q->timer);
		q->dns = NULL;
	}
	if (q->deferred_res != NULL)
		dns_packet_result_free(q->deferred_res);
	free(q->name);
	free(q);
}

/*
 * dns_query_deliver - run the owner's callback once and free the query.
 * The query leaves the list first so that a dns_free() from inside the
 * callback does not see it.
 */
static void
dns_query_deliver(struct dns_query *q, int err, struct ub_result *r,
                  const char *why)
{
	struct dns_result res;
	char canon[POLICY_DOMAIN_MAX + 2];
	dns_cb cb = q->cb;
	void *arg = q->arg;

	TAILQ_REMOVE(&q->dns->queries, q, entry);
	ev_timer_stop(q->dns->loop, &q->timer);
	q->dns = NULL;

	memset(&res, 0, sizeof(res));
	res.rrtype = q->rrtype;
	res.qname = q->name;
	if (why != NULL) {
		res.status = DNS_TEMPFAIL;
		snprintf(res.why, sizeof(res.why), "%s", why);
	} else
		dns_result_fill(&res, err, r, canon, sizeof(canon));
	cb(arg, &res);
	dns_result_free(&res);
	if (r != NULL)
		dns_packet_result_free(r);
	if (q->deferred_res == r)
		q->deferred_res = NULL;
	dns_query_free(q);
}

/* dns_ub_cb - libunbound's answer as a ub_result */
static void
dns_ub_cb(void *arg, int err, struct ub_result *r)
{
	struct dns_query *q = arg;

	q->ub_active = 0;
	if (q->in_resolve) {
		/* answered synchronously: hand it over from a timer */
		q->deferred = 1;
		q->deferred_err = err;
		q->deferred_res = r;
		ev_timer_stop(q->dns->loop, &q->timer);
		ev_timer_set(&q->timer, 0., 0.);
		ev_timer_start(q->dns->loop, &q->timer);
		return;
	}
	dns_query_deliver(q, err, r, NULL);
}

/* dns_ub_event_cb - libunbound's answer in wire format */
static void
dns_ub_event_cb(void *arg, int rcode, void *pkt, int len, int sec,
                char *why_bogus, int ratelimited)
{
	struct dns_query *q = arg;
	struct ub_result *r;

	r = dns_packet_result(pkt, len > 0 ? (size_t)len : 0, q->name,
	                      q->rrtype, rcode, sec, why_bogus);
	dns_ub_cb(q, r == NULL ? UB_NOMEM : 0, r);
}

/* dns_timer_cb - the query timed out, or a deferred result is due */
static void
dns_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct dns_query *q = w->data;

	if (q->deferred) {
		dns_query_deliver(q, q->deferred_err, q->deferred_res,
		                  q->deferred_why[0] != '\0' ? q->deferred_why
		                                             : NULL);
		return;
	}
	if (q->ub_active) {
		ub_cancel(q->dns->ctx, q->ub_id);
		q->ub_active = 0;
	}
	dns_query_deliver(q, 0, NULL, "timeout");
}

/* dns_after_cb - every libunbound callback has returned */
static void
dns_after_cb(void *arg)
{
	struct dns *d = arg;

	if (!d->closing)
		return;
	ub_ctx_delete(d->ctx);
	ub_ev_base_free(d->evb);
	free(d);
}

/* dns_set_server - "ADDR", "ADDR:PORT", "[V6]", "[V6]:PORT", bare V6 */
static int
dns_set_server(struct ub_ctx *ctx, const char *server, char *err, size_t errlen)
{
	char addr[128], fwd[160];
	const char *start = server, *port = NULL, *colon;
	size_t alen;
	int rc;

	if (server[0] == '[') {
		const char *end = strchr(server, ']');

		if (end == NULL)
			goto bad;
		start = server + 1;
		alen = (size_t)(end - start);
		if (end[1] == ':')
			port = end + 2;
		else if (end[1] != '\0')
			goto bad;
	} else if ((colon = strchr(server, ':')) != NULL &&
	           strchr(colon + 1, ':') == NULL) {
		alen = (size_t)(colon - server);
		port = colon + 1;
	} else
		alen = strlen(server);
	if (alen == 0 || alen >= sizeof(addr))
		goto bad;
	memcpy(addr, start, alen);
	addr[alen] = '\0';
	if (port != NULL) {
		char *ep;
		long n;

		errno = 0;
		n = strtol(port, &ep, 10);
		if (*port == '\0' || *ep != '\0' || errno != 0 || n < 1 ||
		    n > 65535)
			goto bad;
		snprintf(fwd, sizeof(fwd), "%s@%ld", addr, n);
	} else
		snprintf(fwd, sizeof(fwd), "%s", addr);
	if ((rc = ub_ctx_set_fwd(ctx, fwd)) != 0) {
		snprintf(err, errlen, "dns server %s: %s", server,
		         ub_strerror(rc));
		return -1;
	}
	return 0;
bad:
	snprintf(err, errlen, "dns server \"%s\": expected ADDR[:PORT]",
	         server);
	return -1;
}

/*
 * libunbound's built-in local zones (unbound.conf(5) "local-zone"
 * defaults, 1.17 and later ones): RFC 6761 special-use names, RFC 6303 /
 * AS112 private and reserved reverse zones.  Answered inside libunbound
 * with NXDOMAIN even with a forwarder set, so a domain whose MX lives
 * under .test or home.arpa would bounce.  All of them go to the
 * configured server: each is made an empty "transparent" local zone,
 * which replaces the default and resolves every name in it normally
 * ("nodefault" set through ub_ctx_set_option() is not honoured by
 * libunbound 1.17: tests/integration/test_dns.py checks).  Only localhost
 * stays local.
 */
static const char *const dns_default_zones[] = {
    "127.in-addr.arpa",
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0."
    "ip6.arpa",
    "home.arpa",
    "onion",
    "test",
    "invalid",
    "resolver.arpa",
    "service.arpa",
    "10.in-addr.arpa",
    "16.172.in-addr.arpa",
    "17.172.in-addr.arpa",
    "18.172.in-addr.arpa",
    "19.172.in-addr.arpa",
    "20.172.in-addr.arpa",
    "21.172.in-addr.arpa",
    "22.172.in-addr.arpa",
    "23.172.in-addr.arpa",
    "24.172.in-addr.arpa",
    "25.172.in-addr.arpa",
    "26.172.in-addr.arpa",
    "27.172.in-addr.arpa",
    "28.172.in-addr.arpa",
    "29.172.in-addr.arpa",
    "30.172.in-addr.arpa",
    "31.172.in-addr.arpa",
    "168.192.in-addr.arpa",
    "0.in-addr.arpa",
    "254.169.in-addr.arpa",
    "2.0.192.in-addr.arpa",
    "100.51.198.in-addr.arpa",
    "113.0.203.in-addr.arpa",
    "255.255.255.255.in-addr.arpa",
    "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0."
    "ip6.arpa",
    "d.f.ip6.arpa",
    "8.e.f.ip6.arpa",
    "9.e.f.ip6.arpa",
    "a.e.f.ip6.arpa",
    "b.e.f.ip6.arpa",
    "8.b.d.0.1.0.0.2.ip6.arpa",
};

/*
 * Names that are never in the signed public DNS: with a root trust
 * anchor their (unsigned, private) answers are insecure, not bogus.  A
 * trust anchor configured for one of them still wins (unbound.conf(5)
 * domain-insecure).
 */
static const char *const dns_private_names[] = {
    "test", "example", "invalid", "home.arpa", "local",
};

/* dns_local_zones - every default local zone asked of the server */
static int
dns_local_zones(struct ub_ctx *ctx, char *err, size_t errlen)
{
	char v[128];
	size_t i;
	int rc;

	for (i = 0; i < sizeof(dns_default_zones) / sizeof(*dns_default_zones);
	     i++) {
		snprintf(v, sizeof(v), "%s. transparent", dns_default_zones[i]);
		if ((rc = ub_ctx_set_option(ctx, "local-zone:", v)) != 0)
			goto fail;
	}
	for (i = 64; i < 128; i++) { /* RFC 6598 shared address space */
		snprintf(v, sizeof(v), "%zu.100.in-addr.arpa. transparent", i);
		if ((rc = ub_ctx_set_option(ctx, "local-zone:", v)) != 0)
			goto fail;
	}
	for (i = 0; i < sizeof(dns_private_names) / sizeof(*dns_private_names);
	     i++) {
		snprintf(v, sizeof(v), "%s.", dns_private_names[i]);
		if ((rc = ub_ctx_set_option(ctx, "domain-insecure:", v)) != 0)
			goto fail;
	}
	return 0;
fail:
	snprintf(err, errlen, "resolver option %s: %s", v, ub_strerror(rc));
	return -1;
}

struct dns *
dns_new(struct ev_loop *loop, const char *server, const char *trust_anchor,
        int timeout, char *err, size_t errlen)
{
	struct dns *d;
	int rc;

	if ((d = calloc(1, sizeof(*d))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	d->loop = loop;
	d->timeout = timeout > 0 ? timeout : 30;
	TAILQ_INIT(&d->queries);
	if ((d->evb = ub_ev_base_new(loop, dns_after_cb, d)) == NULL) {
		snprintf(err, errlen, "out of memory");
		free(d);
		return NULL;
	}
	if ((d->ctx = ub_ctx_create_ub_event(d->evb)) == NULL) {
		snprintf(err, errlen, "ub_ctx_create_ub_event failed");
		ub_ev_base_free(d->evb);
		free(d);
		return NULL;
	}
	/* our resolvers live on loopback (tests, local caches) */
	ub_ctx_set_option(d->ctx, "do-not-query-localhost:", "no");
	if (dns_local_zones(d->ctx, err, errlen) == -1)
		goto fail;
	if (server != NULL) {
		if (dns_set_server(d->ctx, server, err, errlen) == -1)
			goto fail;
	} else if ((rc = ub_ctx_resolvconf(d->ctx, NULL)) != 0) {
		snprintf(err, errlen, "reading /etc/resolv.conf: %s",
		         rc == UB_READFILE ? strerror(errno) : ub_strerror(rc));
		goto fail;
	}
	/* libunbound reads the file only at the first query: check now */
	if (trust_anchor != NULL && access(trust_anchor, R_OK) == -1) {
		snprintf(err, errlen, "trust anchor %s: %s", trust_anchor,
		         strerror(errno));
		goto fail;
	}
	if (trust_anchor != NULL &&
	    (rc = ub_ctx_add_ta_file(d->ctx, trust_anchor)) != 0) {
		snprintf(err, errlen, "trust anchor %s: %s", trust_anchor,
		         ub_strerror(rc));
		goto fail;
	}
	return d;
fail:
	ub_ctx_delete(d->ctx);
	ub_ev_base_free(d->evb);
	free(d);
	return NULL;
}

/* dns_free - cancel every query without callbacks, then drop the ctx */
void
dns_free(struct dns *d)
{
	struct dns_query *q;

	if (d == NULL || d->closing)
		return;
	while ((q = TAILQ_FIRST(&d->queries)) != NULL) {
		if (q->ub_active)
			ub_cancel(d->ctx, q->ub_id);
		q->ub_active = 0;
		dns_query_free(q);
	}
	if (ub_ev_base_depth(d->evb) > 0) {
		/* inside a libunbound callback: dns_after_cb deletes it */
		d->closing = 1;
		return;
	}
	ub_ctx_delete(d->ctx);
	ub_ev_base_free(d->evb);
	free(d);
}

struct dns_query *
dns_query(struct dns *d, const char *name, int rrtype, dns_cb cb, void *arg)
{
	struct dns_query *q;
	int rc;

	if (d == NULL || d->closing || name == NULL || cb == NULL)
		return NULL;
	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	if ((q->name = strdup(name)) == NULL) {
		free(q);
		return NULL;
	}
	q->dns = d;
	q->rrtype = rrtype;
	q->cb = cb;
	q->arg = arg;
	ev_timer_init(&q->timer, dns_timer_cb, d->timeout, 0.);
	q->timer.data = q;
	TAILQ_INSERT_TAIL(&d->queries, q, entry);

	q->in_resolve = 1;
	q->ub_active = 1;
	rc = ub_resolve_event(d->ctx, q->name, rrtype, 1 /* IN */, q,
	                      dns_ub_event_cb, &q->ub_id);
	q->in_resolve = 0;
	if (rc != 0) {
		q->ub_active = 0;
		q->deferred = 1;
		snprintf(q->deferred_why, sizeof(q->deferred_why),
		         "resolver error: %s", ub_strerror(rc));
		ev_timer_set(&q->timer, 0., 0.);
	}
	if (!q->deferred || rc != 0)
		ev_timer_start(d->loop, &q->timer);
	return q;
}

/* dns_cancel - drop a pending query; its callback will not run */
void
dns_cancel(struct dns_query *q)
{
	if (q == NULL)
		return;
	if (q->ub_active && q->dns != NULL)
		ub_cancel(q->dns->ctx, q->ub_id);
	q->ub_active = 0;
	dns_query_free(q);
}
