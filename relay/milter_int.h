/*
 * milter_int.h - what milter.c (the session, its connections and the
 * command stages) and milter_msg.c (the message stage: data, header, end
 * of header, body, end of message, the modifications) share, and nobody
 * else.
 *
 * One struct milter_sess per SMTP session; in it one struct milter_conn
 * per configured milter, open from the client's connect to its QUIT.
 * Each connection has an explicit state (enum mc_state); the session runs
 * one stage at a time over its milters in order (ms->stage, ms->cur).
 */
#ifndef BACKMX_MILTER_INT_H
#define BACKMX_MILTER_INT_H

#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "backmxd.h"
#include "milter.h"

/* protocol constants (libmilter's mfdef.h values) */
#define SMFIF_ADDHDRS 0x01
#define SMFIF_CHGBODY 0x02
#define SMFIF_ADDRCPT 0x04
#define SMFIF_DELRCPT 0x08
#define SMFIF_CHGHDRS 0x10
#define SMFIF_QUARANTINE 0x20
#define SMFIF_CHGFROM 0x40
#define SMFIF_ADDRCPT_PAR 0x80
#define MILTER_ACTIONS 0xff

#define SMFIP_NOCONNECT 0x1
#define SMFIP_NOHELO 0x2
#define SMFIP_NOMAIL 0x4
#define SMFIP_NORCPT 0x8
#define SMFIP_NOBODY 0x10
#define SMFIP_NOHDRS 0x20
#define SMFIP_NOEOH 0x40
#define SMFIP_NR_HDR 0x80
#define SMFIP_NOUNKNOWN 0x100
#define SMFIP_NODATA 0x200
#define SMFIP_SKIP 0x400
#define SMFIP_RCPT_REJ 0x800
#define SMFIP_NR_CONN 0x1000
#define SMFIP_NR_HELO 0x2000
#define SMFIP_NR_MAIL 0x4000
#define SMFIP_NR_RCPT 0x8000
#define SMFIP_NR_DATA 0x10000
#define SMFIP_NR_EOH 0x40000
#define SMFIP_NR_BODY 0x80000
#define SMFIP_HDR_LEADSPC 0x100000
/* what we offer: every step can be skipped, no reply is owed for any
 * (libmilter refuses a negotiation that does not offer a bit its milter
 * asks for).  Unknown commands are never sent; nor are recipients an
 * earlier check refused, although SMFIP_RCPT_REJ is offered */
#define MILTER_PROTOCOL 0x1fffff

/* what one hostile milter can make us hold: SMFIR_PROGRESS extends one
 * reply's wait, never beyond MILTER_PROGRESS_FACTOR x milter_timeout; at
 * most MILTER_MODS_MAX header/recipient modifications of MILTER_MODS_LEN
 * octets in all per message, a replacement body of at most max_size */
#define MILTER_PROGRESS_FACTOR 10
#define MILTER_MODS_MAX 1000
#define MILTER_MODS_LEN (1024 * 1024)

/* the state of one milter connection */
enum mc_state {
	MC_NEG,   /* connecting, SMFIC_OPTNEG sent, its answer owed */
	MC_READY, /* negotiated: takes the session's events */
	MC_DONE,  /* accepted the whole connection (SMFIS_ACCEPT at
	             connect or HELO): sent nothing more but QUIT */
	MC_DEAD,  /* down, slow or garbage: milter_default_action */
};

/* the stage a session is in */
enum ms_stage {
	ST_IDLE,
	ST_CONNECT = MILTER_ST_CONNECT,
	ST_HELO = MILTER_ST_HELO,
	ST_MAIL = MILTER_ST_MAIL,
	ST_RCPT = MILTER_ST_RCPT,
	ST_DATA = MILTER_ST_DATA,
	ST_MESSAGE, /* milter_msg.c */
};

/* the message stage's steps, per milter */
enum mm_step { MM_DATA, MM_HEADER, MM_EOH, MM_BODY, MM_EOM, MM_DONE };

struct milter_sess;

struct milter_conn {
	struct milter_sess *ms;
	int idx;
	char spec[160]; /* copied: a reload may free the config */
	struct sockaddr_storage ss;
	socklen_t sslen;
	enum mc_state state;
	int fd;
	ev_io rio, wio;
	ev_timer timer;
	uint32_t actions, proto; /* negotiated */
	int waiting;             /* a reply is owed */
	double sent_at;          /* ... since */
	double wait;             /* this transaction's waits, seconds */
	/* this transaction */
	int in_tx;         /* MAIL sent, end of message not answered: ABORT */
	int data_sent;     /* SMFIC_DATA sent */
	int tx_done;       /* accepted / discarded the message: no more of it */
	int accounted;     /* logged and counted for this transaction */
	int nmods;         /* this message's modifications ... */
	size_t mods_len;   /* ... their octets */
	uint64_t body_len; /* its replacement body's octets */
	const char *bad;   /* why its last reply was refused */
	/* a 4xx at CONNECT: every MAIL of the session gets this */
	char refused[512];
	unsigned char *out;
	size_t outlen, outcap;
	unsigned char *in;
	size_t inlen, incap;
};

struct milter_hdr {
	char *name, *value;
};

/* the message stage's run (milter_msg.c) */
struct milter_msgrun {
	struct milter_msg m;
	char sender[520];
	milter_cb cb;
	void *arg;
	struct milter_result res;
	struct milter_hdr *hdrs; /* the message's header, parsed once */
	int nhdrs;
	long body_off;
	enum mm_step step;
	int sub; /* header index */
	int body_done, skip_body;
	enum milter_verdict own; /* what this milter said */
	int begun;               /* this milter's part was started */
	FILE *own_data;          /* the message as edited so far */
	ev_timer kick;           /* starts the stage from the loop */
};

struct milter_sess {
	struct milter_conn *c;
	int n;
	/* the client, copied */
	char client_addr[64], client_name[256], helo[256];
	int client_port, client_family;
	char tls_version[96];
	char queue_id[40];
	/* the stage being run */
	enum ms_stage stage;
	int cur;          /* the milter being asked */
	char arg[600];    /* <path> or the HELO name */
	char argraw[600]; /* the macro value ({mail_addr}, {rcpt_addr}) */
	milter_reply_cb cb;
	void *cbarg;
	struct milter_reply rep;
	int discard; /* a milter discarded the message at MAIL..DATA */
	char discard_why[128];
	struct milter_msgrun *mr; /* the message stage, when running */
};

/* milter.c */
int milter_put(struct milter_conn *c, char cmd, const void *p1, size_t n1,
               const void *p2, size_t n2);
/* milter_macros - every macro we have for the stage's command octet */
void milter_macros(struct milter_conn *c, char stage);
/* milter_send - the queued packets out; then a reply is owed (or not) */
void milter_send(struct milter_conn *c, int want_reply);
/* milter_conn_fail - down, slow, garbage: the connection is dead; the
 * stage being run goes on with milter_default_action */
void milter_conn_fail(struct milter_conn *c, const char *why);
/* milter_default - the default action as a verdict and reply into r;
 * 0 when it is accept (the milter is skipped) */
int milter_default(struct milter_reply *r, const char *spec, const char *why);
/* milter_account - log line and metrics for one milter's outcome */
void milter_account(struct milter_conn *c, const char *queue_id,
                    const char *outcome);
const char *milter_verdict_outcome(enum milter_verdict v);

/* milter_msg.c */
/* milter_msg_next - run the message stage on from ms->cur */
void milter_msg_next(struct milter_sess *ms);
/* milter_msg_reply - a reply packet during the message stage: 1 the
 * step is answered, 0 read on, -1 garbage */
int milter_msg_reply(struct milter_conn *c, char cmd, const unsigned char *d,
                     size_t dl);
/* milter_msg_failed - the milter being asked died */
void milter_msg_failed(struct milter_conn *c, const char *why);
void milter_msg_free(struct milter_msgrun *mr);

#endif
