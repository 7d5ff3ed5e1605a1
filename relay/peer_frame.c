/*
 * peer_frame.c - parse and build the frames of the mirror link (see
 * peer_frame.h).  Pure and strict: every length is checked against the
 * bytes present and the type's exact size before anything is read.
 */
#include <stdio.h>
#include <string.h>

#include "peer_frame.h"

static uint32_t
peer_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static void
peer_put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

/* peer_name_ok - LDH and dots, as certificate names of hosts are */
static int
peer_name_ok(const uint8_t *s, size_t n)
{
	if (n == 0 || n > PEER_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '.'))
			return 0;
	}
	return 1;
}

static int
peer_bad(char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "%s", what);
	return -1;
}

int
peer_frame_parse(const uint8_t *buf, size_t len, struct peer_frame *f,
                 size_t *used, char *err, size_t errlen)
{
	const uint8_t *p;
	uint32_t n;

	*used = 0;
	if (len < PEER_FRAME_HDR)
		return 0;
	n = peer_get32(buf);
	if (n > PEER_FRAME_MAX)
		return peer_bad(err, errlen, "frame over the size limit");
	memset(f, 0, sizeof(*f));
	f->type = buf[4];
	/* types and sizes are checked before the payload is waited for,
	 * so a bad header is refused at once */
	switch (f->type) {
	case PEER_F_HELLO:
		if (n < 12 || n > 11 + PEER_NAME_MAX)
			return peer_bad(err, errlen, "HELLO of a bad size");
		break;
	case PEER_F_REP:
		if (n < 16)
			return peer_bad(err, errlen, "REP too short");
		break;
	case PEER_F_ACK:
	case PEER_F_STATE:
		if (n != 8)
			return peer_bad(err, errlen, "ACK/STATE of a bad size");
		break;
	case PEER_F_PING:
		if (n != 0)
			return peer_bad(err, errlen, "PING with a payload");
		break;
	case PEER_F_TAKEN:
		if (n < 9 || (n - 9) % PEER_ID_LEN != 0)
			return peer_bad(err, errlen, "TAKEN of a bad size");
		break;
	default:
		return peer_bad(err, errlen, "unknown frame type");
	}
	if (len - PEER_FRAME_HDR < n)
		return 0;
	p = buf + PEER_FRAME_HDR;
	switch (f->type) {
	case PEER_F_HELLO:
		f->version = p[0];
		f->channel = p[1];
		if (f->version != PEER_PROTO_VERSION)
			return peer_bad(err, errlen,
			                "unknown protocol version");
		if (f->channel != PEER_CH_OWN && f->channel != PEER_CH_REPLICA)
			return peer_bad(err, errlen, "unknown channel");
		f->incarnation =
		    (uint64_t)peer_get32(p + 2) << 32 | peer_get32(p + 6);
		if ((uint32_t)p[10] + 11 != n || !peer_name_ok(p + 11, p[10]))
			return peer_bad(err, errlen, "HELLO with a bad name");
		memcpy(f->name, p + 11, p[10]);
		f->name[p[10]] = '\0';
		break;
	case PEER_F_REP:
		f->flags = peer_get32(p);
		f->lsn_file = peer_get32(p + 4);
		f->lsn_off = peer_get32(p + 8);
		f->control_len = peer_get32(p + 12);
		if (f->control_len > n - 16)
			return peer_bad(err, errlen, "REP control too long");
		f->control = p + 16;
		f->rec = p + 16 + f->control_len;
		f->rec_len = n - 16 - f->control_len;
		break;
	case PEER_F_ACK:
		f->lsn_file = peer_get32(p);
		f->lsn_off = peer_get32(p + 4);
		break;
	case PEER_F_STATE:
		f->held = peer_get32(p);
		f->state = peer_get32(p + 4);
		break;
	case PEER_F_TAKEN:
		f->incarnation =
		    (uint64_t)peer_get32(p) << 32 | peer_get32(p + 4);
		if (p[8] > 1)
			return peer_bad(err, errlen, "TAKEN with a bad flag");
		f->last = p[8];
		f->ids = p + 9;
		f->nids = (n - 9) / PEER_ID_LEN;
		for (uint32_t i = 0; i < n - 9; i++) {
			uint8_t c = f->ids[i];

			if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
				return peer_bad(err, errlen,
				                "TAKEN with a bad queue id");
		}
		break;
	}
	*used = PEER_FRAME_HDR + n;
	return 1;
}

static void
peer_hdr(uint8_t *hdr, uint8_t type, uint32_t n)
{
	peer_put32(hdr, n);
	hdr[4] = type;
}

int
peer_frame_hello(uint8_t *hdr, uint8_t channel, uint64_t incarnation,
                 const char *name)
{
	size_t n = strlen(name);

	if (!peer_name_ok((const uint8_t *)name, n))
		return -1;
	peer_hdr(hdr, PEER_F_HELLO, (uint32_t)(11 + n));
	hdr[5] = PEER_PROTO_VERSION;
	hdr[6] = channel;
	peer_put32(hdr + 7, (uint32_t)(incarnation >> 32));
	peer_put32(hdr + 11, (uint32_t)incarnation);
	hdr[15] = (uint8_t)n;
	memcpy(hdr + 16, name, n);
	return (int)(16 + n);
}

int
peer_frame_rep(uint8_t *hdr, uint32_t flags, uint32_t lsn_file,
               uint32_t lsn_off, size_t control_len, size_t rec_len)
{
	if (control_len > PEER_FRAME_MAX - 16 ||
	    rec_len > PEER_FRAME_MAX - 16 - control_len)
		return -1;
	peer_hdr(hdr, PEER_F_REP, (uint32_t)(16 + control_len + rec_len));
	peer_put32(hdr + 5, flags);
	peer_put32(hdr + 9, lsn_file);
	peer_put32(hdr + 13, lsn_off);
	peer_put32(hdr + 17, (uint32_t)control_len);
	return PEER_FRAME_HDR + 16;
}

int
peer_frame_ack(uint8_t *hdr, uint32_t lsn_file, uint32_t lsn_off)
{
	peer_hdr(hdr, PEER_F_ACK, 8);
	peer_put32(hdr + 5, lsn_file);
	peer_put32(hdr + 9, lsn_off);
	return PEER_FRAME_HDR + 8;
}

int
peer_frame_ping(uint8_t *hdr)
{
	peer_hdr(hdr, PEER_F_PING, 0);
	return PEER_FRAME_HDR;
}

int
peer_frame_state(uint8_t *hdr, uint32_t held, uint32_t state)
{
	peer_hdr(hdr, PEER_F_STATE, 8);
	peer_put32(hdr + 5, held);
	peer_put32(hdr + 9, state);
	return PEER_FRAME_HDR + 8;
}

int
peer_frame_taken(uint8_t *hdr, uint64_t incarnation, int last, size_t nids)
{
	if (nids > PEER_TAKEN_MAX)
		return -1;
	peer_hdr(hdr, PEER_F_TAKEN, (uint32_t)(9 + nids * PEER_ID_LEN));
	peer_put32(hdr + 5, (uint32_t)(incarnation >> 32));
	peer_put32(hdr + 9, (uint32_t)incarnation);
	hdr[13] = last ? 1 : 0;
	return PEER_FRAME_HDR + 9;
}
