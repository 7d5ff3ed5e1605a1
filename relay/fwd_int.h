/*
 * fwd_int.h - what the forwarder's files (forward.c, fwd_route.c,
 * fwd_tls.c, fwd_session.c, fwd_result.c, fwd_ops.c) share: a
 * destination, a delivery and its hosts, and the functions one file
 * calls in another.  Not for use outside the forwarder (forward.h is
 * its interface).  A delivery is owned by fwd_list from fwd_start until
 * fwd_done or fwd_delivery_free; a destination lives until shutdown.
 */
#ifndef BACKMX_FWD_INT_H
#define BACKMX_FWD_INT_H

#include <ev.h>
#include <stdint.h>
#include <sys/socket.h>

#include "bounce.h"
#include "dns.h"
#include "mtasts.h"
#include "policy.h"
#include "smtp_client.h"
#include "spool.h"

#define FWD_HOSTS_MAX 16
#define FWD_ADDR_MAX 8
#define FWD_KEY_MAX (POLICY_DOMAIN_MAX + 32)

/* a destination: the unit of concurrency limits and connection reuse */
struct fwd_dest {
	struct fwd_dest *next;
	char key[FWD_KEY_MAX];
	int active;		/* deliveries in flight */
	int failures;		/* consecutive failed deliveries */
	struct smtp_client *idle;	/* only while handing a connection on */
	struct schedule *wait;	/* ids blocked by max_per_destination,
				   FIFO by sequence number, one entry each */
	int64_t wseq;
	/* no address of the destination answered: until dead_until its
	 * messages are deferred without a connection attempt (as Postfix's
	 * "delivery temporarily suspended"), so a backup MX whose primary
	 * is down does not knock once per message it accepts; one message
	 * a second still probes, so a recovered primary is seen at once */
	int64_t dead_until;
	double last_probe;	/* one real attempt a second while dead */
	char dead_why[300];
};

struct fwd_host {
	char name[POLICY_DOMAIN_MAX + 1];
	int pref;
	int self;
	int tempfail;
	int insecure;		/* an address answer was not DNSSEC-secure */
	int bogus;		/* an address answer failed validation */
	char dnswhy[96];	/* what A/AAAA answered when they gave nothing */
	int naddr;
	struct sockaddr_storage addr[FWD_ADDR_MAX];
};

/* what the TLSA lookup of a host gave (tls dane, tls mta-sts) */
enum fwd_tlsa {
	FWD_TLSA_NONE,		/* none, or not secure: opportunistic */
	FWD_TLSA_USABLE,	/* DANE-TA/DANE-EE: authenticated TLS */
	FWD_TLSA_UNUSABLE,	/* records, none usable: TLS, unauthenticated */
	FWD_TLSA_ERROR,		/* bogus or failed: the host is not used */
};

/*
 * fwd_state - where a delivery is; every change goes through
 * fwd_session_to (fwd_session.c), which logs it at debug level
 */
enum fwd_state {
	FWD_NEW,	/* created, nothing asked yet */
	FWD_MX,		/* MX lookup of the domain */
	FWD_ADDR,	/* A/AAAA lookups of the hosts */
	FWD_STS,	/* the domain's MTA-STS policy (tls mta-sts) */
	FWD_TLSA,	/* TLSA lookup of the host about to be tried */
	FWD_CONNECT,	/* a client connecting: greeting, EHLO, STARTTLS */
	FWD_SEND,	/* the transaction on a ready connection */
	FWD_DONE,	/* over: results recorded */
};

struct delivery;

struct fwd_query {
	struct delivery *d;
	int host;
	struct dns_query *q;
};

struct delivery {
	struct delivery *next, *prev;
	char id[SPOOL_ID_LEN + 1];
	struct spool_envelope *env;
	struct fwd_dest *dest;
	enum fwd_state state;
	int is_static, literal, port, tls;
	char domain[POLICY_DOMAIN_MAX + 1];	/* of the recipients */
	char host[POLICY_DOMAIN_MAX + 1];	/* static route host */

	int nrcpt;
	int *rcpt;		/* indices into env->rcpt */
	struct result *res;
	int *remote;
	char (*relay)[POLICY_DOMAIN_MAX + 80];	/* per rcpt, for logs */
	char (*mta)[POLICY_DOMAIN_MAX + 1];	/* per rcpt, for bounces */

	struct dns_query *mxq;
	struct fwd_host hosts[FWD_HOSTS_MAX];
	int nhosts;
	struct fwd_query qs[FWD_HOSTS_MAX * 2];
	int nqs, outstanding;
	int order[FWD_HOSTS_MAX];	/* hosts to try, after the cut */
	int norder, oi, ai;

	int64_t started;	/* when the attempt began (the schedule) */
	struct smtp_client *client;
	struct smtp_client_tx tx;
	struct result last;	/* last connection-level failure */
	int connected;		/* some address answered */
	int dsn;		/* the host that took the tx offers DSN */
	int suspended;		/* deferred at once: destination dead */

	/*
	 * TLS of the host being tried, decided before its first address
	 * (fwd_host_tls) and kept for its other addresses.
	 */
	struct dns_query *tlsaq;
	int tlsa_for;		/* 1 + index of the host decided, 0 none */
	enum fwd_tlsa tlsa_state;
	struct dns_tlsa *tlsa;	/* usable records, data in the same block */
	int ntlsa;
	int cur_tls;		/* enum policy_tls of the current connection */
	int plain;		/* next connection without STARTTLS (tls may,
				   after a failed handshake) */
	char tlsdesc[64];	/* of the connection that carried the tx */
	double t_send, setup;	/* delays=: tx start, connection setup */
	int conn_use;		/* conn_use=: tx number on the connection */

	/* MTA-STS policy of the recipient domain (tls mta-sts, route mx) */
	int sts_done;
	struct dns_query *stsq;
	struct mtasts_fetch *stsf;
	char sts_id[MTASTS_ID_MAX + 1];
	enum mtasts_mode sts_mode;	/* NONE: no policy in force */
	struct mtasts_policy sts;
};

#define FWD_SUSPENDED_TEXT "delivery temporarily suspended: "
/* schedule entry flag: a pending recipient was deferred by a
 * connection-level failure (SPOOL_RCPT_F_CONN) */
#define FWD_SCHED_CONN 0x01

/* forward.c: the queue, destinations and their FIFOs */
extern struct delivery *fwd_list;
extern struct fwd_dest *fwd_dests;
extern int fwd_active;
extern size_t fwd_nwaiting;

int64_t fwd_now(void);
const char *fwd_rcpt_domain(const char *addr);
uint32_t fwd_domain_tag(const char *domain);
unsigned fwd_jitter_seed(const char *id);
struct fwd_dest *fwd_dest_find(const char *key);
long fwd_lifetime(const struct spool_envelope *e);
int fwd_msg_inflight(const char *id);
void fwd_wait_release_all(void);
void fwd_reschedule(const struct spool_envelope *e);
int fwd_suspended(const struct fwd_dest *dest, int own);
void fwd_dest_dead(struct fwd_dest *dest, const char *why);
void fwd_done(struct delivery *d, struct smtp_client *reusable);
void fwd_arm(void);

/* fwd_route.c: the route of a recipient, the hosts of a delivery */
int fwd_route(const struct spool_envelope *e, int i, char *key,
	      size_t keylen, struct delivery *d, struct result *r);
int fwd_is_own_addr(const struct sockaddr_storage *ss, int port);
void fwd_hosts_ready(struct delivery *d);
void fwd_route_start(struct delivery *d);

/* fwd_tls.c: the TLS policy of the host being tried */
int fwd_host_tls(struct delivery *d);
void fwd_sts_start(struct delivery *d);

/* fwd_session.c: one delivery */
const char *fwd_state_name(enum fwd_state s);
void fwd_session_to(struct delivery *d, enum fwd_state next);
void fwd_start(struct spool_envelope *e, const int *idx, int n,
	       struct fwd_dest *dest);
void fwd_try_next(struct delivery *d);
void fwd_fail_route(struct delivery *d, const struct result *r);
void fwd_delivery_free(struct delivery *d);

/* fwd_result.c: replies into the spool, logs, bounces */
void fwd_results(struct delivery *d);
void fwd_commit(struct spool_envelope *e, struct bounce_item *it, int nit);
int fwd_expired(const struct spool_envelope *e, int64_t now);
void fwd_expire_now(struct spool_envelope *e, const char *why);
void fwd_log(const struct spool_envelope *e, int i, const char *relay,
	     const struct result *r, const char *status, int remote);

/* fwd_ops.c */
int fwd_flush_match(const char *domain, const char *key, int conn_only);

#endif
