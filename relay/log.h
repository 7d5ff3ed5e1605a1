/*
 * log.h - one line per event in Postfix's formats, under Postfix-style
 * syslog names (backmx/smtpd, backmx/qmgr, backmx/smtp, backmx/bounce,
 * backmx/master, ...), so that pflogsumm --syslog-name=backmx, fail2ban's
 * postfix filter and log exporters read them unchanged:
 *   backmx/smtpd[PID]: connect from unknown[192.0.2.1]
 *   backmx/qmgr[PID]: 4F2A9C1E0A3B: from=<a@b>, size=1234, nrcpt=1 (queue
 * active)
 *
 * Where a line goes: syslog (facility mail) when the daemon detached;
 * with -f, stderr as "TIMESTAMP HOST backmx/SVC[PID]: text" (RFC 3339
 * time with milliseconds, read by pflogsumm and fail2ban); under systemd
 * (JOURNAL_STREAM names our stderr) straight to the journal with the
 * service as SYSLOG_IDENTIFIER and the priority, or, when the journal
 * socket cannot be written, as "<N>backmx/SVC[PID]: text" on stderr
 * (sd-daemon(3) prefixes: no second timestamp, the priority kept).
 *
 * The service of a line is the one of the source file it comes from
 * (log.c's table: smtpd.c -> smtpd, forward.c -> qmgr, smtp_client.c ->
 * smtp, bounce.c -> bounce, others -> master); log_svc() names it where
 * a file logs for another one (delivery lines in forward.c are "smtp").
 * Priorities: log_err at err ("error: " prefix), log_warn at warning
 * ("warning: "), refusals and deliveries (log_info, log_msg) at info.
 */
#ifndef BACKMX_LOG_H
#define BACKMX_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <syslog.h>

#define LOG_FMT(a, b) __attribute__((format(printf, a, b)))

/* log_open - ident is "backmxd"/"backmxctl"; to_stderr for -f and the CLI */
void log_open(const char *ident, int to_stderr);
void log_set_debug(int on);
/* log_at - the line of prio from source file (its service), "ID: " first
 * when id is not NULL */
void log_at(const char *file, int prio, const char *id, const char *fmt, ...)
    LOG_FMT(4, 5);
/* log_svc - the same under the named service ("smtp", "qmgr", ...) */
void log_svc(const char *svc, int prio, const char *id, const char *fmt, ...)
    LOG_FMT(4, 5);
void log_fatal_at(const char *file, const char *fmt, ...) LOG_FMT(2, 3)
    __attribute__((noreturn));
/* log_path - the address inside "<...>" at the start of arg (a MAIL or
 * RCPT argument), bounded and without control octets, in buf */
const char *log_path(const char *arg, char *buf, size_t n);
/* log_service_of - the service name of a source file (tests) */
const char *log_service_of(const char *file);

#define log_info(...) log_at(__FILE__, LOG_INFO, NULL, __VA_ARGS__)
#define log_warn(...) log_at(__FILE__, LOG_WARNING, NULL, __VA_ARGS__)
#define log_err(...) log_at(__FILE__, LOG_ERR, NULL, __VA_ARGS__)
#define log_debug(...) log_at(__FILE__, LOG_DEBUG, NULL, __VA_ARGS__)
/* log_msg - "ID: text" at info level */
#define log_msg(id, ...) log_at(__FILE__, LOG_INFO, (id), __VA_ARGS__)
/* fatal - log at error level and exit(1): start-up or broken invariant */
#define fatal(...) log_fatal_at(__FILE__, __VA_ARGS__)

#endif
