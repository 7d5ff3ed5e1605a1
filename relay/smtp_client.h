/*
 * smtp_client.h - the outbound ESMTP client: one connection to one
 * address, driven by fwd_session.c.  Connect, greeting, EHLO (HELO fallback),
 * STARTTLS per the domain's tls policy, then any number of transactions
 * (MAIL, RCPT..., DATA, body from the spool dot-stuffed with CRLF only,
 * final dot), each with per-recipient results, then QUIT.  The connection
 * is smtp_client.c, a transaction smtp_client_tx.c (both share
 * smtp_client_int.h), the pure reply parser and body transformation
 * smtp_reply.c.
 *
 * Ownership: fwd_session.c creates a client with smtp_client_new() and ends
 * it with smtp_client_free() (abort) or smtp_client_quit() (polite: the
 * client then closes and frees itself, and never calls back again).
 * The callback is always the last thing the client does in its event
 * handler, so the owner may free or reuse the client inside it.
 * The envelope and arrays of a transaction belong to the caller and must
 * stay valid until its callback.
 */
#ifndef BACKMX_SMTP_CLIENT_H
#define BACKMX_SMTP_CLIENT_H

#include <ev.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config.h"
#include "policy.h"
#include "spool.h"

struct dns_tlsa;

/* ------------------------------------------------------------------ */
/* Reply parser (pure, fuzzed; smtp_reply.c) */

#define SMTP_REPLY_LINE_MAX 512 /* RFC 5321 4.5.3.1.5, with CRLF */
#define SMTP_REPLY_LINES_MAX 64

struct smtp_reply {
	int code; /* 200..599 */
	int nlines;
	struct {
		size_t off; /* text after "NNN-"/"NNN " within buf */
		size_t len; /* without the line ending */
	} line[SMTP_REPLY_LINES_MAX];
};

/*
 * smtp_reply_parse - one complete reply at the start of buf: returns the
 * octets it spans (> 0), 0 when more input is needed, -1 when the input
 * is not a valid reply (why gets a short reason).  Lines end in CRLF (a
 * bare LF is tolerated on input); every line carries the same code.
 */
int smtp_reply_parse(const char *buf, size_t len, struct smtp_reply *out,
                     const char **why);
/*
 * smtp_reply_result - the reply as the one result type: code, enhanced
 * code when the first line starts with one of the same class, and the
 * text of all lines joined by spaces (non-printables replaced, bounded).
 */
void smtp_reply_result(const char *buf, const struct smtp_reply *rep,
                       struct result *r);

/* ------------------------------------------------------------------ */
/* Client */

#define SMTP_CAP_PIPELINING 0x01
#define SMTP_CAP_SIZE 0x02
#define SMTP_CAP_8BITMIME 0x04
#define SMTP_CAP_DSN 0x08
#define SMTP_CAP_SMTPUTF8 0x10
#define SMTP_CAP_STARTTLS 0x20

/* smtp_client_caps - capabilities from EHLO reply lines (pure) */
int smtp_client_caps(const char *buf, const struct smtp_reply *rep,
                     unsigned long long *size);

struct smtp_client;

struct smtp_client_params {
	const struct config *cfg;     /* timeouts, tls_ca; read at once */
	const char *helo;             /* our hostname */
	const char *mxhost;           /* name for logs, SNI, verify */
	struct sockaddr_storage addr; /* with the port set */
	int tls;                      /* enum policy_tls: MAY, ENCRYPT, VERIFY,
	                                 or DANE (then with tlsa) */
	/*
	 * tls DANE: the host's TLSA records, from DNSSEC-secure data, usages
	 * 2 and 3 only (fwd_tls.c filters).  With at least one, STARTTLS is
	 * mandatory and the peer must match them (RFC 7672 2.2); without,
	 * DANE means opportunistic TLS, as MAY.  Copied by smtp_client_new.
	 */
	const struct dns_tlsa *tlsa;
	int ntlsa;
	int no_starttls; /* MAY only: the retry in clear after a
	                    failed handshake, STARTTLS not used */
};

struct smtp_client_tx {
	struct spool *spool;
	const struct spool_envelope *env;
	int nrcpt;
	const int *rcpt;    /* indices into env->rcpt */
	struct result *res; /* nrcpt results, filled by the client */
	int *remote;        /* nrcpt flags or NULL: 1 when res[i] is
	                       the server's reply, 0 when local */
};

/*
 * cb(arg, c, r): after the connect phase (r->code 2xx: ready for
 * smtp_client_send; else the connection failed and is closed, r says
 * why with a 4xx code) and after each transaction (per-recipient results
 * in tx->res; r is the last reply or the failure).  After a failure
 * smtp_client_usable() is 0.
 */
typedef void (*smtp_client_cb)(void *arg, struct smtp_client *c,
                               const struct result *r);

struct smtp_client *smtp_client_new(struct ev_loop *loop,
                                    const struct smtp_client_params *p,
                                    smtp_client_cb cb, void *arg);
/*
 * smtp_client_send - start a transaction on a ready client.  Returns 0
 * (the callback follows), or -1 when this server cannot take the message
 * at all (SIZE, 8BITMIME, SMTPUTF8): tx->res is filled, no callback.
 */
int smtp_client_send(struct smtp_client *c, struct smtp_client_tx *tx);
int smtp_client_usable(const struct smtp_client *c);
/* smtp_client_set_cb - hand an idle client to a new owner */
void smtp_client_set_cb(struct smtp_client *c, smtp_client_cb cb, void *arg);
/* smtp_client_relay - "host[addr]:port" for logs */
const char *smtp_client_relay(const struct smtp_client *c);
/*
 * smtp_client_times - for the delivery line (delays=, conn_use=): the
 * connection setup time (connect, banner, EHLO, STARTTLS; 0 when this
 * connection carried a transaction before) and the number the next
 * transaction started on it gets (1 = first)
 */
void smtp_client_times(const struct smtp_client *c, double *setup, int *use);
/* smtp_client_tls - "TLSv1.3 verified" etc., or NULL when in clear */
const char *smtp_client_tls(const struct smtp_client *c);
/*
 * smtp_client_tls_failed - after a failed connect phase: 1 when it failed
 * in the TLS handshake or its verdict (the peer offered STARTTLS and said
 * 220), so that a MAY policy may try the same address once in clear
 */
int smtp_client_tls_failed(const struct smtp_client *c);
int smtp_client_has(const struct smtp_client *c, int cap);
void smtp_client_quit(struct smtp_client *c);
void smtp_client_free(struct smtp_client *c);

/*
 * smtp_client_body_encode - the DATA transformation, streaming: every CR,
 * LF or CRLF becomes CRLF, lines starting with '.' get one more.  *state
 * starts at 0 and is carried between calls; out must hold 3 * len + 2.
 * smtp_client_body_end writes the rest and the final ".\r\n" (out >= 5).
 * Both return the octets written.
 */
size_t smtp_client_body_encode(int *state, const char *in, size_t len,
                               char *out);
size_t smtp_client_body_end(int *state, char *out);

#endif
