/*
 * test_peer_frame.c - relay/peer_frame.c: each frame type built and
 * parsed back, byte by byte (every strict prefix asks for more), two
 * frames in one buffer, and the refusals: over the size limit, unknown
 * type, wrong fixed sizes, a REP control part longer than the frame, a
 * HELLO with a bad version, channel or name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "peer_frame.h"

static int
parse(const uint8_t *b, size_t n, struct peer_frame *f, size_t *used)
{
	char err[128];

	err[0] = '\0';
	int r = peer_frame_parse(b, n, f, used, err, sizeof(err));

	if (r < 0)
		assert_true(err[0] != '\0');
	return r;
}

static void
prefixes(const uint8_t *b, size_t n)
{
	struct peer_frame f;
	size_t used;

	for (size_t i = 0; i < n; i++)
		assert_int_equal(parse(b, i, &f, &used), 0);
	assert_int_equal(parse(b, n, &f, &used), 1);
	assert_int_equal(used, n);
}

static void
test_hello(void **state)
{
	uint8_t b[PEER_FRAME_FIXED];
	struct peer_frame f;
	size_t used;
	int n = peer_frame_hello(b, PEER_CH_OWN, 0x0123456789abcdefULL,
	                         "peera.test.example");

	assert_true(n > 0);
	prefixes(b, n);
	assert_int_equal(parse(b, n, &f, &used), 1);
	assert_int_equal(f.type, PEER_F_HELLO);
	assert_int_equal(f.channel, PEER_CH_OWN);
	assert_string_equal(f.name, "peera.test.example");
	assert_true(f.incarnation == 0x0123456789abcdefULL);
	/* bad version, channel, name */
	b[5] = 2;
	assert_int_equal(parse(b, n, &f, &used), -1);
	b[5] = PEER_PROTO_VERSION;
	b[6] = 7;
	assert_int_equal(parse(b, n, &f, &used), -1);
	b[6] = PEER_CH_REPLICA;
	b[18] = '/';
	assert_int_equal(parse(b, n, &f, &used), -1);
	assert_int_equal(peer_frame_hello(b, 0, 1, "bad name"), -1);
	assert_int_equal(peer_frame_hello(b, 0, 1, ""), -1);
}

static void
test_rep(void **state)
{
	uint8_t b[256];
	struct peer_frame f;
	size_t used;
	int n = peer_frame_rep(b, 4, 3, 1234, 5, 7);

	assert_int_equal(n, PEER_FRAME_HDR + 16);
	memcpy(b + n, "CTRL!", 5);
	memcpy(b + n + 5, "RECORD!", 7);
	prefixes(b, n + 12);
	assert_int_equal(parse(b, n + 12, &f, &used), 1);
	assert_int_equal(f.flags, 4);
	assert_int_equal(f.lsn_file, 3);
	assert_int_equal(f.lsn_off, 1234);
	assert_int_equal(f.control_len, 5);
	assert_int_equal(f.rec_len, 7);
	assert_memory_equal(f.control, "CTRL!", 5);
	assert_memory_equal(f.rec, "RECORD!", 7);
	/* the control part says more than the frame holds */
	b[PEER_FRAME_HDR + 15] = 13;
	assert_int_equal(parse(b, n + 12, &f, &used), -1);
	assert_int_equal(peer_frame_rep(b, 0, 0, 0, PEER_FRAME_MAX, 1), -1);
}

static void
test_small_frames(void **state)
{
	uint8_t b[64];
	struct peer_frame f;
	size_t used;
	int n1 = peer_frame_ack(b, 9, 77);
	int n2 = peer_frame_ping(b + n1);
	int n3 = peer_frame_state(b + n1 + n2, 42, PEER_STATE_TAKEOVER);

	prefixes(b, n1);
	assert_int_equal(parse(b, n1 + n2 + n3, &f, &used), 1);
	assert_int_equal(f.type, PEER_F_ACK);
	assert_int_equal(f.lsn_file, 9);
	assert_int_equal(f.lsn_off, 77);
	assert_int_equal(used, n1);
	assert_int_equal(parse(b + n1, n2 + n3, &f, &used), 1);
	assert_int_equal(f.type, PEER_F_PING);
	assert_int_equal(parse(b + n1 + n2, n3, &f, &used), 1);
	assert_int_equal(f.type, PEER_F_STATE);
	assert_int_equal(f.held, 42);
	assert_int_equal(f.state, PEER_STATE_TAKEOVER);
}

static void
test_refused_headers(void **state)
{
	struct peer_frame f;
	size_t used;
	/* refused from the header alone, before any payload arrives */
	static const uint8_t big[] = {0x00, 0x40, 0x00, 0x01, PEER_F_REP};
	static const uint8_t unknown[] = {0, 0, 0, 0, 99};
	static const uint8_t ack9[] = {0, 0, 0, 9, PEER_F_ACK};
	static const uint8_t ping1[] = {0, 0, 0, 1, PEER_F_PING};
	static const uint8_t rep15[] = {0, 0, 0, 15, PEER_F_REP};
	static const uint8_t hello3[] = {0, 0, 0, 11, PEER_F_HELLO};

	assert_int_equal(parse(big, sizeof(big), &f, &used), -1);
	assert_int_equal(parse(unknown, sizeof(unknown), &f, &used), -1);
	assert_int_equal(parse(ack9, sizeof(ack9), &f, &used), -1);
	assert_int_equal(parse(ping1, sizeof(ping1), &f, &used), -1);
	assert_int_equal(parse(rep15, sizeof(rep15), &f, &used), -1);
	assert_int_equal(parse(hello3, sizeof(hello3), &f, &used), -1);
}

/* TAKEN: incarnation, last flag, 12-octet hex ids; bad ones refused */
static void
test_taken(void **state)
{
	uint8_t b[PEER_FRAME_FIXED + 3 * PEER_ID_LEN];
	static const char ids[] = "6b115f9a00006b115f9a00026b115f9a0004";
	struct peer_frame f;
	size_t used;
	int n = peer_frame_taken(b, 0x0123456789abcdefULL, 1, 3);

	assert_int_equal(n, PEER_FRAME_HDR + 9);
	memcpy(b + n, ids, 3 * PEER_ID_LEN);
	prefixes(b, (size_t)n + 3 * PEER_ID_LEN);
	assert_int_equal(parse(b, (size_t)n + 3 * PEER_ID_LEN, &f, &used), 1);
	assert_int_equal(f.type, PEER_F_TAKEN);
	assert_true(f.incarnation == 0x0123456789abcdefULL);
	assert_int_equal(f.last, 1);
	assert_int_equal(f.nids, 3);
	assert_memory_equal(f.ids, ids, 3 * PEER_ID_LEN);
	/* an empty last list */
	n = peer_frame_taken(b, 7, 1, 0);
	assert_int_equal(parse(b, (size_t)n, &f, &used), 1);
	assert_int_equal(f.nids, 0);
	/* an id that is not lowercase hex */
	n = peer_frame_taken(b, 7, 0, 1);
	memcpy(b + n, "6b115f9a000G", PEER_ID_LEN);
	assert_int_equal(parse(b, (size_t)n + PEER_ID_LEN, &f, &used), -1);
	/* a flag other than 0/1 */
	memcpy(b + n, "6b115f9a0000", PEER_ID_LEN);
	b[13] = 2;
	assert_int_equal(parse(b, (size_t)n + PEER_ID_LEN, &f, &used), -1);
	/* a length that is no whole number of ids, from the header alone */
	{
		static const uint8_t odd[] = {0, 0, 0, 10, PEER_F_TAKEN};

		assert_int_equal(parse(odd, sizeof(odd), &f, &used), -1);
	}
	assert_int_equal(peer_frame_taken(b, 7, 1, PEER_TAKEN_MAX + 1), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hello),
	    cmocka_unit_test(test_rep),
	    cmocka_unit_test(test_small_frames),
	    cmocka_unit_test(test_refused_headers),
	    cmocka_unit_test(test_taken),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
