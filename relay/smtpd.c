/*
 * smtpd.c - the inbound ESMTP session: greeting, command table, MAIL/RCPT
 * decisions (policy/), the DATA and BDAT readers, the Received header,
 * streaming the body into the spool, group commit, STARTTLS and ETRN.
 *
 * Called by listen.c (new sessions) and main.c (init/shutdown); calls
 * policy_*, spool_writer_*, spool_sync, forward_queued/flush, tls_*.
 *
 * Memory per session is bounded: a small command buffer and an output
 * buffer whose size is capped (a client that does not read our replies
 * is not read either).  DATA is read through one process-wide scratch
 * buffer and streamed to the spool; a body is never held whole.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "backmxd.h"
#include "forward.h"
#include "client_limits.h"
#include "config_filter.h"
#include "dnsbl.h"
#include "log.h"
#include "milter.h"
#include "pause.h"
#include "rcpt_verify.h"
#include "smtpd.h"
#include "esmtp.h"
#include "tls.h"

#define SMTPD_LINE_MAX 512		/* command line incl. CRLF */
/* MAIL and RCPT may be longer: RFC 3461 adds up to 100 (ENVID) and 500
 * (ORCPT) octets, RFC 1870 and 6531 a few more */
#define SMTPD_LINE_MAX_EXT 1024
#define SMTPD_TEXT_MAX 1000		/* text line incl. CRLF */
#define SMTPD_IN_MIN 1024
#define SMTPD_IN_MAX (64 * 1024)	/* leftover after DATA, bounded */
#define SMTPD_OUT_MAX (64 * 1024)
#define SMTPD_MAX_ERRORS 20
#define SMTPD_SCRATCH (64 * 1024)
#define SMTPD_EMIT_BUF (16 * 1024)
#define SMTPD_ETRN_TRACK 64

enum smtpd_state {
	S_CMD,		/* reading commands */
	S_DATA,		/* after 354 */
	S_BDAT,		/* reading a BDAT chunk */
	S_COMMIT,	/* waiting for the group commit */
	S_TLS,		/* STARTTLS handshake */
	S_WAIT,		/* an async decision (rcpt_verify): nothing is read
			   or run until smtpd_resume */
	S_CLOSING,	/* flush output, then close */
	S_FILTER,	/* waiting for a connect-time filter (DNSBL) */
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
	int spool_failed;		/* writer error: reply 4xx at the end */
	enum spool_err spool_err;
	uint64_t size;			/* octets the client sent */
	size_t hdrlen;			/* our Received field */
	int too_big;
	struct smtpd_data data;		/* DATA reader */
	int bdat;			/* BDAT used in this transaction */
	uint64_t bdat_left;		/* octets of the current chunk */
	int bdat_last;
	int bdat_discard;		/* consume, then refuse */
	int bdat_silent;		/* ... already refused: no reply */
	int throwaway;			/* made only to discard a BDAT */
	int bdat_cr;			/* CR pending across chunks */
	size_t bdat_linelen;
	int bdat_flags;
	struct policy_hdrscan hs;
	char emit[SMTPD_EMIT_BUF];	/* staging for spool appends */
	size_t emitlen;
	struct spool_envelope env;	/* filled at commit, for the log */
	FILE *milter_fp;		/* the message for the milters */
	struct milter_run *milter;	/* pending milter conversation */
	int held;			/* quarantined by a milter */
	const char **milter_rcpt;	/* what the milters were told */
};

struct session {
	int fd;
	ev_io rio, wio;
	ev_timer timer;
	enum smtpd_state state;
	struct sockaddr_storage ss;
	char addr[INET6_ADDRSTRLEN];
	int port;
	int counted;			/* in client_limits.c counts */
	struct dnsbl_check *dnsbl;	/* pending connect-time lookup */
	char helo[256];
	int esmtp;			/* EHLO (not HELO) */
	int greeted;
	SSL *ssl;
	int tls;
	char tls_desc[96];
	char *in;			/* command input */
	size_t inlen, incap;
	int discard_line;		/* overlong command: skip to LF */
	char *out;
	size_t outlen, outcap;
	int nerrors;
	struct smtpd_tx *tx;
	struct session *next, *prev;	/* all sessions */
	struct session *wait_next;	/* group commit list */
	int close_after_flush;
	int processing;			/* inside smtpd_process */
	int dead;			/* freed at the end of the callback */
	/* RCPT waiting for rcpt_verify (S_WAIT) */
	struct rcpt_verify *rv;
	struct policy_rcpt *rv_rcpt;
	int rv_notify;
	char *rv_orcpt;
	/* counters for the disconnect line */
	int n_ehlo, n_mail, n_rcpt, n_data, n_cmds;
};

static struct session *sessions;
static int nsessions;
static struct session *wait_head, **wait_tail = &wait_head;
static ev_prepare smtpd_prepare;
static ev_idle smtpd_idle;	/* keeps the loop from blocking on waiters */
static char smtpd_scratch[SMTPD_SCRATCH];

/* ETRN rate limit: a small table of recent requesters */
struct etrn_track {
	unsigned char addr[16];
	ev_tstamp window;
	int count;
};
static struct etrn_track etrn_track[SMTPD_ETRN_TRACK];

static void smtpd_process(struct session *);
static void smtpd_connect_filters(struct session *);
static void smtpd_greet(struct session *);
static void smtpd_tx_commit(struct session *);
static void smtpd_milter_start(struct session *);
static void smtpd_dnsbl_refuse(struct session *, const struct dnsbl_verdict *);
static void smtpd_close(struct session *);
static void smtpd_flush(struct session *);
static void smtpd_tx_free(struct smtpd_tx *);
static void smtpd_reply(struct session *, const char *, ...)
	__attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------------ */
/* output */

static void
smtpd_out(struct session *s, const char *p, size_t n)
{
	if (s->outlen + n > s->outcap) {
		size_t cap = s->outcap ? s->outcap : 512;
		char *o;

		while (cap < s->outlen + n)
			cap *= 2;
		if ((o = realloc(s->out, cap)) == NULL)
			return;	/* dropped reply: the session will time out */
		s->out = o;
		s->outcap = cap;
	}
	memcpy(s->out + s->outlen, p, n);
	s->outlen += n;
}

static void
smtpd_reply(struct session *s, const char *fmt, ...)
{
	char line[SMTPD_LINE_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(line) - 3)
		n = sizeof(line) - 3;
	line[n++] = '\r';
	line[n++] = '\n';
	smtpd_out(s, line, n);
}

/* smtpd_reply_result - "CODE ENH text" from a policy result */
static void
smtpd_reply_result(struct session *s, const struct result *r)
{
	if (r->enh[0] != '\0')
		smtpd_reply(s, "%d %s %s", r->code, r->enh, r->text);
	else
		smtpd_reply(s, "%d %s", r->code, r->text);
}

static ssize_t
smtpd_io_write(struct session *s, const char *p, size_t n)
{
	if (s->ssl != NULL && s->tls) {
		int r;

		ERR_clear_error();
		r = SSL_write(s->ssl, p, (int)n);
		if (r > 0)
			return r;
		switch (SSL_get_error(s->ssl, r)) {
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE:
			errno = EAGAIN;
			return -1;
		default:
			errno = EPIPE;
			return -1;
		}
	}
	return send(s->fd, p, n, MSG_NOSIGNAL);
}

/* smtpd_io_read - >0 octets, 0 EOF, -1 with errno (EAGAIN: nothing now) */
static ssize_t
smtpd_io_read(struct session *s, char *p, size_t n)
{
	if (s->ssl != NULL && s->tls) {
		int r;

		ERR_clear_error();
		r = SSL_read(s->ssl, p, (int)n);
		if (r > 0)
			return r;
		switch (SSL_get_error(s->ssl, r)) {
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE:
			errno = EAGAIN;
			return -1;
		case SSL_ERROR_ZERO_RETURN:
			return 0;
		default:
			errno = ECONNRESET;
			return -1;
		}
	}
	return recv(s->fd, p, n, 0);
}

/* smtpd_flush - write what we can; the rest waits for EV_WRITE */
static void
smtpd_flush(struct session *s)
{
	size_t off = 0;

	while (off < s->outlen) {
		ssize_t n = smtpd_io_write(s, s->out + off, s->outlen - off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			s->outlen = 0;
			s->dead = 1;
			return;
		}
		off += n;
	}
	if (off > 0) {
		memmove(s->out, s->out + off, s->outlen - off);
		s->outlen -= off;
	}
	if (s->outlen > 0) {
		ev_io_start(backmxd.loop, &s->wio);
		/* a client that does not read our replies is not read */
		if (s->outlen > SMTPD_OUT_MAX)
			ev_io_stop(backmxd.loop, &s->rio);
	} else {
		ev_io_stop(backmxd.loop, &s->wio);
		if (s->close_after_flush)
			s->dead = 1;
		/* return the memory of a large reply burst */
		if (s->outcap > 4096) {
			free(s->out);
			s->out = NULL;
			s->outcap = 0;
		}
	}
}

/* smtpd_addr_bytes - the address as 16 octets, and a hash of them */
static unsigned
smtpd_addr_bytes(const struct sockaddr_storage *ss, unsigned char out[16])
{
	unsigned h = 2166136261u;

	memset(out, 0, 16);
	if (ss->ss_family == AF_INET)
		memcpy(out, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	else if (ss->ss_family == AF_INET6)
		memcpy(out, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
	for (int i = 0; i < 16; i++)
		h = (h ^ out[i]) * 16777619u;
	return h;
}

/* ------------------------------------------------------------------ */
/* transactions */

static void
smtpd_tx_free(struct smtpd_tx *tx)
{
	if (tx == NULL)
		return;
	if (tx->w != NULL)
		spool_writer_abort(tx->w);
	milter_cancel(tx->milter);
	free(tx->milter_rcpt);
	if (tx->milter_fp != NULL)
		fclose(tx->milter_fp);
	free(tx->sender);
	free(tx->envid);
	for (int i = 0; i < tx->nrcpt; i++) {
		free(tx->rcpt[i].address);
		free(tx->rcpt[i].orcpt);
		free(tx->rcpt[i].route);
	}
	free(tx->rcpt);
	if (tx->env.rcpt != NULL)
		for (int i = 0; i < tx->env.nrcpt; i++)
			free(tx->env.rcpt[i].last_error);
	free(tx->env.rcpt);
	free(tx);
}

static void
smtpd_tx_reset(struct session *s)
{
	smtpd_tx_free(s->tx);
	s->tx = NULL;
}

/* ------------------------------------------------------------------ */
/* session life */

static void
smtpd_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct session *s = w->data;


	if (s->state == S_COMMIT || s->state == S_FILTER ||
	    s->state == S_WAIT)
		return;	/* our own wait; never the client's fault */
	log_info("timeout after %s from unknown[%s]",
		 s->state == S_DATA || s->state == S_BDAT ? "DATA"
		 : s->state == S_TLS			  ? "STARTTLS"
							  : "command",
		 s->addr);
	if (s->state != S_TLS) {
		smtpd_reply(s, "421 4.4.2 %s Error: timeout exceeded",
			    backmxd.cfg->hostname);
		smtpd_flush(s);
	}
	smtpd_close(s);
}

static void
smtpd_free(struct session *s)
{
	ev_io_stop(backmxd.loop, &s->rio);
	ev_io_stop(backmxd.loop, &s->wio);
	ev_timer_stop(backmxd.loop, &s->timer);
	if (s->ssl != NULL) {
		if (s->tls)
			SSL_shutdown(s->ssl);
		SSL_free(s->ssl);
	}
	{
		/* closing with unread input makes the kernel send a RST that
		 * can destroy our last reply in flight: drain what is there */
		char junk[4096];
		int rounds = 0;

		shutdown(s->fd, SHUT_WR);
		while (rounds++ < 16 &&
		       recv(s->fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
			;
	}
	close(s->fd);
	rcpt_verify_cancel(s->rv);
	free(s->rv_rcpt);
	free(s->rv_orcpt);
	smtpd_tx_free(s->tx);
	dnsbl_check_cancel(s->dnsbl);
	if (s->counted)
		client_limits_close(&s->ss);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	nsessions--;
	stats.sessions_active = nsessions;
	free(s->in);
	free(s->out);
	free(s);
}

/* smtpd_done - end of an I/O callback: free a dead session */
static int
smtpd_done(struct session *s)
{
	if (!s->dead || s->processing)
		return 0;
	if (s->state == S_COMMIT) {
		/* the spool still owes this session a verdict: keep it
		 * until the group commit ran, then close */
		s->dead = 0;
		s->close_after_flush = 1;
		ev_io_stop(backmxd.loop, &s->rio);
		return 1;
	}
	log_info("disconnect from unknown[%s] ehlo=%d mail=%d rcpt=%d data=%d "
		 "commands=%d",
		 s->addr, s->n_ehlo, s->n_mail, s->n_rcpt, s->n_data,
		 s->n_cmds);
	smtpd_free(s);
	return 1;
}

/* smtpd_close - free now, or at the end of the current callback */
static void
smtpd_close(struct session *s)
{
	s->dead = 1;
	smtpd_done(s);
}

static void
smtpd_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct session *s = w->data;

	if (s->state == S_TLS) {
		smtpd_process(s);
		smtpd_done(s);
		return;
	}
	smtpd_flush(s);
	if (s->dead) {
		smtpd_done(s);
		return;
	}
	if (s->outlen <= SMTPD_OUT_MAX && s->state != S_COMMIT &&
	    s->state != S_FILTER && s->state != S_WAIT &&
	    s->state != S_CLOSING && !s->close_after_flush)
		ev_io_start(loop, &s->rio);
}

/* smtpd_in_room - make room for n more octets of command input */
static int
smtpd_in_room(struct session *s, size_t n)
{
	size_t cap;
	char *p;

	if (s->inlen + n <= s->incap)
		return 0;
	cap = s->incap ? s->incap : SMTPD_IN_MIN;
	while (cap < s->inlen + n)
		cap *= 2;
	if (cap > SMTPD_IN_MAX)
		return -1;
	if ((p = realloc(s->in, cap)) == NULL)
		return -1;
	s->in = p;
	s->incap = cap;
	return 0;
}

static void smtpd_data_input(struct session *s, const char *p, size_t n,
			     size_t *used);

static void
smtpd_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct session *s = w->data;
	ssize_t n;
	int rounds = 0;

	s->processing = 1;
	while (!s->dead && rounds++ < 16) {
		if (s->state == S_TLS) {
			s->processing = 0;
			smtpd_process(s);
			smtpd_done(s);
			return;
		}
		if (s->state == S_COMMIT || s->state == S_CLOSING ||
		    s->state == S_FILTER || s->state == S_WAIT ||
		    s->close_after_flush)
			break;
		if (s->state == S_DATA || s->state == S_BDAT) {
			/* the body goes through the shared scratch buffer */
			size_t used = 0;

			n = smtpd_io_read(s, smtpd_scratch,
					  sizeof(smtpd_scratch));
			if (n > 0) {
				ev_timer_again(loop, &s->timer);
				smtpd_data_input(s, smtpd_scratch, n, &used);
				if ((size_t)n > used) {
					/* commands after the end of data */
					if (smtpd_in_room(s, n - used) < 0) {
						smtpd_reply(s,
							    "421 4.7.0 %s Error: "
							    "too much pipelined "
							    "input",
							    backmxd.cfg->hostname);
						s->close_after_flush = 1;
						break;
					}
					memcpy(s->in + s->inlen,
					       smtpd_scratch + used, n - used);
					s->inlen += n - used;
				}
				smtpd_process(s);
				continue;
			}
		} else {
			if (smtpd_in_room(s, SMTPD_LINE_MAX_EXT) < 0) {
				/* cannot happen for commands: lines are
				 * bounded; treat as abuse */
				s->close_after_flush = 1;
				break;
			}
			n = smtpd_io_read(s, s->in + s->inlen,
					  s->incap - s->inlen);
			if (n > 0) {
				ev_timer_again(loop, &s->timer);
				s->inlen += n;
				smtpd_process(s);
				continue;
			}
		}
		if (n == 0) {
			/* end of the client's input: an unfinished message
			 * is lost (nothing was acknowledged), but a client
			 * that only half-closed still reads the replies we
			 * owe it (shutdown(SHUT_WR) after QUIT) */
			s->close_after_flush = 1;
			if (s->outlen == 0)
				s->dead = 1;
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			s->dead = 1;
		break;
	}
	s->processing = 0;
	if (s->close_after_flush)
		ev_io_stop(loop, &s->rio);	/* nothing more is read */
	if (!s->dead)
		smtpd_flush(s);
	if (s->close_after_flush && s->outlen == 0 && s->state != S_COMMIT &&
	    s->state != S_FILTER)
		s->dead = 1;
	if (!smtpd_done(s) && rounds >= 16 && !s->dead &&
	    (s->state == S_CMD || s->state == S_DATA || s->state == S_BDAT))
		/* fairness: let other sessions run, come back at once */
		ev_feed_event(loop, &s->rio, EV_READ);
}

/* smtpd_limits - per-client limits (client_limits.c); -1: refused, s freed */
static int
smtpd_limits(struct session *s)
{
	static const char msg[] = "421 4.7.0 Error: too many connections "
				  "from your address\r\n";
	static const char rate[] = "421 4.7.0 Error: too many connections "
				   "from your address, slow down\r\n";
	const struct config *cfg = backmxd.cfg;
	enum limits_verdict v = client_limits_open(&s->ss, ev_now(backmxd.loop));

	if (v == LIMITS_OK) {
		s->counted = 1;
		return 0;
	}
	stats.sessions_refused++;
	if (v == LIMITS_PER_IP)
		log_info("NOQUEUE: reject: CONNECT from unknown[%s]: 421 4.7.0 "
			 "Error: too many connections from your address "
			 "(max_clients_per_ip %d); proto=SMTP",
			 s->addr, cfg->max_clients_per_ip);
	else if (v == LIMITS_CONCURRENT) {
		stats.refused_client_limit++;
		log_info("NOQUEUE: reject: CONNECT from unknown[%s]: 421 4.7.0 "
			 "Error: too many connections from your address "
			 "(filter=client_limit: %d sessions open); proto=SMTP",
			 s->addr, cfg->filter->client_limit);
	} else {
		stats.refused_client_rate++;
		log_info("NOQUEUE: reject: CONNECT from unknown[%s]: 421 4.7.0 "
			 "Error: too many connections from your address, slow "
			 "down (filter=client_rate: over %d sessions in %lds); "
			 "proto=SMTP",
			 s->addr, cfg->filter->client_rate,
			 cfg->filter->client_rate_window);
	}
	if (v == LIMITS_RATE)
		(void)!send(s->fd, rate, sizeof(rate) - 1,
			    MSG_NOSIGNAL | MSG_DONTWAIT);
	else
		(void)!send(s->fd, msg, sizeof(msg) - 1,
			    MSG_NOSIGNAL | MSG_DONTWAIT);
	close(s->fd);
	free(s);
	return -1;
}

/* smtpd_dnsbl_cb - the DNSBL verdict for a session waiting in S_FILTER */
static void
smtpd_dnsbl_cb(void *arg, const struct dnsbl_verdict *v)
{
	struct session *s = arg;

	s->dnsbl = NULL;
	if (!v->listed) {
		smtpd_greet(s);
		return;
	}
	smtpd_dnsbl_refuse(s, v);
	smtpd_done(s);
}

/* smtpd_dnsbl_refuse - 554 at connect: the client waits for no banner */
static void
smtpd_dnsbl_refuse(struct session *s, const struct dnsbl_verdict *v)
{
	log_info("NOQUEUE: reject: CONNECT from unknown[%s]: %s; filter=dnsbl%s",
		 s->addr, v->reply, v->cached ? " (cached)" : "");
	smtpd_reply(s, "%s", v->reply);
	s->state = S_CMD;
	s->close_after_flush = 1;
	smtpd_flush(s);
	if (s->outlen == 0)
		s->dead = 1;
}

/* smtpd_connect_filters - DNSBL (async) before the banner */
static void
smtpd_connect_filters(struct session *s)
{
	struct dnsbl_verdict v;

	switch (dnsbl_check_start(&s->ss, s->addr, &v, smtpd_dnsbl_cb, s,
				  &s->dnsbl)) {
	case DNSBL_PENDING:
		s->state = S_FILTER;	/* nothing is read meanwhile */
		return;
	case DNSBL_LISTED:
		smtpd_dnsbl_refuse(s, &v);
		smtpd_done(s);
		return;
	case DNSBL_PASS:
		break;
	}
	smtpd_greet(s);
}

void
smtpd_session_new(int fd, const struct sockaddr *sa, socklen_t salen)
{
	const struct config *cfg = backmxd.cfg;
	struct session *s;

	if (backmxd.stopping) {
		close(fd);
		return;
	}
	stats.sessions++;
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		close(fd);
		return;
	}
	s->fd = fd;
	memcpy(&s->ss, sa, salen < sizeof(s->ss) ? salen : sizeof(s->ss));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)sa;

		inet_ntop(AF_INET, &sin->sin_addr, s->addr, sizeof(s->addr));
		s->port = ntohs(sin->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)sa;

		inet_ntop(AF_INET6, &sin6->sin6_addr, s->addr,
			  sizeof(s->addr));
		s->port = ntohs(sin6->sin6_port);
	} else
		strcpy(s->addr, "unknown");

	if (nsessions >= cfg->max_clients) {
		static const char msg[] = "421 4.7.0 Error: too many "
					  "connections, try again later\r\n";

		stats.sessions_refused++;
		log_warn("too many connections: refusing unknown[%s]: "
			 "max_clients %d reached", s->addr, cfg->max_clients);
		(void)!send(fd, msg, sizeof(msg) - 1,
			    MSG_NOSIGNAL | MSG_DONTWAIT);
		close(fd);
		free(s);
		return;
	}
	if (smtpd_limits(s) < 0)
		return;
	s->next = sessions;
	if (sessions != NULL)
		sessions->prev = s;
	sessions = s;
	nsessions++;
	stats.sessions_active = nsessions;

	ev_io_init(&s->rio, smtpd_read_cb, fd, EV_READ);
	ev_io_init(&s->wio, smtpd_write_cb, fd, EV_WRITE);
	s->rio.data = s->wio.data = s;
	ev_init(&s->timer, smtpd_timer_cb);
	s->timer.repeat = cfg->timeout;
	s->timer.data = s;
	ev_timer_again(backmxd.loop, &s->timer);
	log_info("connect from unknown[%s]", s->addr);
	smtpd_connect_filters(s);
}

/* smtpd_greet - the banner, once the connect-time filters passed */
static void
smtpd_greet(struct session *s)
{
	const struct config *cfg = backmxd.cfg;
	int fd = s->fd;
	char peek;

	s->state = S_CMD;
	/* an early talker sends before it saw our greeting (RFC 5321
	 * 4.3.1: a client waits for 220) */
	if (recv(fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT) == 1) {
		log_info("NOQUEUE: reject: CONNECT from unknown[%s]: 554 5.5.0 "
			 "Error: talking before the greeting; proto=SMTP",
			 s->addr);
		smtpd_reply(s, "554 5.5.0 %s Error: talking before the greeting",
			    cfg->hostname);
		s->close_after_flush = 1;
		stats.refused_other++;
		smtpd_flush(s);
		smtpd_done(s);
		return;
	}
	smtpd_reply(s, "220 %s ESMTP backmx", cfg->hostname);
	s->greeted = 1;
	smtpd_flush(s);
	if (!smtpd_done(s))
		ev_io_start(backmxd.loop, &s->rio);
}

int
smtpd_count(void)
{
	return nsessions;
}

/* ------------------------------------------------------------------ */
/* commands */

static int
smtpd_streq(const char *a, const char *b)
{
	return strcasecmp(a, b) == 0;
}

static void
smtpd_cmd_helo(struct session *s, char *arg, int esmtp)
{
	const struct config *cfg = backmxd.cfg;

	while (*arg == ' ')
		arg++;
	if (*arg == '\0' || strlen(arg) > 255) {
		smtpd_reply(s, "501 5.5.4 Syntax: %s hostname",
			    esmtp ? "EHLO" : "HELO");
		return;
	}
	for (char *p = arg; *p; p++)
		if (!isgraph((unsigned char)*p) && *p != ' ') {
			smtpd_reply(s, "501 5.5.4 Invalid %s argument",
				    esmtp ? "EHLO" : "HELO");
			return;
		}
	/* keep only the first word */
	arg[strcspn(arg, " ")] = '\0';
	/* EHLO/HELO must end a pipelined group: input already waiting
	 * behind it means the client did not wait for our reply */
	if (s->inlen > 0) {
		log_info("improper command pipelining after %s from "
			 "unknown[%s]",
			 esmtp ? "EHLO" : "HELO", s->addr);
		smtpd_reply(s, "554 5.5.0 Error: SMTP protocol synchronization");
		stats.refused_other++;
		s->close_after_flush = 1;
		return;
	}
	smtpd_tx_reset(s);
	snprintf(s->helo, sizeof(s->helo), "%s", arg);
	s->esmtp = esmtp;
	s->n_ehlo++;
	if (!esmtp) {
		smtpd_reply(s, "250 %s", cfg->hostname);
		return;
	}
	smtpd_reply(s, "250-%s", cfg->hostname);
	smtpd_reply(s, "250-PIPELINING");
	smtpd_reply(s, "250-SIZE %llu", (unsigned long long)cfg->max_size);
	smtpd_reply(s, "250-ETRN");
	if (!s->tls && tls_server_ctx() != NULL)
		smtpd_reply(s, "250-STARTTLS");
	smtpd_reply(s, "250-ENHANCEDSTATUSCODES");
	smtpd_reply(s, "250-8BITMIME");
	smtpd_reply(s, "250-DSN");
	smtpd_reply(s, "250-SMTPUTF8");
	smtpd_reply(s, "250 CHUNKING");
}

static void
smtpd_cmd_mail(struct session *s, char *arg)
{
	const struct config *cfg = backmxd.cfg;
	struct policy_path path;
	struct result res;
	struct smtpd_tx *tx;
	struct esmtp_mail mp;
	size_t end;

	if (s->helo[0] == '\0') {
		smtpd_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (s->tx != NULL) {
		smtpd_reply(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	if (strncasecmp(arg, "FROM:", 5) != 0) {
		smtpd_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	arg += 5;
	while (*arg == ' ')
		arg++;
	if (policy_parse_path(arg, strlen(arg), POLICY_PARSE_SMTPUTF8, &path,
			      &end, &res) < 0) {
		stats.refused_syntax++;
		smtpd_reply_result(s, &res);
		return;
	}
	if (arg[end] != '\0' && arg[end] != ' ') {
		smtpd_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if (path.kind == POLICY_PATH_POSTMASTER) {
		smtpd_reply(s, "501 5.1.7 Bad sender address syntax");
		return;
	}
	if (esmtp_mail_params(arg + end, &mp, &res) < 0) {
		smtpd_reply_result(s, &res);
		return;
	}
	if ((tx = calloc(1, sizeof(*tx))) == NULL) {
		smtpd_reply(s, "451 4.3.0 Error: out of memory");
		return;
	}
	tx->declared_size = mp.size;
	tx->body = mp.body;
	tx->smtputf8 = mp.smtputf8;
	tx->ret = mp.ret;
	if (mp.envid != NULL && (tx->envid = strdup(mp.envid)) == NULL) {
		smtpd_reply(s, "452 4.3.0 Error: out of memory");
		goto fail;
	}
	if (path.utf8 && !tx->smtputf8) {
		smtpd_reply(s, "553 5.6.7 Non-ASCII sender address requires "
			       "SMTPUTF8");
		stats.refused_syntax++;
		goto fail;
	}
	if (cfg->max_size > 0 && tx->declared_size > cfg->max_size) {
		smtpd_reply(s, "552 5.3.4 Message size exceeds fixed limit");
		stats.refused_size++;
		goto fail;
	}
	tx->sender = strdup(path.kind == POLICY_PATH_NULL ? "" : path.address);
	if (tx->sender == NULL) {
		smtpd_reply(s, "452 4.3.0 Error: out of memory");
		goto fail;
	}
	s->tx = tx;
	s->n_mail++;
	smtpd_reply(s, "250 2.1.0 Ok");
	return;
fail:
	smtpd_tx_free(tx);
}

/* smtpd_rcpt_add - the recipient is valid: into the transaction, 250 */
static void
smtpd_rcpt_add(struct session *s, const struct policy_rcpt *rp, int notify,
	       const char *orcpt)
{
	struct smtpd_tx *tx = s->tx;
	const struct policy_rcpt r0 = *rp, *rr = &r0;
	char route[POLICY_DOMAIN_MAX + 16];
	struct smtpd_rcpt *rc;

	if (tx->nrcpt == tx->rcpt_cap) {
		int cap = tx->rcpt_cap ? tx->rcpt_cap * 2 : 4;
		struct smtpd_rcpt *p = realloc(tx->rcpt, cap * sizeof(*p));

		if (p == NULL) {
			smtpd_reply(s, "452 4.3.0 Error: out of memory");
			return;
		}
		tx->rcpt = p;
		tx->rcpt_cap = cap;
	}
	rc = &tx->rcpt[tx->nrcpt];
	memset(rc, 0, sizeof(*rc));
	rc->address = strdup(rr->address);
	rc->notify = notify;
	if (orcpt != NULL)
		rc->orcpt = strdup(orcpt);
	else if (rr->percent_hack)
		rc->orcpt = strdup(rr->orcpt);
	if (rr->percent_hack && rr->domain != NULL) {
		if (rr->domain->route_literal)
			snprintf(route, sizeof(route), "[%s]:%d",
				 rr->domain->route_host, rr->domain->route_port);
		else
			snprintf(route, sizeof(route), "%s:%d",
				 rr->domain->route_host, rr->domain->route_port);
		rc->route = strdup(route);
		stats.percent_hack++;
		log_info("percent-hack %s -> %s (from unknown[%s])",
			 rr->path.address, rr->address, s->addr);
	}
	if (rc->address == NULL ||
	    ((orcpt != NULL || rr->percent_hack) && rc->orcpt == NULL) ||
	    (rr->percent_hack && rr->domain != NULL && rc->route == NULL)) {
		free(rc->address);
		free(rc->orcpt);
		free(rc->route);
		memset(rc, 0, sizeof(*rc));
		smtpd_reply(s, "452 4.3.0 Error: out of memory");
		return;
	}
	tx->nrcpt++;
	s->n_rcpt++;
	smtpd_reply(s, "250 2.1.5 Ok");
}

/*
 * smtpd_pause / smtpd_resume - an async decision (rcpt_verify) holds the
 * session: no input is read and no pipelined command runs until
 * smtpd_resume (shared with the milter path), called from the decision's
 * callback after the reply was queued.
 */
static void smtpd_resume(struct session *s);

static void
smtpd_pause(struct session *s)
{
	s->state = S_WAIT;
	ev_io_stop(backmxd.loop, &s->rio);
}

/* smtpd_rcpt_refused - count, log and reply a refused recipient */
static void
smtpd_rcpt_refused(struct session *s, const char *addr,
		   const struct result *res)
{
	if (!strcmp(res->enh, "5.1.1"))
		stats.refused_user++;
	else
		stats.refused_other++;
	log_info("reject: RCPT from [%s]: %d %s <%s>: %s; from=<%s> "
		 "helo=<%s>",
		 s->addr, res->code, res->enh, addr, res->text,
		 s->tx ? s->tx->sender : "", s->helo);
	smtpd_reply_result(s, res);
}

static void
smtpd_rcpt_verified_cb(void *arg, const struct result *res)
{
	struct session *s = arg;

	s->rv = NULL;
	if (s->tx != NULL && res->code / 100 == 2)
		smtpd_rcpt_add(s, s->rv_rcpt, s->rv_notify, s->rv_orcpt);
	else
		smtpd_rcpt_refused(s, s->rv_rcpt->address, res);
	free(s->rv_rcpt);
	free(s->rv_orcpt);
	s->rv_rcpt = NULL;
	s->rv_orcpt = NULL;
	smtpd_resume(s);
}

/*
 * smtpd_rcpt_wait - r needs the other recipient sources: 1 when handled
 * (refused now, or pending: the session waits), 0 when valid now
 */
static int
smtpd_rcpt_wait(struct session *s, const struct policy_rcpt *r, int notify,
		const char *orcpt)
{
	struct result res;

	if ((s->rv_rcpt = malloc(sizeof(*r))) == NULL) {
		smtpd_reply(s, "452 4.3.0 Error: out of memory");
		return 1;
	}
	*s->rv_rcpt = *r;
	s->rv_notify = notify;
	s->rv_orcpt = orcpt ? strdup(orcpt) : NULL;
	if (rcpt_verify_start(r, smtpd_rcpt_verified_cb, s, &s->rv, &res) ==
	    1) {
		smtpd_pause(s);
		return 1;
	}
	free(s->rv_rcpt);
	free(s->rv_orcpt);
	s->rv_rcpt = NULL;
	s->rv_orcpt = NULL;
	if (res.code / 100 == 2)
		return 0;
	smtpd_rcpt_refused(s, r->address, &res);
	return 1;
}

static void
smtpd_cmd_rcpt(struct session *s, char *arg)
{
	const struct config *cfg = backmxd.cfg;
	struct smtpd_tx *tx = s->tx;
	struct policy_rcpt r;
	struct result res;
	struct esmtp_rcpt rp;
	char route[POLICY_DOMAIN_MAX + 16];
	size_t end;
	int rc, flags = POLICY_PARSE_RCPT;

	if (tx == NULL) {
		smtpd_reply(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (strncasecmp(arg, "TO:", 3) != 0) {
		smtpd_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	arg += 3;
	while (*arg == ' ')
		arg++;
	tx->nrcpt_tried++;
	if (tx->nrcpt >= cfg->max_recipients) {
		smtpd_reply(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	if (tx->smtputf8)
		flags |= POLICY_PARSE_SMTPUTF8;
	if ((rc = policy_check_rcpt(cfg->policy, arg, strlen(arg), flags, &r,
				    &end, &res)) < 0) {
		if (!strcmp(res.enh, "5.7.1"))
			stats.refused_relay++;
		else if (!strcmp(res.enh, "5.1.1"))
			stats.refused_user++;
		else
			stats.refused_syntax++;
		log_info("NOQUEUE: reject: RCPT from unknown[%s]: %d %s %s; "
			 "from=<%s> to=<%s> proto=%s helo=<%s>",
			 s->addr, res.code, res.enh, res.text, tx->sender,
			 log_path(arg, route, sizeof(route)),
			 s->esmtp ? "ESMTP" : "SMTP", s->helo);
		smtpd_reply_result(s, &res);
		return;
	}
	if (arg[end] != '\0' && arg[end] != ' ') {
		smtpd_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if (r.domain != NULL && pause_is_paused(r.domain->name)) {
		/* backmxctl pause DOMAIN: the operator holds new mail off */
		stats.refused_other++;
		log_info("reject: RCPT from [%s]: 450 4.3.2 <%s>: mail for %s "
			 "paused by the operator; from=<%s> helo=<%s>",
			 s->addr, r.address, r.domain->name, tx->sender, s->helo);
		smtpd_reply(s, "450 4.3.2 <%s>: Mail for %s is paused, try "
			       "again later",
			    r.address, r.domain->name);
		return;
	}
	if (esmtp_rcpt_params(arg + end, &rp, &res) < 0) {
		smtpd_reply_result(s, &res);
		return;
	}
	if (rc == 1 && smtpd_rcpt_wait(s, &r, rp.notify, rp.orcpt))
		return;
	smtpd_rcpt_add(s, &r, rp.notify, rp.orcpt);
}

/* smtpd_emit_flush - append the staged octets to the spool writer */
static void
smtpd_emit_flush(struct smtpd_tx *tx)
{
	if (tx->emitlen == 0)
		return;
	if (tx->milter_fp != NULL && !tx->spool_failed && !tx->too_big) {
		/* kept aside for the milters; spooled once they answered */
		if (fwrite(tx->emit, 1, tx->emitlen, tx->milter_fp) !=
		    tx->emitlen) {
			tx->spool_failed = 1;
			tx->spool_err = SPOOL_EIO;
		}
	} else if (tx->w != NULL && !tx->spool_failed && !tx->too_big) {
		if (spool_writer_append(tx->w, tx->emit, tx->emitlen) < 0) {
			tx->spool_failed = 1;
			tx->spool_err = spool_errno(backmxd.spool);
		}
	}
	tx->emitlen = 0;
}

/* smtpd_emit - message octets from the DATA/BDAT reader */
static void
smtpd_emit(void *arg, const char *p, size_t n)
{
	struct smtpd_tx *tx = arg;
	const struct config *cfg = backmxd.cfg;

	policy_hdrscan_feed(&tx->hs, p, n);
	tx->size += n;
	if (cfg->max_size > 0 && tx->size > cfg->max_size)
		tx->too_big = 1;	/* our Received header is not counted */
	if (tx->too_big || tx->spool_failed)
		return;
	while (n > 0) {
		size_t room = sizeof(tx->emit) - tx->emitlen;
		size_t k = n < room ? n : room;

		memcpy(tx->emit + tx->emitlen, p, k);
		tx->emitlen += k;
		p += k;
		n -= k;
		if (tx->emitlen == sizeof(tx->emit))
			smtpd_emit_flush(tx);
	}
}

/* smtpd_received - the trace field we prepend (RFC 5321 4.4) */
static int
smtpd_received(struct session *s, struct smtpd_tx *tx, char *buf, size_t len)
{
	const struct config *cfg = backmxd.cfg;
	char date[64], with[32], tlsc[160] = "", forc[POLICY_PATH_MAX + 16] = "";
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	snprintf(with, sizeof(with), "%s%s%s", tx->smtputf8 ? "UTF8SMTP"
					       : s->esmtp   ? "ESMTP"
							    : "SMTP",
		 s->tls ? "S" : "", "");
	if (s->tls)
		snprintf(tlsc, sizeof(tlsc), "\r\n\t(using %s)", s->tls_desc);
	if (tx->nrcpt == 1)
		snprintf(forc, sizeof(forc), "\r\n\tfor <%s>",
			 tx->rcpt[0].address);
	return snprintf(buf, len,
			"Received: from %s ([%s%s])\r\n\tby %s (backmx) with %s "
			"id %s%s%s;\r\n\t%s\r\n",
			s->helo, strchr(s->addr, ':') != NULL ? "IPv6:" : "",
			s->addr, cfg->hostname, with, tx->id, tlsc,
			forc, date);
}

/* smtpd_tx_start - open the spool writer, write our Received field */
static int
smtpd_tx_start(struct session *s)
{
	struct smtpd_tx *tx = s->tx;
	char hdr[1024];
	int n;

	policy_hdrscan_init(&tx->hs, backmxd.cfg->hostname);
	memset(&tx->data, 0, sizeof(tx->data));
	tx->w = spool_writer_new(backmxd.spool);
	if (tx->w == NULL) {
		tx->spool_failed = 1;
		tx->spool_err = spool_errno(backmxd.spool);
		return -1;
	}
	snprintf(tx->id, sizeof(tx->id), "%s", spool_writer_id(tx->w));
	if (backmxd.cfg->filter->nmilter > 0 &&
	    (tx->milter_fp = tmpfile()) == NULL) {
		tx->spool_failed = 1;
		tx->spool_err = SPOOL_EIO;
	}
	n = smtpd_received(s, tx, hdr, sizeof(hdr));
	if (n > 0 && (size_t)n < sizeof(hdr))
		tx->hdrlen = n;
	if (tx->hdrlen > 0 && spool_writer_append(tx->w, hdr, n) < 0) {
		tx->spool_failed = 1;
		tx->spool_err = spool_errno(backmxd.spool);
	}
	return 0;
}

static void
smtpd_cmd_data(struct session *s, char *arg)
{
	struct smtpd_tx *tx = s->tx;

	if (*arg != '\0') {
		smtpd_reply(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (tx == NULL) {
		smtpd_reply(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (tx->nrcpt == 0) {
		smtpd_reply(s, "554 5.5.1 Error: no valid recipients");
		return;
	}
	if (tx->bdat) {
		smtpd_reply(s, "503 5.5.1 Error: DATA after BDAT");
		return;
	}
	s->n_data++;
	smtpd_tx_start(s);
	s->state = S_DATA;
	smtpd_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

/* smtpd_tx_finish - end of DATA or BDAT LAST: verdict, then commit */
static void
smtpd_tx_finish(struct session *s, int flags)
{
	const struct config *cfg = backmxd.cfg;
	struct smtpd_tx *tx = s->tx;
	struct result res;

	s->state = S_CMD;
	smtpd_emit_flush(tx);
	if (flags & (SMTPD_DATA_BARE | SMTPD_DATA_NUL)) {
		stats.refused_smuggling++;
		log_info("NOQUEUE: reject: %s from unknown[%s]: %s; "
			 "from=<%s> proto=ESMTP helo=<%s>",
			 tx->bdat ? "BDAT" : "DATA", s->addr,
			 (flags & SMTPD_DATA_BARE)
			     ? "550 5.5.2 Error: bare CR or LF in message data"
			     : "554 5.6.0 Error: NUL octet in message data",
			 tx->sender, s->helo);
		if (flags & SMTPD_DATA_BARE)
			smtpd_reply(s, "550 5.5.2 Error: bare CR or LF in "
				       "message data (RFC 5321 2.3.8)");
		else
			smtpd_reply(s, "554 5.6.0 Error: NUL octet in message "
				       "data");
		goto drop;
	}
	if (tx->too_big) {
		stats.refused_size++;
		log_info("NOQUEUE: reject: %s from unknown[%s]: 552 5.3.4 "
			 "Error: message size exceeds fixed limit; from=<%s> "
			 "proto=ESMTP helo=<%s>",
			 tx->bdat ? "BDAT" : "DATA", s->addr, tx->sender,
			 s->helo);
		smtpd_reply(s, "552 5.3.4 Error: message size exceeds fixed "
			       "limit");
		goto drop;
	}
	if (flags & SMTPD_DATA_LONG) {
		stats.refused_other++;
		smtpd_reply(s, "554 5.6.0 Error: message line longer than "
			       "1000 octets");
		goto drop;
	}
	if (policy_hdrscan_check(&tx->hs, cfg->max_hops, &res) < 0) {
		stats.refused_loop++;
		log_info("NOQUEUE: reject: %s from unknown[%s]: %d %s %s; "
			 "from=<%s> proto=ESMTP helo=<%s>",
			 tx->bdat ? "BDAT" : "DATA", s->addr, res.code,
			 res.enh, res.text, tx->sender, s->helo);
		smtpd_reply_result(s, &res);
		goto drop;
	}
	if (tx->milter_fp != NULL) {
		smtpd_milter_start(s);	/* its callback commits */
		return;
	}
	smtpd_tx_commit(s);
	return;
drop:
	smtpd_tx_reset(s);
}

/* smtpd_resume - after an async verdict: pipelined input, then read on */
static void
smtpd_resume(struct session *s)
{
	s->state = S_CMD;
	s->processing = 1;
	smtpd_process(s);
	s->processing = 0;
	smtpd_flush(s);
	if (smtpd_done(s))
		return;
	if ((s->state == S_CMD || s->state == S_DATA || s->state == S_BDAT) &&
	    !s->close_after_flush)
		ev_io_start(backmxd.loop, &s->rio);
	else if (s->close_after_flush && s->outlen == 0) {
		s->dead = 1;
		smtpd_done(s);
	}
}

/* smtpd_rcpt_edit - a milter's recipient changes; the count left */
static int
smtpd_rcpt_edit(struct smtpd_tx *tx, const struct milter_result *res)
{
	char addr[POLICY_PATH_MAX + 1];

	/* rejected at RCPT by a milter: gone */
	for (int i = tx->nrcpt - 1; i >= 0; i--)
		if (res->rcpt_rejected != NULL && res->rcpt_rejected[i]) {
			log_msg(tx->id, "milter-reject: RCPT <%s>",
				tx->rcpt[i].address);
			free(tx->rcpt[i].address);
			free(tx->rcpt[i].orcpt);
			free(tx->rcpt[i].route);
			memmove(tx->rcpt + i, tx->rcpt + i + 1,
				(tx->nrcpt - i - 1) * sizeof(*tx->rcpt));
			tx->nrcpt--;
		}
	for (const struct milter_mod *m = res->mods; m != NULL; m = m->next) {
		size_t l;

		if (m->kind != MILTER_MOD_ADDRCPT && m->kind != MILTER_MOD_DELRCPT)
			continue;
		snprintf(addr, sizeof(addr), "%s",
			 m->name + (m->name[0] == '<'));
		l = strlen(addr);
		if (l > 0 && addr[l - 1] == '>')
			addr[--l] = '\0';
		if (m->kind == MILTER_MOD_DELRCPT) {
			for (int i = 0; i < tx->nrcpt; i++)
				if (!strcasecmp(tx->rcpt[i].address, addr)) {
					log_msg(tx->id, "milter: removed "
						"recipient <%s>", addr);
					free(tx->rcpt[i].address);
					free(tx->rcpt[i].orcpt);
					free(tx->rcpt[i].route);
					memmove(tx->rcpt + i, tx->rcpt + i + 1,
						(tx->nrcpt - i - 1) *
							sizeof(*tx->rcpt));
					tx->nrcpt--;
					break;
				}
			continue;
		}
		if (l == 0 || strchr(addr, '@') == NULL)
			continue;
		if (tx->nrcpt == tx->rcpt_cap) {
			int cap = tx->rcpt_cap ? tx->rcpt_cap * 2 : 4;
			struct smtpd_rcpt *p = realloc(tx->rcpt, cap * sizeof(*p));

			if (p == NULL)
				continue;
			tx->rcpt = p;
			tx->rcpt_cap = cap;
		}
		memset(&tx->rcpt[tx->nrcpt], 0, sizeof(*tx->rcpt));
		if ((tx->rcpt[tx->nrcpt].address = strdup(addr)) == NULL)
			continue;
		tx->nrcpt++;
		log_msg(tx->id, "milter: added recipient <%s>", addr);
	}
	return tx->nrcpt;
}

/* smtpd_milter_cb - the milters' verdict on the message */
static void
smtpd_milter_cb(void *arg, struct milter_result *res)
{
	struct session *s = arg;
	struct smtpd_tx *tx = s->tx;
	const char *cmd = tx->bdat ? "BDAT" : "END-OF-MESSAGE";
	uint64_t size = 0;

	tx->milter = NULL;
	s->state = S_CMD;
	if (res == NULL) {
		smtpd_reply(s, "451 4.3.0 Error: local error in processing");
		goto drop;
	}
	if (res->verdict == MILTER_REJECT || res->verdict == MILTER_TEMPFAIL) {
		log_info("%s: milter-reject: %s from unknown[%s]: %s; from=<%s> "
			 "helo=<%s>; filter=%s",
			 tx->id, cmd, s->addr, res->reply, tx->sender, s->helo,
			 res->why);
		smtpd_reply(s, "%s", res->reply);
		goto drop;
	}
	if (res->verdict == MILTER_DISCARD) {
		log_info("%s: milter-discard: %s from unknown[%s]: discarded; "
			 "from=<%s>; filter=%s",
			 tx->id, cmd, s->addr, tx->sender, res->why);
		smtpd_reply(s, "250 2.0.0 Ok: queued as %s", tx->id);
		goto drop;
	}
	if (smtpd_rcpt_edit(tx, res) == 0) {
		log_info("%s: milter-reject: %s from unknown[%s]: no recipients left; "
			 "from=<%s>; filter=milter",
			 tx->id, cmd, s->addr, tx->sender);
		smtpd_reply(s, "554 5.7.1 Error: all recipients rejected");
		goto drop;
	}
	if (milter_apply(res, tx->milter_fp, tx->w, &size) < 0) {
		tx->spool_failed = 1;
		tx->spool_err = spool_errno(backmxd.spool);
	}
	tx->size = size;
	if (res->verdict == MILTER_QUARANTINE) {
		tx->held = 1;
		log_info("%s: milter-hold: %s from unknown[%s]: %s; from=<%s>; "
			 "filter=%s",
			 tx->id, cmd, s->addr, res->quarantine, tx->sender,
			 res->why);
	}
	fclose(tx->milter_fp);
	tx->milter_fp = NULL;
	milter_result_free(res);
	smtpd_tx_commit(s);
	if (s->state != S_COMMIT)
		smtpd_resume(s);
	return;
drop:
	milter_result_free(res);
	smtpd_tx_reset(s);
	smtpd_resume(s);
}

/* smtpd_milter_start - hand the message to the milters; wait */
static void
smtpd_milter_start(struct session *s)
{
	struct smtpd_tx *tx = s->tx;
	struct milter_msg m;
	const char **rcpt = calloc(tx->nrcpt + 1, sizeof(*rcpt));

	memset(&m, 0, sizeof(m));
	if (rcpt == NULL || fflush(tx->milter_fp) != 0) {
		free(rcpt);
		smtpd_reply(s, "451 4.3.0 Error: local error in processing");
		smtpd_tx_reset(s);
		return;
	}
	for (int i = 0; i < tx->nrcpt; i++)
		rcpt[i] = tx->rcpt[i].address;
	m.client_addr = s->addr;
	m.client_name = "unknown";
	m.client_port = s->port;
	m.client_family = s->ss.ss_family;
	m.helo = s->helo;
	m.queue_id = tx->id;
	m.sender = tx->sender;
	m.rcpt = rcpt;
	m.nrcpt = tx->nrcpt;
	m.tls_version = s->tls ? s->tls_desc : NULL;
	m.data = tx->milter_fp;
	tx->milter = milter_run(&m, smtpd_milter_cb, s);
	/* the milter run copied m, not the array: keep it with the tx */
	tx->milter_rcpt = rcpt;
	if (tx->milter == NULL) {
		smtpd_reply(s, "451 4.3.0 Error: local error in processing");
		smtpd_tx_reset(s);
		return;
	}
	s->state = S_FILTER;
	ev_io_stop(backmxd.loop, &s->rio);
}

/* smtpd_tx_commit - the envelope, the spool commit, the group commit */
static void
smtpd_tx_commit(struct session *s)
{
	struct smtpd_tx *tx = s->tx;
	struct spool_envelope *e = &tx->env;

	if (tx->spool_failed)
		goto spoolfail;

	memset(e, 0, sizeof(*e));
	e->arrival = time(NULL);
	e->size = tx->size + tx->hdrlen;
	e->sender = tx->sender;
	e->body = tx->body;
	e->smtputf8 = tx->smtputf8;
	e->ret = tx->ret;
	e->envid = tx->envid;
	e->client_addr = s->addr;
	e->client_helo = s->helo;
	e->held = tx->held;
	e->nrcpt = tx->nrcpt;
	e->rcpt = calloc(tx->nrcpt, sizeof(*e->rcpt));
	if (e->rcpt == NULL) {
		tx->spool_err = SPOOL_EIO;
		goto spoolfail;
	}
	for (int i = 0; i < tx->nrcpt; i++) {
		e->rcpt[i].address = tx->rcpt[i].address;
		e->rcpt[i].orcpt = tx->rcpt[i].orcpt;
		e->rcpt[i].notify = tx->rcpt[i].notify;
		e->rcpt[i].state = SPOOL_RCPT_PENDING;
		e->rcpt[i].next_attempt = e->arrival;
		e->rcpt[i].route = tx->rcpt[i].route;
	}
	/* a suspended destination: its deferral goes in with the message,
	 * not as a second write (forward_queued logs it) */
	forward_presuspend(e);
	if (spool_writer_commit(tx->w, e) < 0) {
		tx->w = NULL;
		tx->spool_err = spool_errno(backmxd.spool);
		goto spoolfail;
	}
	tx->w = NULL;
	/* the 250 waits for the group commit (ev_prepare) */
	s->state = S_COMMIT;
	ev_io_stop(backmxd.loop, &s->rio);
	s->wait_next = NULL;
	*wait_tail = s;
	wait_tail = &s->wait_next;
	ev_idle_start(backmxd.loop, &smtpd_idle);
	return;

spoolfail:
	stats.refused_spool++;
	log_err("%s: spool: %s", tx->id, spool_error(backmxd.spool));
	if (tx->spool_err == SPOOL_ENOSPC)
		smtpd_reply(s, "452 4.3.1 Error: insufficient system storage");
	else
		smtpd_reply(s, "451 4.3.0 Error: local error in processing");
	smtpd_tx_reset(s);
}

/* smtpd_data_input - octets while in S_DATA or S_BDAT */
static void
smtpd_data_input(struct session *s, const char *p, size_t n, size_t *used)
{
	struct smtpd_tx *tx = s->tx;

	*used = 0;
	if (s->state == S_DATA) {
		size_t k = smtpd_data_feed(&tx->data, p, n, smtpd_emit, tx);

		*used = k;
		if (tx->data.done)
			smtpd_tx_finish(s, tx->data.flags);
		return;
	}
	/* S_BDAT: exactly bdat_left octets, no unstuffing, but the same
	 * CR/LF pairing rules so nothing we store can smuggle downstream */
	while (*used < n && tx->bdat_left > 0) {
		size_t k = n - *used;

		if (k > tx->bdat_left)
			k = tx->bdat_left;
		if (!tx->bdat_discard) {
			for (size_t i = 0; i < k; i++) {
				unsigned char c = p[*used + i];

				if (tx->bdat_cr && c != '\n')
					tx->bdat_flags |= SMTPD_DATA_BARE;
				if (c == '\n' && !tx->bdat_cr)
					tx->bdat_flags |= SMTPD_DATA_BARE;
				if (c == '\0')
					tx->bdat_flags |= SMTPD_DATA_NUL;
				tx->bdat_cr = c == '\r';
				if (c == '\n')
					tx->bdat_linelen = 0;
				else if (++tx->bdat_linelen > SMTPD_TEXT_MAX - 2 &&
					 c != '\r')
					tx->bdat_flags |= SMTPD_DATA_LONG;
			}
			smtpd_emit(tx, p + *used, k);
		}
		*used += k;
		tx->bdat_left -= k;
	}
	if (tx->bdat_left > 0)
		return;
	s->state = S_CMD;
	if (tx->bdat_discard && tx->bdat_silent) {
		smtpd_tx_reset(s);	/* answered 552 when announced */
		return;
	}
	if (tx->bdat_discard) {
		smtpd_reply(s, "503 5.5.1 Error: %s",
			    tx->throwaway ? "need MAIL command"
					  : "no valid recipients");
		tx->bdat_discard = 0;
		if (tx->throwaway)
			smtpd_tx_reset(s);
		return;
	}
	if (!tx->bdat_last) {
		smtpd_reply(s, "250 2.0.0 Ok: %llu octets",
			    (unsigned long long)tx->size);
		return;
	}
	if (tx->bdat_cr)
		tx->bdat_flags |= SMTPD_DATA_BARE;
	smtpd_tx_finish(s, tx->bdat_flags);
}

static void
smtpd_cmd_bdat(struct session *s, char *arg)
{
	struct smtpd_tx *tx = s->tx;
	unsigned long long n;
	char *end;
	int last = 0, v;

	errno = 0;
	n = strtoull(arg, &end, 10);
	if (!isdigit((unsigned char)*arg) || errno) {
		smtpd_reply(s, "501 5.5.4 Syntax: BDAT size [LAST]");
		return;
	}
	while (*end == ' ')
		end++;
	if (smtpd_streq(end, "LAST"))
		last = 1;
	else if (*end != '\0') {
		smtpd_reply(s, "501 5.5.4 Syntax: BDAT size [LAST]");
		return;
	}
	if (tx == NULL || tx->nrcpt == 0) {
		/* the octets announced must still be read and discarded; a
		 * throwaway transaction consumes them */
		if (tx == NULL) {
			if (n == 0) {
				smtpd_reply(s, "503 5.5.1 Error: need MAIL "
					       "command");
				return;
			}
			if ((tx = calloc(1, sizeof(*tx))) == NULL) {
				smtpd_reply(s, "451 4.3.0 Error: out of "
					       "memory");
				s->close_after_flush = 1;
				return;
			}
			if ((tx->sender = strdup("")) == NULL) {
				free(tx);
				smtpd_reply(s, "451 4.3.0 Error: out of "
					       "memory");
				s->close_after_flush = 1;
				return;
			}
			tx->throwaway = 1;
			s->tx = tx;
		}
		tx->bdat_discard = 1;
		tx->bdat_left = n;
		tx->bdat_last = last;
		if (n == 0) {
			smtpd_reply(s, "503 5.5.1 Error: no valid recipients");
			return;
		}
		s->state = S_BDAT;
		return;
	}
	if ((v = smtpd_bdat_verdict(tx->size, n, backmxd.cfg->max_size)) !=
	    SMTPD_BDAT_OK) {
		/* RFC 3030 / 1870: over the limit is 552 5.3.4 at once; the
		 * transaction is over, the chunk is read into nowhere */
		stats.refused_size++;
		log_info("NOQUEUE: reject: BDAT from unknown[%s]: 552 5.3.4 "
			 "Error: message size exceeds fixed limit (chunk of "
			 "%llu octets over max_size %llu%s); from=<%s> "
			 "proto=ESMTP helo=<%s>",
			 s->addr, n, (unsigned long long)backmxd.cfg->max_size,
			 v == SMTPD_BDAT_CLOSE ? ", closing" : "", tx->sender,
			 s->helo);
		smtpd_reply(s, "552 5.3.4 Error: message size exceeds fixed "
			       "limit");
		smtpd_tx_reset(s);
		if (v == SMTPD_BDAT_CLOSE) {
			s->close_after_flush = 1;
			return;
		}
		if ((tx = calloc(1, sizeof(*tx))) == NULL ||
		    (tx->sender = strdup("")) == NULL) {
			free(tx);
			s->close_after_flush = 1;
			return;
		}
		tx->throwaway = 1;
		tx->bdat_discard = 1;
		tx->bdat_silent = 1;
		tx->bdat_left = n;
		tx->bdat_last = last;
		s->tx = tx;
		s->state = S_BDAT;
		return;
	}
	if (!tx->bdat) {
		tx->bdat = 1;
		s->n_data++;
		smtpd_tx_start(s);
	}
	tx->bdat_left = n;
	tx->bdat_last = last;
	s->state = S_BDAT;
	if (n == 0) {
		size_t used;

		smtpd_data_input(s, "", 0, &used);
	}
}

static int
smtpd_etrn_rate_ok(struct session *s)
{
	unsigned char a[16];
	ev_tstamp now = ev_now(backmxd.loop);
	struct etrn_track *free_slot = NULL, *oldest = &etrn_track[0];

	smtpd_addr_bytes(&s->ss, a);
	for (int i = 0; i < SMTPD_ETRN_TRACK; i++) {
		struct etrn_track *t = &etrn_track[i];

		if (t->count > 0 && memcmp(t->addr, a, 16) == 0) {
			if (now - t->window > 60) {
				t->window = now;
				t->count = 0;
			}
			return ++t->count <= backmxd.cfg->etrn_rate;
		}
		if (t->count == 0 && free_slot == NULL)
			free_slot = t;
		if (t->window < oldest->window)
			oldest = t;
	}
	if (free_slot == NULL)
		free_slot = oldest;
	memcpy(free_slot->addr, a, 16);
	free_slot->window = now;
	free_slot->count = 1;
	return 1;
}

static void
smtpd_cmd_etrn(struct session *s, char *arg)
{
	const struct config *cfg = backmxd.cfg;
	const struct policy_domain *d;
	char *name = arg;
	int n;

	if (s->helo[0] == '\0') {
		smtpd_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (s->tx != NULL) {
		smtpd_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
		return;
	}
	if (*name == '@')
		name++;
	if (*name == '\0' || strchr(name, ' ') != NULL || *name == '#') {
		smtpd_reply(s, "501 5.5.4 Syntax: ETRN domain");
		return;
	}
	if (!config_etrn_allowed(cfg, (const struct sockaddr *)&s->ss)) {
		log_info("NOQUEUE: reject: ETRN from unknown[%s]: 459 4.7.1 "
			 "<%s>: client not authorized to request ETRN; "
			 "proto=ESMTP helo=<%s>",
			 s->addr, name, s->helo);
		smtpd_reply(s, "459 4.7.1 <%s>: client not authorized to "
			       "request ETRN",
			    name);
		return;
	}
	if ((d = policy_find_domain(cfg->policy, name)) == NULL) {
		smtpd_reply(s, "459 4.1.2 <%s>: not a domain we queue mail for",
			    name);
		return;
	}
	if (!smtpd_etrn_rate_ok(s)) {
		smtpd_reply(s, "458 4.7.0 Unable to queue messages: ETRN rate "
			       "limit exceeded, try again later");
		return;
	}
	stats.etrn++;
	/* one pass over the spool: the count is of pending messages */
	n = forward_flush(d->name);
	if (n == 0) {
		log_info("ETRN %s from unknown[%s]: no messages waiting", d->name,
			 s->addr);
		smtpd_reply(s, "251 2.0.0 No messages waiting for node %s",
			    d->name);
		return;
	}
	log_info("ETRN %s from unknown[%s]: flush n=%d", d->name, s->addr, n);
	smtpd_reply(s, "250 2.0.0 Queuing for node %s started", d->name);
}

static void
smtpd_cmd_starttls(struct session *s, char *arg)
{
	if (*arg != '\0') {
		smtpd_reply(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	if (s->tls) {
		smtpd_reply(s, "503 5.5.1 Error: TLS already active");
		return;
	}
	if (tls_server_ctx() == NULL) {
		smtpd_reply(s, "502 5.5.1 Error: command not implemented");
		return;
	}
	if (s->tx != NULL) {
		smtpd_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
		return;
	}
	if ((s->ssl = tls_server_new(s->fd)) == NULL) {
		smtpd_reply(s, "454 4.7.0 TLS not available due to local "
			       "problem");
		return;
	}
	smtpd_reply(s, "220 2.0.0 Ready to start TLS");
	/*
	 * CVE-2011-0411: anything the client pipelined behind STARTTLS
	 * arrived in plaintext and must never be executed as if it came
	 * over TLS.  Discard it; forget HELO and any state.
	 */
	s->inlen = 0;
	s->helo[0] = '\0';
	s->esmtp = 0;
	s->state = S_TLS;
}

static void
smtpd_tls_step(struct session *s)
{
	char err[256];
	int want = 0, r;

	if (s->outlen > 0) {
		/* our 220 must be out, in plaintext, before the handshake */
		smtpd_flush(s);
		if (s->outlen > 0 || s->dead)
			return;
	}
	r = tls_handshake_step(s->ssl, &want, err, sizeof(err));
	if (r == 1) {
		s->tls = 1;
		tls_describe(s->ssl, s->tls_desc, sizeof(s->tls_desc));
		stats.tls_inbound++;
		log_info("Anonymous TLS connection established from "
			 "unknown[%s]: %s", s->addr, s->tls_desc);
		s->state = S_CMD;
		ev_io_stop(backmxd.loop, &s->wio);
		ev_io_start(backmxd.loop, &s->rio);
		/* SSL may hold decrypted octets already */
		ev_feed_event(backmxd.loop, &s->rio, EV_READ);
		return;
	}
	if (r < 0) {
		log_info("SSL_accept error from unknown[%s]: %s", s->addr,
			 err);
		s->dead = 1;
		return;
	}
	if (want == TLS_WANT_WRITE) {
		ev_io_stop(backmxd.loop, &s->rio);
		ev_io_start(backmxd.loop, &s->wio);
	} else {
		ev_io_stop(backmxd.loop, &s->wio);
		ev_io_start(backmxd.loop, &s->rio);
	}
}

/* smtpd_command - dispatch one command line (CRLF removed) */
static void
smtpd_command(struct session *s, char *line)
{
	char *arg;
	size_t vlen;

	s->n_cmds++;
	vlen = strcspn(line, " ");
	arg = line + vlen;
	if (*arg == ' ')
		*arg++ = '\0';

	if (smtpd_streq(line, "EHLO"))
		smtpd_cmd_helo(s, arg, 1);
	else if (smtpd_streq(line, "HELO"))
		smtpd_cmd_helo(s, arg, 0);
	else if (smtpd_streq(line, "MAIL"))
		smtpd_cmd_mail(s, arg);
	else if (smtpd_streq(line, "RCPT"))
		smtpd_cmd_rcpt(s, arg);
	else if (smtpd_streq(line, "DATA"))
		smtpd_cmd_data(s, arg);
	else if (smtpd_streq(line, "BDAT"))
		smtpd_cmd_bdat(s, arg);
	else if (smtpd_streq(line, "RSET")) {
		if (*arg != '\0')
			smtpd_reply(s, "501 5.5.4 Syntax: RSET");
		else {
			smtpd_tx_reset(s);
			smtpd_reply(s, "250 2.0.0 Ok");
		}
	} else if (smtpd_streq(line, "NOOP"))
		smtpd_reply(s, "250 2.0.0 Ok");
	else if (smtpd_streq(line, "QUIT")) {
		if (*arg != '\0') {
			smtpd_reply(s, "501 5.5.4 Syntax: QUIT");
			return;
		}
		smtpd_reply(s, "221 2.0.0 Bye");
		s->close_after_flush = 1;
	} else if (smtpd_streq(line, "VRFY"))
		smtpd_reply(s, "252 2.5.2 Cannot VRFY user, but will accept "
			       "message and attempt delivery");
	else if (smtpd_streq(line, "HELP"))
		smtpd_reply(s, "214 2.0.0 See RFC 5321; backmx is a backup MX");
	else if (smtpd_streq(line, "ETRN"))
		smtpd_cmd_etrn(s, arg);
	else if (smtpd_streq(line, "STARTTLS"))
		smtpd_cmd_starttls(s, arg);
	else {
		s->nerrors++;
		smtpd_reply(s, "500 5.5.2 Error: command not recognized");
	}
}

/* smtpd_process - run every complete command line in the buffer */
static void
smtpd_process(struct session *s)
{
	int was = s->processing;

	s->processing = 1;
	if (s->state == S_TLS) {
		smtpd_tls_step(s);
		s->processing = was;
		return;
	}
	while (!s->dead && !s->close_after_flush &&
	       (s->state == S_CMD || s->state == S_DATA ||
		s->state == S_BDAT) &&
	       s->inlen > 0) {
		char *lf;
		size_t len;

		if (s->state == S_DATA || s->state == S_BDAT) {
			size_t used;

			smtpd_data_input(s, s->in, s->inlen, &used);
			memmove(s->in, s->in + used, s->inlen - used);
			s->inlen -= used;
			continue;
		}
		lf = memchr(s->in, '\n', s->inlen);
		if (lf == NULL) {
			if (s->inlen >= SMTPD_LINE_MAX_EXT) {
				if (!s->discard_line) {
					s->nerrors++;
					smtpd_reply(s, "500 5.5.2 Error: line "
						       "too long");
				}
				s->discard_line = 1;
				s->inlen = 0;
			}
			break;
		}
		len = lf - s->in + 1;
		if (s->discard_line) {
			s->discard_line = 0;
		} else if (len > SMTPD_LINE_MAX_EXT ||
			   (len > SMTPD_LINE_MAX &&
			    strncasecmp(s->in, "MAIL ", 5) != 0 &&
			    strncasecmp(s->in, "RCPT ", 5) != 0)) {
			s->nerrors++;
			smtpd_reply(s, "500 5.5.2 Error: line too long");
		} else if (len < 2 || lf[-1] != '\r') {
			s->nerrors++;
			smtpd_reply(s, "500 5.5.2 Error: bare LF in command "
				       "(CRLF required)");
		} else {
			char line[SMTPD_LINE_MAX_EXT];

			memcpy(line, s->in, len - 2);
			line[len - 2] = '\0';
			memmove(s->in, s->in + len, s->inlen - len);
			s->inlen -= len;
			if (memchr(line, '\0', len - 2) != NULL ||
			    memchr(line, '\r', len - 2) != NULL) {
				s->nerrors++;
				smtpd_reply(s, "500 5.5.2 Error: invalid "
					       "characters in command");
			} else
				smtpd_command(s, line);
			goto check;
		}
		memmove(s->in, s->in + len, s->inlen - len);
		s->inlen -= len;
check:
		if (s->nerrors > SMTPD_MAX_ERRORS) {
			smtpd_reply(s, "421 4.7.0 %s Error: too many errors",
				    backmxd.cfg->hostname);
			s->close_after_flush = 1;
		}
	}
	if (s->state == S_TLS)
		smtpd_tls_step(s);
	/* return a grown input buffer once it is drained */
	if (s->inlen == 0 && s->incap > SMTPD_IN_MIN) {
		free(s->in);
		s->in = NULL;
		s->incap = 0;
	}
	s->processing = was;
}

/* ------------------------------------------------------------------ */
/* group commit */

static void
smtpd_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct session *list = wait_head, *s, *next;
	int rc;

	if (list == NULL)
		return;
	wait_head = NULL;
	wait_tail = &wait_head;
	rc = spool_sync(backmxd.spool);
	if (rc < 0)
		log_err("spool sync: %s", spool_error(backmxd.spool));
	for (s = list; s != NULL; s = next) {
		struct smtpd_tx *tx = s->tx;

		next = s->wait_next;
		s->state = S_CMD;
		if (rc < 0) {
			/* not durable: never acknowledged; try not to
			 * deliver it either (the client will retry) */
			spool_message_delete(backmxd.spool, tx->id);
			stats.refused_spool++;
			if (spool_errno(backmxd.spool) == SPOOL_ENOSPC)
				smtpd_reply(s, "452 4.3.1 Error: insufficient "
					       "system storage");
			else
				smtpd_reply(s, "451 4.3.0 Error: local error "
					       "in processing");
		} else {
			smtpd_reply(s, "250 2.0.0 Ok: queued as %s", tx->id);
			stats.accepted++;
			stats.accepted_bytes += tx->size;
			log_msg(tx->id, "client=unknown[%s]", s->addr);
			log_msg(tx->id, "message-id=<%s>",
				tx->hs.message_id);
			log_svc("qmgr", LOG_INFO, tx->id, "from=<%s>, size=%llu, "
				"nrcpt=%d (queue active)", tx->sender,
				(unsigned long long)tx->size, tx->nrcpt);
			forward_queued(&tx->env);
		}
		smtpd_tx_reset(s);
		if (s->close_after_flush && s->outlen == 0 && s->inlen == 0) {
			/* the client went away while we synced */
			s->close_after_flush = 0;
			smtpd_flush(s);
			s->dead = 1;
			smtpd_done(s);
			continue;
		}
		s->processing = 1;
		smtpd_process(s);	/* commands pipelined behind the data */
		s->processing = 0;
		smtpd_flush(s);
		if (smtpd_done(s))
			continue;
		if ((s->state == S_CMD || s->state == S_DATA ||
		     s->state == S_BDAT) &&
		    !s->close_after_flush)
			ev_io_start(loop, &s->rio);
	}
}

/* smtpd_idle_cb - one loop turn without blocking, so that the prepare
 * watcher runs again for commits made inside the previous one */
static void
smtpd_idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	ev_idle_stop(loop, w);
}

void
smtpd_init(void)
{
	ev_prepare_init(&smtpd_prepare, smtpd_prepare_cb);
	ev_idle_init(&smtpd_idle, smtpd_idle_cb);
	ev_prepare_start(backmxd.loop, &smtpd_prepare);
}

void
smtpd_shutdown(void)
{
	struct session *s, *next;

	/* verdicts first: whatever was committed gets its 250 */
	smtpd_prepare_cb(backmxd.loop, &smtpd_prepare, 0);
	for (s = sessions; s != NULL; s = next) {
		next = s->next;
		if (s->state != S_TLS || s->tls)
			smtpd_reply(s, "421 4.3.2 %s Service shutting down",
				    backmxd.cfg->hostname);
		s->processing = 0;
		smtpd_flush(s);
		s->dead = 1;
		s->state = S_CLOSING;
		smtpd_done(s);
	}
	ev_prepare_stop(backmxd.loop, &smtpd_prepare);
}
