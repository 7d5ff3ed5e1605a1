/*
 * smtpd_int.h - what the files of the inbound ESMTP server share, and
 * nobody else: the session and its transaction, the session states, and
 * the functions one file of the server calls in another.
 *
 *   smtpd.c         session life: accept, connect-time filters, banner,
 *                   reading, the command-line loop, group commit
 *   smtpd_cmd.c     the command table and the commands (HELO/EHLO, MAIL,
 *                   RCPT, RSET, NOOP, QUIT, VRFY, HELP, ETRN, STARTTLS)
 *   smtpd_body.c    DATA and BDAT: the message into the spool, the end of
 *                   data verdict, the spool commit
 *   smtpd_milter.c  the glue to milter.c: the message handed to the
 *                   milters, their verdict and recipient changes applied
 *   smtpd_data.c    the pure DATA reader (smtpd.h)
 *
 * A session owns its transaction (s->tx), a transaction its recipients;
 * smtpd_tx_free frees one, the session's close frees both.  Nothing here
 * frees a session: a handler marks it dead, the I/O callback that ran
 * the handler frees it (smtpd_done).
 */
#ifndef BACKMX_SMTPD_INT_H
#define BACKMX_SMTPD_INT_H

#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "backmxd.h"
#include "dnsbl.h"
#include "milter.h"
#include "policy.h"
#include "rcpt_verify.h"
#include "smtpd.h"

#define SMTPD_LINE_MAX 512 /* command line incl. CRLF */
/* MAIL and RCPT may be longer: RFC 3461 adds up to 100 (ENVID) and 500
 * (ORCPT) octets, RFC 1870 and 6531 a few more */
#define SMTPD_LINE_MAX_EXT 1024
#define SMTPD_TEXT_MAX 1000 /* text line incl. CRLF */
#define SMTPD_IN_MIN 1024
#define SMTPD_IN_MAX (64 * 1024) /* leftover after DATA, bounded */
#define SMTPD_OUT_MAX (64 * 1024)
#define SMTPD_MAX_ERRORS 20
#define SMTPD_SCRATCH (64 * 1024)
#define SMTPD_EMIT_BUF (16 * 1024)
#define SMTPD_ETRN_TRACK 64

enum smtpd_state {
	S_CMD,     /* reading commands */
	S_DATA,    /* after 354 */
	S_BDAT,    /* reading a BDAT chunk */
	S_COMMIT,  /* waiting for the group commit */
	S_TLS,     /* STARTTLS handshake */
	S_WAIT,    /* an async decision (rcpt_verify): nothing is read
	              or run until smtpd_resume */
	S_CLOSING, /* flush output, then close */
	S_FILTER,  /* waiting for a connect-time filter (DNSBL) */
};

struct smtpd_rcpt {
	char *address;
	char *orcpt;
	int notify;
	char *route;
};

struct smtpd_tx {
	char *sender;
	int body;
	int smtputf8;
	int ret;
	char *envid;
	uint64_t declared_size;
	struct smtpd_rcpt *rcpt;
	int nrcpt, rcpt_cap;
	int nrcpt_tried;

	struct spool_writer *w;
	char id[SPOOL_ID_LEN + 1];
	int spool_failed; /* writer error: reply 4xx at the end */
	enum spool_err spool_err;
	uint64_t size; /* octets the client sent */
	size_t hdrlen; /* our Received field */
	int too_big;
	struct smtpd_data data; /* DATA reader */
	int bdat;               /* BDAT used in this transaction */
	uint64_t bdat_left;     /* octets of the current chunk */
	int bdat_last;
	int bdat_discard; /* consume, then refuse */
	int bdat_silent;  /* ... already refused: no reply */
	int throwaway;    /* made only to discard a BDAT */
	int bdat_cr;      /* CR pending across chunks */
	size_t bdat_linelen;
	int bdat_flags;
	struct policy_hdrscan hs;
	char emit[SMTPD_EMIT_BUF]; /* staging for spool appends */
	size_t emitlen;
	struct spool_envelope env;  /* filled at commit, for the log */
	FILE *milter_fp;            /* the message for the milters */
	struct milter_sess *milter; /* the message stage is pending */
	int held;                   /* quarantined by a milter */
	int unmirrored;             /* peer_ack peer: no ACK in time, 451 */
};

struct smtpd_session {
	int fd;
	ev_io rio, wio;
	ev_timer timer;
	enum smtpd_state state;
	struct sockaddr_storage ss;
	char addr[INET6_ADDRSTRLEN];
	int port;
	int counted;               /* in client_limits.c counts */
	struct dnsbl_check *dnsbl; /* pending connect-time lookup */
	char helo[256];
	int esmtp; /* EHLO (not HELO) */
	int greeted;
	SSL *ssl;
	int tls;
	char tls_desc[96];
	char *in; /* command input */
	size_t inlen, incap;
	int discard_line; /* overlong command: skip to LF */
	char *out;
	size_t outlen, outcap;
	int nerrors;
	struct smtpd_tx *tx;
	struct smtpd_session *next, *prev; /* all sessions */
	struct smtpd_session *wait_next;   /* group commit list */
	int close_after_flush;
	int processing; /* inside smtpd_process */
	int dead;       /* freed at the end of the callback */
	/* RCPT waiting for rcpt_verify (S_WAIT) */
	struct rcpt_verify *rv;
	struct policy_rcpt *rv_rcpt;
	int rv_notify;
	char *rv_orcpt;
	/* the milters (smtpd_milter.c): one session for the SMTP session */
	struct milter_sess *milters;
	int milter_denied; /* 5xx at connect: 503 to all but QUIT */
	int milter_wait;   /* paused for a milter stage */
	char mh_helo[256]; /* HELO/EHLO waiting for the milters */
	int mh_esmtp;
	struct smtpd_tx *mh_tx;      /* MAIL waiting for the milters */
	struct policy_rcpt *mh_rcpt; /* RCPT waiting for the milters */
	int mh_notify;
	char *mh_orcpt;
	/* counters for the disconnect line */
	int n_ehlo, n_mail, n_rcpt, n_data, n_cmds;
};

/* smtpd.c */
/* smtpd_reply - one reply line (CRLF added) into the output buffer */
void smtpd_reply(struct smtpd_session *, const char *, ...)
    __attribute__((format(printf, 2, 3)));
/* smtpd_reply_result - "CODE ENH text" from a policy result */
void smtpd_reply_result(struct smtpd_session *, const struct result *);
void smtpd_flush(struct smtpd_session *);
/* smtpd_done - end of an I/O callback: 1 when the dead session was freed */
int smtpd_done(struct smtpd_session *);
void smtpd_close(struct smtpd_session *);
void smtpd_process(struct smtpd_session *);
void smtpd_tx_free(struct smtpd_tx *);
void smtpd_tx_reset(struct smtpd_session *);
/* smtpd_pause / smtpd_resume - hold the session for an async decision
 * (rcpt_verify, milter), run what was pipelined once it is made */
void smtpd_pause(struct smtpd_session *);
void smtpd_resume(struct smtpd_session *);
const char *smtpd_state_name(enum smtpd_state);

/* smtpd_commit.c: the group commit */
/* smtpd_commit_wait - the message is committed without sync: its 250
 * waits for the next group commit */
void smtpd_commit_wait(struct smtpd_session *);
/* smtpd_commit_init - the watchers (smtpd_init) */
void smtpd_commit_init(void);
/* smtpd_commit_step - the waiting group's flush now, on this thread
 * (the fuzz driver's loop turn) */
void smtpd_commit_step(void);
/* smtpd_commit_drain - every waiting session gets its verdict (the
 * group on the disk, then the rest); the committer thread ends
 * (shutdown) */
void smtpd_commit_drain(void);

/* smtpd_cmd.c */
/* smtpd_command - dispatch one command line (CRLF removed) */
void smtpd_command(struct smtpd_session *, char *line);
/* smtpd_tls_step - one step of the STARTTLS handshake (S_TLS) */
void smtpd_tls_step(struct smtpd_session *);
/* smtpd_hello_done - HELO/EHLO accepted: recorded, 250 (and the EHLO
 * keywords) */
void smtpd_hello_done(struct smtpd_session *, const char *name, int esmtp);
/* smtpd_mail_done - MAIL accepted: tx becomes the transaction, 250 */
void smtpd_mail_done(struct smtpd_session *, struct smtpd_tx *tx);
/* smtpd_rcpt_add_now - the recipient accepted by every check: into the
 * transaction, 250 */
void smtpd_rcpt_add_now(struct smtpd_session *, const struct policy_rcpt *,
                        int notify, const char *orcpt);

/* smtpd_body.c */
void smtpd_cmd_data(struct smtpd_session *, char *arg);
/* smtpd_data_go - DATA accepted: the spool writer, 354 */
void smtpd_data_go(struct smtpd_session *);
void smtpd_cmd_bdat(struct smtpd_session *, char *arg);
/* smtpd_data_input - octets read in S_DATA or S_BDAT; *used: consumed */
void smtpd_data_input(struct smtpd_session *, const char *p, size_t n,
                      size_t *used);
/* smtpd_tx_commit - the envelope and the spool commit, then the wait */
void smtpd_tx_commit(struct smtpd_session *);

/* smtpd.c */
/* smtpd_greet - the banner, once the connect-time filters passed */
void smtpd_greet(struct smtpd_session *);

/* smtpd_milter.c: each stage 0 when the command goes on now, 1 when it
 * was refused or waits for the milters (the handler returns) */
/* smtpd_milter_connect - open the milter session, its connect stage;
 * 0: greet now; 1: pending or refused (the callback greets) */
int smtpd_milter_connect(struct smtpd_session *);
int smtpd_milter_helo(struct smtpd_session *, const char *name, int esmtp);
/* smtpd_milter_mail - 1: tx was taken (kept pending or freed) */
int smtpd_milter_mail(struct smtpd_session *, struct smtpd_tx *tx);
int smtpd_milter_rcpt(struct smtpd_session *, const struct policy_rcpt *,
                      int notify, const char *orcpt);
int smtpd_milter_data(struct smtpd_session *);
/* smtpd_milter_start - hand the received message to the milters */
void smtpd_milter_start(struct smtpd_session *);

#endif
