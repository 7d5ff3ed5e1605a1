/*
 * client.h - outbound SMTP client: one connection to one address, driven
 * by queue.c.  Connect (connect_timeout), 220, EHLO (HELO fallback),
 * capabilities, then transactions: MAIL (SIZE, BODY, SMTPUTF8, RET/ENVID
 * when DSN is offered), RCPTs (NOTIFY/ORCPT when offered; pipelined when
 * PIPELINING is offered, replies counted), DATA, the body streamed from
 * the spool dot-stuffed with CRLF-only line ends, per-recipient results;
 * RSET between transactions; QUIT.
 *
 * Ownership: queue.c creates a client with client_new() and ends it with
 * client_free() (abort) or client_quit() (polite close; the client frees
 * itself and never calls back).  The callback is the last thing a client
 * event handler does, so the owner may free or reuse the client there.
 * A transaction's envelope and arrays belong to the caller until its
 * callback.
 */
#ifndef BACKMX_CLIENT_H
#define BACKMX_CLIENT_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "policy.h"
#include "spool.h"

/* ------------------------------------------------------------------ */
/* Reply parser (pure, fuzzed) */

#define CLIENT_LINE_MAX 512	/* RFC 5321 4.5.3.1.5, with CRLF */
#define CLIENT_LINES_MAX 100	/* more lines than this: malformed */

#define CLIENT_CAP_PIPELINING 0x01
#define CLIENT_CAP_SIZE 0x02
#define CLIENT_CAP_8BITMIME 0x04
#define CLIENT_CAP_DSN 0x08
#define CLIENT_CAP_SMTPUTF8 0x10
#define CLIENT_CAP_STARTTLS 0x20

struct client_reply {
	int code;		/* 200..599 */
	int nlines;
	char enh[12];		/* "4.4.1" from the first line, or "" */
	char text[512];		/* lines joined by ' ', printable ASCII */
	int caps;		/* CLIENT_CAP_* from lines 2.. (EHLO) */
	uint64_t size;		/* SIZE argument, 0 when none */
};

/*
 * client_reply_parse - one complete reply at the start of buf: returns
 * the octets it spans (> 0), 0 when more input is needed (never once a
 * line is longer than CLIENT_LINE_MAX), -1 when the input is not a valid
 * reply (*why says why).  Lines end in CRLF (bare LF tolerated); every
 * line of a reply carries the same code.
 */
int client_reply_parse(const char *buf, size_t len, struct client_reply *out,
		       const char **why);
/* client_reply_result - the reply as a struct result */
void client_reply_result(const struct client_reply *rep, struct result *r);

/*
 * client_body_encode - the DATA transformation, streaming: CR, LF and
 * CRLF all become CRLF; a '.' starting a line is doubled.  *state starts
 * at 0 and is carried between calls; out must hold 2 * len + 1 octets.
 * client_body_end - ends the last line if needed and adds ".\r\n" (out
 * holds 5).  Both return the octets written.
 */
size_t client_body_encode(int *state, const char *in, size_t len, char *out);
size_t client_body_end(int *state, char *out);

/* ------------------------------------------------------------------ */
/* Client */

struct client;

enum client_event {
	CLIENT_READY,	/* connected, EHLO done: client_send may be called */
	CLIENT_FAILED,	/* connection unusable and closed; r says why */
	CLIENT_DONE,	/* transaction over; per-recipient results filled */
};

struct dns_tlsa;

struct client_params {
	const struct config *cfg;	/* tls_ca; read at once */
	const char *helo;		/* our hostname */
	const char *mxhost;		/* name for logs */
	struct sockaddr_storage addr;	/* with the port set */
	int tls;			/* enum policy_tls */
	int no_starttls;		/* `may` retry in clear after a
					   failed handshake */
	const struct dns_tlsa *tlsa;	/* DNSSEC-secure TLSA for dane */
	int ntlsa;
	long connect_timeout, command_timeout, data_timeout;
};

struct client_tx {
	struct spool *spool;
	const struct spool_envelope *env;
	int nrcpt;
	const int *rcpt;	/* indices into env->rcpt */
	struct result *res;	/* nrcpt results, filled by the client */
	int *remote;		/* nrcpt flags: 1 when res[i] came from the
				   server, 0 when local */
};

/* cb(arg, c, event, r): r is the last reply or the local failure */
typedef void (*client_cb)(void *arg, struct client *c, int event,
			  const struct result *r);

struct client *client_new(struct ev_loop *loop, const struct client_params *p,
			  client_cb cb, void *arg);
/*
 * client_send - start a transaction on a ready client (RSET first when
 * it is not the first).  Returns 0 (a CLIENT_DONE or CLIENT_FAILED
 * callback follows), or -1 when this server cannot take the message at
 * all (8BITMIME, SMTPUTF8, SIZE): tx->res filled, no callback.
 */
int client_send(struct client *c, struct client_tx *tx);
int client_usable(const struct client *c);
void client_set_cb(struct client *c, client_cb cb, void *arg);
/* client_relay - "host[addr]:port" for logs */
const char *client_relay(const struct client *c);
int client_caps(const struct client *c);
/* client_tls - "TLSv1.3 verified" etc., or NULL when in clear */
const char *client_tls(const struct client *c);
/* client_tls_failed - the failure was a broken STARTTLS handshake */
int client_tls_failed(const struct client *c);
void client_quit(struct client *c);
void client_free(struct client *c);

#endif
