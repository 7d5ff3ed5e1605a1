/*
 * control_int.h - what the parts of the control server share: the client
 * connection (control.c owns it), its output helpers, and the entry
 * points of the command files:
 *   control_queue.c  queue/hold/release/delete/bounce/flush/requeue with
 *                    filters, shape (batched jobs on the loop)
 *   control_show.c   show ID [--body]
 *   pause.c          pause/resume DOMAIN (state used by smtpd.c)
 * A command either ends the client at once (control_end_ok/_err) or sets
 * c->produce, which control.c calls whenever the client's output is
 * below CONTROL_OUT_HIGH, until it ends the client.  Job state hangs off
 * the client and is freed by control_client_free() through the _free
 * hooks below.
 */
#ifndef BACKMX_CONTROL_INT_H
#define BACKMX_CONTROL_INT_H

#include <sys/queue.h>

#include <ev.h>

#include "control.h"
#include "json.h"
#include "log.h"
#include "spool.h"

struct control_domstat;
struct checkdns;
struct control_job;
struct control_showjob;

struct control_client {
	LIST_ENTRY(control_client) entry;
	int fd;
	long uid;
	ev_io rio, wio;
	ev_timer timer;
	char in[CONTROL_LINE_MAX];
	size_t inlen;
	int have_request;
	struct control_request req;
	struct json_buf out;
	/* a streaming job: called while out is below CONTROL_OUT_HIGH */
	void (*produce)(struct control_client *);
	int ended; /* the end line is in out */
	char after[SPOOL_ID_LEN + 1];
	uint64_t nmsgs, nbytes;
	int64_t now, oldest;
	int header_done;
	struct control_domstat *dom;
	size_t ndom;
	struct checkdns *cd;
	struct rcpt_verify_ctl *rv;   /* verify ADDRESS */
	struct control_job *job;      /* control_queue.c */
	struct control_showjob *show; /* control_show.c */
};

/* output (control.c) */
void control_kick(struct control_client *c);
void control_end_ok(struct control_client *c);
void control_end_err(struct control_client *c, const char *fmt, ...)
    LOG_FMT(2, 3);
void control_line(struct control_client *c, const char *fmt, ...) LOG_FMT(2, 3);
/* control_progress - a "~TEXT" progress line (stderr of backmxctl) */
void control_progress(struct control_client *c, const char *fmt, ...)
    LOG_FMT(2, 3);
void control_time(char *buf, size_t len, int64_t t);
const char *control_state_name(int state);
void control_put_json(struct json_buf *b, const struct spool_envelope *e);
void control_put_human(struct control_client *c,
                       const struct spool_envelope *e);
/* control_domain_known - 1, or ends c with "unknown domain" */
int control_domain_known(struct control_client *c, const char *domain);

/* control_queue.c */
void control_queue_start(struct control_client *c);
void control_shape_start(struct control_client *c);
void control_job_free(struct control_job *j);

/* control_show.c */
void control_show_start(struct control_client *c);
void control_showjob_free(struct control_showjob *s);

/* control_peer.c: backmxctl peer */
void control_peer(struct control_client *c);
void control_takeover(struct control_client *c);

/* pause.c, the control side */
void control_pause(struct control_client *c, int pause);

#endif
