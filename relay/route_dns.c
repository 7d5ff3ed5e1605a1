/*
 * route_dns.c - the DNS outcomes of the forward path turned into delivery
 * results (see route_dns.h): temporary for configured domains, the DNS
 * answer named in the text, a warning logged and counted.
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "route_dns.h"
#include "stats.h"

static const char *
route_dns_type(int rrtype)
{
	switch (rrtype) {
	case DNS_T_A:
		return "A";
	case DNS_T_AAAA:
		return "AAAA";
	case DNS_T_MX:
		return "MX";
	case DNS_T_TLSA:
		return "TLSA";
	case DNS_T_TXT:
		return "TXT";
	}
	return "?";
}

const char *
route_dns_answer(const struct dns_result *res, char *buf, size_t len)
{
	switch (res->status) {
	case DNS_OK:
		snprintf(buf, len, "no usable records");
		break;
	case DNS_NXDOMAIN:
		snprintf(buf, len, "NXDOMAIN");
		break;
	case DNS_NODATA:
		snprintf(buf, len, "NODATA");
		break;
	case DNS_BOGUS:
		snprintf(buf, len, "DNSSEC bogus (%s)", res->why);
		break;
	case DNS_TEMPFAIL:
		if (strstr(res->why, "SERVFAIL") != NULL)
			snprintf(buf, len, "SERVFAIL");
		else if (!strcmp(res->why, "timeout"))
			snprintf(buf, len, "timeout");
		else
			snprintf(buf, len, "temporary failure (%s)",
			         res->why[0] ? res->why : "resolver error");
		break;
	}
	return buf;
}

void
route_dns_mx_fail(const char *id, const char *domain, int configured,
                  const struct dns_result *res, struct result *r)
{
	char ans[200];

	route_dns_answer(res, ans, sizeof(ans));
	if (res->status == DNS_NXDOMAIN && !configured) {
		/* not one of ours (a bounce to a sender's domain) */
		result_set(r, 550, "5.1.2",
		           "Host or domain name not found. "
		           "Name service error for name=%s type=MX: Host not "
		           "found (DNS answered NXDOMAIN)",
		           domain);
		return;
	}
	result_set(r, 451, "4.4.3",
	           "Host or domain name not found. Name "
	           "service error for name=%s type=MX: DNS answered %s "
	           "(temporary: mail stays queued)",
	           domain, ans);
	log_warn("%s: dns: MX lookup for %s: %s; deferred", id, domain, ans);
	stats.dns_deferred++;
}

void
route_dns_addr_note(char *why, size_t len, const struct dns_result *res)
{
	char ans[200];
	size_t used = strlen(why);

	if (used >= len)
		return;
	route_dns_answer(res, ans, sizeof(ans));
	snprintf(why + used, len - used, "%s%s %s", used ? ", " : "",
	         route_dns_type(res->rrtype), ans);
}

void
route_dns_noaddr(const char *id, const char *domain, int is_static,
                 const char *const *hosts, const char *const *whys, int n,
                 struct result *r)
{
	char list[200];
	size_t used = 0;
	int i;

	list[0] = '\0';
	for (i = 0; i < n && used < sizeof(list); i++) {
		int k = snprintf(list + used, sizeof(list) - used, "%s%s (%s)",
		                 i ? "; " : "", hosts[i],
		                 whys[i][0] ? whys[i] : "no address");

		if (k < 0)
			break;
		used += (size_t)k;
	}
	if (is_static)
		result_set(r, 451, "4.4.4",
		           "unable to look up host %s: DNS "
		           "answered %s",
		           hosts[0],
		           n > 0 && whys[0][0] ? whys[0] : "no address");
	else
		result_set(r, 451, "4.4.4",
		           "unable to find primary relay "
		           "for %s: no address for its MX hosts: %s",
		           domain, list);
	log_warn("%s: dns: no address for the MX hosts of %s: %s; deferred", id,
	         domain, list);
	stats.dns_deferred++;
}
