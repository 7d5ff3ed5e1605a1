/*
 * fdpause.h - an accept watcher that pauses when the process is out of
 * descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM).
 *
 * A listening socket whose accept(2) fails that way stays readable: the
 * connection waits in the backlog, so a level-triggered ev_io would call
 * its callback again at once and the daemon would spin at 100 % CPU until
 * a descriptor is freed.  fdpause_after() stops the watcher for a second
 * instead (one warning per 10 s), and starts it again by itself.
 *
 * Users: control.c (control socket), metrics.c (metrics endpoint) and
 * peer.c (peer_listen).  listen.c pauses every SMTP listener together
 * with its own timer.
 */
#ifndef BACKMX_FDPAUSE_H
#define BACKMX_FDPAUSE_H

#include <ev.h>

struct fdpause {
	ev_timer timer;
	ev_io *io;        /* the accept watcher */
	const char *what; /* for the log: "control", "metrics", "peer" */
	ev_tstamp last_warn;
};

/* fdpause_init - p pauses io; what names it in the log */
void fdpause_init(struct fdpause *p, ev_io *io, const char *what);
/*
 * fdpause_after - call when accept(2) failed with err: 1 when err is a
 * shortage and io is now paused for a second (return from the accept
 * callback), 0 for any other error (io left as it is)
 */
int fdpause_after(struct ev_loop *loop, struct fdpause *p, int err);
/* fdpause_stop - at shutdown: the pause's timer stopped, io not restarted */
void fdpause_stop(struct ev_loop *loop, struct fdpause *p);

#endif
