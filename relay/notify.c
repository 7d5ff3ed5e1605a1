/*
 * notify.c - READY, STATUS, STOPPING and WATCHDOG to systemd (sd_notify).
 *
 * Owns one timer (status and watchdog).  Uses libsystemd's sd_notify,
 * which does nothing when NOTIFY_SOCKET is unset; the socket stays in the
 * environment (unset_environment 0) so a re-exec could notify too.
 * DIAGNOSTICS: a failed notification is logged once at warning.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <systemd/sd-daemon.h>

#include "backmxd.h"
#include "log.h"
#include "notify.h"

static ev_timer notify_timer;
static int notify_warned;

/* notify_send - one notification; warn once when it cannot be sent */
static void
notify_send(const char *text)
{
	int r = sd_notify(0, text);

	if (r < 0 && !notify_warned) {
		notify_warned = 1;
		log_warn("sd_notify to %s failed: error %d",
		         getenv("NOTIFY_SOCKET") ? getenv("NOTIFY_SOCKET")
		                                 : "-",
		         -r);
	}
}

void
notify_status(const char *what)
{
	uint64_t msgs = 0, bytes = 0;
	char buf[256];

	if (getenv("NOTIFY_SOCKET") == NULL)
		return;
	if (backmxd.spool != NULL)
		spool_count(backmxd.spool, &msgs, &bytes);
	snprintf(buf, sizeof(buf),
	         "STATUS=%s%s%llu message(s) queued, "
	         "%llu bytes",
	         what ? what : "", what ? ": " : "", (unsigned long long)msgs,
	         (unsigned long long)bytes);
	notify_send(buf);
}

static void
notify_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	uint64_t usec;

	notify_status(NULL);
	if (sd_watchdog_enabled(0, &usec) > 0)
		notify_send("WATCHDOG=1");
}

void
notify_ready(struct ev_loop *loop)
{
	uint64_t usec = 0;
	double every = NOTIFY_STATUS_EVERY;

	if (getenv("NOTIFY_SOCKET") == NULL)
		return;
	notify_send("READY=1");
	notify_status(NULL);
	/* the watchdog wants a ping at least every usec: send at half */
	if (sd_watchdog_enabled(0, &usec) > 0 && usec / 2e6 < every)
		every = usec / 2e6 > 0.1 ? usec / 2e6 : 0.1;
	ev_timer_init(&notify_timer, notify_timer_cb, every, every);
	ev_timer_start(loop, &notify_timer);
	ev_unref(loop); /* never keeps the loop alive by itself */
}

void
notify_stopping(void)
{
	if (getenv("NOTIFY_SOCKET") == NULL)
		return;
	notify_send("STOPPING=1");
}
