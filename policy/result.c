/*
 * result.c - the one result type of backmx: SMTP code, enhanced status
 * code and human text.  A session replies with it, the log line prints
 * it, a bounce reports it.  Used by every module; calls nothing but libc.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "policy.h"

/* result_set - fill r; text is truncated to fit, never overflows */
void
result_set(struct result *r, int code, const char *enh, const char *fmt, ...)
{
	va_list ap;

	if (r == NULL)
		return;
	r->code = code;
	snprintf(r->enh, sizeof(r->enh), "%s", enh != NULL ? enh : "");
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof(r->text), fmt, ap);
	va_end(ap);
}
