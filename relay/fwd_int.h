/*
 * fwd_int.h - what the forwarder's files (forward.c, fwd_route.c,
 * fwd_tls.c, fwd_session.c, fwd_result.c, fwd_ops.c, fwd_dsn.c,
 * fwd_glue.c) share: the forwarder context (struct forwarder) and its
 * seam to the outside (struct fwd_io), a destination, a delivery and its
 * hosts, and the functions one file calls in another.  Not for use
 * outside the forwarder and its unit test (forward.h is its interface).
 * A delivery is owned by fw->list from fwd_start until fwd_done or
 * fwd_delivery_free; a destination lives until fwd_shutdown.
 */
#ifndef BACKMX_FWD_INT_H
#define BACKMX_FWD_INT_H

#include <ev.h>
#include <stdint.h>
#include <sys/socket.h>

#include "bounce.h"
#include "config.h"
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
	int active;               /* deliveries in flight */
	int failures;             /* consecutive failed deliveries */
	struct smtp_client *idle; /* only while handing a connection on */
	struct schedule *wait;    /* ids blocked by max_per_destination,
	                             FIFO by sequence number, one entry each */
	int64_t wseq;
	/* no address of the destination answered: until dead_until its
	 * messages are deferred without a connection attempt (as Postfix's
	 * "delivery temporarily suspended"), so a backup MX whose primary
	 * is down does not knock once per message it accepts; one message
	 * a second still probes, so a recovered primary is seen at once */
	int64_t dead_until;
	double last_probe; /* one real attempt a second while dead */
	char dead_why[300];
};

struct fwd_host {
	char name[POLICY_DOMAIN_MAX + 1];
	int pref;
	int self;
	int tempfail;
	int insecure;    /* an address answer was not DNSSEC-secure */
	int bogus;       /* an address answer failed validation */
	char dnswhy[96]; /* what A/AAAA answered when they gave nothing */
	int naddr;
	struct sockaddr_storage addr[FWD_ADDR_MAX];
};

/* what the TLSA lookup of a host gave (tls dane, tls mta-sts) */
enum fwd_tlsa {
	FWD_TLSA_NONE,     /* none, or not secure: opportunistic */
	FWD_TLSA_USABLE,   /* DANE-TA/DANE-EE: authenticated TLS */
	FWD_TLSA_UNUSABLE, /* records, none usable: TLS, unauthenticated */
	FWD_TLSA_ERROR,    /* bogus or failed: the host is not used */
};

/*
 * fwd_state - where a delivery is; every change goes through
 * fwd_session_to (fwd_session.c), which logs it at debug level
 */
enum fwd_state {
	FWD_NEW,     /* created, nothing asked yet */
	FWD_MX,      /* MX lookup of the domain */
	FWD_ADDR,    /* A/AAAA lookups of the hosts */
	FWD_STS,     /* the domain's MTA-STS policy (tls mta-sts) */
	FWD_TLSA,    /* TLSA lookup of the host about to be tried */
	FWD_CONNECT, /* a client connecting: greeting, EHLO, STARTTLS */
	FWD_SEND,    /* the transaction on a ready connection */
	FWD_DONE,    /* over: results recorded */
};

struct delivery;
struct forwarder;

/*
 * fwd_io - the forwarder's outside world behind function pointers: the
 * resolver (dns.c, dns.h) and the SMTP client (smtp_client.c).  fwd_io_real
 * calls them; a unit test gives a fake that records queries and
 * connections and answers them when the test says (tests/unit/
 * test_forwarder.c), so a delivery runs its real code without sockets.
 */
struct fwd_io {
	struct dns_query *(*dns_query)(struct forwarder *fw, const char *name,
	                               int rrtype, dns_cb cb, void *arg);
	void (*dns_cancel)(struct forwarder *fw, struct dns_query *q);
	struct smtp_client *(*client_new)(struct forwarder *fw,
	                                  const struct smtp_client_params *p,
	                                  smtp_client_cb cb, void *arg);
	int (*client_send)(struct smtp_client *c, struct smtp_client_tx *tx);
	void (*client_set_cb)(struct smtp_client *c, smtp_client_cb cb,
	                      void *arg);
	int (*client_usable)(const struct smtp_client *c);
	const char *(*client_relay)(const struct smtp_client *c);
	const char *(*client_tls)(const struct smtp_client *c);
	void (*client_times)(const struct smtp_client *c, double *setup,
	                     int *use);
	int (*client_tls_failed)(const struct smtp_client *c);
	int (*client_has)(const struct smtp_client *c, int cap);
	void (*client_quit)(struct smtp_client *c);
	void (*client_free)(struct smtp_client *c);
};

/* the real resolver and SMTP client (fwd_session.c) */
extern const struct fwd_io fwd_io_real;

/*
 * forwarder - everything the forwarder's files use, passed explicitly
 * (only fwd_glue.c fills one from the daemon's global `backmxd`).
 *
 * The configuration is reached through cfg, a pointer to the daemon's
 * pointer: a SIGHUP reload (reload.c) swaps the config whole, and every
 * read through fwd_cfg() sees the new one.  The own-address list is
 * reached the same way (main.c allocates it).  now() is the clock in
 * seconds (ev_now of the loop; a fake one in the unit tests); every
 * time the forwarder reads goes through it.
 */
struct forwarder {
	/* given by the creator before fwd_init */
	struct ev_loop *loop;
	double (*now)(const struct forwarder *fw);
	struct spool *spool;
	struct schedule *sched; /* next attempt per queued message */
	struct dns *dns;
	struct config *const *cfg; /* *cfg: the current config */
	struct sockaddr_storage *const *own_addrs; /* for the MX cut */
	const int *nown_addrs;
	const struct fwd_io *io;
	void *io_arg;      /* for the io functions' own use */
	int load_batch;    /* index keys per loop iteration at
	                      start, 0: FWD_LOAD_BATCH */
	double load_pause; /* seconds between them (tests) */

	/* the forwarder's state (forward.c) */
	struct delivery *list; /* deliveries in flight */
	struct fwd_dest *dests;
	int active; /* deliveries in flight, in all */
	int stopped;
	ev_timer timer;      /* at the schedule's earliest entry */
	size_t nwaiting;     /* ids in the destinations' FIFOs */
	int release_depth;   /* a release that fails at once recurses */
	int release_pending; /* the timer finishes a cut-off release */

	/* the schedule's load from next.db at start (fwd_load.c) */
	struct fwd_load {
		ev_timer w;
		int active; /* keys left to read */
		int have;   /* last holds the last key read */
		struct spool_next last;
		size_t loaded, scheduled, envelopes;
		double started;
		long wmin, wmax; /* the delay warnings in force, 0 none */
	} load;
};

static inline const struct config *
fwd_cfg(const struct forwarder *fw)
{
	return *fw->cfg;
}

struct fwd_query {
	struct delivery *d;
	int host;
	struct dns_query *q;
};

struct delivery {
	struct forwarder *fw;
	struct delivery *next, *prev;
	char id[SPOOL_ID_LEN + 1];
	struct spool_envelope *env;
	struct fwd_dest *dest;
	enum fwd_state state;
	int is_static, literal, port, tls;
	char domain[POLICY_DOMAIN_MAX + 1]; /* of the recipients */
	char host[POLICY_DOMAIN_MAX + 1];   /* static route host */

	int nrcpt;
	int *rcpt; /* indices into env->rcpt */
	struct result *res;
	int *remote;
	char (*relay)[POLICY_DOMAIN_MAX + 80]; /* per rcpt, for logs */
	char (*mta)[POLICY_DOMAIN_MAX + 1];    /* per rcpt, for bounces */

	struct dns_query *mxq;
	struct fwd_host hosts[FWD_HOSTS_MAX];
	int nhosts;
	struct fwd_query qs[FWD_HOSTS_MAX * 2];
	int nqs, outstanding;
	int order[FWD_HOSTS_MAX]; /* hosts to try, after the cut */
	int norder, oi, ai;

	int64_t started; /* when the attempt began (the schedule) */
	struct smtp_client *client;
	struct smtp_client_tx tx;
	struct result last; /* last connection-level failure */
	int connected;      /* some address answered */
	int dsn;            /* the host that took the tx offers DSN */
	int suspended;      /* deferred at once: destination dead */

	/*
	 * TLS of the host being tried, decided before its first address
	 * (fwd_host_tls) and kept for its other addresses.
	 */
	struct dns_query *tlsaq;
	int tlsa_for; /* 1 + index of the host decided, 0 none */
	enum fwd_tlsa tlsa_state;
	struct dns_tlsa *tlsa; /* usable records, data in the same block */
	int ntlsa;
	int cur_tls;          /* enum policy_tls of the current connection */
	int plain;            /* next connection without STARTTLS (tls may,
	                         after a failed handshake) */
	char tlsdesc[64];     /* of the connection that carried the tx */
	double t_send, setup; /* delays=: tx start, connection setup */
	int conn_use;         /* conn_use=: tx number on the connection */

	/* MTA-STS policy of the recipient domain (tls mta-sts, route mx) */
	int sts_done;
	struct dns_query *stsq;
	struct mtasts_fetch *stsf;
	char sts_id[MTASTS_ID_MAX + 1];
	enum mtasts_mode sts_mode; /* NONE: no policy in force */
	struct mtasts_policy sts;
};

#define FWD_SUSPENDED_TEXT "delivery temporarily suspended: "
/* schedule entry flag: a pending recipient was deferred by a
 * connection-level failure (SPOOL_RCPT_F_CONN) */
#define FWD_SCHED_CONN 0x01

/* forward.c: the queue, destinations and their FIFOs */
int fwd_init(struct forwarder *fw);
void fwd_shutdown(struct forwarder *fw);
void fwd_run(struct forwarder *fw);
void fwd_queued(struct forwarder *fw, const struct spool_envelope *e);
void fwd_presuspend(struct forwarder *fw, struct spool_envelope *e);
int fwd_domain_suspended(struct forwarder *fw, const struct policy_domain *pd,
                         char *why, size_t whylen);
int64_t fwd_now(const struct forwarder *fw);
const char *fwd_rcpt_domain(const char *addr);
uint32_t fwd_domain_tag(const char *domain);
unsigned fwd_jitter_seed(const char *id);
struct fwd_dest *fwd_dest_find(struct forwarder *fw, const char *key);
long fwd_lifetime(const struct forwarder *fw, const struct spool_envelope *e);
int fwd_msg_inflight(const struct forwarder *fw, const char *id);
void fwd_wait_release_all(struct forwarder *fw);
void fwd_reschedule(struct forwarder *fw, const struct spool_envelope *e);
int fwd_suspended(const struct forwarder *fw, const struct fwd_dest *dest,
                  int own);
void fwd_dest_dead(struct forwarder *fw, struct fwd_dest *dest,
                   const char *why);
void fwd_done(struct delivery *d, struct smtp_client *reusable);
void fwd_arm(struct forwarder *fw);

/* fwd_route.c: the route of a recipient, the hosts of a delivery */
int fwd_route(const struct forwarder *fw, const struct spool_envelope *e, int i,
              char *key, size_t keylen, struct delivery *d, struct result *r);
int fwd_is_own_addr(const struct forwarder *fw,
                    const struct sockaddr_storage *ss, int port);
void fwd_hosts_ready(struct delivery *d);
void fwd_route_start(struct delivery *d);

/* fwd_tls.c: the TLS policy of the host being tried */
int fwd_host_tls(struct delivery *d);
void fwd_sts_start(struct delivery *d);

/* fwd_session.c: one delivery */
const char *fwd_state_name(enum fwd_state s);
void fwd_session_to(struct delivery *d, enum fwd_state next);
void fwd_start(struct forwarder *fw, struct spool_envelope *e, const int *idx,
               int n, struct fwd_dest *dest);
void fwd_try_next(struct delivery *d);
void fwd_fail_route(struct delivery *d, const struct result *r);
void fwd_delivery_free(struct delivery *d);

/* fwd_result.c: replies into the spool, logs, bounces */
void fwd_results(struct delivery *d);
void fwd_commit(struct forwarder *fw, struct spool_envelope *e,
                struct bounce_item *it, int nit);
int fwd_expired(const struct forwarder *fw, const struct spool_envelope *e,
                int64_t now);
void fwd_expire_now(struct forwarder *fw, struct spool_envelope *e,
                    const char *why);
void fwd_log(const struct forwarder *fw, const struct spool_envelope *e, int i,
             const char *relay, const struct result *r, const char *status,
             int remote);

/* fwd_ops.c: operator commands */
int fwd_flush_match(struct forwarder *fw, const char *domain, const char *key,
                    int conn_only);
int fwd_flush_id(struct forwarder *fw, const char *id, int requeue);
int fwd_hold(struct forwarder *fw, const char *id_or_domain, int hold);
int fwd_delete(struct forwarder *fw, const char *id);
int fwd_bounce(struct forwarder *fw, const char *id);

#endif
