/*
 * dnsbl.h - DNSBL/DNSWL lookups of a client address at connect, with a
 * cache that keeps each answer for its TTL.
 *
 * smtpd.c calls dnsbl_check_start() for a new session (the address a
 * PROXY header carried, if any).  Every `dnsbl` zone is asked in
 * parallel (A for the listing, TXT for its text); the verdict names the
 * first zone in configuration order that lists the client.  A lookup
 * that fails never lists anyone: DNS trouble does not block mail.
 * dnsbl_allow addresses are never looked up.
 */
#ifndef BACKMX_DNSBL_H
#define BACKMX_DNSBL_H

#include <stddef.h>
#include <sys/socket.h>

#define DNSBL_CACHE_MAX 8192

struct dnsbl_verdict {
	int listed;
	int cached; /* decided from the cache, no query */
	char zone[256];
	char text[256];  /* the zone's TXT, printable, or "" */
	char reply[512]; /* "554 5.7.1 Service unavailable; ..." */
};

enum dnsbl_status {
	DNSBL_PASS,    /* nothing to look up, or all cached clean */
	DNSBL_LISTED,  /* from the cache: *v is filled */
	DNSBL_PENDING, /* the callback runs later, exactly once */
};

struct dnsbl_check;
typedef void (*dnsbl_cb)(void *arg, const struct dnsbl_verdict *v);

/*
 * dnsbl_check_start - look up ss.  DNSBL_PENDING: *out is the handle,
 * the owner keeps it until the callback (then it is gone) or cancels it.
 */
enum dnsbl_status dnsbl_check_start(const struct sockaddr_storage *ss,
                                    const char *addrtext,
                                    struct dnsbl_verdict *v, dnsbl_cb cb,
                                    void *arg, struct dnsbl_check **out);
void dnsbl_check_cancel(struct dnsbl_check *c);

/* dnsbl_query_name - the name to look up: reversed IPv4 octets or IPv6
 * nibbles, then zone; -1 if it does not fit */
int dnsbl_query_name(const struct sockaddr_storage *ss, const char *zone,
                     char *out, size_t outlen);

/* dnsbl_metrics.c - one zone's answer to one lookup (DNSBL_ANS_*),
 * and the per-zone Prometheus family */
#define DNSBL_ANS_LISTED 0
#define DNSBL_ANS_CLEAN 1
#define DNSBL_ANS_FAILED 2
struct json_buf;
void dnsbl_metrics_record(const char *zone, int answer);
void dnsbl_metrics_page(struct json_buf *b);
#endif
