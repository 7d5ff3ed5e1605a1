/*
 * metrics_domain.c - per-domain delivery counters and the residence
 * histogram (see metrics_domain.h).  A small array of domains, looked
 * up linearly (a few dozen configured domains); the histogram has fixed
 * buckets from 1 s to 5 days.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backmxd.h"
#include "metrics_domain.h"

#define MD_MAX 1024
#define MD_NB 11

static const double md_bounds[MD_NB] = {
	1, 5, 30, 60, 300, 900, 3600, 14400, 43200, 86400, 432000,
};

struct md_row {
	char name[POLICY_DOMAIN_MAX + 1];
	uint64_t sent, deferred, bounced;
	uint64_t tls, plain;	/* attempts that reached a server */
};

static struct md_row md_rows[MD_MAX];
static int md_n;
static uint64_t md_hist[MD_NB + 1];	/* last: +Inf */
static uint64_t md_count;
static double md_sum;

static struct md_row *
md_row(const char *addr)
{
	const char *at = addr ? strrchr(addr, '@') : NULL;
	const char *dom = "other";
	int i;

	if (at != NULL && backmxd.cfg != NULL &&
	    policy_find_domain(backmxd.cfg->policy, at + 1) != NULL &&
	    strlen(at + 1) <= POLICY_DOMAIN_MAX)
		dom = at + 1;
	for (i = 0; i < md_n; i++)
		if (!strcasecmp(md_rows[i].name, dom))
			return &md_rows[i];
	if (md_n == MD_MAX)
		return NULL;
	for (i = 0; dom[i] != '\0'; i++)
		md_rows[md_n].name[i] =
			(char)(dom[i] >= 'A' && dom[i] <= 'Z' ? dom[i] + 32
							       : dom[i]);
	md_rows[md_n].name[i] = '\0';
	return &md_rows[md_n++];
}

void
metrics_domain_record(const char *addr, const char *status, double delay,
		      const char *tls)
{
	struct md_row *r = md_row(addr);
	int b;

	if (r == NULL || status == NULL)
		return;
	if (!strcmp(status, "sent"))
		r->sent++;
	else if (!strcmp(status, "deferred"))
		r->deferred++;
	else if (!strcmp(status, "bounced"))
		r->bounced++;
	if (tls != NULL && tls[0] != '\0') {
		if (!strcmp(tls, "none"))
			r->plain++;
		else
			r->tls++;
	}
	if (!strcmp(status, "deferred"))
		return;		/* not final: still in the queue */
	if (delay < 0)
		delay = 0;
	for (b = 0; b < MD_NB && delay > md_bounds[b]; b++)
		;
	md_hist[b]++;
	md_count++;
	md_sum += delay;
}

void
metrics_domain_page(struct json_buf *b)
{
	static const char *const st[] = { "sent", "deferred", "bounced" };
	uint64_t cum = 0;
	int i, k;

	json_buf_puts(b, "# HELP backmx_domain_recipients_total Recipient "
			 "outcomes by recipient domain (other: not a "
			 "configured domain).\n"
			 "# TYPE backmx_domain_recipients_total counter\n");
	for (i = 0; i < md_n; i++)
		for (k = 0; k < 3; k++)
			json_buf_printf(b,
					"backmx_domain_recipients_total{domain="
					"\"%s\",status=\"%s\"} %llu\n",
					md_rows[i].name, st[k],
					(unsigned long long)(k == 0 ? md_rows[i].sent
							     : k == 1
								 ? md_rows[i].deferred
								 : md_rows[i].bounced));
	json_buf_puts(b, "# HELP backmx_domain_tls_total Delivery attempts "
			 "that reached a server, by recipient domain and "
			 "whether the connection used TLS.\n"
			 "# TYPE backmx_domain_tls_total counter\n");
	for (i = 0; i < md_n; i++)
		json_buf_printf(b,
				"backmx_domain_tls_total{domain=\"%s\",tls="
				"\"yes\"} %llu\n"
				"backmx_domain_tls_total{domain=\"%s\",tls="
				"\"no\"} %llu\n",
				md_rows[i].name,
				(unsigned long long)md_rows[i].tls,
				md_rows[i].name,
				(unsigned long long)md_rows[i].plain);
	json_buf_puts(b, "# HELP backmx_queue_residence_seconds Time from "
			 "arrival to a recipient's final outcome (sent or "
			 "bounced).\n"
			 "# TYPE backmx_queue_residence_seconds histogram\n");
	for (k = 0; k < MD_NB; k++) {
		cum += md_hist[k];
		json_buf_printf(b,
				"backmx_queue_residence_seconds_bucket{le=\"%g\"} "
				"%llu\n",
				md_bounds[k], (unsigned long long)cum);
	}
	cum += md_hist[MD_NB];
	json_buf_printf(b,
			"backmx_queue_residence_seconds_bucket{le=\"+Inf\"} "
			"%llu\n"
			"backmx_queue_residence_seconds_sum %.3f\n"
			"backmx_queue_residence_seconds_count %llu\n",
			(unsigned long long)cum, md_sum,
			(unsigned long long)md_count);
}
