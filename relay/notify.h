/*
 * notify.h - the systemd service manager protocol (sd_notify(3)).
 *
 * Without NOTIFY_SOCKET (not started by systemd with Type=notify) every
 * call does nothing.  READY=1 is sent once the spool is recovered, the
 * queue loaded and every listener bound: then the banner is up.  STATUS=
 * says how many messages are queued, refreshed every NOTIFY_STATUS_EVERY
 * seconds; WATCHDOG=1 is sent at half of WatchdogSec= when the unit sets it.
 */
#ifndef BACKMX_NOTIFY_H
#define BACKMX_NOTIFY_H

#include <ev.h>

#define NOTIFY_STATUS_EVERY 30.

/* notify_ready - READY=1 and the first STATUS; starts the status timer */
void notify_ready(struct ev_loop *loop);
/* notify_status - STATUS= now (after a reload: "reloaded ...") */
void notify_status(const char *what);
/* notify_stopping - STOPPING=1: the daemon is on its way out */
void notify_stopping(void);

#endif
