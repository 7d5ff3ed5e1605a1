/*
 * qload.c - plant queued messages in a spool (backmxd not running) for
 * the queue-operation tests: N messages from SENDER to RCPT that arrived
 * AGE seconds ago, one failed attempt, next attempt in a day.  Through
 * the real spool code.  Built by test_queueops.py:
 *   qload SPOOLDIR N AGE SENDER RCPT
 * Prints the first id.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "spool.h"

int
main(int argc, char **argv)
{
	static const char body[] = "Subject: planted\r\n"
	                           "Message-ID: <planted@qload.test>\r\n"
	                           "\r\nplanted by qload\r\n";
	char err[1024], first[SPOOL_ID_LEN + 1] = "";
	struct spool_envelope e;
	struct spool_rcpt r;
	struct spool_writer *w;
	struct spool_options o = {0};
	struct spool *s;
	long n, age, i;

	if (argc != 6) {
		fprintf(stderr, "usage: qload SPOOLDIR N AGE SENDER RCPT\n");
		return 2;
	}
	n = atol(argv[2]);
	age = atol(argv[3]);
	/* small sizes: the default 64 MB cache costs seconds per run */
	o.cache_bytes = 4 * 1024 * 1024;
	o.log_buffer = 1024 * 1024;
	if ((s = spool_open_opts(argv[1], &o, NULL, err, sizeof(err))) ==
	    NULL) {
		fprintf(stderr, "qload: %s\n", err);
		return 1;
	}
	for (i = 0; i < n; i++) {
		int64_t t = (int64_t)time(NULL);

		memset(&r, 0, sizeof(r));
		r.address = argv[5];
		r.state = SPOOL_RCPT_PENDING;
		r.attempts = 1;
		r.next_attempt = t + 86400;
		r.last_error = "4.4.1 qload: primary did not answer";
		memset(&e, 0, sizeof(e));
		e.arrival = t - age;
		e.sender = argv[4];
		e.client_addr = "127.0.0.1";
		e.client_helo = "qload.test";
		e.nrcpt = 1;
		e.rcpt = &r;
		if ((w = spool_writer_new(s)) == NULL ||
		    (first[0] == '\0' && snprintf(first, sizeof(first), "%s",
		                                  spool_writer_id(w)) < 0) ||
		    spool_writer_append(w, body, sizeof(body) - 1) < 0 ||
		    spool_writer_commit(w, &e) < 0 ||
		    (i % 1000 == 999 && spool_sync(s) < 0)) {
			fprintf(stderr, "qload: %s\n", spool_error(s));
			return 1;
		}
	}
	if (spool_sync(s) < 0) {
		fprintf(stderr, "qload: %s\n", spool_error(s));
		return 1;
	}
	printf("%s\n", first);
	spool_close(s);
	return 0;
}
