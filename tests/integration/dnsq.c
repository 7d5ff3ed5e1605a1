/*
 * dnsq.c - test driver for relay/dns.c (dns.h): runs one query per
 * TYPE for NAME on a libev loop, all at once, and prints one line per
 * result, in the order given:
 *   TYPE STATUS secure=0|1 [records...] [why="..."]
 * Used by tests/integration/test_dns.py.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "dns.h"
#include "log.h"

struct dnsq_item {
	const char *tname;
	int type;
	int done;
	char *line;
};

static struct dnsq_item *items;
static int nitems, ndone;

static const struct {
	const char *name;
	int type;
} dnsq_types[] = {
    {"A", DNS_T_A},     {"AAAA", DNS_T_AAAA}, {"MX", DNS_T_MX},
    {"TXT", DNS_T_TXT}, {"TLSA", DNS_T_TLSA}, {"CNAME", DNS_T_CNAME},
};

static void
dnsq_append(char **buf, size_t *len, size_t *cap, const char *s)
{
	size_t l = strlen(s);

	if (*len + l + 1 > *cap) {
		*cap = (*len + l + 1) * 2;
		if ((*buf = realloc(*buf, *cap)) == NULL) {
			perror("realloc");
			exit(2);
		}
	}
	memcpy(*buf + *len, s, l + 1);
	*len += l;
}

static void
dnsq_cb(void *arg, const struct dns_result *r)
{
	struct dnsq_item *it = arg;
	char *buf = NULL, tmp[600];
	size_t len = 0, cap = 0;
	int i;
	size_t k;

	snprintf(tmp, sizeof(tmp), "%s %s secure=%d", it->tname,
	         dns_status_str(r->status), r->secure);
	dnsq_append(&buf, &len, &cap, tmp);
	for (i = 0; r->status == DNS_OK && i < r->n; i++) {
		switch (r->rrtype) {
		case DNS_T_MX:
			snprintf(tmp, sizeof(tmp), " %d:%s", r->mx[i].pref,
			         r->mx[i].host[0] != '\0' ? r->mx[i].host
			                                  : ".");
			break;
		case DNS_T_A:
		case DNS_T_AAAA: {
			char a[INET6_ADDRSTRLEN] = "?";
			const struct sockaddr_storage *ss = &r->addr[i];

			if (ss->ss_family == AF_INET)
				inet_ntop(
				    AF_INET,
				    &((const struct sockaddr_in *)ss)->sin_addr,
				    a, sizeof(a));
			else if (ss->ss_family == AF_INET6)
				inet_ntop(AF_INET6,
				          &((const struct sockaddr_in6 *)ss)
				               ->sin6_addr,
				          a, sizeof(a));
			snprintf(tmp, sizeof(tmp), " %s", a);
			break;
		}
		case DNS_T_TLSA: {
			char hex[2 * 64 + 1];
			size_t n = r->tlsa[i].len < 64 ? r->tlsa[i].len : 64;

			for (k = 0; k < n; k++)
				snprintf(hex + 2 * k, 3, "%02x",
				         r->tlsa[i].data[k]);
			hex[2 * n] = '\0';
			snprintf(tmp, sizeof(tmp), " %u:%u:%u:%s",
			         r->tlsa[i].usage, r->tlsa[i].selector,
			         r->tlsa[i].mtype, hex);
			break;
		}
		case DNS_T_TXT:
			snprintf(tmp, sizeof(tmp), " \"%.500s\"", r->txt[i]);
			break;
		default:
			snprintf(tmp, sizeof(tmp), " rr");
			break;
		}
		dnsq_append(&buf, &len, &cap, tmp);
	}
	if (r->canonname != NULL && r->status == DNS_OK) {
		snprintf(tmp, sizeof(tmp), " canon=%s", r->canonname);
		dnsq_append(&buf, &len, &cap, tmp);
	}
	if (r->status != DNS_OK) {
		snprintf(tmp, sizeof(tmp), " why=\"%s\"", r->why);
		dnsq_append(&buf, &len, &cap, tmp);
	}
	it->line = buf;
	it->done = 1;
	ndone++;
}

static void
usage(void)
{
	fprintf(stderr, "usage: dnsq [-s SERVER] [-a TRUST_ANCHOR] "
	                "[-t TIMEOUT] NAME TYPE...\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *server = NULL, *ta = NULL, *name;
	struct ev_loop *loop = EV_DEFAULT;
	struct dns *d;
	char err[256];
	int c, i, timeout = 5;
	size_t t;

	while ((c = getopt(argc, argv, "s:a:t:")) != -1) {
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
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 2)
		usage();
	log_open("dnsq", 1);
	name = argv[0];
	nitems = argc - 1;
	if ((items = calloc(nitems, sizeof(*items))) == NULL)
		return 2;
	for (i = 0; i < nitems; i++) {
		items[i].tname = argv[i + 1];
		items[i].type = -1;
		for (t = 0; t < sizeof(dnsq_types) / sizeof(dnsq_types[0]); t++)
			if (strcasecmp(argv[i + 1], dnsq_types[t].name) == 0)
				items[i].type = dnsq_types[t].type;
		if (items[i].type == -1)
			items[i].type = atoi(argv[i + 1]);
		if (items[i].type <= 0) {
			fprintf(stderr, "dnsq: unknown type %s\n", argv[i + 1]);
			return 2;
		}
	}
	if ((d = dns_new(loop, server, ta, timeout, err, sizeof(err))) ==
	    NULL) {
		fprintf(stderr, "dnsq: %s\n", err);
		return 2;
	}
	for (i = 0; i < nitems; i++) {
		if (dns_query(d, name, items[i].type, dnsq_cb, &items[i]) ==
		    NULL) {
			fprintf(stderr, "dnsq: dns_query failed\n");
			return 2;
		}
		if (items[i].done) {
			fprintf(stderr,
			        "dnsq: callback ran inside dns_query\n");
			return 3;
		}
	}
	while (ndone < nitems)
		ev_run(loop, EVRUN_ONCE);
	for (i = 0; i < nitems; i++) {
		printf("%s\n", items[i].line);
		free(items[i].line);
	}
	dns_free(d);
	free(items);
	return 0;
}
