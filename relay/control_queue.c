/*
 * control_queue.c - the queue commands of the control server: queue,
 * hold, release, delete, bounce, flush and requeue over the messages a
 * filter selects (control.h), and shape (messages per domain by age, as
 * Postfix's qshape).  A command with an id reads one envelope; any other
 * is a job that scans the spool CONTROL_JOB_BATCH envelopes per loop
 * iteration (paced by control.c's write watcher), applies the operation
 * to the batch's matches through forward.c, and sends a "~" progress
 * line about once a second, so a million messages never stall the loop.
 * Every command is logged with the filter, the count and the peer's uid.
 */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "backmxd.h"
#include "control_int.h"
#include "forward.h"

#define CONTROL_JOB_BATCH 256
#define CONTROL_PROGRESS_EVERY 1.0  /* seconds between "~" lines, */
#define CONTROL_PROGRESS_MSGS 20000 /* or messages scanned */
#define CONTROL_SHAPE_ROWS_MAX 200000
#define CONTROL_SHAPE_NB 9

static const char *const control_shape_names[CONTROL_SHAPE_NB] = {
    "0-5m",    "5-10m",    "10-20m",   "20-40m", "40-80m",
    "80-160m", "160-320m", "320-640m", "640m+",
};
static const char *const control_shape_heads[CONTROL_SHAPE_NB] = {
    "5", "10", "20", "40", "80", "160", "320", "640", "640+",
};

struct control_shape_row {
	char *name; /* NULL = empty slot */
	uint64_t total;
	uint64_t n[CONTROL_SHAPE_NB];
	uint64_t seen; /* serial of the last message counted */
};

struct control_job {
	enum control_cmd op;
	regex_t sender_re, rcpt_re;
	int has_sender, has_rcpt;
	int64_t now;
	uint64_t scanned, matched, changed, total, failed;
	double last_progress;
	uint64_t last_scanned;
	int nids;
	char ids[CONTROL_JOB_BATCH][SPOOL_ID_LEN + 1];
	/* shape: an open-addressing table of rows by domain */
	struct control_shape_row *rows, sum;
	size_t nrows, cap;
	int rows_full;
};

void
control_job_free(struct control_job *j)
{
	size_t i;

	if (j == NULL)
		return;
	if (j->has_sender)
		regfree(&j->sender_re);
	if (j->has_rcpt)
		regfree(&j->rcpt_re);
	for (i = 0; i < j->cap; i++)
		free(j->rows[i].name);
	free(j->rows);
	free(j);
}

static const char *
control_verb(enum control_cmd op)
{
	switch (op) {
	case CONTROL_HOLD:
		return "held";
	case CONTROL_RELEASE:
		return "released";
	case CONTROL_DELETE:
		return "deleted";
	case CONTROL_BOUNCE:
		return "bounced";
	case CONTROL_FLUSH:
		return "flushed";
	case CONTROL_REQUEUE:
		return "requeued";
	default:
		return "listed";
	}
}

/* ------------------------------------------------------------------ */
/* matching */

static int
control_rcpt_match(const struct control_client *c, const char *addr)
{
	const struct control_filter *f = &c->req.f;
	const char *at;

	if (addr == NULL)
		return 0;
	if (f->domain[0] != '\0' && ((at = strrchr(addr, '@')) == NULL ||
	                             strcasecmp(at + 1, f->domain) != 0))
		return 0;
	if (c->job->has_rcpt && regexec(&c->job->rcpt_re, addr, 0, NULL, 0))
		return 0;
	return 1;
}

/*
 * control_match - does e pass every filter?  DOMAIN and --rcpt are
 * about the message's pending recipients: one of them must match both.
 */
static int
control_match(const struct control_client *c, const struct spool_envelope *e)
{
	const struct control_filter *f = &c->req.f;
	const struct control_job *j = c->job;
	int64_t age = j->now - e->arrival;
	int i;

	if (f->id[0] != '\0' && strcmp(e->id, f->id) != 0)
		return 0;
	if (f->held && !e->held)
		return 0;
	if (f->older >= 0 && age < f->older)
		return 0;
	if (f->younger >= 0 && age >= f->younger)
		return 0;
	if (j->has_sender &&
	    regexec(&j->sender_re, e->sender ? e->sender : "", 0, NULL, 0))
		return 0;
	if (f->domain[0] == '\0' && !j->has_rcpt)
		return 1;
	for (i = 0; i < e->nrcpt; i++)
		if (e->rcpt[i].state == SPOOL_RCPT_PENDING &&
		    control_rcpt_match(c, e->rcpt[i].address))
			return 1;
	return 0;
}

static struct control_job *
control_job_new(struct control_client *c)
{
	const struct control_filter *f = &c->req.f;
	struct control_job *j;
	int fl = REG_EXTENDED | REG_ICASE | REG_NOSUB;
	uint64_t bytes;

	if ((j = calloc(1, sizeof(*j))) == NULL) {
		control_end_err(c, "out of memory");
		return NULL;
	}
	j->op = c->req.cmd;
	j->now = (int64_t)time(NULL);
	j->last_progress = ev_now(backmxd.loop);
	spool_count(backmxd.spool, &j->total, &bytes);
	/* checked by the parser; compiled again here for matching */
	if (f->has_sender) {
		if (regcomp(&j->sender_re, f->sender, fl) != 0) {
			control_end_err(c, "--sender: bad regular expression");
			free(j);
			return NULL;
		}
		j->has_sender = 1;
	}
	if (f->has_rcpt) {
		if (regcomp(&j->rcpt_re, f->rcpt, fl) != 0) {
			control_end_err(c, "--rcpt: bad regular expression");
			control_job_free(j);
			return NULL;
		}
		j->has_rcpt = 1;
	}
	c->job = j;
	return j;
}

static void
control_job_progress(struct control_client *c)
{
	struct control_job *j = c->job;
	double now = ev_now(backmxd.loop);

	if (now - j->last_progress < CONTROL_PROGRESS_EVERY &&
	    j->scanned - j->last_scanned < CONTROL_PROGRESS_MSGS)
		return;
	j->last_progress = now;
	j->last_scanned = j->scanned;
	control_progress(c,
	                 "%s: %llu of about %llu messages scanned, "
	                 "%llu matched, %llu %s",
	                 c->req.name, (unsigned long long)j->scanned,
	                 (unsigned long long)j->total,
	                 (unsigned long long)j->matched,
	                 (unsigned long long)j->changed, control_verb(j->op));
}

/* ------------------------------------------------------------------ */
/* queue: the listing */

static void
control_list_one(struct control_client *c, const struct spool_envelope *e)
{
	c->nmsgs++;
	c->nbytes += e->size;
	if (c->req.json) {
		json_buf_puts(&c->out, "+");
		control_put_json(&c->out, e);
		json_buf_puts(&c->out, "}\n");
		return;
	}
	if (!c->header_done) {
		control_line(c, "%-12s %9s  %-15s  %s", "ID", "SIZE", "ARRIVAL",
		             "SENDER / RECIPIENTS");
		c->header_done = 1;
	}
	control_put_human(c, e);
}

static void
control_list_end(struct control_client *c)
{
	char desc[1024];

	if (!c->req.json) {
		if (c->nmsgs == 0)
			control_line(c, "queue is empty");
		else
			control_line(c, "-- %llu KB in %llu message%s",
			             (unsigned long long)(c->nbytes + 1023) /
			                 1024,
			             (unsigned long long)c->nmsgs,
			             c->nmsgs == 1 ? "" : "s");
	}
	control_filter_describe(&c->req.f, desc, sizeof(desc));
	log_info("control: queue %s n=%llu uid=%ld", desc,
	         (unsigned long long)c->nmsgs, c->uid);
	control_end_ok(c);
}

/* ------------------------------------------------------------------ */
/* operations */

/* control_apply - the operation on one matching id; 1 changed, 0 not */
static int
control_apply(struct control_client *c, const char *id)
{
	int r = -1;

	switch (c->job->op) {
	case CONTROL_HOLD:
		r = forward_hold(id, 1);
		break;
	case CONTROL_RELEASE:
		r = forward_hold(id, 0);
		break;
	case CONTROL_DELETE:
		r = forward_delete(id) == 0 ? 1 : -1;
		break;
	case CONTROL_BOUNCE:
		r = forward_bounce(id) == 0 ? 1 : -1;
		break;
	case CONTROL_FLUSH:
		r = forward_flush_id(id, 0);
		break;
	case CONTROL_REQUEUE:
		r = forward_flush_id(id, 1);
		break;
	default:
		r = 0;
		break;
	}
	if (r < 0) {
		c->job->failed++;
		return 0;
	}
	return r > 0;
}

static void
control_op_end(struct control_client *c)
{
	struct control_job *j = c->job;
	const char *verb = control_verb(j->op);
	char desc[1024];

	control_filter_describe(&c->req.f, desc, sizeof(desc));
	log_info("control: %s %s n=%llu matched=%llu scanned=%llu%s uid=%ld",
	         c->req.name, desc, (unsigned long long)j->changed,
	         (unsigned long long)j->matched, (unsigned long long)j->scanned,
	         j->failed ? " (failures)" : "", c->uid);
	if (j->failed > 0 && j->changed == 0 && j->matched > 0) {
		control_end_err(c, "cannot %s: %s", c->req.name,
		                spool_error(backmxd.spool));
		return;
	}
	/* `delete ID` / `bounce ID` keep their answer of round 1 */
	if ((j->op == CONTROL_DELETE || j->op == CONTROL_BOUNCE) &&
	    c->req.arg_is_id && j->changed == 1) {
		if (c->req.json)
			json_buf_printf(&c->out, "+{\"%s\": \"%s\"}\n", verb,
			                c->req.f.id);
		else
			control_line(c, "%s %s", verb, c->req.f.id);
	} else if (c->req.json)
		json_buf_printf(&c->out,
		                "+{\"%s\": %llu, \"matched\": %llu, "
		                "\"scanned\": %llu, \"failed\": %llu}\n",
		                verb, (unsigned long long)j->changed,
		                (unsigned long long)j->matched,
		                (unsigned long long)j->scanned,
		                (unsigned long long)j->failed);
	else
		control_line(c, "%s %llu message%s", verb,
		             (unsigned long long)j->changed,
		             j->changed == 1 ? "" : "s");
	control_end_ok(c);
}

static int
control_job_collect_cb(void *arg, const struct spool_envelope *e)
{
	struct control_client *c = arg;
	struct control_job *j = c->job;

	memcpy(c->after, e->id, sizeof(c->after));
	c->after[SPOOL_ID_LEN] = '\0';
	j->scanned++;
	if (!control_match(c, e))
		return 0;
	j->matched++;
	if (j->op == CONTROL_QUEUE)
		control_list_one(c, e);
	else
		snprintf(j->ids[j->nids++], SPOOL_ID_LEN + 1, "%s", e->id);
	return 0;
}

static void
control_job_produce(struct control_client *c)
{
	struct control_job *j = c->job;
	int n, i;

	j->nids = 0;
	n = spool_scan(backmxd.spool, c->after, CONTROL_JOB_BATCH,
	               control_job_collect_cb, c);
	if (n < 0) {
		control_end_err(c, "spool: %s", spool_error(backmxd.spool));
		return;
	}
	for (i = 0; i < j->nids; i++)
		j->changed += (uint64_t)control_apply(c, j->ids[i]);
	if (n == CONTROL_JOB_BATCH) {
		control_job_progress(c);
		return;
	}
	if (j->op == CONTROL_QUEUE)
		control_list_end(c);
	else
		control_op_end(c);
}

/* control_job_one - a request naming one message: no scan */
static void
control_job_one(struct control_client *c)
{
	struct control_job *j = c->job;
	struct spool_envelope *e;

	if ((e = spool_envelope_get(backmxd.spool, c->req.f.id)) == NULL) {
		if (spool_errno(backmxd.spool) == SPOOL_ENOTFOUND) {
			if (j->op == CONTROL_QUEUE) {
				control_list_end(c);
				return;
			}
			control_end_err(c, "no such message %s", c->req.f.id);
		} else
			control_end_err(c, "spool: %s",
			                spool_error(backmxd.spool));
		return;
	}
	j->scanned = 1;
	if (control_match(c, e)) {
		j->matched = 1;
		if (j->op == CONTROL_QUEUE)
			control_list_one(c, e);
		else
			j->changed = (uint64_t)control_apply(c, e->id);
	}
	spool_envelope_free(e);
	if (j->op == CONTROL_QUEUE)
		control_list_end(c);
	else
		control_op_end(c);
}

void
control_queue_start(struct control_client *c)
{
	const struct control_filter *f = &c->req.f;
	char desc[1024];
	int n;

	if (c->req.cmd != CONTROL_QUEUE && f->domain[0] != '\0' &&
	    !control_domain_known(c, f->domain))
		return;
	/*
	 * flush of everything or of one domain: forward.c's schedule tags
	 * find the messages without reading the spool
	 */
	if (c->req.cmd == CONTROL_FLUSH && f->id[0] == '\0' && !f->has_sender &&
	    !f->has_rcpt && f->older < 0 && f->younger < 0 && !f->held) {
		n = forward_flush(f->domain[0] ? f->domain : NULL);
		control_filter_describe(f, desc, sizeof(desc));
		log_info("control: flush %s n=%d uid=%ld", desc, n < 0 ? 0 : n,
		         c->uid);
		if (n < 0) {
			control_end_err(c, "flush: %s",
			                spool_error(backmxd.spool));
			return;
		}
		if (c->req.json)
			json_buf_printf(&c->out, "+{\"flushed\": %d}\n", n);
		else
			control_line(c, "flushed %d message%s", n,
			             n == 1 ? "" : "s");
		control_end_ok(c);
		return;
	}
	if (control_job_new(c) == NULL)
		return;
	if (f->id[0] != '\0')
		control_job_one(c);
	else
		c->produce = control_job_produce;
}

/* ------------------------------------------------------------------ */
/* shape [DOMAIN] */

static uint32_t
control_shape_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static struct control_shape_row *
control_shape_row(struct control_job *j, const char *name)
{
	struct control_shape_row *r;
	size_t i;

	if (j->nrows * 10 >= j->cap * 7) {
		size_t ncap = j->cap ? j->cap * 2 : 64, k;
		struct control_shape_row *nr;

		if (j->nrows >= CONTROL_SHAPE_ROWS_MAX ||
		    (nr = calloc(ncap, sizeof(*nr))) == NULL) {
			j->rows_full = 1;
			return NULL;
		}
		for (k = 0; k < j->cap; k++) {
			if (j->rows[k].name == NULL)
				continue;
			i = control_shape_hash(j->rows[k].name) & (ncap - 1);
			while (nr[i].name != NULL)
				i = (i + 1) & (ncap - 1);
			nr[i] = j->rows[k];
		}
		free(j->rows);
		j->rows = nr;
		j->cap = ncap;
	}
	i = control_shape_hash(name) & (j->cap - 1);
	while ((r = &j->rows[i])->name != NULL) {
		if (!strcmp(r->name, name))
			return r;
		i = (i + 1) & (j->cap - 1);
	}
	if ((r->name = strdup(name)) == NULL) {
		j->rows_full = 1;
		return NULL;
	}
	j->nrows++;
	return r;
}

static int
control_shape_bucket(int64_t age)
{
	int64_t m = age / 60, lim = 5;
	int b;

	for (b = 0; b < CONTROL_SHAPE_NB - 1; b++, lim *= 2)
		if (m < lim)
			return b;
	return CONTROL_SHAPE_NB - 1;
}

static int
control_shape_one_cb(void *arg, const struct spool_envelope *e)
{
	struct control_client *c = arg;
	struct control_job *j = c->job;
	char dom[POLICY_DOMAIN_MAX + 1];
	int i, b, counted = 0;

	memcpy(c->after, e->id, sizeof(c->after));
	c->after[SPOOL_ID_LEN] = '\0';
	j->scanned++;
	b = control_shape_bucket(j->now > e->arrival ? j->now - e->arrival : 0);
	for (i = 0; i < e->nrcpt; i++) {
		struct control_shape_row *r;

		if (e->rcpt[i].state != SPOOL_RCPT_PENDING ||
		    policy_addr_domain_lc(e->rcpt[i].address, dom) < 0)
			continue;
		if (c->req.nargs > 0 && strcmp(dom, c->req.args[0]) != 0)
			continue;
		/* a message counts once per domain and once in TOTAL */
		if ((r = control_shape_row(j, dom)) == NULL ||
		    r->seen == j->scanned)
			continue;
		r->seen = j->scanned;
		r->total++;
		r->n[b]++;
		counted = 1;
	}
	if (counted) {
		j->sum.total++;
		j->sum.n[b]++;
	}
	return 0;
}

static int
control_shape_cmp(const void *a, const void *b)
{
	const struct control_shape_row *x =
	    *(struct control_shape_row *const *)a;
	const struct control_shape_row *y =
	    *(struct control_shape_row *const *)b;

	if (x->total != y->total)
		return x->total > y->total ? -1 : 1;
	return strcmp(x->name, y->name);
}

static void
control_shape_put_row(struct control_client *c, const char *name,
                      const struct control_shape_row *r, int width)
{
	char line[1024];
	size_t n;
	int b;

	if (c->req.json) {
		json_buf_puts(&c->out, "{\"domain\": ");
		json_put_cstring(&c->out, name);
		json_buf_printf(&c->out, ", \"total\": %llu, \"counts\": [",
		                (unsigned long long)r->total);
		for (b = 0; b < CONTROL_SHAPE_NB; b++)
			json_buf_printf(&c->out, "%s%llu", b ? ", " : "",
			                (unsigned long long)r->n[b]);
		json_buf_puts(&c->out, "]}");
		return;
	}
	n = (size_t)snprintf(line, sizeof(line), "%*s %6llu", width, name,
	                     (unsigned long long)r->total);
	for (b = 0; b < CONTROL_SHAPE_NB && n < sizeof(line); b++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, " %5llu",
		                      (unsigned long long)r->n[b]);
	control_line(c, "%s", line);
}

static void
control_shape_end(struct control_client *c)
{
	struct control_job *j = c->job;
	struct control_shape_row **sorted = NULL;
	char line[1024];
	size_t i, k = 0, n;
	int width = 20, b;

	if (j->nrows > 0 &&
	    (sorted = calloc(j->nrows, sizeof(*sorted))) == NULL) {
		control_end_err(c, "out of memory");
		return;
	}
	for (i = 0; i < j->cap; i++)
		if (j->rows[i].name != NULL) {
			sorted[k++] = &j->rows[i];
			if ((int)strlen(j->rows[i].name) > width)
				width = (int)strlen(j->rows[i].name);
		}
	if (width > 60)
		width = 60;
	if (k > 0)
		qsort(sorted, k, sizeof(*sorted), control_shape_cmp);
	if (c->req.json) {
		json_buf_puts(&c->out, "+{\"buckets\": [");
		for (b = 0; b < CONTROL_SHAPE_NB; b++)
			json_buf_printf(&c->out, "%s\"%s\"", b ? ", " : "",
			                control_shape_names[b]);
		json_buf_puts(&c->out, "], \"total\": ");
		control_shape_put_row(c, "TOTAL", &j->sum, width);
		json_buf_puts(&c->out, ", \"domains\": [");
		for (i = 0; i < k; i++) {
			json_buf_puts(&c->out, i ? ", " : "");
			control_shape_put_row(c, sorted[i]->name, sorted[i],
			                      width);
		}
		json_buf_printf(&c->out, "], \"truncated\": %s}\n",
		                j->rows_full ? "true" : "false");
	} else {
		n = (size_t)snprintf(line, sizeof(line), "%*s %6s", width, "",
		                     "T");
		for (b = 0; b < CONTROL_SHAPE_NB && n < sizeof(line); b++)
			n += (size_t)snprintf(line + n, sizeof(line) - n,
			                      " %5s", control_shape_heads[b]);
		control_line(c, "%s", line);
		control_shape_put_row(c, "TOTAL", &j->sum, width);
		for (i = 0; i < k; i++)
			control_shape_put_row(c, sorted[i]->name, sorted[i],
			                      width);
		if (j->rows_full)
			control_line(c,
			             "(more domains than %d: the rest is "
			             "only in TOTAL)",
			             CONTROL_SHAPE_ROWS_MAX);
	}
	free(sorted);
	log_info("control: shape domain=%s n=%llu scanned=%llu uid=%ld",
	         c->req.nargs ? c->req.args[0] : "*",
	         (unsigned long long)j->sum.total,
	         (unsigned long long)j->scanned, c->uid);
	control_end_ok(c);
}

static void
control_shape_produce(struct control_client *c)
{
	int n;

	n = spool_scan(backmxd.spool, c->after, CONTROL_JOB_BATCH,
	               control_shape_one_cb, c);
	if (n < 0) {
		control_end_err(c, "spool: %s", spool_error(backmxd.spool));
		return;
	}
	if (n == CONTROL_JOB_BATCH) {
		control_job_progress(c);
		return;
	}
	control_shape_end(c);
}

void
control_shape_start(struct control_client *c)
{
	if (control_job_new(c) == NULL)
		return;
	c->produce = control_shape_produce;
}
