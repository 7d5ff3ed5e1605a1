/*
 * checkdns_host.c - the check-dns verdicts on ourselves, as receivers of
 * our mail (the primary, senders of bounced mail) see us: our hostname
 * (the HELO name we send) must resolve to an address of this machine,
 * and each of our addresses (the hostname's and the configured listen
 * addresses) needs a PTR whose name resolves back to it (forward-
 * confirmed reverse DNS), ideally our hostname.  Starts the PTR and the
 * forward lookups once checkdns.c knows our addresses; reports "helo" and
 * "ptr" lines.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "checkdns.h"
#include "checkdns_int.h"
#include "dns.h"

/* checkdns_rev_name - the in-addr.arpa / ip6.arpa name of ss */
static int
checkdns_rev_name(const struct sockaddr_storage *ss, char *out, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	int i;

	if (ss->ss_family == AF_INET) {
		const unsigned char *a =
		    (const unsigned char *)&((const struct sockaddr_in *)ss)
		        ->sin_addr;

		snprintf(out, len, "%u.%u.%u.%u.in-addr.arpa", a[3], a[2], a[1],
		         a[0]);
		return 0;
	}
	if (ss->ss_family != AF_INET6 || len < 73)
		return -1;
	{
		const unsigned char *a =
		    (const unsigned char *)&((const struct sockaddr_in6 *)ss)
		        ->sin6_addr;

		for (i = 15; i >= 0; i--) {
			out[o++] = hex[a[i] & 15];
			out[o++] = '.';
			out[o++] = hex[a[i] >> 4];
			out[o++] = '.';
		}
	}
	memcpy(out + o, "ip6.arpa", 9);
	return 0;
}

/* checkdns_take_fwd - A/AAAA of a PTR name: does it lead back? */
static void
checkdns_take_fwd(struct checkdns_lookup *l, const struct dns_result *r)
{
	struct checkdns_ptr *p = &l->c->ptrs[l->index / CHECKDNS_PTR_NAMES];
	int n = l->index % CHECKDNS_PTR_NAMES, i;

	if (r->status != DNS_OK)
		return;
	for (i = 0; i < r->n; i++)
		if (checkdns_addr_eq(&r->addr[i], &p->addr))
			p->confirmed[n] = 1;
}

/* checkdns_take_ptr - the names of one of our addresses, then each back */
static void
checkdns_take_ptr(struct checkdns_lookup *l, const struct dns_result *r)
{
	struct checkdns *c = l->c;
	struct checkdns_ptr *p = &c->ptrs[l->index];
	int i;

	if (r->status != DNS_OK)
		return;
	for (i = 0; i < r->n && p->nname < CHECKDNS_PTR_NAMES; i++) {
		int n = p->nname;

		if (checkdns_name_norm(r->txt[i], p->name[n],
		                       sizeof(p->name[n])) == -1)
			continue;
		p->nname++;
		p->fwd[n].index = l->index * CHECKDNS_PTR_NAMES + n;
		checkdns_lookup_start(c, &p->fwd[n], p->name[n],
		                      p->addr.ss_family == AF_INET6 ? DNS_T_AAAA
		                                                    : DNS_T_A,
		                      checkdns_take_fwd);
	}
}

void
checkdns_host_start(struct checkdns *c)
{
	char name[80];
	int i;

	if (c->pub.n == 0)
		return;
	if ((c->ptrs = calloc(c->pub.n, sizeof(*c->ptrs))) == NULL)
		return;
	for (i = 0; i < c->pub.n; i++) {
		struct checkdns_ptr *p = &c->ptrs[c->nptrs];

		p->addr = c->pub.a[i];
		if (checkdns_rev_name(&p->addr, name, sizeof(name)) == -1)
			continue;
		p->ptr_l.index = c->nptrs++;
		checkdns_lookup_start(c, &p->ptr_l, name, DNS_T_PTR,
		                      checkdns_take_ptr);
	}
}

void
checkdns_host_free(struct checkdns *c)
{
	free(c->ptrs);
	c->ptrs = NULL;
	c->nptrs = 0;
}

void
checkdns_report_helo(struct checkdns *c)
{
	char addrs[512], own[512];
	int i;

	if (c->hostname[0] == '\0')
		return; /* "self" has said so */
	checkdns_addrs_text(&c->host_addrs, addrs, sizeof(addrs));
	if (c->host_addrs.n == 0) {
		const struct checkdns_lookup *t =
		    c->self_a.status == DNS_TEMPFAIL ||
		            c->self_a.status == DNS_BOGUS
		        ? &c->self_a
		    : c->self_aaaa.status == DNS_TEMPFAIL ||
		            c->self_aaaa.status == DNS_BOGUS
		        ? &c->self_aaaa
		        : NULL;

		if (t != NULL)
			checkdns_line(c, "WARN", "helo",
			              "address lookup for our hostname %s "
			              "failed: %s",
			              c->hostname, t->why);
		else
			checkdns_line(
			    c, "FAIL", "helo",
			    "our hostname %s (the name we send in EHLO) has "
			    "no A or AAAA record: receivers that check the "
			    "HELO name (the primary, bounce recipients) "
			    "refuse or score down our mail; publish its "
			    "address",
			    c->hostname);
		return;
	}
	if (c->own_addrs.n > 0) {
		for (i = 0; i < c->host_addrs.n; i++)
			if (checkdns_addrs_has(&c->own_addrs,
			                       &c->host_addrs.a[i]))
				break;
		if (i == c->host_addrs.n) {
			checkdns_addrs_text(&c->own_addrs, own, sizeof(own));
			checkdns_line(
			    c, "FAIL", "helo",
			    "our hostname %s resolves to %s, none of which "
			    "is an address of this machine (%s): the name we "
			    "send in EHLO points elsewhere; fix its A/AAAA "
			    "or the hostname directive",
			    c->hostname, addrs, own);
			return;
		}
	}
	checkdns_line(c, "OK", "helo", "our hostname %s resolves to %s%s",
	              c->hostname, addrs, c->own_addrs.n > 0 ? " (ours)" : "");
}

void
checkdns_report_ptr(struct checkdns *c)
{
	char a[INET6_ADDRSTRLEN], names[600];
	int i, j;

	for (i = 0; i < c->nptrs; i++) {
		const struct checkdns_ptr *p = &c->ptrs[i];
		const char *good = NULL, *own = NULL;
		size_t o = 0;

		checkdns_addr_str(&p->addr, a, sizeof(a));
		switch (p->ptr_l.status) {
		case DNS_OK:
			break;
		case DNS_NODATA:
		case DNS_NXDOMAIN:
			checkdns_line(
			    c, "FAIL", "ptr",
			    "%s (ours) has no PTR record: many receivers "
			    "refuse or score down mail from an address "
			    "without reverse DNS; ask its provider for "
			    "\"PTR %s.\"",
			    a, c->hostname[0] ? c->hostname : "our-hostname");
			continue;
		default:
			checkdns_line(c, "WARN", "ptr",
			              "PTR lookup for %s failed: %s", a,
			              p->ptr_l.why);
			continue;
		}
		names[0] = '\0';
		for (j = 0; j < p->nname; j++) {
			int w = snprintf(names + o, sizeof(names) - o, "%s%s",
			                 j ? ", " : "", p->name[j]);

			if (w > 0 && (size_t)w < sizeof(names) - o)
				o += (size_t)w;
			if (!p->confirmed[j])
				continue;
			if (good == NULL)
				good = p->name[j];
			if (own == NULL && checkdns_is_own(c, p->name[j]))
				own = p->name[j];
		}
		if (good == NULL)
			checkdns_line(
			    c, "FAIL", "ptr",
			    "%s (ours) has PTR %s, which does not resolve "
			    "back to %s: no forward-confirmed reverse DNS, "
			    "receivers treat us like a dial-up host; make "
			    "the name's %s record %s",
			    a, names[0] ? names : "(unusable)", a,
			    p->addr.ss_family == AF_INET6 ? "AAAA" : "A", a);
		else if (own == NULL && c->hostname[0] != '\0')
			checkdns_line(
			    c, "WARN", "ptr",
			    "%s (ours) has PTR %s, forward-confirmed, but "
			    "not our hostname %s: receivers comparing it with "
			    "our EHLO name see a mismatch; point the PTR at "
			    "%s",
			    a, good, c->hostname, c->hostname);
		else
			checkdns_line(c, "OK", "ptr",
			              "%s has PTR %s, forward-confirmed", a,
			              own != NULL ? own : good);
	}
}
