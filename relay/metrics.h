/*
 * metrics.h - the Prometheus text endpoint (`metrics ADDR:PORT`) and the
 * table of counters it shares with `backmxctl stats`, so both always
 * show the same names and values.
 *
 * HTTP/1.0 and 1.1 on the daemon's loop: only `GET /metrics` (and HEAD)
 * answers 200 with text/plain; version=0.0.4; other paths 404, other
 * methods 405, malformed or oversized requests 400; the connection is
 * closed after every response.
 */
#ifndef BACKMX_METRICS_H
#define BACKMX_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "json.h"

struct metrics_counter {
	const char *name;   /* stats.h field, the JSON key of `stats` */
	const char *metric; /* Prometheus name */
	const char *label;  /* `reason="relay"` or NULL */
	const char *help;
	int gauge;        /* 0 = counter */
	size_t offset;    /* of the uint64_t in struct stats */
	unsigned divisor; /* 0/1: as is; else the page shows value /
	                     divisor (ms counted, seconds shown) */
};

extern const struct metrics_counter metrics_counters[];
extern const size_t metrics_ncounters;

/* metrics_counter_value - the current value of one table entry */
uint64_t metrics_counter_value(const struct metrics_counter *m);
/* metrics_oldest_arrival - arrival time of the oldest queued message,
 * or -1 when the spool is empty (ids sort by creation: one read) */
int64_t metrics_oldest_arrival(void);
/* metrics_page - the whole Prometheus text page into b */
void metrics_page(struct json_buf *b);

/* main.c: open as root (bind), start on the loop, close at exit */
int metrics_open(const struct config *cfg, char *err, size_t errlen);
void metrics_start(void);
void metrics_close(void);

#endif
