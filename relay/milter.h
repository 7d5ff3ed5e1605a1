/*
 * milter.h - the Sendmail milter protocol (version 6, as Postfix speaks
 * it), client side, on the loop.
 *
 * smtpd.c calls milter_run() at the end of DATA/BDAT, before the spool
 * commit, when `milter` is configured: every milter in order gets one
 * conversation for the message (OPTNEG, connect, helo, mail, each rcpt,
 * data, headers, end of headers, body chunks, end of message, with the
 * macros), non-blocking, each reply bounded by milter_timeout.  The
 * callback gets the verdict and the modifications to apply; a milter
 * that is down, slow or speaks garbage gets milter_default_action.
 * Milters are chained: the header and body edits of one are applied
 * before the next one is asked (it sees the message as edited, and the
 * sender as changed by SMFIR_CHGFROM).  Each milter's time and outcome
 * go to the log and to milter_metrics.c.
 *
 * The pure packet codec (milter_proto.c) is shared with the fuzz target.
 */
#ifndef BACKMX_MILTER_H
#define BACKMX_MILTER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#define MILTER_PACKET_MAX (1024 * 1024)	/* a reply larger is garbage */
#define MILTER_CHUNK 65535

/* verdicts, worst last */
enum milter_verdict {
	MILTER_CONTINUE,	/* deliver (with the modifications) */
	MILTER_DISCARD,		/* 250 to the client, then drop it */
	MILTER_QUARANTINE,	/* deliver into the spool, held */
	MILTER_TEMPFAIL,	/* 4xx */
	MILTER_REJECT,		/* 5xx */
};

enum milter_mod_kind {
	MILTER_MOD_ADDHDR,	/* append name: value */
	MILTER_MOD_INSHDR,	/* insert at index (0 = first) */
	MILTER_MOD_CHGHDR,	/* index-th (1-based) name: value; "" deletes */
	MILTER_MOD_ADDRCPT,
	MILTER_MOD_DELRCPT,
};

struct milter_mod {
	enum milter_mod_kind kind;
	uint32_t index;
	char *name;		/* header name, or the recipient */
	char *value;
	struct milter_mod *next;
};

struct milter_result {
	enum milter_verdict verdict;
	char reply[512];	/* the client's reply for TEMPFAIL/REJECT */
	char why[256];		/* log text: which milter said what */
	char quarantine[256];
	struct milter_mod *mods;	/* in order received */
	FILE *body;		/* replaced body (CRLF text) or NULL */
	int *rcpt_rejected;	/* per recipient: a milter refused it */
	FILE *message;		/* the message with the header/body edits of
				   the milters applied, or NULL: unchanged */
	int chgfrom;		/* a milter changed the envelope sender */
	char sender[520];	/* ... to this (no angle brackets) */
};

/* what the milters see; all strings owned by the caller */
struct milter_msg {
	const char *client_addr, *client_name, *helo, *queue_id;
	int client_port, client_family;	/* AF_INET / AF_INET6 */
	const char *sender;
	const char *const *rcpt;
	int nrcpt;
	const char *tls_version, *cipher;
	FILE *data;		/* the message as received (CRLF), rewound */
};

struct milter_run;
typedef void (*milter_cb)(void *arg, struct milter_result *r);

/* milter_run - NULL (no callback) when no milter is configured */
struct milter_run *milter_run(const struct milter_msg *m, milter_cb cb,
			      void *arg);
void milter_cancel(struct milter_run *r);
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
