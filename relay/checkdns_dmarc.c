/*
 * checkdns_dmarc.c - the check-dns verdicts on a domain's reporting
 * records: DMARC at _dmarc.DOMAIN (RFC 7489: exactly one v=DMARC1 record,
 * p= right after v=) and SMTP TLS reporting at _smtp._tls.DOMAIN (RFC
 * 8460: exactly one v=TLSRPTv1 record with a mailto: or https: rua=).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "checkdns.h"
#include "checkdns_int.h"
#include "dns.h"

void
checkdns_take_dmarc(struct checkdns_lookup *l, const struct dns_result *r)
{
	checkdns_txt_take(&l->c->dmarc, r);
}

void
checkdns_take_tlsrpt(struct checkdns_lookup *l, const struct dns_result *r)
{
	checkdns_txt_take(&l->c->tlsrpt, r);
}

/* checkdns_tag - the value of tag in a "k=v; k=v" record, into out */
static int
checkdns_tag(const char *rec, const char *tag, char *out, size_t len)
{
	const char *p = rec;
	size_t tl = strlen(tag);

	while (*p != '\0') {
		const char *e;
		size_t vl;

		while (*p == ' ' || *p == '\t' || *p == ';')
			p++;
		e = strchr(p, ';');
		if (e == NULL)
			e = p + strlen(p);
		if (strncasecmp(p, tag, tl) == 0) {
			const char *v = p + tl;

			while (*v == ' ' || *v == '\t')
				v++;
			if (*v == '=') {
				v++;
				while (*v == ' ' || *v == '\t')
					v++;
				vl = (size_t)(e - v);
				while (vl > 0 &&
				       (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
					vl--;
				if (vl >= len)
					vl = len - 1;
				memcpy(out, v, vl);
				out[vl] = '\0';
				return 0;
			}
		}
		p = e;
	}
	return -1;
}

/* checkdns_select - the records starting with version; how many */
static int
checkdns_select(const struct checkdns_txt *t, const char *version,
                const char **one)
{
	size_t vl = strlen(version);
	int i, n = 0;

	*one = NULL;
	for (i = 0; i < t->n; i++) {
		const char *s = t->s[i];

		if (strncmp(s, version, vl) == 0 &&
		    (s[vl] == '\0' || s[vl] == ';' || s[vl] == ' ')) {
			*one = s;
			n++;
		}
	}
	return n;
}

void
checkdns_report_dmarc(struct checkdns *c)
{
	const struct checkdns_lookup *l = &c->dmarc_l;
	const char *rec;
	char pol[32], first[16];
	int n;

	if (l->status == DNS_TEMPFAIL || l->status == DNS_BOGUS) {
		checkdns_line(c, "WARN", "dmarc",
		              "TXT lookup for _dmarc.%s failed: %s", c->domain,
		              l->why);
		return;
	}
	n = checkdns_select(&c->dmarc, "v=DMARC1", &rec);
	if (n == 0) {
		checkdns_line(
		    c, "WARN", "dmarc",
		    "no DMARC record (_dmarc.%s TXT \"v=DMARC1; p=...\"): "
		    "receivers cannot tell forged mail for %s from real, "
		    "nor report it",
		    c->domain, c->domain);
		return;
	}
	if (n > 1) {
		checkdns_line(c, "FAIL", "dmarc",
		              "%d DMARC records at _dmarc.%s: receivers "
		              "ignore them all (RFC 7489 6.6.3); keep one",
		              n, c->domain);
		return;
	}
	/* the tag after v= must be p= (RFC 7489 6.4) */
	{
		const char *semi = strchr(rec, ';');
		size_t k = 0;

		if (semi != NULL) {
			semi++;
			while (*semi == ' ' || *semi == '\t')
				semi++;
			while (semi[k] != '\0' && semi[k] != '=' &&
			       semi[k] != ' ' && k < sizeof(first) - 1) {
				first[k] = semi[k];
				k++;
			}
		}
		first[k] = '\0';
	}
	if (strcasecmp(first, "p") != 0 ||
	    checkdns_tag(rec, "p", pol, sizeof(pol)) == -1 ||
	    (strcasecmp(pol, "none") != 0 &&
	     strcasecmp(pol, "quarantine") != 0 &&
	     strcasecmp(pol, "reject") != 0)) {
		checkdns_line(c, "FAIL", "dmarc",
		              "_dmarc.%s \"%.200s\" is invalid: p=none, "
		              "quarantine or reject must follow v=DMARC1 "
		              "(RFC 7489 6.4); receivers ignore it",
		              c->domain, rec);
		return;
	}
	checkdns_line(c, "OK", "dmarc", "DMARC record present (p=%s)%s", pol,
	              strcasecmp(pol, "none") == 0 ? ": monitoring only" : "");
}

void
checkdns_report_tlsrpt(struct checkdns *c)
{
	const struct checkdns_lookup *l = &c->tlsrpt_l;
	const char *rec;
	char rua[512], *u, *save;
	int n, good = 0;

	if (l->status == DNS_TEMPFAIL || l->status == DNS_BOGUS) {
		checkdns_line(c, "WARN", "tls-rpt",
		              "TXT lookup for _smtp._tls.%s failed: %s",
		              c->domain, l->why);
		return;
	}
	n = checkdns_select(&c->tlsrpt, "v=TLSRPTv1", &rec);
	if (n == 0) {
		checkdns_line(
		    c, "WARN", "tls-rpt",
		    "no TLS-RPT record (_smtp._tls.%s TXT \"v=TLSRPTv1; "
		    "rua=mailto:...\", RFC 8460): senders cannot report "
		    "failed TLS to %s's MX hosts, this backup included",
		    c->domain, c->domain);
		return;
	}
	if (n > 1) {
		checkdns_line(c, "FAIL", "tls-rpt",
		              "%d TLS-RPT records at _smtp._tls.%s: senders "
		              "use none of them (RFC 8460 3); keep one",
		              n, c->domain);
		return;
	}
	if (checkdns_tag(rec, "rua", rua, sizeof(rua)) == 0)
		for (u = strtok_r(rua, ",", &save); u != NULL;
		     u = strtok_r(NULL, ",", &save)) {
			while (*u == ' ')
				u++;
			if (strncasecmp(u, "mailto:", 7) == 0 ||
			    strncasecmp(u, "https://", 8) == 0)
				good++;
		}
	if (good == 0) {
		checkdns_line(c, "FAIL", "tls-rpt",
		              "_smtp._tls.%s \"%.200s\" has no rua= with a "
		              "mailto: or https: address (RFC 8460 3): "
		              "reports have nowhere to go",
		              c->domain, rec);
		return;
	}
	checkdns_line(c, "OK", "tls-rpt",
	              "TLS-RPT record present (%d "
	              "report address%s)",
	              good, good == 1 ? "" : "es");
}
