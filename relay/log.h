/*
 * log.h - one line per event, to stderr (-f) or syslog (facility mail),
 * in the style operators grep for:
 *   backmxd[PID]: 4F2A9C1E0A3B: from=<a@b>, size=1234, nrcpt=1
 * log_msg() prefixes the queue id; the other calls log plain lines.
 */
#ifndef BACKMX_LOG_H
#define BACKMX_LOG_H

#include <stdarg.h>

#define LOG_FMT(a, b) __attribute__((format(printf, a, b)))

/* log_open - ident is "backmxd"/"backmxctl"; to_stderr for -f and the CLI */
void log_open(const char *ident, int to_stderr);
void log_set_debug(int on);
void log_info(const char *fmt, ...) LOG_FMT(1, 2);
void log_warn(const char *fmt, ...) LOG_FMT(1, 2);
void log_err(const char *fmt, ...) LOG_FMT(1, 2);
void log_debug(const char *fmt, ...) LOG_FMT(1, 2);
/* log_msg - "ID: text" at info level */
void log_msg(const char *id, const char *fmt, ...) LOG_FMT(2, 3);
/* fatal - log at error level and exit(1): start-up or broken invariant */
void fatal(const char *fmt, ...) LOG_FMT(1, 2) __attribute__((noreturn));

#endif
