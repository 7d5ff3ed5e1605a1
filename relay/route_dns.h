/*
 * route_dns.h - what a DNS answer on the forward path means for the mail
 * (fwd_route.c's MX choice and address resolution).  A configured domain is
 * never bounced because of DNS: NXDOMAIN, NODATA, SERVFAIL, a timeout or
 * a DNSSEC-bogus answer for its MX or for an MX host's address defers,
 * with a warning log line naming the answer and stats.dns_deferred
 * counted; only a null MX (RFC 7505) is permanent.  The mail then bounces
 * at queue_lifetime with this text as its last error.  For a domain that
 * is not configured (a bounce to a sender's domain) NXDOMAIN stays
 * permanent.
 */
#ifndef BACKMX_ROUTE_DNS_H
#define BACKMX_ROUTE_DNS_H

#include <stddef.h>

#include "dns.h"
#include "policy.h"

/* route_dns_answer - "NXDOMAIN", "NODATA", "SERVFAIL (...)", "timeout" */
const char *route_dns_answer(const struct dns_result *res, char *buf,
                             size_t len);

/*
 * route_dns_mx_fail - r for a failed MX lookup of domain (res not
 * DNS_OK), id for the log line; configured: the domain is one of ours.
 */
void route_dns_mx_fail(const char *id, const char *domain, int configured,
                       const struct dns_result *res, struct result *r);

/*
 * route_dns_addr_note - remember in why (a host's, "" at first) what an
 * A/AAAA lookup that gave no address answered: "A NXDOMAIN, AAAA NODATA"
 */
void route_dns_addr_note(char *why, size_t len, const struct dns_result *res);

/*
 * route_dns_noaddr - r when no MX host of domain has an address: names
 * each host and what DNS answered for it (whys[i] of hosts[i]).
 */
void route_dns_noaddr(const char *id, const char *domain, int is_static,
                      const char *const *hosts, const char *const *whys, int n,
                      struct result *r);

#endif
