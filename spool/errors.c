/*
 * errors.c - the spool's error state: a BDB or errno return code
 * classified (SPOOL_ENOSPC for a full disk or quota, SPOOL_EIO for the
 * rest), the text "what: db_strerror (BDB's own message)" kept in the
 * handle, and spool_errno()/spool_error() to read them.  Called by every
 * spool file that fails (spool_fail, spool_fail_class); calls nothing of
 * the spool.  BDB's messages reach s->dberr through env.c's errcall.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "spool_private.h"

/* spool_classify - which class a BDB/errno return code falls in */
static enum spool_err
spool_classify(struct spool *s, int ret)
{
	if (ret == ENOSPC || ret == EDQUOT || ret == EFBIG)
		return SPOOL_ENOSPC;
	/*
	 * A failed write deep inside BDB may come back as EIO or as a
	 * panic; its message to errcall still says why.
	 */
	if (strstr(s->dberr, strerror(ENOSPC)) != NULL ||
	    strstr(s->dberr, strerror(EDQUOT)) != NULL)
		return SPOOL_ENOSPC;
	return SPOOL_EIO;
}

static int
spool_vfail(struct spool *s, enum spool_err cls, int ret, const char *fmt,
            va_list ap)
{
	char what[256];

	vsnprintf(what, sizeof(what), fmt, ap);
	s->err = cls;
	if (ret == 0)
		snprintf(s->errbuf, sizeof(s->errbuf), "%s", what);
	else if (s->dberr[0] != '\0')
		snprintf(s->errbuf, sizeof(s->errbuf), "%s: %s (%s)", what,
		         db_strerror(ret), s->dberr);
	else
		snprintf(s->errbuf, sizeof(s->errbuf), "%s: %s", what,
		         db_strerror(ret));
	s->dberr[0] = '\0';
	return -1;
}

/* spool_fail - classify BDB/errno code ret, set the error text; -1 */
int
spool_fail(struct spool *s, int ret, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = spool_vfail(s, spool_classify(s, ret), ret, fmt, ap);
	va_end(ap);
	return r;
}

/* spool_fail_class - as spool_fail with an explicit class */
int
spool_fail_class(struct spool *s, enum spool_err cls, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = spool_vfail(s, cls, 0, fmt, ap);
	va_end(ap);
	return r;
}

enum spool_err
spool_errno(const struct spool *s)
{
	return s->err;
}

const char *
spool_error(const struct spool *s)
{
	return s->err == SPOOL_OK ? "no error" : s->errbuf;
}

int
spool_txn_retry(int ret, int *tries)
{
	return ret == DB_LOCK_DEADLOCK && ++*tries < SPOOL_TXN_TRIES;
}
