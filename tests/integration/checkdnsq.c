/*
 * checkdnsq.c - test driver for relay/checkdns.c: runs the check-dns audit
 * of one domain on a libev loop, through dns.h, and prints each line as
 *   LEVEL CHECK TEXT
 * then "nfail N".  Exit 1 when N > 0, like backmxctl check-dns.
 * Used by tests/integration/test_dns.py.
 *
 *   checkdnsq [-s SERVER] [-a TRUST_ANCHOR] [-t TIMEOUT] -H HOSTNAME
 *	       [-A ALIAS]... [-D DOMAIN[:may|encrypt|verify|dane]]...
 *	       [-C CAFILE] [-n] [-I OWN_ADDR]... DOMAIN
 * -C is tls_ca (for the MTA-STS policy fetch); -n runs without a loop in
 * backmxd.loop, so no policy is fetched; -I adds an address of this
 * machine (backmxd.own_addrs, as the daemon has its listen addresses).
 */
#include <arpa/inet.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backmxd.h"
#include "checkdns.h"
#include "config.h"
#include "dns.h"
#include "log.h"
#include "policy.h"

/* checkdns fetches MTA-STS policies on backmxd.loop */
struct backmxd backmxd;

static int done, nfail, nlines, line_in_start;
static int starting;

static void
checkdnsq_line_cb(void *arg, const char *level, const char *check,
                  const char *text)
{
	if (starting)
		line_in_start = 1;
	printf("%s %s %s\n", level, check, text);
	nlines++;
}

static void
checkdnsq_done_cb(void *arg, int n)
{
	if (starting)
		line_in_start = 1;
	nfail = n;
	done = 1;
}

static void
usage(void)
{
	fprintf(stderr, "usage: checkdnsq [-s SERVER] [-a TRUST_ANCHOR] "
	                "[-t TIMEOUT] -H HOSTNAME [-A ALIAS]... "
	                "[-D DOMAIN[:TLS]]... [-C CAFILE] [-n] DOMAIN\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *server = NULL, *ta = NULL, *hostname = NULL, *ca = NULL;
	int noloop = 0;
	const char *aliases[16], *domains[16];
	int naliases = 0, ndomains = 0, c, i, timeout = 5;
	struct ev_loop *loop = EV_DEFAULT;
	struct config cfg;
	struct checkdns *cd;
	struct dns *d;
	char err[256];
	static struct sockaddr_storage own[16];

	while ((c = getopt(argc, argv, "s:a:t:H:A:D:C:nI:")) != -1) {
		switch (c) {
		case 's':
			server = optarg;
			break;
		case 'a':
			ta = optarg;
			break;
		case 't':
			timeout = atoi(optarg);
			break;
		case 'C':
			ca = optarg;
			break;
		case 'n':
			noloop = 1;
			break;
		case 'I': {
			struct sockaddr_in *sin;
			struct sockaddr_in6 *sin6;

			if (backmxd.nown_addrs == 16)
				usage();
			sin = (struct sockaddr_in *)&own[backmxd.nown_addrs];
			sin6 = (struct sockaddr_in6 *)&own[backmxd.nown_addrs];
			if (inet_pton(AF_INET, optarg, &sin->sin_addr) == 1)
				sin->sin_family = AF_INET;
			else if (inet_pton(AF_INET6, optarg,
			                   &sin6->sin6_addr) == 1)
				sin6->sin6_family = AF_INET6;
			else
				usage();
			backmxd.own_addrs = own;
			backmxd.nown_addrs++;
			break;
		}
		case 'H':
			hostname = optarg;
			break;
		case 'A':
			if (naliases == 16)
				usage();
			aliases[naliases++] = optarg;
			break;
		case 'D':
			if (ndomains == 16)
				usage();
			domains[ndomains++] = optarg;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc != 1 || hostname == NULL)
		usage();
	log_open("checkdnsq", 1);

	memset(&cfg, 0, sizeof(cfg));
	if ((cfg.policy = policy_new(hostname)) == NULL) {
		fprintf(stderr, "checkdnsq: bad hostname %s\n", hostname);
		return 2;
	}
	cfg.hostname = cfg.policy->hostname;
	cfg.tls_ca = (char *)ca;
	backmxd.loop = noloop ? NULL : loop;
	for (i = 0; i < naliases; i++)
		if (policy_add_alias(cfg.policy, aliases[i]) != 0) {
			fprintf(stderr, "checkdnsq: bad alias %s\n",
			        aliases[i]);
			goto fail;
		}
	for (i = 0; i < ndomains; i++) {
		char name[256], *tls;
		struct policy_domain *pd;

		snprintf(name, sizeof(name), "%s", domains[i]);
		if ((tls = strchr(name, ':')) != NULL)
			*tls++ = '\0';
		if ((pd = policy_add_domain(cfg.policy, name)) == NULL) {
			fprintf(stderr, "checkdnsq: bad domain %s\n", name);
			goto fail;
		}
		if (tls == NULL || strcmp(tls, "may") == 0)
			pd->tls = POLICY_TLS_MAY;
		else if (strcmp(tls, "encrypt") == 0)
			pd->tls = POLICY_TLS_ENCRYPT;
		else if (strcmp(tls, "verify") == 0)
			pd->tls = POLICY_TLS_VERIFY;
		else if (strcmp(tls, "dane") == 0)
			pd->tls = POLICY_TLS_DANE;
		else {
			fprintf(stderr, "checkdnsq: bad tls %s\n", tls);
			goto fail;
		}
	}

	if ((d = dns_new(loop, server, ta, timeout, err, sizeof(err))) ==
	    NULL) {
		fprintf(stderr, "checkdnsq: %s\n", err);
		goto fail;
	}
	starting = 1;
	cd = checkdns_start(d, &cfg, argv[0], checkdnsq_line_cb,
	                    checkdnsq_done_cb, NULL);
	starting = 0;
	if (cd == NULL) {
		fprintf(stderr, "checkdnsq: checkdns_start failed\n");
		dns_free(d);
		goto fail;
	}
	if (line_in_start) {
		fprintf(stderr,
		        "checkdnsq: callback ran inside checkdns_start\n");
		return 3;
	}
	/* the config may go away while the audit runs (SIGHUP) */
	policy_free(cfg.policy);
	cfg.policy = NULL;
	while (!done)
		ev_run(loop, EVRUN_ONCE);
	printf("nfail %d\n", nfail);
	dns_free(d);
	return nfail > 0 ? 1 : 0;
fail:
	policy_free(cfg.policy);
	return 2;
}
