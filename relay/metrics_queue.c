/*
 * metrics_queue.c - per-domain queue size and oldest age for the
 * Prometheus page (see metrics_queue.h).  A pass counts into its own
 * table of the configured domains (sorted, found by bsearch); a finished
 * pass replaces the published one.  The background pass keeps its place
 * by envelope id (spool_scan's "after"), so messages added or removed
 * meanwhile are simply seen or not, as in `backmxctl stats`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backmxd.h"
#include "metrics_queue.h"

struct mq_row {
	char name[POLICY_DOMAIN_MAX + 1];
	uint64_t msgs;
	int64_t oldest; /* arrival, 0 = none */
	uint64_t seen;  /* serial of the last message counted */
};

struct mq_pass {
	struct mq_row *rows;
	int n;
	uint64_t serial;
	char after[SPOOL_ID_LEN + 1];
	int64_t started;
};

static struct mq_pass mq_done; /* published: rows of the last pass */
static int mq_have;
static struct mq_pass mq_run; /* the background pass, rows != NULL */
static int mq_running;
static ev_timer mq_timer;

static int
mq_row_cmp(const void *a, const void *b)
{
	return strcmp(((const struct mq_row *)a)->name,
	              ((const struct mq_row *)b)->name);
}

/* mq_pass_init - an empty table of the configured domains; -1 no memory */
static int
mq_pass_init(struct mq_pass *p)
{
	const struct policy *pol =
	    backmxd.cfg != NULL ? backmxd.cfg->policy : NULL;
	int i, n = pol != NULL ? pol->ndomains : 0;

	memset(p, 0, sizeof(*p));
	p->started = time(NULL);
	if (n == 0)
		return 0;
	if ((p->rows = calloc((size_t)n, sizeof(*p->rows))) == NULL)
		return -1;
	for (i = 0; i < n; i++)
		snprintf(p->rows[i].name, sizeof(p->rows[i].name), "%s",
		         pol->domains[i]->name);
	p->n = n;
	qsort(p->rows, (size_t)n, sizeof(*p->rows), mq_row_cmp);
	return 0;
}

static int
mq_count_cb(void *arg, const struct spool_envelope *e)
{
	struct mq_pass *p = arg;
	struct mq_row key, *r;
	int i;

	memcpy(p->after, e->id, sizeof(p->after));
	p->after[SPOOL_ID_LEN] = '\0';
	p->serial++;
	for (i = 0; i < e->nrcpt; i++) {
		memset(&key, 0, sizeof(key));
		if (e->rcpt[i].state != SPOOL_RCPT_PENDING ||
		    policy_addr_domain_lc(e->rcpt[i].address, key.name) < 0)
			continue;
		r = bsearch(&key, p->rows, (size_t)p->n, sizeof(*p->rows),
		            mq_row_cmp);
		if (r == NULL || r->seen == p->serial)
			continue; /* not ours, or this message counted */
		r->seen = p->serial;
		r->msgs++;
		if (e->arrival > 0 &&
		    (r->oldest == 0 || e->arrival < r->oldest))
			r->oldest = e->arrival;
	}
	return 0;
}

static void
mq_publish(struct mq_pass *p)
{
	free(mq_done.rows);
	mq_done = *p;
	mq_have = 1;
	memset(p, 0, sizeof(*p));
}

static void
mq_step_cb(EV_P_ ev_timer *w, int revents)
{
	int n;

	(void)w;
	(void)revents;
	n = spool_scan(backmxd.spool, mq_run.after, METRICS_QUEUE_BATCH,
	               mq_count_cb, &mq_run);
	if (n >= 0 && n == METRICS_QUEUE_BATCH)
		return; /* more: the next loop turn */
	ev_timer_stop(EV_A_ & mq_timer);
	mq_running = 0;
	if (n < 0) {
		free(mq_run.rows);
		memset(&mq_run, 0, sizeof(mq_run));
		return; /* keep the last good pass */
	}
	mq_publish(&mq_run);
}

static void
mq_background(void)
{
	if (mq_running || backmxd.loop == NULL || mq_pass_init(&mq_run) < 0)
		return;
	mq_running = 1;
	ev_timer_init(&mq_timer, mq_step_cb, 0., 0.001);
	ev_timer_start(backmxd.loop, &mq_timer);
}

void
metrics_queue_stop(void)
{
	if (mq_running) {
		ev_timer_stop(backmxd.loop, &mq_timer);
		mq_running = 0;
		free(mq_run.rows);
		memset(&mq_run, 0, sizeof(mq_run));
	}
}

/* mq_sync_max - METRICS_QUEUE_SYNC_MAX, or BACKMXD_TEST_METRICS_SYNC_MAX
 * (the tests' way to run the background pass on a small spool) */
static uint64_t
mq_sync_max(void)
{
	const char *v = getenv("BACKMXD_TEST_METRICS_SYNC_MAX");
	char *ep;
	unsigned long long n;

	if (v == NULL || *v == '\0')
		return METRICS_QUEUE_SYNC_MAX;
	n = strtoull(v, &ep, 10);
	return *ep == '\0' ? (uint64_t)n : METRICS_QUEUE_SYNC_MAX;
}

void
metrics_queue_page(struct json_buf *b)
{
	uint64_t msgs = 0, bytes = 0;
	int64_t now = time(NULL);
	struct mq_pass p;
	int i;

	if (backmxd.spool == NULL)
		return;
	spool_count(backmxd.spool, &msgs, &bytes);
	if (msgs <= mq_sync_max()) {
		metrics_queue_stop();
		if (mq_pass_init(&p) == 0) {
			if (spool_scan(backmxd.spool, "", 0, mq_count_cb, &p) >=
			    0)
				mq_publish(&p);
			else
				free(p.rows);
		}
	} else if (!mq_have || now - mq_done.started >= METRICS_QUEUE_MAX_AGE)
		mq_background();
	if (!mq_have)
		return; /* the first pass of a big spool is still running */
	json_buf_puts(b, "# HELP backmx_domain_queue_messages Queued messages "
	                 "with a pending recipient in the domain.\n"
	                 "# TYPE backmx_domain_queue_messages gauge\n");
	for (i = 0; i < mq_done.n; i++)
		json_buf_printf(b,
		                "backmx_domain_queue_messages{domain=\"%s\"} "
		                "%llu\n",
		                mq_done.rows[i].name,
		                (unsigned long long)mq_done.rows[i].msgs);
	json_buf_puts(b, "# HELP backmx_domain_oldest_message_age_seconds Age "
	                 "of the oldest queued message with a pending "
	                 "recipient in the domain (0: none).\n"
	                 "# TYPE backmx_domain_oldest_message_age_seconds "
	                 "gauge\n");
	for (i = 0; i < mq_done.n; i++) {
		int64_t o = mq_done.rows[i].oldest;

		json_buf_printf(b,
		                "backmx_domain_oldest_message_age_seconds{"
		                "domain=\"%s\"} %lld\n",
		                mq_done.rows[i].name,
		                (long long)(o > 0 && now > o ? now - o : 0));
	}
	json_buf_printf(
	    b,
	    "# HELP backmx_domain_queue_scan_age_seconds How old "
	    "the count behind the per-domain queue gauges is (0: "
	    "counted during this scrape).\n"
	    "# TYPE backmx_domain_queue_scan_age_seconds gauge\n"
	    "backmx_domain_queue_scan_age_seconds %lld\n",
	    (long long)(now > mq_done.started ? now - mq_done.started : 0));
}
