/*
 * fuzz_peer.c - libFuzzer target for the mirror link's framing parser
 * (relay/peer_frame.c), fed as the link feeds it: a stream of frames.
 * Invariants: a parsed frame lies within the input and its length limit;
 * REP parts lie inside the frame; a HELLO name is NUL-terminated LDH;
 * every strict prefix of a parsed frame asks for more (never an error
 * that the whole frame did not have, never a frame); re-encoding a
 * parsed ACK/STATE/HELLO/REP/PING/TAKEN header gives the same octets;
 * TAKEN ids lie inside the frame and end where it ends.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "peer_frame.h"

static void
fuzz_peer_reencode(const uint8_t *in, const struct peer_frame *f)
{
	uint8_t hdr[PEER_FRAME_FIXED];
	int n = -1;

	switch (f->type) {
	case PEER_F_HELLO:
		n = peer_frame_hello(hdr, f->channel, f->incarnation, f->name);
		break;
	case PEER_F_REP:
		n = peer_frame_rep(hdr, f->flags, f->lsn_file, f->lsn_off,
		                   f->control_len, f->rec_len);
		break;
	case PEER_F_ACK:
		n = peer_frame_ack(hdr, f->lsn_file, f->lsn_off);
		break;
	case PEER_F_STATE:
		n = peer_frame_state(hdr, f->held, f->state);
		break;
	case PEER_F_PING:
		n = peer_frame_ping(hdr);
		break;
	case PEER_F_TAKEN:
		n = peer_frame_taken(hdr, f->incarnation, f->last, f->nids);
		break;
	default:
		abort();
	}
	if (n < 0 || memcmp(hdr, in, (size_t)n) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	size_t off = 0;

	while (off < len) {
		struct peer_frame f;
		char err[128];
		size_t used;
		int r = peer_frame_parse(data + off, len - off, &f, &used, err,
		                         sizeof(err));

		if (r < 0) {
			if (err[0] == '\0')
				abort();
			return 0;
		}
		if (r == 0) {
			if (used != 0)
				abort();
			return 0;
		}
		if (used < PEER_FRAME_HDR || used > len - off ||
		    used > PEER_FRAME_HDR + PEER_FRAME_MAX)
			abort();
		if (f.type == PEER_F_REP &&
		    (f.control < data + off ||
		     f.rec + f.rec_len != data + off + used ||
		     f.control + f.control_len != f.rec))
			abort();
		if (f.type == PEER_F_TAKEN &&
		    (f.nids > PEER_TAKEN_MAX || f.ids < data + off ||
		     f.ids + (size_t)f.nids * PEER_ID_LEN != data + off + used))
			abort();
		if (f.type == PEER_F_HELLO &&
		    (strlen(f.name) == 0 || strlen(f.name) > PEER_NAME_MAX))
			abort();
		fuzz_peer_reencode(data + off, &f);
		for (size_t i = 0; i < used; i++) {
			struct peer_frame g;
			size_t u;

			if (peer_frame_parse(data + off, i, &g, &u, err,
			                     sizeof(err)) != 0)
				abort();
		}
		off += used;
	}
	return 0;
}
