/*
 * dnsbl_metrics.c - per-zone DNSBL counters for the Prometheus page
 * (dnsbl.h): how each `dnsbl` zone answered the lookups of client
 * addresses - listed, clean (not listed, or an answer the filter does not
 * count) or failed (a DNS failure, which never blocks) - fresh or from
 * the cache.
 *
 * dnsbl.c calls dnsbl_metrics_record() once per zone per lookup;
 * metrics.c appends dnsbl_metrics_page().  A small fixed table: zones
 * beyond DM_MAX share the label "other", so the label count stays
 * bounded across reloads.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dnsbl.h"
#include "json.h"

#define DM_MAX 16

static const char *const dm_answers[] = {"listed", "clean", "failed"};
#define DM_NANS (sizeof(dm_answers) / sizeof(*dm_answers))

struct dm_row {
	char zone[256];
	uint64_t n[DM_NANS];
};

static struct dm_row dm_rows[DM_MAX + 1];
static int dm_n;

void
dnsbl_metrics_record(const char *zone, int answer)
{
	struct dm_row *r = NULL;

	if (answer < 0 || (size_t)answer >= DM_NANS)
		return;
	for (int i = 0; i < dm_n; i++)
		if (!strcmp(dm_rows[i].zone, zone))
			r = &dm_rows[i];
	if (r == NULL && dm_n < DM_MAX) {
		r = &dm_rows[dm_n++];
		snprintf(r->zone, sizeof(r->zone), "%s", zone);
	}
	if (r == NULL) {
		r = &dm_rows[DM_MAX];
		snprintf(r->zone, sizeof(r->zone), "other");
	}
	r->n[answer]++;
}

/* dm_label - the zone as a label value: '"' and '\\' escaped */
static void
dm_label(const char *zone, char *out, size_t outlen)
{
	size_t o = 0;

	for (; *zone != '\0' && o + 3 < outlen; zone++) {
		if (*zone == '"' || *zone == '\\')
			out[o++] = '\\';
		out[o++] = *zone;
	}
	out[o] = '\0';
}

void
dnsbl_metrics_page(struct json_buf *b)
{
	char l[520];
	int other = 0;

	for (size_t k = 0; k < DM_NANS; k++)
		other |= dm_rows[DM_MAX].n[k] != 0;
	if (dm_n == 0 && !other)
		return;
	json_buf_puts(b, "# HELP backmx_dnsbl_answers_total Lookups of client "
	                 "addresses per dnsbl zone by its answer (failed: DNS "
	                 "failure, never blocks).\n"
	                 "# TYPE backmx_dnsbl_answers_total counter\n");
	for (int i = 0; i <= DM_MAX; i++) {
		if ((i >= dm_n && i != DM_MAX) || (i == DM_MAX && !other))
			continue;
		dm_label(dm_rows[i].zone, l, sizeof(l));
		for (size_t k = 0; k < DM_NANS; k++)
			json_buf_printf(
			    b,
			    "backmx_dnsbl_answers_total{zone=\"%s\","
			    "answer=\"%s\"} %llu\n",
			    l, dm_answers[k],
			    (unsigned long long)dm_rows[i].n[k]);
	}
}
