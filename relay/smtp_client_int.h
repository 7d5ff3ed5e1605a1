/*
 * smtp_client_int.h - what the files of the outbound client share and
 * nobody else sees: the connection object, its states, and the helpers
 * smtp_client.c (connection, greeting, EHLO, STARTTLS, I/O) and
 * smtp_client_tx.c (one transaction: MAIL, RCPT, DATA, body, replies)
 * call across.  Everyone else uses smtp_client.h.
 */
#ifndef BACKMX_SMTP_CLIENT_INT_H
#define BACKMX_SMTP_CLIENT_INT_H

#include <ev.h>
#include <netinet/in.h>
#include <openssl/ssl.h>

#include "dns.h"
#include "smtp_client.h"

/* Client state machine */

enum client_state {
	C_CONNECT,
	C_GREETING,
	C_EHLO,
	C_HELO,
	C_STARTTLS,
	C_HANDSHAKE,
	C_IDLE,
	C_TX,   /* waiting for replies to RSET/MAIL/RCPT/DATA */
	C_BODY, /* sending the body */
	C_DOT,  /* waiting for the reply to the final dot */
	C_QUIT,
	C_DEAD,
};

enum cmd_kind { CMD_RSET, CMD_MAIL, CMD_RCPT, CMD_DATA };

#define IBUF_SIZE (SMTP_REPLY_LINE_MAX * SMTP_REPLY_LINES_MAX + 1024)
#define OBUF_LOW (64 * 1024) /* refill the body below this */

struct smtp_client {
	struct ev_loop *loop;
	enum client_state state;
	int fd;
	ev_io io;
	ev_timer timer;
	int io_events;
	SSL *ssl;
	int ssl_want; /* TLS_WANT_* from the last SSL call */
	int dane_armed;
	char tls_desc[64];
	int tls_policy;
	struct dns_tlsa *tlsa; /* DANE: our copy of the records */
	int ntlsa;
	int no_starttls; /* MAY retried in clear */
	int tls_failed;  /* the connect phase failed in TLS */
	long connect_timeout, command_timeout, data_timeout;
	char helo[POLICY_DOMAIN_MAX + 1];
	char mxhost[POLICY_DOMAIN_MAX + 1];
	char relay[POLICY_DOMAIN_MAX + 80];
	char addrtext[INET6_ADDRSTRLEN];
	int port;
	struct sockaddr_storage addr;
	const struct config *cfg; /* only during smtp_client_new */
	char *tls_ca;             /* copy for outbound verification */

	int caps;
	unsigned long long max_size;
	int ehlo_done_tls; /* EHLO after STARTTLS done */
	int need_rset;

	char ibuf[IBUF_SIZE];
	size_t ilen;
	char rbuf[IBUF_SIZE]; /* the reply being handled */
	char *obuf;
	size_t olen, ooff, ocap;

	/* transaction */
	struct smtp_client_tx *tx;
	enum cmd_kind *cmds;
	int ncmd, nsent, nreplied;
	int rcpt_base; /* index of the first RCPT in cmds */
	int accepted;  /* RCPTs accepted */
	int mail_failed;
	struct result mail_res;
	int discard_dot; /* sent a lone dot: its reply means nothing */
	uint32_t chunk;
	int body_state;
	int body_done;
	const char *phase; /* for "while ..." texts */

	smtp_client_cb cb;
	void *arg;
	ev_tstamp t_new, t_ready; /* for delays=: connection setup */
	int uses;                 /* transactions started (conn_use=) */
};

/* smtp_client_watch - EV_READ, and EV_WRITE while output or TLS waits */
void smtp_client_watch(struct smtp_client *c);
/* smtp_client_timeout - (re)arm the one timer: secs, or 300 when unset */
void smtp_client_timeout(struct smtp_client *c, long secs);
/* smtp_client_out_reserve - room for more octets in obuf; 0 or -1 */
int smtp_client_out_reserve(struct smtp_client *c, size_t more);
/* smtp_client_printf - one command line, CRLF added, queued in obuf */
void smtp_client_printf(struct smtp_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/*
 * smtp_client_fail - the connection is over: close it, give every
 * recipient without a final answer the failure, tell the owner (the last
 * thing done with c)
 */
void smtp_client_fail(struct smtp_client *c, const char *enh, const char *fmt,
                      ...) __attribute__((format(printf, 3, 4)));

/* smtp_client_tx.c */
/*
 * smtp_client_tx_reply - a reply in state C_TX or C_DOT (r is it as a
 * result); returns 1 when the owner was called back (c may be gone)
 */
int smtp_client_tx_reply(struct smtp_client *c, const struct smtp_reply *rep,
                         const struct result *r);
/* smtp_client_body_fill - move body chunks into obuf; -1: spool error */
int smtp_client_body_fill(struct smtp_client *c);

#endif
