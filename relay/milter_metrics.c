/*
 * milter_metrics.c - per-milter counters and latency histogram for the
 * Prometheus page (milter.h): how each configured milter (labelled by
 * its spec as written in backmx.conf) answered, and how long one
 * message's conversation with it waited for its replies.
 *
 * milter.c calls milter_metrics_record() when it is done with a milter
 * for a message; metrics.c appends milter_metrics_page().  A small fixed
 * table: milters beyond MM_MAX share the label "other", so the label
 * count stays bounded across reloads.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "json.h"
#include "milter.h"

#define MM_MAX 16
#define MM_NB 10

static const double mm_bounds[MM_NB] = {
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30,
};

static const char *const mm_outcomes[] = {
    "accepted", "rejected", "tempfailed", "discarded", "quarantined", "failed",
};
#define MM_NOUT (sizeof(mm_outcomes) / sizeof(*mm_outcomes))

struct mm_row {
	char spec[160];
	uint64_t out[MM_NOUT];
	uint64_t hist[MM_NB + 1]; /* last: +Inf */
	uint64_t count;
	double sum;
};

static struct mm_row mm_rows[MM_MAX + 1];
static int mm_n;

static struct mm_row *
mm_row(const char *spec)
{
	for (int i = 0; i < mm_n; i++)
		if (!strcmp(mm_rows[i].spec, spec))
			return &mm_rows[i];
	if (mm_n == MM_MAX) {
		snprintf(mm_rows[MM_MAX].spec, sizeof(mm_rows[MM_MAX].spec),
		         "other");
		return &mm_rows[MM_MAX];
	}
	snprintf(mm_rows[mm_n].spec, sizeof(mm_rows[mm_n].spec), "%s", spec);
	return &mm_rows[mm_n++];
}

void
milter_metrics_record(const char *spec, double seconds, const char *outcome)
{
	struct mm_row *r = mm_row(spec);
	int k;

	for (size_t i = 0; i < MM_NOUT; i++)
		if (!strcmp(outcome, mm_outcomes[i]))
			r->out[i]++;
	if (seconds < 0)
		seconds = 0;
	for (k = 0; k < MM_NB && seconds > mm_bounds[k]; k++)
		;
	r->hist[k]++;
	r->count++;
	r->sum += seconds;
}

/* mm_label - the spec as a label value: '"' and '\' escaped */
static void
mm_label(const char *spec, char *out, size_t outlen)
{
	size_t o = 0;

	for (; *spec != '\0' && o + 3 < outlen; spec++) {
		if (*spec == '"' || *spec == '\\')
			out[o++] = '\\';
		out[o++] = *spec;
	}
	out[o] = '\0';
}

void
milter_metrics_page(struct json_buf *b)
{
	int rows = mm_n + (mm_rows[MM_MAX].count > 0);
	char l[330];

	if (rows == 0)
		return;
	json_buf_puts(b, "# HELP backmx_milter_outcomes_total Conversations "
	                 "with a milter by its answer (failed: down, slow or "
	                 "garbage).\n"
	                 "# TYPE backmx_milter_outcomes_total counter\n");
	for (int i = 0; i <= MM_MAX; i++) {
		if (i >= mm_n && i != MM_MAX)
			continue;
		if (i == MM_MAX && mm_rows[i].count == 0)
			continue;
		mm_label(mm_rows[i].spec, l, sizeof(l));
		for (size_t k = 0; k < MM_NOUT; k++)
			json_buf_printf(
			    b,
			    "backmx_milter_outcomes_total{milter=\"%s\","
			    "outcome=\"%s\"} %llu\n",
			    l, mm_outcomes[k],
			    (unsigned long long)mm_rows[i].out[k]);
	}
	json_buf_puts(b, "# HELP backmx_milter_latency_seconds Time one "
	                 "message's conversation with a milter waited for "
	                 "its replies.\n"
	                 "# TYPE backmx_milter_latency_seconds histogram\n");
	for (int i = 0; i <= MM_MAX; i++) {
		uint64_t cum = 0;

		if (i >= mm_n && i != MM_MAX)
			continue;
		if (i == MM_MAX && mm_rows[i].count == 0)
			continue;
		mm_label(mm_rows[i].spec, l, sizeof(l));
		for (int k = 0; k < MM_NB; k++) {
			cum += mm_rows[i].hist[k];
			json_buf_printf(b,
			                "backmx_milter_latency_seconds_bucket{"
			                "milter=\"%s\",le=\"%g\"} %llu\n",
			                l, mm_bounds[k],
			                (unsigned long long)cum);
		}
		cum += mm_rows[i].hist[MM_NB];
		json_buf_printf(
		    b,
		    "backmx_milter_latency_seconds_bucket{milter=\"%s\","
		    "le=\"+Inf\"} %llu\n"
		    "backmx_milter_latency_seconds_sum{milter=\"%s\"} "
		    "%.6f\n"
		    "backmx_milter_latency_seconds_count{milter=\"%s\"} "
		    "%llu\n",
		    l, (unsigned long long)cum, l, mm_rows[i].sum, l,
		    (unsigned long long)mm_rows[i].count);
	}
}
