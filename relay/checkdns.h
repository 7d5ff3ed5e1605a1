/*
 * checkdns.h - the audit behind `backmxctl check-dns DOMAIN`: asynchronous
 * lookups of a domain's public DNS (MX set, MX targets' A/AAAA, SPF,
 * _mta-sts TXT, our TLSA) judged from the point of view of its backup MX.
 *
 * A valid _mta-sts record leads to fetching the policy over HTTPS
 * (mtasts.c) on backmxd.loop, verified against cfg->tls_ca, and matching
 * its mx: patterns against our hostname and the other MX hosts; with
 * backmxd.loop NULL (tests) the policy is not fetched.
 *
 * Lines are reported in a fixed order once every lookup has finished, one
 * line_cb per check: level "OK", "WARN" or "FAIL", a short check name
 * ("mx", "self", "equal-pref", "redundancy", "null-mx", "target",
 * "spf", "mta-sts", "tlsa", "domain") and a one-line text.  Then done_cb
 * runs once with the number of FAIL lines (backmxctl exits 1 when > 0).
 *
 * Who frees what: checkdns_start copies what it needs from cfg (the
 * config may be reloaded meanwhile) and from domain.  The audit frees
 * itself after done_cb returns; checkdns_cancel() before that frees it
 * without further callbacks (allowed from inside line_cb as well, then
 * done_cb does not run).  No callback runs inside checkdns_start().
 */
#ifndef BACKMX_CHECKDNS_H
#define BACKMX_CHECKDNS_H

struct dns;
struct config;
struct checkdns;

typedef void (*checkdns_line_cb)(void *arg, const char *level,
                                 const char *check, const char *text);
typedef void (*checkdns_done_cb)(void *arg, int nfail);

/*
 * checkdns_start - audit domain (a name, trailing dot allowed).  Returns
 * NULL, with no callback, when domain is not a valid name or no lookup
 * could be started (out of memory, resolver shutting down).
 */
struct checkdns *checkdns_start(struct dns *d, const struct config *cfg,
                                const char *domain, checkdns_line_cb line_cb,
                                checkdns_done_cb done_cb, void *arg);
void checkdns_cancel(struct checkdns *c);

#endif
