/*
 * control.h - the control socket of backmxd, spoken by backmxctl.
 *
 * Protocol (one request per connection, line based, all ASCII framing):
 *
 *   client: COMMAND [ARG ...] [--json] LF
 *	At most CONTROL_LINE_MAX octets including the LF (a CR before it
 *	is ignored); tokens are separated by spaces or tabs, at most
 *	CONTROL_ARGS_MAX arguments of at most CONTROL_TOKEN_MAX printable
 *	ASCII octets each.  Commands: queue, hold, release, delete,
 *	bounce, flush, requeue (each [ID|DOMAIN] [FILTER...]),
 *	show ID [--body], shape [DOMAIN], pause [DOMAIN], resume DOMAIN,
 *	stats, check-dns DOMAIN, reload [--force], ack-spool; `--json`
 *	anywhere selects JSON.  Filters
 *	(ANDed): --sender RE, --rcpt RE (POSIX extended, case-insensitive),
 *	--older DUR, --younger DUR (arrival age: 30s 5m 4h 2d 1w), --held,
 *	--id ID; --all stands for "no filter" (required by delete/bounce).
 *
 *   server: any number of output lines, then exactly one end line:
 *	"+TEXT"		one line of output (TEXT holds no CR or LF; with
 *			--json each such line is one JSON value)
 *	"~TEXT"		progress of a long operation (backmxctl prints it
 *			on stderr; not part of the output)
 *	"."		end: the command succeeded
 *	"-ERR TEXT"	end: it failed, TEXT says why (one line)
 *	and then the server closes the connection.
 *
 * Long listings stream: the server reads the spool in small batches
 * only while the client keeps reading, so a slow client holds no more
 * than one batch in memory and never blocks the daemon.  Access control
 * is the socket's file mode (0660, owned by `user`).
 *
 * control_request_parse() is shared with backmxctl (control_proto.c),
 * so both sides refuse the same requests with the same words.
 */
#ifndef BACKMX_CONTROL_H
#define BACKMX_CONTROL_H

#include <stddef.h>

#include "config.h"

#define CONTROL_LINE_MAX 1024
#define CONTROL_ARGS_MAX 2
#define CONTROL_TOKEN_MAX 255
#define CONTROL_RE_MAX 255

enum control_cmd {
	CONTROL_QUEUE,
	CONTROL_SHOW,
	CONTROL_FLUSH,
	CONTROL_HOLD,
	CONTROL_RELEASE,
	CONTROL_DELETE,
	CONTROL_BOUNCE,
	CONTROL_STATS,
	CONTROL_CHECK_DNS,
	CONTROL_RELOAD,    /* reload [--force] */
	CONTROL_ACK_SPOOL, /* clear the spool damage report */
	CONTROL_REQUEUE,
	CONTROL_SHAPE,
	CONTROL_PAUSE,
	CONTROL_RESUME,
	CONTROL_VERIFY,   /* verify ADDRESS [--now] */
	CONTROL_PEER,     /* the mirror link (control_peer.c) */
	CONTROL_TAKEOVER, /* deliver the peer's mail (control_peer.c) */
};

/* the message filters of queue/hold/release/delete/bounce/flush/requeue */
struct control_filter {
	char domain[CONTROL_TOKEN_MAX + 1]; /* "" = any */
	char id[CONTROL_TOKEN_MAX + 1];     /* "" = any, else lowercased */
	char sender[CONTROL_RE_MAX + 1];    /* RE, valid when has_sender */
	char rcpt[CONTROL_RE_MAX + 1];
	int has_sender, has_rcpt;
	long older, younger; /* seconds, -1 = not given */
	int held;            /* only held messages */
	int all;             /* --all given */
};

struct control_request {
	enum control_cmd cmd;
	const char *name; /* "queue", ... (static) */
	int json;
	int nargs;
	/* ids are lowercased hex, domains lowercased without a leading '@' */
	char args[CONTROL_ARGS_MAX][CONTROL_TOKEN_MAX + 1];
	int arg_is_id;           /* args[0] is a queue id (else a domain) */
	int force;               /* reload --force */
	int now;                 /* verify --now */
	int body;                /* show --body */
	struct control_filter f; /* positional ID/DOMAIN copied in */
};

/* control_filter_empty - no filter narrows the selection */
int control_filter_empty(const struct control_filter *f);
/* control_filter_describe - "domain=x sender=RE ..." or "all", for logs */
void control_filter_describe(const struct control_filter *f, char *buf,
                             size_t len);
/* control_parse_duration - "90", "30s", "5m", "4h", "2d", "1w"; -1 bad */
long control_parse_duration(const char *s);

/*
 * control_request_parse - parse one request line (len octets, with or
 * without the final LF).  Returns 0 and fills req, or -1 with a one-line
 * reason in err ("unknown command", "show: bad queue id", ...).
 */
int control_request_parse(const char *line, size_t len,
                          struct control_request *req, char *err,
                          size_t errlen);
/* control_usage - the command summary backmxctl prints */
const char *control_usage(void);
/* control_is_id - 1 when s is a well-formed queue id (any case) */
int control_is_id(const char *s);

/*
 * control_open - as root, before the privilege drop: create the socket
 * at cfg->control (mode 0660, owned by cfg->user), replacing a stale one
 * but refusing when a live daemon answers on it.  -1 with err set.
 * control_start - start accepting on the loop (after the drop).
 * control_close - stop accepting, drop every client, unlink the socket.
 */
int control_open(const struct config *cfg, char *err, size_t errlen);
void control_start(void);
void control_close(void);

#endif
