/*
 * checkdns_tls.c - the check-dns TLS policies: the _mta-sts TXT record,
 * the policy fetched over HTTPS (mtasts.c) and whether its mx: patterns
 * cover us and the other MX hosts (RFC 8461), and the TLSA records of our
 * hostname when the domain uses DANE (RFC 7672).
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

#include <ev.h>

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

/* checkdns_take_sts - _mta-sts TXT; a valid record leads to the policy */
void
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

void
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

void
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

void
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
