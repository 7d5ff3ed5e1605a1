/*
 * smtpd.c - the life of an inbound ESMTP session: accept (max_clients,
 * client_limits.c), the connect-time filters (DNSBL, then the milters'
 * connect stage, smtpd_milter.c) and the banner,
 * reading and writing (plain or TLS), the command-line loop that feeds
 * smtpd_cmd.c's table and smtpd_body.c's readers, pausing for async
 * decisions, timeouts, close and shutdown; the group commit (the 250
 * after DATA only once the log flush ran) is smtpd_commit.c's.
 *
 * Called by listen.c (new sessions) and main.c (init/shutdown); the
 * session and its states are in smtpd_int.h.
 *
 * Memory per session is bounded: a small command buffer and an output
 * buffer whose size is capped (a client that does not read our replies
 * is not read either).  DATA is read through one process-wide scratch
 * buffer and streamed to the spool; a body is never held whole.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client_limits.h"
#include "config_filter.h"
#include "forward.h"
#include "log.h"
#include "net.h"
#include "smtpd_int.h"
#include "tls.h"

static struct smtpd_session *sessions;
static int nsessions;
static char smtpd_scratch[SMTPD_SCRATCH];

static void smtpd_connect_filters(struct smtpd_session *);
static void smtpd_dnsbl_refuse(struct smtpd_session *,
                               const struct dnsbl_verdict *);

static const char *const smtpd_state_names[] = {
    [S_CMD] = "CMD",         [S_DATA] = "DATA",     [S_BDAT] = "BDAT",
    [S_COMMIT] = "COMMIT",   [S_TLS] = "TLS",       [S_WAIT] = "WAIT",
    [S_CLOSING] = "CLOSING", [S_FILTER] = "FILTER",
};

/* smtpd_state_name - the state as logs print it */
const char *
smtpd_state_name(enum smtpd_state st)
{
	if ((unsigned)st >=
	        sizeof(smtpd_state_names) / sizeof(*smtpd_state_names) ||
	    smtpd_state_names[st] == NULL)
		return "?";
	return smtpd_state_names[st];
}

/* ------------------------------------------------------------------ */
/* output */

static void
smtpd_out(struct smtpd_session *s, const char *p, size_t n)
{
	if (s->outlen + n > s->outcap) {
		char *o = net_grow(s->out, &s->outcap, s->outlen + n, 512, 0);

		if (o == NULL)
			return; /* dropped reply: the session will time out */
		s->out = o;
	}
	memcpy(s->out + s->outlen, p, n);
	s->outlen += n;
}

void
smtpd_reply(struct smtpd_session *s, const char *fmt, ...)
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
void
smtpd_reply_result(struct smtpd_session *s, const struct result *r)
{
	if (r->enh[0] != '\0')
		smtpd_reply(s, "%d %s %s", r->code, r->enh, r->text);
	else
		smtpd_reply(s, "%d %s", r->code, r->text);
}

/*
 * smtpd_io_write / smtpd_io_read - through net.c; TLS only once the
 * handshake is done (the 220 to STARTTLS goes out in clear)
 */
#ifdef BACKMX_FUZZ
const struct smtpd_fuzz_io *smtpd_fuzz_io;
#endif

static ssize_t
smtpd_io_write(struct smtpd_session *s, const char *p, size_t n)
{
#ifdef BACKMX_FUZZ
	if (smtpd_fuzz_io != NULL)
		return smtpd_fuzz_io->write(smtpd_fuzz_io->arg, p, n);
#endif
	return net_write(s->fd, s->tls ? s->ssl : NULL, p, n, NULL);
}

/* smtpd_io_read - >0 octets, 0 EOF, -1 with errno (EAGAIN: nothing now) */
static ssize_t
smtpd_io_read(struct smtpd_session *s, char *p, size_t n)
{
#ifdef BACKMX_FUZZ
	if (smtpd_fuzz_io != NULL)
		return smtpd_fuzz_io->read(smtpd_fuzz_io->arg, p, n);
#endif
	return net_read(s->fd, s->tls ? s->ssl : NULL, p, n, NULL);
}

/* smtpd_flush - write what we can; the rest waits for EV_WRITE */
void
smtpd_flush(struct smtpd_session *s)
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

/* ------------------------------------------------------------------ */
/* transactions */

void
smtpd_tx_free(struct smtpd_tx *tx)
{
	if (tx == NULL)
		return;
	if (tx->w != NULL)
		spool_writer_abort(tx->w);
	if (tx->milter != NULL)
		milter_tx_end(tx->milter); /* a pending message stage */
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

void
smtpd_tx_reset(struct smtpd_session *s)
{
	smtpd_tx_free(s->tx);
	s->tx = NULL;
	milter_tx_end(s->milters); /* SMFIC_ABORT where one is owed */
}

/* ------------------------------------------------------------------ */
/* session life */

static void
smtpd_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct smtpd_session *s = w->data;

	if (s->state == S_COMMIT || s->state == S_FILTER || s->state == S_WAIT)
		return; /* our own wait; never the client's fault */
	log_info("timeout after %s from unknown[%s]",
	         s->state == S_DATA || s->state == S_BDAT ? "DATA"
	         : s->state == S_TLS                      ? "STARTTLS"
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
smtpd_free(struct smtpd_session *s)
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
	smtpd_tx_free(s->mh_tx);
	free(s->mh_rcpt);
	free(s->mh_orcpt);
	milter_session_free(s->milters);
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
int
smtpd_done(struct smtpd_session *s)
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
void
smtpd_close(struct smtpd_session *s)
{
	s->dead = 1;
	smtpd_done(s);
}

static void
smtpd_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct smtpd_session *s = w->data;

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
smtpd_in_room(struct smtpd_session *s, size_t n)
{
	char *p;

	if (s->inlen + n <= s->incap)
		return 0;
	p = net_grow(s->in, &s->incap, s->inlen + n, SMTPD_IN_MIN,
	             SMTPD_IN_MAX);
	if (p == NULL)
		return -1;
	s->in = p;
	return 0;
}

static void
smtpd_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct smtpd_session *s = w->data;
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
						smtpd_reply(
						    s,
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
		ev_io_stop(loop, &s->rio); /* nothing more is read */
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
smtpd_limits(struct smtpd_session *s)
{
	static const char msg[] = "421 4.7.0 Error: too many connections "
	                          "from your address\r\n";
	static const char rate[] = "421 4.7.0 Error: too many connections "
	                           "from your address, slow down\r\n";
	const struct config *cfg = backmxd.cfg;
	enum limits_verdict v =
	    client_limits_open(&s->ss, ev_now(backmxd.loop));

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
	struct smtpd_session *s = arg;

	s->dnsbl = NULL;
	if (!v->listed) {
		if (smtpd_milter_connect(s) == 0)
			smtpd_greet(s);
		return;
	}
	smtpd_dnsbl_refuse(s, v);
	smtpd_done(s);
}

/* smtpd_dnsbl_refuse - 554 at connect: the client waits for no banner */
static void
smtpd_dnsbl_refuse(struct smtpd_session *s, const struct dnsbl_verdict *v)
{
	log_info(
	    "NOQUEUE: reject: CONNECT from unknown[%s]: %s; filter=dnsbl%s",
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
smtpd_connect_filters(struct smtpd_session *s)
{
	struct dnsbl_verdict v;

	switch (dnsbl_check_start(&s->ss, s->addr, &v, smtpd_dnsbl_cb, s,
	                          &s->dnsbl)) {
	case DNSBL_PENDING:
		s->state = S_FILTER; /* nothing is read meanwhile */
		return;
	case DNSBL_LISTED:
		smtpd_dnsbl_refuse(s, &v);
		smtpd_done(s);
		return;
	case DNSBL_PASS:
		break;
	}
	if (smtpd_milter_connect(s) == 0)
		smtpd_greet(s);
}

void
smtpd_session_new(int fd, const struct sockaddr *sa, socklen_t salen)
{
	const struct config *cfg = backmxd.cfg;
	struct smtpd_session *s;

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

		inet_ntop(AF_INET6, &sin6->sin6_addr, s->addr, sizeof(s->addr));
		s->port = ntohs(sin6->sin6_port);
	} else
		strcpy(s->addr, "unknown");

	if (nsessions + stats_others_sessions() >= (uint64_t)cfg->max_clients) {
		static const char msg[] = "421 4.7.0 Error: too many "
		                          "connections, try again later\r\n";

		stats.sessions_refused++;
		log_warn("too many connections: refusing unknown[%s]: "
		         "max_clients %d reached",
		         s->addr, cfg->max_clients);
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
void
smtpd_greet(struct smtpd_session *s)
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
		smtpd_reply(s,
		            "554 5.5.0 %s Error: talking before the greeting",
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

/*
 * smtpd_pause / smtpd_resume - an async decision (rcpt_verify) holds the
 * session: no input is read and no pipelined command runs until
 * smtpd_resume (shared with the milter path), called from the decision's
 * callback after the reply was queued.
 */
void
smtpd_pause(struct smtpd_session *s)
{
	s->state = S_WAIT;
	ev_io_stop(backmxd.loop, &s->rio);
}

/* smtpd_resume - after an async verdict: pipelined input, then read on */
void
smtpd_resume(struct smtpd_session *s)
{
	if (s->state == S_WAIT) /* the decision may have begun DATA */
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

/* smtpd_process - run every complete command line in the buffer */
void
smtpd_process(struct smtpd_session *s)
{
	int was = s->processing;

	s->processing = 1;
	if (s->state == S_TLS) {
		smtpd_tls_step(s);
		s->processing = was;
		return;
	}
	while (
	    !s->dead && !s->close_after_flush &&
	    (s->state == S_CMD || s->state == S_DATA || s->state == S_BDAT) &&
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

void
smtpd_init(void)
{
	smtpd_commit_init();
}

#ifdef BACKMX_FUZZ
/*
 * smtpd_fuzz_step - one loop turn without the loop, for the fuzz driver
 * (see smtpd.h): every session's armed write or read callback is called
 * as if its socket were ready (I/O goes through smtpd_fuzz_io), then the
 * group commit's prepare callback.  Returns the sessions left.
 */
int
smtpd_fuzz_step(void)
{
	struct smtpd_session *s, *next;

	for (s = sessions; s != NULL; s = next) {
		next = s->next; /* a callback frees at most its own session */
		if (ev_is_active(&s->wio))
			smtpd_write_cb(backmxd.loop, &s->wio, EV_WRITE);
		else if (ev_is_active(&s->rio) || ev_is_pending(&s->rio)) {
			ev_clear_pending(backmxd.loop, &s->rio);
			smtpd_read_cb(backmxd.loop, &s->rio, EV_READ);
		}
	}
	smtpd_commit_step();
	return nsessions;
}
#endif

void
smtpd_shutdown(void)
{
	struct smtpd_session *s, *next;

	/* verdicts first: whatever was committed gets its 250 */
	smtpd_commit_drain();
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
}
