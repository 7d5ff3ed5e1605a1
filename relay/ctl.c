/*
 * ctl.c - the control socket of backmxd (protocol in control.h): a UNIX
 * stream socket served on the daemon's loop, many clients at once, never
 * blocking.  Listings stream from the spool in batches of CTL_BATCH, and
 * only while the client reads, so a million queued messages cost one
 * batch of memory and never stall the loop.
 * Called by main.c (control_open/start/close); calls the spool, the
 * forwarder (flush, hold, release, delete, bounce), the counter table of
 * metrics.h and, when it is linked in, the check-dns audit (checkdns.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "backmxd.h"
#include "checkdns.h"
#include "control.h"
#include "forward.h"
#include "jsonw.h"
#include "log.h"
#include "metrics.h"

#define CTL_BATCH 256		/* envelopes read per write readiness */
#define CTL_OUT_LOW (32 * 1024)	/* refill a listing below this */
#define CTL_IDLE 60.0		/* seconds without progress: drop */
#define CTL_CLIENTS_MAX 64
#define CTL_HEADER_MAX (64 * 1024)

/*
 * The audit module may not be linked in yet: its functions are weak, and
 * check-dns answers "not available" when they are absent.
 */
extern struct checkdns *checkdns_start(struct dns *, const struct config *,
				       const char *, checkdns_line_cb,
				       checkdns_done_cb, void *)
	__attribute__((weak));
extern void checkdns_cancel(struct checkdns *) __attribute__((weak));

enum ctl_state {
	CTL_READING,		/* waiting for the request line */
	CTL_STREAMING,		/* a listing: refill on write readiness */
	CTL_WAITING,		/* async work (check-dns) under way */
	CTL_FLUSHING,		/* end line queued: write out, then close */
};

struct ctl_client {
	struct ctl_client *prev, *next;
	int fd;
	ev_io io;
	ev_timer idle;
	enum ctl_state state;
	char in[CONTROL_LINE_MAX];
	size_t inlen;
	struct jsonw out;
	struct control_request req;
	char after[SPOOL_ID_LEN + 1];	/* listing cursor */
	uint64_t nmsg, nbytes;		/* listed so far */
	int64_t now;
	struct checkdns *audit;
};

static int ctl_fd = -1;
static ev_io ctl_accept;
static char ctl_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static struct ctl_client *ctl_clients;
static int ctl_nclients;

static void ctl_io_cb(struct ev_loop *, ev_io *, int);

/* ------------------------------------------------------------------ */
/* socket */

int
control_open(const struct config *cfg, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	struct passwd *pw;
	struct stat st;
	mode_t old;
	int fd;

	if (cfg->control == NULL || cfg->control[0] == '\0') {
		snprintf(err, errlen, "control: no socket path");
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(cfg->control) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "control socket %s: path too long",
			 cfg->control);
		return -1;
	}
	strcpy(sun.sun_path, cfg->control);

	if (lstat(sun.sun_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen,
				 "control socket %s: exists and is not a "
				 "socket",
				 sun.sun_path);
			return -1;
		}
		/* a live daemon answers (or is busy: EAGAIN); a stale
		 * socket refuses */
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    0);
		if (fd < 0) {
			snprintf(err, errlen, "control socket: %s",
				 strerror(errno));
			return -1;
		}
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 ||
		    errno == EAGAIN || errno == EINPROGRESS) {
			close(fd);
			snprintf(err, errlen,
				 "control socket %s: another backmxd is "
				 "running",
				 sun.sun_path);
			return -1;
		}
		close(fd);
		if (unlink(sun.sun_path) < 0 && errno != ENOENT) {
			snprintf(err, errlen, "control socket %s: unlink: %s",
				 sun.sun_path, strerror(errno));
			return -1;
		}
	}

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "control socket: %s", strerror(errno));
		return -1;
	}
	old = umask(0117);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		umask(old);
		snprintf(err, errlen, "control socket %s: bind: %s",
			 sun.sun_path, strerror(errno));
		close(fd);
		return -1;
	}
	umask(old);
	if (chmod(sun.sun_path, 0660) < 0)
		goto fail;
	if (cfg->user != NULL && geteuid() == 0) {
		if ((pw = getpwnam(cfg->user)) == NULL) {
			errno = ENOENT;
			goto fail;
		}
		if (chown(sun.sun_path, pw->pw_uid, pw->pw_gid) < 0)
			goto fail;
	}
	if (listen(fd, 64) < 0)
		goto fail;
	ctl_fd = fd;
	memcpy(ctl_path, sun.sun_path, sizeof(ctl_path));
	return 0;

fail:
	snprintf(err, errlen, "control socket %s: %s", sun.sun_path,
		 strerror(errno));
	unlink(sun.sun_path);
	close(fd);
	return -1;
}

/* ctl_client_free - the only place a client dies (never in a nested cb) */
static void
ctl_client_free(struct ctl_client *c)
{
	if (c->audit != NULL && checkdns_cancel != NULL)
		checkdns_cancel(c->audit);
	ev_io_stop(backmxd.loop, &c->io);
	ev_timer_stop(backmxd.loop, &c->idle);
	close(c->fd);
	jsonw_free(&c->out);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		ctl_clients = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	ctl_nclients--;
	free(c);
}

void
control_close(void)
{
	if (ctl_fd == -1)
		return;
	if (backmxd.loop != NULL)
		ev_io_stop(backmxd.loop, &ctl_accept);
	close(ctl_fd);
	ctl_fd = -1;
	unlink(ctl_path);
	while (ctl_clients != NULL)
		ctl_client_free(ctl_clients);
}

/* ------------------------------------------------------------------ */
/* output */

static void
ctl_write_mode(struct ctl_client *c)
{
	ev_io_stop(backmxd.loop, &c->io);
	ev_io_set(&c->io, c->fd, EV_WRITE);
	ev_io_start(backmxd.loop, &c->io);
}

/* ctl_end - queue the end line ("." or "-ERR text") and flush */
static void
ctl_end(struct ctl_client *c, const char *errtext)
{
	if (errtext == NULL) {
		jsonw_add(&c->out, ".\n", 2);
	} else {
		jsonw_adds(&c->out, "-ERR ");
		jsonw_text(&c->out, errtext);
		jsonw_add(&c->out, "\n", 1);
	}
	c->state = CTL_FLUSHING;
	ctl_write_mode(c);
}

static void ctl_fail(struct ctl_client *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
ctl_fail(struct ctl_client *c, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	ctl_end(c, text);
}

/* ctl_age - "42s", "17m", "5h", "3d" */
static const char *
ctl_age(char *buf, size_t len, int64_t secs)
{
	if (secs < 0)
		secs = 0;
	if (secs < 60)
		snprintf(buf, len, "%llds", (long long)secs);
	else if (secs < 3600)
		snprintf(buf, len, "%lldm", (long long)secs / 60);
	else if (secs < 86400)
		snprintf(buf, len, "%lldh", (long long)secs / 3600);
	else
		snprintf(buf, len, "%lldd", (long long)secs / 86400);
	return buf;
}

static const char *
ctl_state_name(int state)
{
	switch (state) {
	case SPOOL_RCPT_PENDING:
		return "pending";
	case SPOOL_RCPT_DELIVERED:
		return "delivered";
	case SPOOL_RCPT_FAILED:
		return "failed";
	}
	return "unknown";
}

/* ctl_rcpt_at - is the address at domain (case-insensitive)? */
static int
ctl_rcpt_at(const char *address, const char *domain)
{
	const char *at = strrchr(address, '@');

	return at != NULL && strcasecmp(at + 1, domain) == 0;
}

/* ctl_pending_at - does e have a pending recipient at domain? */
static int
ctl_pending_at(const struct spool_envelope *e, const char *domain)
{
	for (int i = 0; i < e->nrcpt; i++)
		if (e->rcpt[i].state == SPOOL_RCPT_PENDING &&
		    ctl_rcpt_at(e->rcpt[i].address, domain))
			return 1;
	return 0;
}

/* ctl_json_fields - the members `queue --json` prints, without braces */
static void
ctl_json_fields(struct jsonw *w, const struct spool_envelope *e, int full)
{
	jsonw_adds(w, "\"id\": ");
	jsonw_cstr(w, e->id);
	jsonw_addf(w, ", \"size\": %llu, \"arrival\": %lld, \"sender\": ",
		   (unsigned long long)e->size, (long long)e->arrival);
	jsonw_cstr(w, e->sender != NULL ? e->sender : "");
	jsonw_addf(w, ", \"held\": %s", e->held ? "true" : "false");
	if (full) {
		jsonw_adds(w, ", \"client_addr\": ");
		jsonw_cstr(w, e->client_addr);
		jsonw_adds(w, ", \"client_helo\": ");
		jsonw_cstr(w, e->client_helo);
		jsonw_addf(w, ", \"body\": \"%s\", \"smtputf8\": %s",
			   e->body == SPOOL_BODY_8BITMIME      ? "8bitmime"
			   : e->body == SPOOL_BODY_BINARYMIME ? "binarymime"
							      : "7bit",
			   e->smtputf8 ? "true" : "false");
		jsonw_addf(w, ", \"ret\": %s",
			   e->ret == SPOOL_RET_FULL   ? "\"full\""
			   : e->ret == SPOOL_RET_HDRS ? "\"hdrs\""
						      : "null");
		jsonw_adds(w, ", \"envid\": ");
		jsonw_cstr(w, e->envid);
		jsonw_addf(w, ", \"is_bounce\": %s",
			   e->is_bounce ? "true" : "false");
	}
	jsonw_adds(w, ", \"recipients\": [");
	for (int i = 0; i < e->nrcpt; i++) {
		const struct spool_rcpt *r = &e->rcpt[i];

		jsonw_adds(w, i ? ", {\"address\": " : "{\"address\": ");
		jsonw_cstr(w, r->address);
		jsonw_addf(w,
			   ", \"state\": \"%s\", \"attempts\": %d, "
			   "\"next_attempt\": %lld, \"last_error\": ",
			   ctl_state_name(r->state), r->attempts,
			   (long long)r->next_attempt);
		jsonw_cstr(w, r->last_error);
		if (full) {
			jsonw_adds(w, ", \"orcpt\": ");
			jsonw_cstr(w, r->orcpt);
			jsonw_adds(w, ", \"notify\": [");
			if (r->notify & SPOOL_NOTIFY_NEVER)
				jsonw_adds(w, "\"never\"");
			else {
				const char *sep = "";

				if (r->notify & SPOOL_NOTIFY_SUCCESS) {
					jsonw_adds(w, "\"success\"");
					sep = ", ";
				}
				if (r->notify & SPOOL_NOTIFY_FAILURE) {
					jsonw_addf(w, "%s\"failure\"", sep);
					sep = ", ";
				}
				if (r->notify & SPOOL_NOTIFY_DELAY)
					jsonw_addf(w, "%s\"delay\"", sep);
			}
			jsonw_adds(w, "], \"route\": ");
			jsonw_cstr(w, r->route);
		}
		jsonw_add(w, "}", 1);
	}
	jsonw_add(w, "]", 1);
}

/* ctl_human_rcpt - "x@y  pending, 2 attempts, next in 4m" */
static void
ctl_human_rcpt(struct jsonw *w, const struct spool_envelope *e,
	       const struct spool_rcpt *r, int64_t now)
{
	char age[24];

	jsonw_text(w, r->address);
	jsonw_addf(w, "  %s", ctl_state_name(r->state));
	if (r->attempts > 0)
		jsonw_addf(w, ", %d attempt%s", r->attempts,
			   r->attempts == 1 ? "" : "s");
	if (r->state == SPOOL_RCPT_PENDING) {
		if (e->held)
			jsonw_adds(w, ", held");
		else if (r->next_attempt <= now)
			jsonw_adds(w, ", due now");
		else
			jsonw_addf(w, ", next in %s",
				   ctl_age(age, sizeof(age),
					   r->next_attempt - now));
	}
}

/* ctl_human_envelope - postqueue -p style: a message line, then one
 * indented line a recipient and its last error in parentheses */
static void
ctl_human_envelope(struct jsonw *w, const struct spool_envelope *e,
		   int64_t now)
{
	char age[24];

	jsonw_addf(w, "+%-12s%c %9llu %5s  <", e->id, e->held ? '!' : ' ',
		   (unsigned long long)e->size,
		   ctl_age(age, sizeof(age), now - e->arrival));
	jsonw_text(w, e->sender != NULL ? e->sender : "");
	jsonw_adds(w, ">\n");
	for (int i = 0; i < e->nrcpt; i++) {
		const struct spool_rcpt *r = &e->rcpt[i];

		jsonw_addf(w, "+%31s", "");
		ctl_human_rcpt(w, e, r, now);
		jsonw_add(w, "\n", 1);
		if (r->last_error != NULL && r->state != SPOOL_RCPT_DELIVERED) {
			jsonw_addf(w, "+%33s(", "");
			jsonw_text(w, r->last_error);
			jsonw_adds(w, ")\n");
		}
	}
}

/* ------------------------------------------------------------------ */
/* queue */

static int
ctl_queue_one_cb(void *arg, const struct spool_envelope *e)
{
	struct ctl_client *c = arg;

	memcpy(c->after, e->id, sizeof(c->after));
	c->after[SPOOL_ID_LEN] = '\0';
	if (c->req.nargs == 1 && !ctl_pending_at(e, c->req.args[0]))
		return 0;
	c->nmsg++;
	c->nbytes += e->size;
	if (c->req.json) {
		jsonw_adds(&c->out, "+{");
		ctl_json_fields(&c->out, e, 0);
		jsonw_adds(&c->out, "}\n");
	} else
		ctl_human_envelope(&c->out, e, c->now);
	return 0;
}

/* ctl_queue_fill - one batch of the listing; the end line after the last */
static void
ctl_queue_fill(struct ctl_client *c)
{
	int n;

	n = spool_scan(backmxd.spool, c->after, CTL_BATCH, ctl_queue_one_cb,
		       c);
	if (n < 0) {
		ctl_fail(c, "spool: %s", spool_error(backmxd.spool));
		return;
	}
	if (n < CTL_BATCH) {
		if (!c->req.json) {
			if (c->nmsg == 0)
				jsonw_adds(&c->out, "+Mail queue is empty\n");
			else
				jsonw_addf(&c->out,
					   "+-- %llu Kbytes in %llu "
					   "message%s.\n",
					   (unsigned long long)(c->nbytes +
								1023) / 1024,
					   (unsigned long long)c->nmsg,
					   c->nmsg == 1 ? "" : "s");
		}
		ctl_end(c, NULL);
	}
}

static void
ctl_cmd_queue(struct ctl_client *c)
{
	c->after[0] = '\0';
	c->now = time(NULL);
	if (!c->req.json)
		jsonw_addf(&c->out, "+%-13s %9s %5s  %s\n", "-Queue ID-",
			   "-Size-", "-Age-", "-Sender/Recipient-");
	c->state = CTL_STREAMING;
	ctl_write_mode(c);
}

/* ------------------------------------------------------------------ */
/* show */

/* ctl_header_len - octets of the header in p (before the empty line
 * that ends it), or n when no end was found */
static size_t
ctl_header_len(const char *p, size_t n)
{
	size_t i;

	if (n >= 1 && p[0] == '\n')
		return 0;
	if (n >= 2 && p[0] == '\r' && p[1] == '\n')
		return 0;
	for (i = 0; i < n; i++) {
		if (p[i] != '\n')
			continue;
		if (i + 1 < n && p[i + 1] == '\n')
			return i + 1;
		if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n')
			return i + 1;
	}
	return n;
}

/* ctl_header_read - up to CTL_HEADER_MAX octets of the body; 0 / -1 */
static int
ctl_header_read(const char *id, struct jsonw *h, size_t *hlen)
{
	const void *data;
	size_t len;
	uint32_t chunk;
	int r = 0;

	for (chunk = 0; h->len < CTL_HEADER_MAX; chunk++) {
		r = spool_body_read(backmxd.spool, id, chunk, &data, &len);
		if (r <= 0)
			break;
		jsonw_add(h, data, len);
		if (ctl_header_len(h->buf, h->len) < h->len)
			break;
	}
	if (r < 0 || h->oom)
		return -1;
	*hlen = h->len > 0 ? ctl_header_len(h->buf, h->len) : 0;
	if (*hlen > CTL_HEADER_MAX)
		*hlen = CTL_HEADER_MAX;
	return 0;
}

static void
ctl_show_line(struct jsonw *w, const char *label, const char *value)
{
	jsonw_addf(w, "+%-14s", label);
	jsonw_text(w, value);
	jsonw_add(w, "\n", 1);
}

static void
ctl_cmd_show(struct ctl_client *c)
{
	struct spool_envelope *e;
	struct jsonw h, *w = &c->out;
	size_t hlen = 0, i, start;
	int64_t now = time(NULL);
	char tbuf[64], age[24];
	struct tm tm;
	time_t t;

	if ((e = spool_envelope_get(backmxd.spool, c->req.args[0])) == NULL) {
		if (spool_errno(backmxd.spool) == SPOOL_ENOTFOUND)
			ctl_fail(c, "no such message %s", c->req.args[0]);
		else
			ctl_fail(c, "spool: %s", spool_error(backmxd.spool));
		return;
	}
	jsonw_init(&h);
	if (ctl_header_read(e->id, &h, &hlen) < 0) {
		ctl_fail(c, "cannot read the body of %s: %s", e->id,
			 h.oom ? "out of memory" : spool_error(backmxd.spool));
		goto done;
	}
	if (c->req.json) {
		jsonw_adds(w, "+{");
		ctl_json_fields(w, e, 1);
		jsonw_adds(w, ", \"header\": ");
		jsonw_str(w, h.buf != NULL ? h.buf : "", hlen);
		jsonw_adds(w, "}\n");
		ctl_end(c, NULL);
		goto done;
	}

	t = (time_t)e->arrival;
	gmtime_r(&t, &tm);
	strftime(tbuf, sizeof(tbuf), "%Y-%m-%d %H:%M:%S UTC", &tm);
	ctl_show_line(w, "id:", e->id);
	jsonw_addf(w, "+%-14s%s (%s ago)\n", "arrival:", tbuf,
		   ctl_age(age, sizeof(age), now - e->arrival));
	jsonw_addf(w, "+%-14s%llu\n", "size:", (unsigned long long)e->size);
	jsonw_addf(w, "+%-14s<", "sender:");
	jsonw_text(w, e->sender != NULL ? e->sender : "");
	jsonw_adds(w, ">\n");
	jsonw_addf(w, "+%-14s", "client:");
	jsonw_text(w, e->client_addr);
	jsonw_adds(w, " (helo ");
	jsonw_text(w, e->client_helo);
	jsonw_adds(w, ")\n");
	jsonw_addf(w, "+%-14s%s%s\n", "body:",
		   e->body == SPOOL_BODY_8BITMIME      ? "8bitmime"
		   : e->body == SPOOL_BODY_BINARYMIME ? "binarymime"
						      : "7bit",
		   e->smtputf8 ? ", smtputf8" : "");
	jsonw_addf(w, "+%-14s%s", "dsn:",
		   e->ret == SPOOL_RET_FULL   ? "ret=full"
		   : e->ret == SPOOL_RET_HDRS ? "ret=hdrs"
					      : "ret=-");
	jsonw_adds(w, ", envid=");
	jsonw_text(w, e->envid);
	jsonw_add(w, "\n", 1);
	jsonw_addf(w, "+%-14s%s%s\n", "status:", e->held ? "held" : "active",
		   e->is_bounce ? ", a bounce (never bounced itself)" : "");
	for (int k = 0; k < e->nrcpt; k++) {
		const struct spool_rcpt *r = &e->rcpt[k];

		jsonw_addf(w, "+%-14s", "recipient:");
		ctl_human_rcpt(w, e, r, now);
		jsonw_add(w, "\n", 1);
		if (r->last_error != NULL)
			ctl_show_line(w, "  last error:", r->last_error);
		if (r->route != NULL)
			ctl_show_line(w, "  route:", r->route);
		if (r->orcpt != NULL)
			ctl_show_line(w, "  orcpt:", r->orcpt);
	}
	jsonw_adds(w, "+\n");
	/* the header, one output line per physical line */
	for (i = 0, start = 0; i <= hlen; i++) {
		if (i < hlen && h.buf[i] != '\n')
			continue;
		if (i > start || i < hlen) {
			size_t n = i - start;

			if (n > 0 && h.buf[start + n - 1] == '\r')
				n--;
			jsonw_add(w, "+", 1);
			jsonw_textn(w, h.buf + start, n);
			jsonw_add(w, "\n", 1);
		}
		start = i + 1;
	}
	if (hlen == CTL_HEADER_MAX)
		jsonw_adds(w, "+[header truncated]\n");
	ctl_end(c, NULL);
done:
	jsonw_free(&h);
	spool_envelope_free(e);
}

/* ------------------------------------------------------------------ */
/* actions */

/* ctl_id_exists - 1 when id is queued; else the client got -ERR */
static int
ctl_id_exists(struct ctl_client *c, const char *id)
{
	struct spool_envelope *e;

	if ((e = spool_envelope_get(backmxd.spool, id)) != NULL) {
		spool_envelope_free(e);
		return 1;
	}
	if (spool_errno(backmxd.spool) == SPOOL_ENOTFOUND)
		ctl_fail(c, "no such message %s", id);
	else
		ctl_fail(c, "spool: %s", spool_error(backmxd.spool));
	return 0;
}

static void
ctl_report_count(struct ctl_client *c, const char *verb, int n)
{
	if (c->req.json)
		jsonw_addf(&c->out, "+{\"%s\": %d}\n", verb, n);
	else
		jsonw_addf(&c->out, "+%s %d message%s\n", verb, n,
			   n == 1 ? "" : "s");
	ctl_end(c, NULL);
}

static void
ctl_cmd_flush(struct ctl_client *c)
{
	const char *domain = c->req.nargs ? c->req.args[0] : NULL;
	int n;

	n = forward_flush(domain);
	if (domain != NULL)
		log_info("control: flush domain=%s n=%d", domain, n);
	else
		log_info("control: flush n=%d", n);
	if (n < 0) {
		ctl_fail(c, "flush failed: %s", spool_error(backmxd.spool));
		return;
	}
	ctl_report_count(c, "flushed", n);
}

static void
ctl_cmd_hold(struct ctl_client *c, int hold)
{
	const char *what = c->req.args[0];
	const char *verb = hold ? "hold" : "release";
	int n;

	if (c->req.arg_is_id) {
		if (!ctl_id_exists(c, what))
			return;
	} else if (policy_find_domain(backmxd.cfg->policy, what) == NULL &&
		   forward_pending_for(what) <= 0) {
		ctl_fail(c, "no such domain %s", what);
		return;
	}
	n = forward_hold(what, hold);
	log_info("control: %s %s=%s n=%d", verb,
		 c->req.arg_is_id ? "id" : "domain", what, n);
	if (n < 0) {
		if (c->req.arg_is_id) {
			ctl_fail(c, "no such message %s", what);
			return;
		}
		n = 0;
	}
	ctl_report_count(c, hold ? "held" : "released", n);
}

static void
ctl_cmd_remove(struct ctl_client *c, int bounce)
{
	const char *id = c->req.args[0];
	int r;

	if (!ctl_id_exists(c, id))
		return;
	r = bounce ? forward_bounce(id) : forward_delete(id);
	log_info("control: %s id=%s%s", bounce ? "bounce" : "delete", id,
		 r < 0 ? " failed" : "");
	if (r < 0) {
		ctl_fail(c, "cannot %s %s: %s", bounce ? "bounce" : "delete",
			 id, spool_error(backmxd.spool));
		return;
	}
	if (c->req.json)
		jsonw_addf(&c->out, "+{\"%s\": \"%s\"}\n",
			   bounce ? "bounced" : "deleted", id);
	else
		jsonw_addf(&c->out, "+%s %s\n", bounce ? "bounced" : "deleted",
			   id);
	ctl_end(c, NULL);
}

/* ------------------------------------------------------------------ */
/* stats */

static void
ctl_cmd_stats(struct ctl_client *c)
{
	struct jsonw *w = &c->out;
	uint64_t msgs = 0, bytes = 0;
	int64_t oldest, age = 0;
	size_t i;

	if (backmxd.spool != NULL)
		spool_count(backmxd.spool, &msgs, &bytes);
	if ((oldest = metrics_oldest_arrival()) >= 0)
		age = (int64_t)time(NULL) - oldest;
	if (age < 0)
		age = 0;
	log_info("control: stats");
	if (c->req.json) {
		jsonw_add(w, "+{", 2);
		for (i = 0; i < metrics_ncounters; i++)
			jsonw_addf(w, "\"%s\": %llu, ", metrics_counters[i].name,
				   (unsigned long long)metrics_counter_value(
					   &metrics_counters[i]));
		jsonw_addf(w,
			   "\"spool_messages\": %llu, \"spool_bytes\": %llu, "
			   "\"oldest_message_age\": %lld}\n",
			   (unsigned long long)msgs, (unsigned long long)bytes,
			   (long long)age);
	} else {
		for (i = 0; i < metrics_ncounters; i++)
			jsonw_addf(w, "+%-20s %llu\n", metrics_counters[i].name,
				   (unsigned long long)metrics_counter_value(
					   &metrics_counters[i]));
		jsonw_addf(w, "+%-20s %llu\n", "spool_messages",
			   (unsigned long long)msgs);
		jsonw_addf(w, "+%-20s %llu\n", "spool_bytes",
			   (unsigned long long)bytes);
		jsonw_addf(w, "+%-20s %lld\n", "oldest_message_age",
			   (long long)age);
	}
	ctl_end(c, NULL);
}

/* ------------------------------------------------------------------ */
/* check-dns */

static void
ctl_audit_line_cb(void *arg, const char *level, const char *check,
		  const char *text)
{
	struct ctl_client *c = arg;

	if (c->req.json) {
		jsonw_adds(&c->out, "+{\"status\": ");
		jsonw_cstr(&c->out, level);
		jsonw_adds(&c->out, ", \"check\": ");
		jsonw_cstr(&c->out, check);
		jsonw_adds(&c->out, ", \"message\": ");
		jsonw_cstr(&c->out, text);
		jsonw_adds(&c->out, "}\n");
	} else {
		jsonw_add(&c->out, "+", 1);
		jsonw_text(&c->out, level);
		jsonw_add(&c->out, " ", 1);
		jsonw_text(&c->out, check);
		jsonw_adds(&c->out, ": ");
		jsonw_text(&c->out, text);
		jsonw_add(&c->out, "\n", 1);
	}
}

static void
ctl_audit_done_cb(void *arg, int nfail)
{
	struct ctl_client *c = arg;

	c->audit = NULL;
	ev_timer_again(backmxd.loop, &c->idle);
	log_info("control: check-dns domain=%s fail=%d", c->req.args[0],
		 nfail);
	if (nfail > 0)
		ctl_fail(c, "check-dns %s: %d check%s failed", c->req.args[0],
			 nfail, nfail == 1 ? "" : "s");
	else
		ctl_end(c, NULL);
}

static void
ctl_cmd_check_dns(struct ctl_client *c)
{
	if (checkdns_start == NULL) {
		ctl_fail(c, "check-dns is not available in this build");
		return;
	}
	c->audit = checkdns_start(backmxd.dns, backmxd.cfg, c->req.args[0],
				  ctl_audit_line_cb, ctl_audit_done_cb, c);
	if (c->audit == NULL) {
		ctl_fail(c, "check-dns %s: cannot start the lookups",
			 c->req.args[0]);
		return;
	}
	/* the lookups may take a while: no idle limit meanwhile but the
	 * resolver's own timeouts */
	c->state = CTL_WAITING;
	ev_io_stop(backmxd.loop, &c->io);
	ev_timer_stop(backmxd.loop, &c->idle);
}

/* ------------------------------------------------------------------ */
/* dispatch */

static void
ctl_dispatch(struct ctl_client *c, const char *line, size_t len)
{
	char err[256];

	if (control_request_parse(line, len, &c->req, err, sizeof(err)) < 0) {
		log_info("control: refused request: %s", err);
		ctl_end(c, err);
		return;
	}
	if (backmxd.spool == NULL) {
		ctl_fail(c, "the spool is not open");
		return;
	}
	switch (c->req.cmd) {
	case CONTROL_QUEUE:
		log_info("control: queue%s%s", c->req.nargs ? " domain=" : "",
			 c->req.nargs ? c->req.args[0] : "");
		ctl_cmd_queue(c);
		break;
	case CONTROL_SHOW:
		log_info("control: show id=%s", c->req.args[0]);
		ctl_cmd_show(c);
		break;
	case CONTROL_FLUSH:
		ctl_cmd_flush(c);
		break;
	case CONTROL_HOLD:
		ctl_cmd_hold(c, 1);
		break;
	case CONTROL_RELEASE:
		ctl_cmd_hold(c, 0);
		break;
	case CONTROL_DELETE:
		ctl_cmd_remove(c, 0);
		break;
	case CONTROL_BOUNCE:
		ctl_cmd_remove(c, 1);
		break;
	case CONTROL_STATS:
		ctl_cmd_stats(c);
		break;
	case CONTROL_CHECK_DNS:
		ctl_cmd_check_dns(c);
		break;
	default:
		ctl_fail(c, "unknown command");
		break;
	}
}

/* ------------------------------------------------------------------ */
/* I/O */

/* ctl_read - returns 1 when the client must be freed */
static int
ctl_read(struct ctl_client *c)
{
	char *lf;
	ssize_t n;

	n = read(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
	if (n < 0)
		return errno != EAGAIN && errno != EINTR;
	if (n == 0)
		return 1;	/* gone before a whole request */
	lf = memchr(c->in + c->inlen, '\n', (size_t)n);
	c->inlen += (size_t)n;
	if (lf != NULL) {
		ctl_dispatch(c, c->in, (size_t)(lf - c->in) + 1);
		return 0;
	}
	if (c->inlen == sizeof(c->in)) {
		log_info("control: refused request: too long");
		ctl_fail(c, "request too long (at most %d octets)",
			 CONTROL_LINE_MAX);
	}
	return 0;
}

/* ctl_write - returns 1 when the client must be freed */
static int
ctl_write(struct ctl_client *c)
{
	ssize_t n;

	if (c->state == CTL_STREAMING && c->out.len < CTL_OUT_LOW)
		ctl_queue_fill(c);
	if (c->out.oom) {
		log_warn("control: out of memory answering a client");
		return 1;
	}
	if (c->out.len > 0) {
		n = write(c->fd, c->out.buf, c->out.len);
		if (n < 0)
			return errno != EAGAIN && errno != EINTR;
		jsonw_drop(&c->out, (size_t)n);
	}
	return c->out.len == 0 && c->state == CTL_FLUSHING;
}

static void
ctl_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ctl_client *c = w->data;
	int done = 0;

	if (c->state == CTL_READING && (revents & EV_READ))
		done = ctl_read(c);
	else if (revents & EV_WRITE)
		done = ctl_write(c);
	if (done) {
		ctl_client_free(c);
		return;
	}
	if (c->state != CTL_WAITING)
		ev_timer_again(loop, &c->idle);
}

static void
ctl_idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ctl_client *c = w->data;

	log_info("control: client idle for %.0fs, dropped", CTL_IDLE);
	ctl_client_free(c);
}

static void
ctl_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ctl_client *c;
	int fd;

	for (;;) {
		fd = accept4(ctl_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warn("control: accept: %s",
					 strerror(errno));
			return;
		}
		if (ctl_nclients >= CTL_CLIENTS_MAX ||
		    (c = calloc(1, sizeof(*c))) == NULL) {
			static const char busy[] =
				"-ERR too many control clients\n";

			if (write(fd, busy, sizeof(busy) - 1) < 0) {
				/* it was a courtesy */
			}
			close(fd);
			continue;
		}
		c->fd = fd;
		c->state = CTL_READING;
		jsonw_init(&c->out);
		ev_io_init(&c->io, ctl_io_cb, fd, EV_READ);
		c->io.data = c;
		ev_io_start(loop, &c->io);
		ev_init(&c->idle, ctl_idle_cb);
		c->idle.repeat = CTL_IDLE;
		c->idle.data = c;
		ev_timer_again(loop, &c->idle);
		c->next = ctl_clients;
		if (ctl_clients != NULL)
			ctl_clients->prev = c;
		ctl_clients = c;
		ctl_nclients++;
	}
}

void
control_start(void)
{
	if (ctl_fd == -1)
		return;
	ev_io_init(&ctl_accept, ctl_accept_cb, ctl_fd, EV_READ);
	ev_io_start(backmxd.loop, &ctl_accept);
}
