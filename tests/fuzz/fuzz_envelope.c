/*
 * fuzz_envelope.c - libFuzzer target for the envelopes.db record
 * decoder (spool_envelope_decode in spool/message.c).  A spool record
 * may be damaged on disk, so decoding must refuse anything malformed
 * without a crash or a huge allocation.  Every accepted record must
 * encode again to exactly the same octets (the format has one
 * representation per envelope), and decode again to the same fields;
 * a version 1 record (still read) encodes as the current version, so
 * for it only the fields are compared.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spool.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spool_envelope *e, *e2;
	void *rec;
	size_t len;
	int i;

	if ((e = spool_envelope_decode(data, size)) == NULL)
		return 0;
	if ((rec = spool_envelope_encode(e, &len)) == NULL)
		abort(); /* decode accepted what encode refuses */
	if (size > 4 && data[4] != 1 &&
	    (len != size || memcmp(rec, data, size) != 0))
		abort(); /* not a canonical round trip */
	if ((e2 = spool_envelope_decode(rec, len)) == NULL)
		abort();
	if (strcmp(e->id, e2->id) != 0 || strcmp(e->sender, e2->sender) ||
	    e->nrcpt != e2->nrcpt || e->size != e2->size)
		abort();
	for (i = 0; i < e->nrcpt; i++)
		if (strcmp(e->rcpt[i].address, e2->rcpt[i].address) != 0 ||
		    e->rcpt[i].state != e2->rcpt[i].state ||
		    e->rcpt[i].step != e2->rcpt[i].step ||
		    e->rcpt[i].flags != e2->rcpt[i].flags ||
		    e->rcpt[i].attempts != e2->rcpt[i].attempts)
			abort();
	if (e->delay_warned != e2->delay_warned)
		abort();
	free(rec);
	spool_envelope_free(e);
	spool_envelope_free(e2);
	return 0;
}
