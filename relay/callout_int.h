/*
 * callout_int.h - what callout.c (destinations, questions, scheduling,
 * the public calls of callout.h) and callout_conn.c (one connection's
 * dialogue with a primary) share.  Not for other modules: they use
 * callout.h.
 *
 * Ownership: a destination lives until exit; a question is freed by
 * callout_q_answer after its waiters are told; a connection frees
 * itself (callout_conn_fail, QUIT, timeout) and then kicks its
 * destination so waiting questions get the next connection.
 */
#ifndef BACKMX_CALLOUT_INT_H
#define BACKMX_CALLOUT_INT_H

#include <sys/socket.h>
#include <openssl/ssl.h>

#include "backmxd.h"
#include "callout.h"
#include "dns.h"

#define CALLOUT_HOSTS_MAX 4
#define CALLOUT_IN_MAX 8192
#define CALLOUT_RCPTS_PER_TX 20
#define CALLOUT_HEALTH_FRESH 60. /* a yes/no of the primary, seconds */

struct callout_conn;
struct callout_q;
struct callout_dest;

struct callout_req {
	struct callout_req *next;
	struct callout_q *q;
	callout_cb cb;
	void *arg;
};

/* one question: an address (or a probe) with everybody waiting for it */
struct callout_q {
	struct callout_q *next;  /* in dest->queue or dest->all */
	struct callout_q *qnext; /* waiting for a connection */
	struct callout_dest *dest;
	char address[POLICY_PATH_MAX + 8]; /* "" = probe */
	struct callout_req *reqs;
	struct callout_conn *conn; /* asking it now, or NULL */
	ev_timer deadline;
	int queued;
};

struct callout_dest {
	struct callout_dest *next;
	char key[POLICY_DOMAIN_MAX + 40];
	char domain[POLICY_DOMAIN_MAX + 1];
	int is_static, literal, port, tls;
	char host[POLICY_DOMAIN_MAX + 1];
	struct callout_q *all;            /* every open question */
	struct callout_q *qhead, **qtail; /* waiting for a connection */
	int nconn;
	int nsetup;    /* connections before their MAIL */
	double window; /* rate: start of the minute */
	int window_count;
	ev_timer retry; /* rate limited: try again */
	double dead_until;
	char dead_why[200];
	double last_ok, last_fail; /* the primary answered / did not */
	double last_try;           /* the once-a-minute try while dead */
	int partial;               /* only a key yet (the forwarder's) */
};

enum conn_state {
	C_RESOLVE,
	C_CONNECT,
	C_BANNER,
	C_EHLO,
	C_HELO,
	C_STARTTLS,
	C_TLS,
	C_MAIL,
	C_RCPT,
	C_RSET,
	C_QUIT,
};

struct callout_conn {
	struct callout_dest *dest;
	enum conn_state state;
	int fd;
	ev_io io;
	ev_timer timer;
	SSL *ssl;
	int tls_on, tls_tried, want;
	char in[CALLOUT_IN_MAX];
	size_t inlen;
	struct callout_q *cur; /* the question of the RCPT in flight */
	int ntx;               /* RCPTs in this transaction */
	int probe_only;
	int setup; /* counted in dest->nsetup */
	/* where to connect */
	char names[CALLOUT_HOSTS_MAX][POLICY_DOMAIN_MAX + 1];
	int nnames, ni;
	struct sockaddr_storage addr;
	struct dns_query *dq;
	char peer[POLICY_DOMAIN_MAX + 8];
	char tls_desc[64]; /* "TLSv1.3 verified"; "" in clear */
	int starttls_offered;
};

extern callout_store_fn callout_store_hook;

/* callout.c */
double callout_now(void);
/* callout_dest_kick - open connections for waiting questions, within limits */
void callout_dest_kick(struct callout_dest *d);
/* callout_dest_dead - nobody answered: suspend as the forwarder does */
void callout_dest_dead(struct callout_dest *d, const char *why);
/* callout_dest_fail_queue - every queued question of d gets r */
void callout_dest_fail_queue(struct callout_dest *d, const struct result *r);
/* callout_q_answer - tell every waiter, free the question */
void callout_q_answer(struct callout_q *q, const struct result *r);
/* callout_q_take - the next question waiting for a connection, or NULL */
struct callout_q *callout_q_take(struct callout_dest *d);

/* callout_conn.c */
/* callout_conn_new - a connection for d's queue; NULL when out of memory */
struct callout_conn *callout_conn_new(struct callout_dest *d);
/* callout_conn_fail - answer c's question 4xx (dead: the whole queue, and
 * suspend d), free c */
void callout_conn_fail(struct callout_conn *c, int dead, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
