/*
 * log.c - log lines to stderr (foreground, CLI) or syslog (facility mail).
 * Owns nothing but the ident; called from every relay/ module.  Lines
 * about a message start with its queue id (log_msg), as operators grep.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static const char *log_ident = "backmxd";
static int log_stderr = 1;
static int log_debug_on;

void
log_open(const char *ident, int to_stderr)
{
	log_ident = ident;
	log_stderr = to_stderr;
	if (!to_stderr)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
log_set_debug(int on)
{
	log_debug_on = on;
}

static void
log_vline(int prio, const char *id, const char *fmt, va_list ap)
{
	char line[2048];
	int n = 0;

	if (id != NULL)
		n = snprintf(line, sizeof(line), "%s: ", id);
	vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	/* never let peer-supplied text break the one-line format */
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	if (log_stderr) {
		/* the date part changes once a second: format it then */
		static time_t tsec = -1;
		static char tbuf[32];
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		if (ts.tv_sec != tsec) {
			struct tm tm;

			localtime_r(&ts.tv_sec, &tm);
			strftime(tbuf, sizeof(tbuf), "%b %e %H:%M:%S", &tm);
			tsec = ts.tv_sec;
		}
		fprintf(stderr, "%s.%03ld %s[%d]: %s%s\n", tbuf,
			ts.tv_nsec / 1000000, log_ident, (int)getpid(),
			prio == LOG_ERR ? "error: "
			: prio == LOG_WARNING ? "warning: " : "",
			line);
	} else
		syslog(prio, "%s%s",
		       prio == LOG_ERR ? "error: "
		       : prio == LOG_WARNING ? "warning: " : "",
		       line);
}

#define LOG_BODY(prio, id)                                                   \
	do {                                                                 \
		va_list ap;                                                  \
		va_start(ap, fmt);                                           \
		log_vline(prio, id, fmt, ap);                                \
		va_end(ap);                                                  \
	} while (0)

void
log_info(const char *fmt, ...)
{
	LOG_BODY(LOG_INFO, NULL);
}

void
log_warn(const char *fmt, ...)
{
	LOG_BODY(LOG_WARNING, NULL);
}

void
log_err(const char *fmt, ...)
{
	LOG_BODY(LOG_ERR, NULL);
}

void
log_debug(const char *fmt, ...)
{
	if (!log_debug_on)
		return;
	LOG_BODY(LOG_DEBUG, NULL);
}

void
log_msg(const char *id, const char *fmt, ...)
{
	LOG_BODY(LOG_INFO, id);
}

void
fatal(const char *fmt, ...)
{
	LOG_BODY(LOG_ERR, NULL);
	exit(1);
}
