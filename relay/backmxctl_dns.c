/*
 * backmxctl_dns.c - check-dns run by backmxctl itself when no daemon
 * answers on the control socket (see backmxctl_dns.h): its own libev
 * loop and resolver, the same audit (checkdns.c), the same lines.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backmxctl_dns.h"
#include "backmxd.h"
#include "checkdns.h"
#include "config.h"
#include "dns.h"
#include "json.h"

#define CHECKDNS_LOCAL_TIMEOUT 15 /* seconds per query */
#define CHECKDNS_LOCAL_IFADDRS 64

struct checkdns_local_run {
	FILE *out;
	int json;
	int done;
	int nfail;
};

static void
checkdns_local_line(void *arg, const char *level, const char *check,
                    const char *text)
{
	struct checkdns_local_run *r = arg;
	struct json_buf b;

	if (!r->json) {
		fprintf(r->out, "%-4s %s: %s\n", level, check, text);
		return;
	}
	json_buf_init(&b);
	json_buf_puts(&b, "{\"status\": ");
	json_put_cstring(&b, level);
	json_buf_puts(&b, ", \"check\": ");
	json_put_cstring(&b, check);
	json_buf_puts(&b, ", \"message\": ");
	json_put_cstring(&b, text);
	json_buf_puts(&b, "}\n");
	if (!b.oom)
		fwrite(b.data, 1, b.len, r->out);
	json_buf_free(&b);
}

static void
checkdns_local_done(void *arg, int nfail)
{
	struct checkdns_local_run *r = arg;

	r->done = 1;
	r->nfail = nfail;
}

static int
checkdns_local_wildcard(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr ==
		       htonl(INADDR_ANY);
	if (ss->ss_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(
		    &((const struct sockaddr_in6 *)ss)->sin6_addr);
	return 0;
}

/* checkdns_local_addrs - backmxd.own_addrs as backmxd sets them */
static int
checkdns_local_addrs(const struct config *cfg)
{
	struct ifaddrs *ifa, *i;
	int n = 0, max = cfg->nlisten + CHECKDNS_LOCAL_IFADDRS, k, wild = 0;

	if ((backmxd.own_addrs =
	         calloc((size_t)max, sizeof(*backmxd.own_addrs))) == NULL)
		return -1;
	for (k = 0; k < cfg->nlisten; k++) {
		if (checkdns_local_wildcard(&cfg->listen[k].ss))
			wild = 1;
		else
			backmxd.own_addrs[n++] = cfg->listen[k].ss;
	}
	if (wild && getifaddrs(&ifa) == 0) {
		for (i = ifa; i != NULL && n < max; i = i->ifa_next) {
			if (i->ifa_addr == NULL)
				continue;
			if (i->ifa_addr->sa_family == AF_INET)
				memcpy(&backmxd.own_addrs[n++], i->ifa_addr,
				       sizeof(struct sockaddr_in));
			else if (i->ifa_addr->sa_family == AF_INET6)
				memcpy(&backmxd.own_addrs[n++], i->ifa_addr,
				       sizeof(struct sockaddr_in6));
		}
		freeifaddrs(ifa);
	}
	backmxd.nown_addrs = n;
	return 0;
}

int
checkdns_local(const struct config *cfg, const char *domain, int json,
               FILE *out, FILE *err)
{
	struct checkdns_local_run r;
	struct checkdns *cd;
	struct dns *d = NULL;
	char why[256];
	int rc = 1;

	memset(&r, 0, sizeof(r));
	r.out = out;
	r.json = json;
	if ((backmxd.loop = ev_default_loop(0)) == NULL) {
		fprintf(err, "backmxctl: check-dns %s: no event loop\n",
		        domain);
		return 1;
	}
	backmxd.cfg = (struct config *)cfg;
	if (checkdns_local_addrs(cfg) < 0) {
		fprintf(err, "backmxctl: out of memory\n");
		return 1;
	}
	if ((d = dns_new(backmxd.loop, cfg->dns, cfg->dns_trust_anchor,
	                 CHECKDNS_LOCAL_TIMEOUT, why, sizeof(why))) == NULL) {
		fprintf(err, "backmxctl: check-dns %s: resolver: %s\n", domain,
		        why);
		goto out;
	}
	if ((cd = checkdns_start(d, cfg, domain, checkdns_local_line,
	                         checkdns_local_done, &r)) == NULL) {
		fprintf(err,
		        "backmxctl: check-dns %s: cannot start the lookups\n",
		        domain);
		goto out;
	}
	while (!r.done)
		ev_run(backmxd.loop, EVRUN_ONCE);
	if (fflush(out) != 0 || ferror(out))
		fprintf(err, "backmxctl: stdout: write error\n");
	else if (r.nfail > 0)
		fprintf(err, "backmxctl: check-dns %s: %d check%s failed\n",
		        domain, r.nfail, r.nfail == 1 ? "" : "s");
	else
		rc = 0;
out:
	if (d != NULL)
		dns_free(d);
	free(backmxd.own_addrs);
	backmxd.own_addrs = NULL;
	backmxd.nown_addrs = 0;
	backmxd.cfg = NULL;
	return rc;
}
