/*
 * dns_packet.c - the implementation of dns_packet.h (RFC 1035 4.1 message
 * format, 4.1.4 compression).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unbound.h>

#include "dns_packet.h"

#define PKT_MAX_RR 256
#define PKT_MAX_CNAME 16

/*
 * pkt_name - the (possibly compressed) name at off into out as
 * uncompressed wire format (at most 255 octets); *next is the offset just
 * past the name where it starts.  Returns the wire length or -1.
 */
static int
pkt_name(const uint8_t *p, size_t len, size_t off, uint8_t *out, size_t *next)
{
	size_t o = 0, pos = off;
	int jumps = 0, jumped = 0;

	for (;;) {
		uint8_t l;

		if (pos >= len)
			return -1;
		l = p[pos];
		if ((l & 0xc0) == 0xc0) {
			if (pos + 1 >= len || ++jumps > 64)
				return -1;
			if (!jumped)
				*next = pos + 2;
			jumped = 1;
			pos = (size_t)(l & 0x3f) << 8 | p[pos + 1];
			continue;
		}
		if (l & 0xc0)
			return -1;
		if (pos + 1 + l > len || o + 1 + l > 255)
			return -1;
		memcpy(out + o, p + pos, (size_t)l + 1);
		o += (size_t)l + 1;
		pos += (size_t)l + 1;
		if (l == 0)
			break;
	}
	if (!jumped)
		*next = pos;
	return (int)o;
}

/* pkt_name_eq - two uncompressed wire names, ASCII case-insensitive */
static int
pkt_name_eq(const uint8_t *a, int alen, const uint8_t *b, int blen)
{
	int i;

	if (alen != blen)
		return 0;
	for (i = 0; i < alen; i++) {
		uint8_t x = a[i], y = b[i];

		if (x >= 'A' && x <= 'Z')
			x = (uint8_t)(x + 32);
		if (y >= 'A' && y <= 'Z')
			y = (uint8_t)(y + 32);
		if (x != y)
			return 0;
	}
	return 1;
}

/* pkt_name_text - wire name as text with the trailing dot ("." root) */
static char *
pkt_name_text(const uint8_t *w, int wlen)
{
	char *s = malloc((size_t)wlen + 2), *o = s;
	int i = 0;

	if (s == NULL)
		return NULL;
	while (i < wlen && w[i] != 0) {
		int l = w[i++], k;

		for (k = 0; k < l && i < wlen; k++)
			*o++ = (char)w[i++];
		*o++ = '.';
	}
	if (o == s)
		*o++ = '.';
	*o = '\0';
	return s;
}

struct pkt_rr {
	uint8_t owner[255];
	int olen;
	int type, class;
	size_t rdoff, rdlen;
	uint32_t ttl;
};

void
dns_packet_result_free(struct ub_result *r)
{
	int i;

	if (r == NULL)
		return;
	if (r->data != NULL)
		for (i = 0; r->data[i] != NULL; i++)
			free(r->data[i]);
	free(r->data);
	free(r->len);
	free(r->qname);
	free(r->canonname);
	free(r->why_bogus);
	free(r);
}

/* pkt_rdata - a copy of rr's rdata, MX exchange and PTR names decompressed */
static char *
pkt_rdata(const uint8_t *p, size_t len, const struct pkt_rr *rr, int *outlen)
{
	char *d;

	if (rr->type == 15 /* MX */ && rr->rdlen >= 3) {
		uint8_t name[255];
		size_t next;
		int n = pkt_name(p, len, rr->rdoff + 2, name, &next);

		if (n < 0 || next != rr->rdoff + rr->rdlen)
			return NULL;
		if ((d = malloc((size_t)n + 2)) == NULL)
			return NULL;
		memcpy(d, p + rr->rdoff, 2);
		memcpy(d + 2, name, (size_t)n);
		*outlen = n + 2;
		return d;
	}
	if (rr->type == 12 /* PTR */) {
		uint8_t name[255];
		size_t next;
		int n = pkt_name(p, len, rr->rdoff, name, &next);

		if (n < 0 || next != rr->rdoff + rr->rdlen)
			return NULL;
		if ((d = malloc((size_t)n)) == NULL)
			return NULL;
		memcpy(d, name, (size_t)n);
		*outlen = n;
		return d;
	}
	if ((d = malloc(rr->rdlen + 1)) == NULL)
		return NULL;
	memcpy(d, p + rr->rdoff, rr->rdlen);
	*outlen = (int)rr->rdlen;
	return d;
}

/* pkt_parse - the answers of p into r; 0, -1 malformed, -2 no memory */
static int
pkt_parse(const uint8_t *p, size_t len, int qtype, struct ub_result *r)
{
	static struct pkt_rr rrs[PKT_MAX_RR]; /* single-threaded daemon */
	uint8_t cur[255];
	int qd, an, i, n = 0, nrr = 0, curlen, hops, count = 0;
	size_t off = 12, next;

	if (len < 12)
		return -1;
	qd = p[4] << 8 | p[5];
	an = p[6] << 8 | p[7];
	r->rcode = p[3] & 0x0f;
	if (qd != 1)
		return -1;
	if ((curlen = pkt_name(p, len, off, cur, &next)) < 0)
		return -1;
	off = next + 4;
	if (off > len)
		return -1;
	for (i = 0; i < an && nrr < PKT_MAX_RR; i++) {
		struct pkt_rr *rr = &rrs[nrr];

		if ((rr->olen = pkt_name(p, len, off, rr->owner, &next)) < 0)
			return -1;
		off = next;
		if (off + 10 > len)
			return -1;
		rr->type = p[off] << 8 | p[off + 1];
		rr->class = p[off + 2] << 8 | p[off + 3];
		rr->ttl = (uint32_t)p[off + 4] << 24 |
		          (uint32_t)p[off + 5] << 16 |
		          (uint32_t)p[off + 6] << 8 | p[off + 7];
		rr->rdlen = (size_t)(p[off + 8] << 8 | p[off + 9]);
		rr->rdoff = off + 10;
		off = rr->rdoff + rr->rdlen;
		if (off > len)
			return -1;
		if (rr->class == 1)
			nrr++;
	}
	/* follow the CNAME chain from the question name */
	for (hops = 0; qtype != 5 && hops < PKT_MAX_CNAME; hops++) {
		int found = 0;

		for (i = 0; i < nrr; i++)
			if (rrs[i].type == 5 &&
			    pkt_name_eq(rrs[i].owner, rrs[i].olen, cur,
			                curlen)) {
				int l =
				    pkt_name(p, len, rrs[i].rdoff, cur, &next);

				if (l < 0)
					return -1;
				curlen = l;
				found = 1;
				break;
			}
		if (!found)
			break;
	}
	if (hops > 0 && (r->canonname = pkt_name_text(cur, curlen)) == NULL)
		return -2;
	for (i = 0; i < nrr; i++)
		if (rrs[i].type == qtype &&
		    pkt_name_eq(rrs[i].owner, rrs[i].olen, cur, curlen))
			count++;
	if ((r->data = calloc((size_t)count + 1, sizeof(*r->data))) == NULL ||
	    (r->len = calloc((size_t)count + 1, sizeof(*r->len))) == NULL)
		return -2;
	for (i = 0; i < nrr; i++) {
		if (rrs[i].type != qtype ||
		    !pkt_name_eq(rrs[i].owner, rrs[i].olen, cur, curlen))
			continue;
		r->data[n] = pkt_rdata(p, len, &rrs[i], &r->len[n]);
		if (r->data[n] == NULL)
			continue; /* malformed MX: skipped, as unbound */
		/* the answer lives as long as its shortest record */
		if (n == 0 || rrs[i].ttl < (uint32_t)r->ttl)
			r->ttl = rrs[i].ttl > 0x7fffffff ? 0x7fffffff
			                                 : (int)rrs[i].ttl;
		n++;
	}
	r->havedata = n > 0;
	return 0;
}

struct ub_result *
dns_packet_result(const uint8_t *pkt, size_t len, const char *qname, int qtype,
                  int rcode, int sec, const char *why_bogus)
{
	struct ub_result *r = calloc(1, sizeof(*r));
	int rc;

	if (r == NULL)
		return NULL;
	r->qtype = qtype;
	r->qclass = 1;
	r->rcode = rcode;
	r->secure = sec == 2;
	r->bogus = sec == 1;
	if ((r->qname = strdup(qname)) == NULL ||
	    (why_bogus != NULL && (r->why_bogus = strdup(why_bogus)) == NULL))
		goto nomem;
	/* a non-zero rcode from libunbound is a failure of its own and the
	 * buffer is then not a reply; NOERROR hands over the reply, whose
	 * header carries the server's rcode (NXDOMAIN among them) */
	if (pkt != NULL && !r->bogus && rcode == 0) {
		rc = pkt_parse(pkt, len, qtype, r);
		if (rc == -2)
			goto nomem;
		if (rc == -1) {
			int i;

			if (r->data != NULL)
				for (i = 0; r->data[i] != NULL; i++)
					free(r->data[i]);
			free(r->data);
			free(r->len);
			r->data = NULL;
			r->len = NULL;
			r->havedata = 0;
			r->rcode = 2;
		}
	}
	if (r->data == NULL) {
		if ((r->data = calloc(1, sizeof(*r->data))) == NULL ||
		    (r->len = calloc(1, sizeof(*r->len))) == NULL)
			goto nomem;
	}
	r->nxdomain = r->rcode == 3;
	return r;
nomem:
	dns_packet_result_free(r);
	return NULL;
}
