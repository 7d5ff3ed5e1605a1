/*
 * peer_frame.h - the framing of the link between two mirror nodes
 * (relay/peer.c), pure: no sockets, no allocation in the parser.
 *
 * A frame is a 5-octet header, then the payload:
 *   u32 length of the payload (big-endian, at most PEER_FRAME_MAX)
 *   u8  type (enum peer_frame_type)
 * Payloads, every integer big-endian:
 *   HELLO  u8 version (PEER_PROTO_VERSION), u8 channel (PEER_CH_*:
 *          which replication group the connection carries, seen from
 *          the dialing side), u64 incarnation (the identity of the
 *          dialer's spool: a new one after its disk was replaced; 0
 *          from the accepting side), u8 name length, the sender's name
 *   REP    u32 flags (DB_REP_* of the send callback), u32 lsn file,
 *          u32 lsn offset, u32 control length, control, record (the rest)
 *   ACK    u32 lsn file, u32 lsn offset: the replica has made every
 *          permanent record up to there durable on its disk
 *   PING   empty (liveness; either side, any time)
 *   STATE  u32 messages held, u32 flags (PEER_STATE_*): the sender's view
 *   TAKEN  u64 incarnation (the spool the ids are of), u8 last (1 on
 *          the last frame of the list), then 12-octet queue ids (hex):
 *          the messages of that spool the sender took over and delivers
 *          itself; sent on the connection carrying that spool, right
 *          after it is up (empty and last when there are none)
 * Anything else (an unknown type, a payload of the wrong size, a length
 * over the limit, a name that is not LDH) is a protocol error: the link
 * closes.  peer_frame_parse() is what the fuzz target drives.
 */
#ifndef BACKMX_PEER_FRAME_H
#define BACKMX_PEER_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define PEER_PROTO_VERSION 1
#define PEER_FRAME_HDR 5
/* a replication message is one log record or one page (64 KiB pages
 * in body.db), plus BDB's control part; rep_set_limit keeps bulk
 * replies under 1 MiB */
#define PEER_FRAME_MAX (4u * 1024 * 1024)
#define PEER_NAME_MAX 253
#define PEER_ID_LEN 12 /* a queue id in a TAKEN frame */
#define PEER_TAKEN_MAX ((PEER_FRAME_MAX - 9) / PEER_ID_LEN)

enum peer_frame_type {
	PEER_F_HELLO = 1,
	PEER_F_REP = 2,
	PEER_F_ACK = 3,
	PEER_F_PING = 4,
	PEER_F_STATE = 5,
	PEER_F_TAKEN = 6,
};

/* the two replication groups a node takes part in */
enum peer_channel {
	PEER_CH_OWN = 0,     /* our spool (we are its master) */
	PEER_CH_REPLICA = 1, /* the peer's spool (we hold its replica) */
};

#define PEER_STATE_TAKEOVER 0x01  /* the sender took over our mail */
#define PEER_STATE_LIST_DONE 0x02 /* the sender applied our TAKEN list */

struct peer_frame {
	uint8_t type;
	/* HELLO */
	uint8_t version, channel;
	uint64_t incarnation;
	char name[PEER_NAME_MAX + 1];
	/* REP, ACK */
	uint32_t flags;
	uint32_t lsn_file, lsn_off;
	const uint8_t *control, *rec; /* point into the input */
	uint32_t control_len, rec_len;
	/* STATE */
	uint32_t held, state;
	/* TAKEN (and incarnation) */
	uint8_t last;
	const uint8_t *ids; /* nids * PEER_ID_LEN octets, into the input */
	uint32_t nids;
};

/*
 * peer_frame_parse - one frame from buf[0..len): 1 and *used set when a
 * whole frame was parsed into f (pointers into buf), 0 when more input
 * is needed (*used = 0), -1 on a protocol error (err says which).
 */
int peer_frame_parse(const uint8_t *buf, size_t len, struct peer_frame *f,
                     size_t *used, char *err, size_t errlen);

/*
 * Encoders: write the header and fixed fields of a frame into hdr (at
 * most PEER_FRAME_FIXED octets) and return their length; the caller
 * sends hdr, then the variable parts named (REP: control then rec).
 * -1 when a part is too long.
 */
#define PEER_FRAME_FIXED (PEER_FRAME_HDR + 11 + PEER_NAME_MAX + 16)
int peer_frame_hello(uint8_t *hdr, uint8_t channel, uint64_t incarnation,
                     const char *name);
int peer_frame_rep(uint8_t *hdr, uint32_t flags, uint32_t lsn_file,
                   uint32_t lsn_off, size_t control_len, size_t rec_len);
int peer_frame_ack(uint8_t *hdr, uint32_t lsn_file, uint32_t lsn_off);
int peer_frame_ping(uint8_t *hdr);
int peer_frame_state(uint8_t *hdr, uint32_t held, uint32_t state);
/* peer_frame_taken - header of a TAKEN frame of nids ids (then send
 * the nids * PEER_ID_LEN octets); -1 when nids > PEER_TAKEN_MAX */
int peer_frame_taken(uint8_t *hdr, uint64_t incarnation, int last, size_t nids);

#endif
