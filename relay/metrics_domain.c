/*
 * metrics_domain.c - per-domain delivery counters, TLS outcomes and the
 * residence and latency histograms (see metrics_domain.h).  A small
 * array of domains, looked up linearly (a few dozen configured domains
 * plus "other"); the histograms have fixed buckets, residence from 1 s
 * to 5 days, latency from 10 ms to 5 minutes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backmxd.h"
#include "metrics_domain.h"

#define MD_MAX 1024
#define MD_RES_NB 11
#define MD_LAT_NB 12

static const double md_res_bounds[MD_RES_NB] = {
    1, 5, 30, 60, 300, 900, 3600, 14400, 43200, 86400, 432000,
};
static const double md_lat_bounds[MD_LAT_NB] = {
    0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
};

enum md_tls {
	MD_TLS_NONE,
	MD_TLS_TRUSTED,
	MD_TLS_UNTRUSTED,
	MD_TLS_VERIFIED,
	MD_TLS_DANE,
	MD_TLS_FAILED,
	MD_TLS_NB
};
static const char *const md_tls_names[MD_TLS_NB] = {
    "none", "trusted", "untrusted", "verified", "dane", "failed",
};

struct md_hist {
	uint64_t b[MD_LAT_NB + 1]; /* per bucket, not cumulative; last +Inf */
	uint64_t count;
	double sum;
};

struct md_row {
	char name[POLICY_DOMAIN_MAX + 1];
	uint64_t sent, deferred, bounced;
	uint64_t tls[MD_TLS_NB];
	struct md_hist res, lat;
};

static struct md_row md_rows[MD_MAX];
static int md_n;

/* md_row - the row of addr's domain ("other" unless configured) */
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

static void
md_hist_add(struct md_hist *h, const double *bounds, int nb, double v)
{
	int b;

	if (v < 0)
		v = 0;
	for (b = 0; b < nb && v > bounds[b]; b++)
		;
	h->b[b]++;
	h->count++;
	h->sum += v;
}

/* md_tls_outcome - the TLS label of an attempt, -1 when none applies */
static int
md_tls_outcome(const char *tls, const char *enh)
{
	static const struct {
		const char *suffix;
		int v;
	} sfx[] = {
	    {" untrusted", MD_TLS_UNTRUSTED},
	    {" trusted", MD_TLS_TRUSTED},
	    {" verified", MD_TLS_VERIFIED},
	    {" dane", MD_TLS_DANE},
	};
	size_t i, n, l;

	if (tls == NULL || tls[0] == '\0')
		/* no connection carried it: TLS refused by our policy
		 * (4.7.4 not offered, 4.7.5 failed), else nothing to say */
		return enh != NULL && (!strncmp(enh, "4.7.4", 5) ||
		                       !strncmp(enh, "4.7.5", 5))
		           ? MD_TLS_FAILED
		           : -1;
	if (!strcmp(tls, "none"))
		return MD_TLS_NONE;
	n = strlen(tls);
	for (i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		l = strlen(sfx[i].suffix);
		if (n >= l && !strcmp(tls + n - l, sfx[i].suffix))
			return sfx[i].v;
	}
	return MD_TLS_UNTRUSTED;
}

void
metrics_domain_record(const char *addr, const char *status, double residence,
                      double latency, const char *tls, const char *enh)
{
	struct md_row *r = md_row(addr);
	int t;

	if (r == NULL || status == NULL)
		return;
	if (!strcmp(status, "sent"))
		r->sent++;
	else if (!strcmp(status, "deferred"))
		r->deferred++;
	else if (!strcmp(status, "bounced"))
		r->bounced++;
	if ((t = md_tls_outcome(tls, enh)) >= 0)
		r->tls[t]++;
	if (latency >= 0)
		md_hist_add(&r->lat, md_lat_bounds, MD_LAT_NB, latency);
	if (!strcmp(status, "deferred"))
		return; /* not final: still in the queue */
	md_hist_add(&r->res, md_res_bounds, MD_RES_NB, residence);
}

/* md_hist_page - one domain's series of histogram name */
static void
md_hist_page(struct json_buf *b, const char *name, const char *dom,
             const struct md_hist *h, const double *bounds, int nb)
{
	uint64_t cum = 0;
	int k;

	for (k = 0; k < nb; k++) {
		cum += h->b[k];
		json_buf_printf(b, "%s_bucket{domain=\"%s\",le=\"%g\"} %llu\n",
		                name, dom, bounds[k], (unsigned long long)cum);
	}
	cum += h->b[nb];
	json_buf_printf(b,
	                "%s_bucket{domain=\"%s\",le=\"+Inf\"} %llu\n"
	                "%s_sum{domain=\"%s\"} %.3f\n"
	                "%s_count{domain=\"%s\"} %llu\n",
	                name, dom, (unsigned long long)cum, name, dom, h->sum,
	                name, dom, (unsigned long long)h->count);
}

void
metrics_domain_page(struct json_buf *b)
{
	static const char *const st[] = {"sent", "deferred", "bounced"};
	int i, k;

	json_buf_puts(b, "# HELP backmx_domain_recipients_total Recipient "
	                 "outcomes by recipient domain (other: not a "
	                 "configured domain).\n"
	                 "# TYPE backmx_domain_recipients_total counter\n");
	for (i = 0; i < md_n; i++)
		for (k = 0; k < 3; k++)
			json_buf_printf(
			    b,
			    "backmx_domain_recipients_total{domain="
			    "\"%s\",status=\"%s\"} %llu\n",
			    md_rows[i].name, st[k],
			    (unsigned long long)(k == 0 ? md_rows[i].sent
			                         : k == 1
			                             ? md_rows[i].deferred
			                             : md_rows[i].bounced));
	json_buf_puts(b, "# HELP backmx_domain_tls_total Delivery attempts by "
	                 "recipient domain and TLS outcome: none (in clear), "
	                 "trusted/untrusted (opportunistic, chain valid or "
	                 "not), verified, dane, failed (TLS the policy "
	                 "requires could not be set up).\n"
	                 "# TYPE backmx_domain_tls_total counter\n");
	for (i = 0; i < md_n; i++)
		for (k = 0; k < MD_TLS_NB; k++)
			json_buf_printf(b,
			                "backmx_domain_tls_total{domain=\"%s\","
			                "tls=\"%s\"} %llu\n",
			                md_rows[i].name, md_tls_names[k],
			                (unsigned long long)md_rows[i].tls[k]);
	json_buf_puts(b, "# HELP backmx_queue_residence_seconds Time from "
	                 "arrival to a recipient's final outcome (sent or "
	                 "bounced), by recipient domain.\n"
	                 "# TYPE backmx_queue_residence_seconds histogram\n");
	for (i = 0; i < md_n; i++)
		md_hist_page(b, "backmx_queue_residence_seconds",
		             md_rows[i].name, &md_rows[i].res, md_res_bounds,
		             MD_RES_NB);
	json_buf_puts(b, "# HELP backmx_delivery_latency_seconds Connection "
	                 "setup and transaction time of delivery attempts "
	                 "that reached a server, by recipient domain.\n"
	                 "# TYPE backmx_delivery_latency_seconds histogram\n");
	for (i = 0; i < md_n; i++)
		md_hist_page(b, "backmx_delivery_latency_seconds",
		             md_rows[i].name, &md_rows[i].lat, md_lat_bounds,
		             MD_LAT_NB);
}
