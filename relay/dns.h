/*
 * dns.h - asynchronous DNS on the libev loop (libunbound running on the
 * loop itself through its pluggable event API; a timer bounds every
 * query).  Every name is asked of the configured server, special-use
 * names and private reverse zones included; only localhost is local.
 *
 * Rules: the callback never runs inside dns_query(); it runs exactly once
 * unless the query is cancelled first; dns_cancel() after the callback
 * has run is not allowed (the handle is gone), so owners clear their
 * handle in the callback.  The result is valid only during the callback.
 */
#ifndef BACKMX_DNS_H
#define BACKMX_DNS_H

#include <ev.h>
#include <stdint.h>
#include <sys/socket.h>

#include "policy.h"

#define DNS_T_A 1
#define DNS_T_CNAME 5
#define DNS_T_PTR 12
#define DNS_T_MX 15
#define DNS_T_TXT 16
#define DNS_T_AAAA 28
#define DNS_T_TLSA 52

enum dns_status {
	DNS_OK,       /* answer with data */
	DNS_NODATA,   /* name exists, no records of this type */
	DNS_NXDOMAIN, /* permanent */
	DNS_TEMPFAIL, /* SERVFAIL, timeout, resolver error */
	DNS_BOGUS,    /* DNSSEC validation failed: treat as temporary */
};

struct dns_tlsa {
	uint8_t usage, selector, mtype;
	const uint8_t *data;
	size_t len;
};

struct dns_result {
	enum dns_status status;
	int secure; /* DNSSEC-validated */
	int rrtype;
	const char *qname;
	const char *canonname;         /* after CNAMEs, or NULL */
	char why[160];                 /* text for logs when not DNS_OK */
	int n;                         /* records in the array of this type: */
	struct policy_mx *mx;          /* DNS_T_MX (host "" for null MX ".") */
	struct sockaddr_storage *addr; /* DNS_T_A / AAAA (port 0) */
	struct dns_tlsa *tlsa;         /* DNS_T_TLSA */
	char **txt;                    /* DNS_T_TXT, strings joined per RR;
	                                  DNS_T_PTR: the names, lowercase */
	int ttl; /* of the answer, seconds (0 if unknown) */
};

struct dns;
struct dns_query;
typedef void (*dns_cb)(void *arg, const struct dns_result *r);

/*
 * dns_new - resolver on loop: server "ADDR[:PORT]" as forwarder, or NULL
 * for /etc/resolv.conf; trust_anchor file or NULL (then nothing is
 * secure).  timeout in seconds per query.
 */
struct dns *dns_new(struct ev_loop *loop, const char *server,
                    const char *trust_anchor, int timeout, char *err,
                    size_t errlen);
void dns_free(struct dns *d); /* cancels everything silently */
/* dns_query - NULL (and no callback) only when out of memory or misused */
struct dns_query *dns_query(struct dns *d, const char *name, int rrtype,
                            dns_cb cb, void *arg);
void dns_cancel(struct dns_query *q);
const char *dns_status_str(enum dns_status s);

/*
 * Pure RDATA parsers (names in uncompressed wire format, as libunbound
 * gives them); each returns -1 on anything malformed, never reads past len.
 * dns_parse_name: lowercase text, no trailing dot, "" for the root;
 *   returns the bytes consumed.
 * dns_parse_mx_rdata: 0 or -1; host "" is a null MX.
 * dns_parse_txt_rdata: strings of one RR joined, NUL-terminated; returns
 *   the text length.
 * dns_parse_tlsa_rdata: 0 or -1; out->data points into p.
 */
int dns_parse_name(const uint8_t *p, size_t len, char *out, size_t outlen);
int dns_parse_mx_rdata(const uint8_t *p, size_t len, struct policy_mx *out);
int dns_parse_txt_rdata(const uint8_t *p, size_t len, char *out, size_t outlen);
int dns_parse_tlsa_rdata(const uint8_t *p, size_t len, struct dns_tlsa *out);

#endif
