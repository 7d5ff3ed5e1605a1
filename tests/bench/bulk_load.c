/*
 * bulk_load.c - fill a spool with N queued messages for the scale runs
 * of tests/bench/run.sh (--scale), through the real spool code.  Each
 * message: a body of SIZE bytes (CRLF lines, as smtpd stores them), the
 * sender bench@sender.example, one recipient <K>user@DOMAIN (K = i mod
 * 100000, as run.sh's recipient list) in state pending, one failed
 * attempt ("4.4.1 ...", as after the primary refused), next attempt
 * DELAY seconds from now (queued but not due), arrival now.  Commits
 * with one spool_sync() every 1000 messages and checkpoints (removing
 * old logs) every 100 000.  Not built by default; run.sh builds it as
 * BUILD/bulk_load, or from the top of the tree:
 *
 *   gcc -std=gnu11 -D_GNU_SOURCE -O2 -Ispool -o build/bulk_load \
 *       tests/bench/bulk_load.c spool/[a-z]*.c -ldb-5.3
 *   build/bulk_load SPOOLDIR N [SIZE [DOMAIN [DELAY]]]
 *
 * Defaults: SIZE 1024, DOMAIN bench.example, DELAY 86400.  N = 0 adds
 * nothing and times what backmxd's start does with an existing spool:
 * spool_open (recovery, the open scan) and one full spool_scan (the
 * forwarder's schedule rebuild reads the same).  The spool
 * must not be open in a running backmxd (spool_open refuses).  Prints
 * the rate every 100 000 messages (stderr) and, at the end, one line
 * with the time, the rate, the spool's count and the first new id.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "spool.h"

#define SYNC_EVERY 1000
#define CHECKPOINT_EVERY 100000

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* make_body - a plausible message of exactly size bytes (>= 256) */
static char *
make_body(size_t size, const char *domain)
{
	char *b, hdr[512];
	size_t n, i;

	if ((b = malloc(size)) == NULL)
		return NULL;
	n = (size_t)snprintf(hdr, sizeof(hdr),
	                     "From: Bench <bench@sender.example>\r\n"
	                     "To: <user@%s>\r\n"
	                     "Subject: bulk_load scale message\r\n"
	                     "Message-ID: <bulk@sender.example>\r\n"
	                     "MIME-Version: 1.0\r\n"
	                     "Content-Type: text/plain; charset=us-ascii\r\n"
	                     "\r\n",
	                     domain);
	if (n >= size) {
		free(b);
		return NULL;
	}
	memcpy(b, hdr, n);
	/* lines of 70 'x' + CRLF; the last one ends at size */
	for (i = n; i < size; i++) {
		size_t col = (i - n) % 72;

		b[i] = col == 70 ? '\r' : col == 71 ? '\n' : 'x';
	}
	b[size - 2] = '\r';
	b[size - 1] = '\n';
	return b;
}

static int
scan_cb(void *arg, const struct spool_envelope *e)
{
	return 0;
}

int
main(int argc, char **argv)
{
	const char *dir, *domain = "bench.example";
	long n, size = 1024, delay = 86400, i;
	char err[1024], addr[320], first[SPOOL_ID_LEN + 1] = "";
	struct spool_rcpt r;
	struct spool_envelope e;
	struct spool_writer *w;
	struct spool *s;
	uint64_t msgs, bytes;
	double t0, t1, tl;
	char *body;

	if (argc < 3 || argc > 6) {
		fprintf(stderr, "usage: bulk_load SPOOLDIR N [SIZE [DOMAIN "
		                "[DELAY]]]\n");
		return 2;
	}
	dir = argv[1];
	n = atol(argv[2]);
	if (argc > 3)
		size = atol(argv[3]);
	if (argc > 4)
		domain = argv[4];
	if (argc > 5)
		delay = atol(argv[5]);
	if (n < 0 || size < 256 || size > 100L * 1024 * 1024) {
		fprintf(stderr, "bulk_load: bad N or SIZE (256 bytes at "
		                "least)\n");
		return 2;
	}
	if ((body = make_body((size_t)size, domain)) == NULL) {
		fprintf(stderr, "bulk_load: out of memory\n");
		return 1;
	}
	t0 = now();
	if ((s = spool_open(dir, err, sizeof(err))) == NULL) {
		fprintf(stderr, "bulk_load: %s: %s\n", dir, err);
		return 1;
	}
	t1 = now();
	spool_count(s, &msgs, NULL);
	if (n == 0) {
		/* only time what backmxd's start does with this spool */
		long nscan;

		tl = now();
		nscan = spool_scan(s, "", 0, scan_cb, NULL);
		printf("spool_open %.2f s (%llu messages), then a full "
		       "spool_scan %.2f s (%ld envelopes)\n",
		       t1 - t0, (unsigned long long)msgs, now() - tl, nscan);
		spool_close(s);
		free(body);
		return nscan < 0 ? 1 : 0;
	}
	if (msgs > 0)
		fprintf(stderr,
		        "bulk_load: %s already holds %llu messages; "
		        "adding %ld\n",
		        dir, (unsigned long long)msgs, n);

	t0 = tl = now();
	for (i = 1; i <= n; i++) {
		int64_t t = (int64_t)time(NULL);

		snprintf(addr, sizeof(addr), "%lduser@%s", i % 100000, domain);
		memset(&r, 0, sizeof(r));
		r.address = addr;
		r.state = SPOOL_RCPT_PENDING;
		r.attempts = 1;
		r.next_attempt = t + delay;
		r.last_error = "4.4.1 bulk_load: primary did not answer";
		memset(&e, 0, sizeof(e));
		e.arrival = t;
		e.sender = "bench@sender.example";
		e.body = SPOOL_BODY_7BIT;
		e.client_addr = "127.0.0.1";
		e.client_helo = "client.example";
		e.nrcpt = 1;
		e.rcpt = &r;
		if ((w = spool_writer_new(s)) != NULL && first[0] == '\0')
			snprintf(first, sizeof(first), "%s",
			         spool_writer_id(w));
		if (w == NULL ||
		    spool_writer_append(w, body, (size_t)size) < 0 ||
		    spool_writer_commit(w, &e) < 0 ||
		    (i % SYNC_EVERY == 0 && spool_sync(s) < 0) ||
		    (i % CHECKPOINT_EVERY == 0 && spool_checkpoint(s) < 0)) {
			fprintf(stderr, "bulk_load: message %ld: %s\n", i,
			        spool_error(s));
			spool_close(s);
			return 1;
		}
		if (i % 100000 == 0) {
			t1 = now();
			fprintf(stderr,
			        "bulk_load: %ld messages, %.0f/s over the last "
			        "100000\n",
			        i, 100000 / (t1 - tl));
			tl = t1;
		}
	}
	if (spool_sync(s) < 0 || spool_checkpoint(s) < 0) {
		fprintf(stderr, "bulk_load: %s\n", spool_error(s));
		spool_close(s);
		return 1;
	}
	t1 = now();
	spool_count(s, &msgs, &bytes);
	printf("loaded %ld messages of %ld bytes in %.1f s = %.0f "
	       "messages/s; spool holds %llu messages, %llu body bytes; "
	       "first id %s\n",
	       n, size, t1 - t0, n / (t1 - t0), (unsigned long long)msgs,
	       (unsigned long long)bytes, first);
	spool_close(s);
	free(body);
	return 0;
}
