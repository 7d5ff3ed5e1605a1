/*
 * peer.h - the link to the mirror node (see relay/peer.c).
 *
 * Two TLS connections join the two nodes, one per replication group:
 * the one a node dials carries its own spool's stream (channel
 * PEER_CH_OWN: it is the master, the peer the replica); the one it
 * accepts carries the peer's spool (PEER_CH_REPLICA).  Both ends
 * present certificates from peer_ca and each checks the other's name
 * against `peer NAME`; anything else is refused and logged.
 *
 * spool/repl.c (through relay/mirror.c) is the user: it gets the REP,
 * ACK and STATE frames of a channel with the handlers, and sends with
 * peer_send().  Sending never blocks and never calls back: the frame is
 * queued, and a channel that is down drops it (BDB asks again for what
 * a replica misses once the link is back).
 */
#ifndef BACKMX_PEER_H
#define BACKMX_PEER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "peer_frame.h"

struct peer_handlers {
	void (*up)(int ch); /* the channel's connection is authenticated */
	void (*down)(int ch);
	/* a REP/ACK/STATE frame; return -1 to close the connection */
	int (*frame)(int ch, const struct peer_frame *f);
	/* after a batch of frames read at once (e.g. to flush and ack) */
	void (*batch_end)(int ch);
};

struct peer_link_stats {
	uint64_t connects;     /* authenticated connections, both ways */
	uint64_t refused;      /* inbound connections refused (cert, proto) */
	uint64_t proto_errors; /* connections closed for a bad frame */
	uint64_t frames_in, frames_out;
	uint64_t bytes_in, bytes_out;
	uint64_t dropped; /* frames dropped: channel down or queue full */
};

/* peer_open - TLS context and the peer_listen socket (before the
 * privilege drop); 0 when cfg has no peer */
int peer_open(const struct config *cfg, char *err, size_t errlen);
/* peer_start - accept and dial from now on, reporting to h */
void peer_start(const struct peer_handlers *h);
void peer_shutdown(void);
int peer_enabled(void);

/*
 * peer_send - queue a frame on channel ch: hdr (from a peer_frame_*
 * encoder), then a and b (either may be NULL).  0 queued, -1 dropped.
 */
int peer_send(int ch, const void *hdr, size_t hlen, const void *a, size_t alen,
              const void *b, size_t blen);
/* peer_up - is channel ch's connection authenticated? */
int peer_up(int ch);
/* peer_last_heard - ev_now() of the last frame from the peer, 0 never */
double peer_last_heard(void);
/* peer_set_incarnation - the identity of our spool, sent in our HELLO on
 * PEER_CH_OWN; peer_incarnation - the one the peer sent on ch (0 when
 * down or not sent) */
void peer_set_incarnation(uint64_t inc);
uint64_t peer_incarnation(int ch);
/* peer_queued - octets waiting to be written on channel ch */
size_t peer_queued(int ch);
const struct peer_link_stats *peer_stats(void);

#endif
