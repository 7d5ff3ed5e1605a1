/*
 * checkdns_mx.c - the check-dns verdicts on a domain's MX set: where our
 * hostname stands (absent, best, equal-best, behind the primary), shared
 * preferences, redundancy, and each MX target (IP literal, CNAME, no
 * address, our address under another name).  Reads the answers that
 * checkdns.c collected; reports through checkdns_line.
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

void
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

void
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
