/*
 * milter.h - the Sendmail milter protocol (version 6, as Postfix speaks
 * it), client side, on the loop.
 *
 * One milter connection per configured milter for the whole SMTP
 * session (milter_session_new at the client's connect, freed with a
 * QUIT at its end).  Each event goes to the milters, in order, at its
 * stage: connect before the banner, HELO/EHLO, MAIL, each RCPT, DATA
 * (milter_stage, the milter's reply is the command's reply), then at the
 * end of data the header, end of header, body chunks and end of message
 * (milter_message, with the modifications).  SMFIC_ABORT ends a
 * transaction that did not reach the end of message (milter_tx_end).
 * Steps a milter asked to skip (SMFIP_NO*) are not sent, replies it will
 * not give (SMFIP_NR*) are not waited for; each reply is bounded by
 * milter_timeout.  A milter that is down, slow or speaks garbage is dead
 * for the rest of the session and gets milter_default_action at every
 * later stage.  The header and body edits of one milter are applied
 * before the next one sees the message.  Each milter's time and outcome
 * per transaction go to the log and to milter_metrics.c.
 *
 * The pure packet codec (milter_proto.c) is shared with the fuzz target.
 */
#ifndef BACKMX_MILTER_H
#define BACKMX_MILTER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#define MILTER_PACKET_MAX (1024 * 1024) /* a reply larger is garbage */
#define MILTER_CHUNK 65535

/* verdicts, worst last */
enum milter_verdict {
	MILTER_CONTINUE,   /* deliver (with the modifications) */
	MILTER_DISCARD,    /* 250 to the client, then drop it */
	MILTER_QUARANTINE, /* deliver into the spool, held */
	MILTER_TEMPFAIL,   /* 4xx */
	MILTER_REJECT,     /* 5xx */
};

enum milter_mod_kind {
	MILTER_MOD_ADDHDR, /* append name: value */
	MILTER_MOD_INSHDR, /* insert at index (0 = first) */
	MILTER_MOD_CHGHDR, /* index-th (1-based) name: value; "" deletes */
	MILTER_MOD_ADDRCPT,
	MILTER_MOD_DELRCPT,
};

struct milter_mod {
	enum milter_mod_kind kind;
	uint32_t index;
	char *name; /* header name, or the recipient */
	char *value;
	struct milter_mod *next;
};

struct milter_result {
	enum milter_verdict verdict;
	char reply[512]; /* the client's reply for TEMPFAIL/REJECT */
	char why[256];   /* log text: which milter said what */
	char quarantine[256];
	struct milter_mod *mods; /* in order received */
	FILE *body;              /* replaced body (CRLF text) or NULL */
	FILE *message;           /* the message with the header/body edits of
	                            the milters applied, or NULL: unchanged */
	int chgfrom;             /* a milter changed the envelope sender */
	char sender[520];        /* ... to this (no angle brackets) */
};

/* the message for milter_message; all strings owned by the caller */
struct milter_msg {
	const char *queue_id;
	const char *sender;
	FILE *data; /* the message as received (CRLF), rewound */
};

/* the client, at milter_session_new; strings are copied */
struct milter_client {
	const char *client_addr, *client_name;
	int client_port, client_family; /* AF_INET / AF_INET6 */
};

/* the stages milter_stage runs */
enum milter_stage {
	MILTER_ST_CONNECT = 1, /* arg NULL */
	MILTER_ST_HELO,        /* arg: the HELO/EHLO name */
	MILTER_ST_MAIL,        /* arg: the sender, no angle brackets */
	MILTER_ST_RCPT,        /* arg: the recipient */
	MILTER_ST_DATA,        /* arg NULL */
};

/* a stage's answer */
struct milter_reply {
	/* CONTINUE: go on (a milter may have accepted); DISCARD: go on, the
	 * message is dropped at its end; TEMPFAIL/REJECT: refuse the
	 * command (at RCPT that recipient only) with reply */
	enum milter_verdict verdict;
	char reply[512];
	char why[256]; /* log text: which milter said what */
	int close;     /* a 421: close the session after the reply */
	int custom;    /* the text is the milter's (SMFIR_REPLYCODE) */
};

struct milter_sess;
typedef void (*milter_reply_cb)(void *arg, const struct milter_reply *r);
typedef void (*milter_cb)(void *arg, struct milter_result *r);

/* milter_session_new - connect to every milter; NULL when none is
 * configured (or no memory: the caller refuses the session) */
struct milter_sess *milter_session_new(const struct milter_client *c);
/* milter_session_tls - the TLS macros for the next HELO */
void milter_session_tls(struct milter_sess *, const char *tls_version);
/*
 * milter_stage - the event to every milter in order.  0: answered now,
 * *out filled, cb not called; 1: pending, cb(arg, reply) later (never
 * inside this call).  The caller reads no command meanwhile.
 */
int milter_stage(struct milter_sess *, enum milter_stage, const char *arg,
                 milter_reply_cb cb, void *cbarg, struct milter_reply *out);
/*
 * milter_message - the end of data: the message to every milter in order
 * (DATA if not sent yet, header, end of header, body, end of message);
 * 0 and cb(arg, result) later, never inside this call; -1 no memory.
 */
int milter_message(struct milter_sess *, const struct milter_msg *m,
                   milter_cb cb, void *arg);
/* milter_tx_end - the transaction is over (RSET, HELO, the message
 * answered, refused): SMFIC_ABORT to the milters that are inside it; a
 * pending milter_message is cancelled (its callback never runs) */
void milter_tx_end(struct milter_sess *);
/* milter_session_free - SMFIC_QUIT to each, close; no callback runs */
void milter_session_free(struct milter_sess *);
void milter_result_free(struct milter_result *r);

/* codec (milter_proto.c) */
/*
 * milter_packet_parse - one packet (u32 length, command octet, data) at
 * buf.  Returns the octets it spans (> 0) with *cmd, *data, *datalen
 * set; 0 when more are needed; -1 when malformed (length 0 or over
 * MILTER_PACKET_MAX).
 */
int milter_packet_parse(const unsigned char *buf, size_t len, char *cmd,
                        const unsigned char **data, size_t *datalen);
/*
 * milter_strings - split data into n NUL-terminated strings; -1 unless
 * exactly n are there (the last one terminated too).
 */
int milter_strings(const unsigned char *data, size_t len, const char **out,
                   int n);
/* milter_replycode - "NNN X.Y.Z text" valid for the client: 4xx/5xx,
 * printable; writes a sanitized copy; -1 if not usable */
int milter_replycode(const unsigned char *data, size_t len, char *out,
                     size_t outlen);
/* milter_reply_text - the SMTP reply of a reject ('r'), tempfail ('t')
 * or replycode ('y', data: milter_replycode) answer; -1 if not usable */
int milter_reply_text(int cmd, const unsigned char *data, size_t len, char *out,
                      size_t outlen);

struct spool_writer;
/*
 * milter_apply - append the message from data (rewound here) to w with
 * the header modifications of res applied and the body replaced when a
 * milter replaced it.  0, or -1 when the writer failed.
 */
int milter_apply(const struct milter_result *res, FILE *data,
                 struct spool_writer *w, uint64_t *size);
/* milter_apply_file - the same into a new temporary file, rewound;
 * NULL when it could not be written */
FILE *milter_apply_file(const struct milter_result *res, FILE *data);

/* milter_metrics.c - per milter (by its spec): one conversation's
 * wait in seconds and its outcome ("accepted", "rejected", "tempfailed",
 * "discarded", "quarantined", "failed"); the Prometheus families */
struct json_buf;
void milter_metrics_record(const char *spec, double seconds,
                           const char *outcome);
void milter_metrics_page(struct json_buf *b);
#endif
