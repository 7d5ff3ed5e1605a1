/*
 * config.h - backmx.conf -> struct config.
 *
 * The file format is the contract's (../shared/spec/interface.md): one
 * directive a line, '#' comments, '"' quoting, K/M/G sizes, s/m/h/d
 * durations, `domain NAME { ... }` blocks.  config_load() collects every
 * problem as "FILE:LINE: message" (backmxd -t prints them all); a config
 * with any error is refused whole, so SIGHUP keeps the old one.
 *
 * Ownership: config_load() returns a config that owns everything in it,
 * including cfg->policy (the domain table); config_free() releases all.
 */
#ifndef BACKMX_CONFIG_H
#define BACKMX_CONFIG_H

#include <stdint.h>
#include <sys/socket.h>

#include "policy.h"

#define CONFIG_WORKERS_MAX 64 /* `workers` */

struct config_listen {
	struct sockaddr_storage ss;
	socklen_t sslen;
	char text[80]; /* as written: "0.0.0.0:25", "[::]:25" */
	int proxy;     /* "listen ADDR proxy": PROXY header first */
};

struct config_cidr {
	int family; /* AF_INET / AF_INET6 */
	unsigned char addr[16];
	int bits;
};

struct config {
	char *path;
	struct policy *policy; /* hostname, aliases, domains */
	const char *hostname;  /* == policy->hostname */

	struct config_listen *listen;
	int nlisten;
	char *spool;            /* BDB environment directory */
	char *control;          /* control socket path */
	char *user;             /* drop privileges to; NULL = stay */
	char *dns;              /* "127.0.0.1:53" or NULL = resolv.conf */
	char *dns_trust_anchor; /* DNSSEC trust anchor file, optional */
	char *tls_cert, *tls_key;
	char *tls_ca;  /* CA file for outbound verify; NULL = system */
	char *metrics; /* "127.0.0.1:9425" or NULL */
	char *pidfile;

	uint64_t spool_cache; /* BDB cache, octets; 0 = the spool's default */
	uint64_t max_size;    /* octets */
	int max_recipients;
	int max_hops;
	int max_clients;
	int max_clients_per_ip;
	int workers;         /* accept processes; 0 = one per online core */
	long timeout;        /* seconds, server idle */
	long queue_lifetime; /* seconds */
	long *retry;         /* seconds; the last step repeats */
	int nretry;
	long delay_warning;      /* seconds; 0 = off */
	int max_deliveries;      /* outbound connections in total */
	int max_per_destination; /* outbound connections per destination */
	int drain_rate; /* messages/s made due after a recovery; 0 = no cap */
	long connect_timeout;  /* outbound, seconds */
	long command_timeout;  /* outbound per-command (5m) */
	long data_timeout;     /* outbound final-dot reply (10m) */
	int etrn_rate;         /* ETRN per client per minute */
	long callout_timeout;  /* per callout, seconds (10, at most 30) */
	int callout_limit;     /* connections per primary (4) */
	int callout_rate;      /* new connections per primary a minute (60) */
	long verify_cache_max; /* records in verify.db (100000) */

	struct config_cidr *etrn_allow;
	int netrn_allow;

	struct config_filter *filter; /* config_filter.h: milter, dnsbl... */
	struct config_peer *peer;     /* config_peer.h; NULL = no mirror */
};

/*
 * config_load - parse path.  On success returns the config and *nerr == 0.
 * On failure returns NULL; every problem was appended to diag (one
 * "FILE:LINE: message\n" each, warnings prefixed "warning: ") and *nerr
 * counts the errors.  Warnings alone do not fail the load.
 */
struct config *config_load(const char *path, char *diag, size_t diaglen,
                           int *nerr);
void config_free(struct config *c);

/* config_parse_size - "50M" -> octets; -1 on error */
int64_t config_parse_size(const char *s);
/* config_parse_duration - "5m" -> seconds; -1 on error */
long config_parse_duration(const char *s);
/* config_etrn_allowed - is addr (sockaddr) in etrn_allow? */
int config_etrn_allowed(const struct config *c, const struct sockaddr *sa);
/* config_parse_cidr - "ADDR[/BITS]"; 0 or -1 */
int config_parse_cidr(const char *s, struct config_cidr *c);
int config_cidr_match(const struct config_cidr *list, int n,
                      const struct sockaddr *sa);

#endif
