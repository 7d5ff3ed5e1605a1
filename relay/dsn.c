/*
 * dsn.c - RFC 3464 bounces (see dsn.h): stub, composer follows.
 */
#include "dsn.h"
#include "log.h"

int
dsn_wanted(const struct spool_envelope *e, int i)
{
	return 0;
}

int
dsn_bounce(const struct spool_envelope *e, const struct dsn_item *it, int n,
	   int64_t now)
{
	return 0;
}
