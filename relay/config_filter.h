/*
 * config_filter.h - the filtering directives of backmx.conf: milter,
 * milter_default_action, milter_timeout, dnsbl, dnsbl_allow,
 * client_limit, client_rate, proxy_allow (and `listen ADDR proxy`,
 * flagged in struct config_listen by config.c).
 *
 * config.c calls config_filter_defaults() when it makes a config,
 * config_filter_directive() for each global directive it does not know,
 * config_filter_check() after the last line and config_filter_free()
 * from config_free().  cfg->filter is never NULL in a loaded config.
 */
#ifndef BACKMX_CONFIG_FILTER_H
#define BACKMX_CONFIG_FILTER_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "config.h"

enum filter_action {
	FILTER_ACCEPT,   /* let the message through unfiltered */
	FILTER_TEMPFAIL, /* 451 4.7.1 */
	FILTER_REJECT,   /* 550 5.7.1 */
};

struct config_milter {
	char spec[160];             /* as written: "inet:127.0.0.1:11332" */
	struct sockaddr_storage ss; /* AF_INET, AF_INET6 or AF_UNIX */
	socklen_t sslen;
};

struct config_dnsbl {
	char zone[256];
	int filter;                 /* an answer filter was given */
	unsigned char lo[4], hi[4]; /* per octet: lo <= answer <= hi */
	char text[300];             /* as written, for logs */
};

struct config_filter {
	struct config_milter *milter;
	int nmilter;
	enum filter_action milter_default_action;
	long milter_timeout; /* seconds, per reply */
	struct config_dnsbl *dnsbl;
	int ndnsbl;
	struct config_cidr *dnsbl_allow;
	int ndnsbl_allow;
	int client_limit; /* concurrent sessions per client; 0 = off */
	int client_rate;  /* new sessions per client_rate_window; 0 = off */
	long client_rate_window; /* seconds */
	struct config_cidr *proxy_allow;
	int nproxy_allow;
};

void config_filter_defaults(struct config *c);
/* config_filter_directive - 0 not ours, 1 done, -1 error (text in err) */
int config_filter_directive(struct config *c, char **tok, int n, char *err,
                            size_t errlen);
/* config_filter_check - whole-file checks; -1 with text in err */
int config_filter_check(struct config *c, char *err, size_t errlen);
void config_filter_free(struct config *c);

/* config_dnsbl_parse - "zone[=a.b.c.[x..y]]" into d; 0 or -1 */
int config_dnsbl_parse(const char *s, struct config_dnsbl *d);
/* config_dnsbl_match - does the A answer (4 octets) pass d's filter? */
int config_dnsbl_match(const struct config_dnsbl *d, const unsigned char a[4]);
const char *config_filter_action_str(enum filter_action a);

#endif
