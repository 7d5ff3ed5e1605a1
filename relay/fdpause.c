/*
 * fdpause.c - pausing an accept watcher while the process is out of
 * descriptors (see fdpause.h).
 */
#include <errno.h>
#include <string.h>

#include "fdpause.h"
#include "log.h"

#define FDPAUSE_SECONDS 1.
#define FDPAUSE_WARN_EVERY 10.

static void
fdpause_resume_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct fdpause *p = w->data;

	ev_io_start(loop, p->io);
}

void
fdpause_init(struct fdpause *p, ev_io *io, const char *what)
{
	ev_timer_init(&p->timer, fdpause_resume_cb, FDPAUSE_SECONDS, 0.);
	p->timer.data = p;
	p->io = io;
	p->what = what;
	p->last_warn = -FDPAUSE_WARN_EVERY;
}

int
fdpause_after(struct ev_loop *loop, struct fdpause *p, int err)
{
	switch (err) {
	case EMFILE:
	case ENFILE:
	case ENOBUFS:
	case ENOMEM:
		break;
	default:
		return 0;
	}
	if (ev_now(loop) - p->last_warn >= FDPAUSE_WARN_EVERY) {
		log_warn("%s: accept: %s; pausing accepts for 1s", p->what,
		         strerror(err));
		p->last_warn = ev_now(loop);
	}
	ev_io_stop(loop, p->io);
	ev_timer_stop(loop, &p->timer);
	/* set again: a timer that fired keeps 0 left, and would fire at
	 * once */
	ev_timer_set(&p->timer, FDPAUSE_SECONDS, 0.);
	ev_timer_start(loop, &p->timer);
	return 1;
}

void
fdpause_stop(struct ev_loop *loop, struct fdpause *p)
{
	ev_timer_stop(loop, &p->timer);
}
