/*
 * spool_bench.c - group commit in numbers: writes 20,000 messages of
 * 4 KB into a fresh spool three times, with one spool_sync() (one log
 * fsync) after every 1, 10 and 100 messages, and prints messages/s.
 * Not built by default; from the top of the tree:
 *
 *   gcc -std=gnu11 -D_GNU_SOURCE -O2 -Ispool -o build/spool_bench \
 *       tests/bench/spool_bench.c spool/[a-z]*.c -ldb-5.3
 *   build/spool_bench [DIR]     (default: a new directory in /var/tmp)
 *
 * Run it on the file system the real spool will live on: the figures
 * are the fsync rate of that disk times the batch size, until the CPU
 * or the log write bandwidth is the limit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "spool.h"

#define NMSG 20000
#define MSGSIZE 4096

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
bench_run(const char *base, int every)
{
	static char body[MSGSIZE];
	char dir[4200], err[1024], cmd[4300];
	struct spool_rcpt r = {0};
	struct spool_envelope e;
	struct spool_writer *w;
	struct spool *s;
	double t0, t;
	int i;

	snprintf(dir, sizeof(dir), "%s/sync%d", base, every);
	if ((s = spool_open(dir, err, sizeof(err))) == NULL) {
		fprintf(stderr, "spool_bench: %s: %s\n", dir, err);
		return -1;
	}
	memset(body, 'x', sizeof(body));
	r.address = "bob@example.org";
	t0 = now();
	for (i = 1; i <= NMSG; i++) {
		memset(&e, 0, sizeof(e));
		e.sender = "alice@example.net";
		e.arrival = (int64_t)time(NULL);
		e.nrcpt = 1;
		e.rcpt = &r;
		if ((w = spool_writer_new(s)) == NULL ||
		    spool_writer_append(w, body, sizeof(body)) < 0 ||
		    spool_writer_commit(w, &e) < 0 ||
		    (i % every == 0 && spool_sync(s) < 0)) {
			fprintf(stderr, "spool_bench: %s\n", spool_error(s));
			return -1;
		}
	}
	spool_sync(s);
	t = now() - t0;
	printf("sync every %3d: %6d messages in %6.2f s = %8.0f messages/s "
	       "(%.0f fsyncs/s)\n",
	       every, NMSG, t, NMSG / t, NMSG / every / t);
	fflush(stdout);
	spool_close(s);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int
main(int argc, char **argv)
{
	static const int every[] = {1, 10, 100};
	char base[4096];
	size_t i;

	if (argc > 1)
		snprintf(base, sizeof(base), "%s", argv[1]);
	else {
		snprintf(base, sizeof(base), "/var/tmp/backmx-bench-XXXXXX");
		if (mkdtemp(base) == NULL) {
			perror("mkdtemp");
			return 1;
		}
	}
	for (i = 0; i < sizeof(every) / sizeof(every[0]); i++)
		if (bench_run(base, every[i]) < 0)
			return 1;
	return 0;
}
