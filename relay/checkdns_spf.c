/*
 * checkdns_spf.c - the check-dns verdict on a domain's SPF record (RFC
 * 7208): present, only one, and whether it lets this backup MX send for
 * the domain (mx, or an ip4:/ip6: range covering our addresses).
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

void
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
