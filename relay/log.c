/*
 * log.c - log lines in Postfix's formats to syslog, stderr or the journal.
 *
 * Owns the ident, the destination and the service table; called from
 * every relay/ module through log.h's macros, which pass __FILE__ so the
 * line gets its file's service name (backmx/smtpd ...).  Lines about a
 * message start with its queue id (log_msg), as operators grep.
 *
 * DIAGNOSTICS: none; a line that cannot be written is dropped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "log.h"

enum log_dest { DEST_SYSLOG, DEST_STDERR, DEST_JOURNAL, DEST_PREFIX };

static const char *log_ident = "backmxd";
static enum log_dest log_dest = DEST_STDERR;
static int log_debug_on;
static char log_host[256] = "localhost";
static const char *log_syslog_svc; /* the ident openlog() last got */

/* source file (base name, prefix match) -> service, as Postfix names its
 * daemons: sessions smtpd, queue qmgr, deliveries smtp, DSNs bounce */
static const struct {
	const char *prefix;
	const char *svc;
} log_services[] = {
    {"smtpd", "backmx/smtpd"}, /* smtpd.c smtpd_data.c smtpd_*.c */
    {"listen", "backmx/smtpd"},     {"client_", "backmx/smtpd"},
    {"proxy", "backmx/smtpd"},      {"dnsbl", "backmx/smtpd"},
    {"callout", "backmx/smtpd"},    {"milter", "backmx/smtpd"},
    {"ldap", "backmx/smtpd"},       {"filter", "backmx/smtpd"},
    {"recipients", "backmx/smtpd"}, {"tls", "backmx/smtpd"},
    {"smtp_client", "backmx/smtp"}, {"mtasts", "backmx/smtp"},
    {"forward", "backmx/qmgr"},     {"fwd_", "backmx/qmgr"},
    {"queue", "backmx/qmgr"},       {"spool", "backmx/qmgr"},
    {"bounce", "backmx/bounce"},    {"control", "backmx/control"},
    {"peer", "backmx/peer"},
};

const char *
log_service_of(const char *file)
{
	const char *base = strrchr(file, '/');
	size_t i;

	base = base ? base + 1 : file;
	for (i = 0; i < sizeof(log_services) / sizeof(log_services[0]); i++)
		if (!strncmp(base, log_services[i].prefix,
		             strlen(log_services[i].prefix)))
			return log_services[i].svc;
	return "backmx/master";
}

const char *
log_path(const char *arg, char *buf, size_t n)
{
	size_t j = 0;

	while (*arg == ' ')
		arg++;
	if (*arg == '<')
		arg++;
	for (; *arg && *arg != '>' && *arg != ' ' && j + 1 < n; arg++)
		buf[j++] = (unsigned char)*arg < 0x20 ? '?' : *arg;
	buf[n ? j : 0] = '\0';
	return buf;
}

/*
 * log_journal_stream - 1 when stderr is the journal stream systemd gave
 * us (JOURNAL_STREAM=DEV:INODE names it, sd_journal_stream_fd(3))
 */
static int
log_journal_stream(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) < 0)
		return 0;
	return (unsigned long long)st.st_dev == dev &&
	       (unsigned long long)st.st_ino == ino;
}

void
log_open(const char *ident, int to_stderr)
{
	log_ident = ident;
	if (gethostname(log_host, sizeof(log_host) - 1) < 0 || !log_host[0])
		snprintf(log_host, sizeof(log_host), "localhost");
	log_host[strcspn(log_host, ".")] = '\0'; /* as syslog shows it */
	if (!to_stderr)
		log_dest = DEST_SYSLOG;
	else if (strcmp(ident, "backmxd") == 0 && log_journal_stream())
		/* sd_journal_send drops lines silently without the socket */
		log_dest = access("/run/systemd/journal/socket", W_OK) == 0
		               ? DEST_JOURNAL
		               : DEST_PREFIX;
	else
		log_dest = DEST_STDERR;
}

void
log_set_debug(int on)
{
	log_debug_on = on;
}

/* log_svc_name - what the line is logged as: the service for the daemon,
 * the program's own name for the CLI */
static const char *
log_svc_name(const char *svc)
{
	return strcmp(log_ident, "backmxd") == 0 ? svc : log_ident;
}

static void
log_write(const char *svc, int prio, const char *line)
{
	const char *pfx = prio == LOG_ERR       ? "error: "
	                  : prio == LOG_WARNING ? "warning: "
	                                        : "";
	const char *name = log_svc_name(svc);

	if (log_dest == DEST_SYSLOG) {
		/* the ident is the service: re-open only when it changes
		 * (openlog keeps the pointer: the names are static) */
		if (log_syslog_svc != name) {
			openlog(name, LOG_PID | LOG_NDELAY, LOG_MAIL);
			log_syslog_svc = name;
		}
		syslog(prio, "%s%s", pfx, line);
		return;
	}
	if (log_dest == DEST_JOURNAL) {
		if (sd_journal_send("MESSAGE=%s%s", pfx, line, "PRIORITY=%d",
		                    prio, "SYSLOG_FACILITY=%d", LOG_MAIL >> 3,
		                    "SYSLOG_IDENTIFIER=%s", name,
		                    "SYSLOG_PID=%d", (int)getpid(), NULL) >= 0)
			return;
		/* no journal socket (or full): the stream, with priority */
		log_dest = DEST_PREFIX;
	}
	if (log_dest == DEST_PREFIX) {
		fprintf(stderr, "<%d>%s[%d]: %s%s\n", prio, name, (int)getpid(),
		        pfx, line);
		return;
	}
	/* the date part changes once a second: format it then */
	static time_t tsec = -1;
	static char tbuf[32], tz[8];
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != tsec) {
		struct tm tm;

		localtime_r(&ts.tv_sec, &tm);
		strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);
		strftime(tz, sizeof(tz), "%z", &tm); /* +0000 -> +00:00 */
		if (strlen(tz) == 5) {
			tz[6] = '\0';
			tz[5] = tz[4];
			tz[4] = tz[3];
			tz[3] = ':';
		}
		tsec = ts.tv_sec;
	}
	fprintf(stderr, "%s.%03ld%s %s %s[%d]: %s%s\n", tbuf,
	        ts.tv_nsec / 1000000, tz, log_host, name, (int)getpid(), pfx,
	        line);
}

static void
log_vline(const char *svc, int prio, const char *id, const char *fmt,
          va_list ap)
{
	char line[2048];
	int n = 0;

	if (prio == LOG_DEBUG && !log_debug_on)
		return;
	if (id != NULL)
		n = snprintf(line, sizeof(line), "%s: ", id);
	vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	/* never let peer-supplied text break the one-line format */
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	log_write(svc, prio, line);
}

void
log_at(const char *file, int prio, const char *id, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vline(log_service_of(file), prio, id, fmt, ap);
	va_end(ap);
}

void
log_svc(const char *svc, int prio, const char *id, const char *fmt, ...)
{
	char name[64];
	va_list ap;
	size_t i;
	const char *s = NULL;

	/* the static name of the service (syslog keeps the pointer) */
	snprintf(name, sizeof(name), "backmx/%s", svc);
	for (i = 0; i < sizeof(log_services) / sizeof(log_services[0]); i++)
		if (!strcmp(log_services[i].svc, name))
			s = log_services[i].svc;
	va_start(ap, fmt);
	log_vline(s ? s : "backmx/master", prio, id, fmt, ap);
	va_end(ap);
}

void
log_fatal_at(const char *file, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vline(log_service_of(file), LOG_ERR, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}
