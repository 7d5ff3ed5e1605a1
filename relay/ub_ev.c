/*
 * ub_ev.c - the implementation of ub_ev.h: ub_event_base_vmt and
 * ub_event_vmt (unbound-event.h) over libev watchers.  A ub_event is an
 * ev_io (when it has a descriptor and read/write bits) and an ev_timer
 * (when added with a timeout); without UB_EV_PERSIST it is deactivated
 * before its callback runs, as libevent does.  Watchers are unref'd: only
 * the resolver's own per-query timers keep ev_run going.
 */
#include <sys/time.h>

#include <stdlib.h>
#include <string.h>
#include <unbound-event.h>

#include "ub_ev.h"

struct ub_ev_base {
	struct ub_event_base super; /* first: libunbound's view */
	struct ev_loop *loop;
	int depth; /* inside a libunbound callback */
	void (*after_cb)(void *);
	void *after_arg;
};

struct ub_ev {
	struct ub_event super; /* first */
	struct ub_ev_base *base;
	int fd;
	short bits;
	void (*cb)(int, short, void *);
	void *arg;
	ev_io io;
	ev_timer timer;
	int io_on, timer_on;
	double tv; /* timeout of the last add, 0 none */
};

static void
ub_ev_io_stop(struct ub_ev *e)
{
	if (e->io_on) {
		ev_ref(e->base->loop);
		ev_io_stop(e->base->loop, &e->io);
		e->io_on = 0;
	}
}

static void
ub_ev_timer_stop(struct ub_ev *e)
{
	if (e->timer_on) {
		ev_ref(e->base->loop);
		ev_timer_stop(e->base->loop, &e->timer);
		e->timer_on = 0;
	}
}

static void
ub_ev_timer_start(struct ub_ev *e, double after)
{
	ub_ev_timer_stop(e);
	ev_timer_set(&e->timer, after, 0.);
	ev_timer_start(e->base->loop, &e->timer);
	ev_unref(e->base->loop);
	e->timer_on = 1;
}

/* ub_ev_fire - run libunbound's callback; e may be freed inside it */
static void
ub_ev_fire(struct ub_ev *e, short what)
{
	struct ub_ev_base *b = e->base;

	if (!(e->bits & UB_EV_PERSIST)) {
		ub_ev_io_stop(e);
		ub_ev_timer_stop(e);
	} else if (e->timer_on && !(what & UB_EV_TIMEOUT) && e->tv > 0)
		ub_ev_timer_start(e, e->tv); /* libevent re-arms it */
	b->depth++;
	e->cb(e->fd, what, e->arg);
	b->depth--;
	if (b->depth == 0 && b->after_cb != NULL)
		b->after_cb(b->after_arg);
}

static void
ub_ev_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ub_ev *e = w->data;
	short what = 0;

	if (revents & EV_READ)
		what |= UB_EV_READ;
	if (revents & EV_WRITE)
		what |= UB_EV_WRITE;
	ub_ev_fire(e, what);
}

static void
ub_ev_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ub_ev *e = w->data;

	ev_ref(loop); /* a fired one-shot timer is stopped */
	e->timer_on = 0;
	ub_ev_fire(e, UB_EV_TIMEOUT);
}

static void
ub_ev_add_bits(struct ub_event *ev, short bits)
{
	((struct ub_ev *)ev)->bits |= bits;
}

static void
ub_ev_del_bits(struct ub_event *ev, short bits)
{
	((struct ub_ev *)ev)->bits &= (short)~bits;
}

static void
ub_ev_set_fd(struct ub_event *ev, int fd)
{
	((struct ub_ev *)ev)->fd = fd;
}

static void
ub_ev_free(struct ub_event *ev)
{
	struct ub_ev *e = (struct ub_ev *)ev;

	if (e == NULL)
		return;
	ub_ev_io_stop(e);
	ub_ev_timer_stop(e);
	free(e);
}

static int
ub_ev_add(struct ub_event *ev, struct timeval *tv)
{
	struct ub_ev *e = (struct ub_ev *)ev;
	int evbits = 0;

	ub_ev_io_stop(e);
	ub_ev_timer_stop(e);
	if (e->bits & UB_EV_READ)
		evbits |= EV_READ;
	if (e->bits & UB_EV_WRITE)
		evbits |= EV_WRITE;
	if (evbits != 0 && e->fd >= 0) {
		ev_io_set(&e->io, e->fd, evbits);
		ev_io_start(e->base->loop, &e->io);
		ev_unref(e->base->loop);
		e->io_on = 1;
	}
	e->tv = 0;
	if (tv != NULL) {
		e->tv = (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
		ub_ev_timer_start(e, e->tv);
	}
	return 0;
}

static int
ub_ev_del(struct ub_event *ev)
{
	struct ub_ev *e = (struct ub_ev *)ev;

	ub_ev_io_stop(e);
	ub_ev_timer_stop(e);
	return 0;
}

static int
ub_ev_add_timer(struct ub_event *ev, struct ub_event_base *base,
                void (*cb)(int, short, void *), void *arg, struct timeval *tv)
{
	struct ub_ev *e = (struct ub_ev *)ev;

	e->cb = cb;
	e->arg = arg;
	e->bits |= UB_EV_TIMEOUT;
	if (tv == NULL)
		return -1;
	e->tv = (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
	ub_ev_timer_start(e, e->tv);
	return 0;
}

static int
ub_ev_del_timer(struct ub_event *ev)
{
	ub_ev_timer_stop((struct ub_ev *)ev);
	return 0;
}

static int
ub_ev_signal_unused(struct ub_event *ev, struct timeval *tv)
{
	return -1; /* libunbound does not use signals */
}

static int
ub_ev_signal_del_unused(struct ub_event *ev)
{
	return -1;
}

static void
ub_ev_winsock_unused(struct ub_event *ev)
{
}

static void
ub_ev_winsock_block_unused(struct ub_event *ev, int bit)
{
}

static struct ub_event_vmt ub_ev_vmt = {
    ub_ev_add_bits,
    ub_ev_del_bits,
    ub_ev_set_fd,
    ub_ev_free,
    ub_ev_add,
    ub_ev_del,
    ub_ev_add_timer,
    ub_ev_del_timer,
    ub_ev_signal_unused,
    ub_ev_signal_del_unused,
    ub_ev_winsock_unused,
    ub_ev_winsock_block_unused,
};

static struct ub_event *
ub_ev_new_event(struct ub_event_base *base, int fd, short bits,
                void (*cb)(int, short, void *), void *arg)
{
	struct ub_ev *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return NULL;
	e->super.magic = UB_EVENT_MAGIC;
	e->super.vmt = &ub_ev_vmt;
	e->base = (struct ub_ev_base *)base;
	e->fd = fd;
	e->bits = bits;
	e->cb = cb;
	e->arg = arg;
	ev_init(&e->io, ub_ev_io_cb);
	e->io.data = e;
	ev_init(&e->timer, ub_ev_timer_cb);
	e->timer.data = e;
	return &e->super;
}

static struct ub_event *
ub_ev_new_signal(struct ub_event_base *base, int fd,
                 void (*cb)(int, short, void *), void *arg)
{
	return NULL;
}

static struct ub_event *
ub_ev_new_wsaevent(struct ub_event_base *base, void *wsaevent,
                   void (*cb)(int, short, void *), void *arg)
{
	return NULL;
}

static void
ub_ev_base_free_vmt(struct ub_event_base *base)
{
	/* not called by libunbound: the owner calls ub_ev_base_free */
}

static int
ub_ev_dispatch(struct ub_event_base *base)
{
	ev_run(((struct ub_ev_base *)base)->loop, 0);
	return 0;
}

static int
ub_ev_loopexit(struct ub_event_base *base, struct timeval *tv)
{
	ev_break(((struct ub_ev_base *)base)->loop, EVBREAK_ONE);
	return 0;
}

static struct ub_event_base_vmt ub_ev_base_vmt = {
    ub_ev_base_free_vmt, ub_ev_dispatch,   ub_ev_loopexit,
    ub_ev_new_event,     ub_ev_new_signal, ub_ev_new_wsaevent,
};

struct ub_event_base *
ub_ev_base_new(struct ev_loop *loop, void (*after_cb)(void *), void *arg)
{
	struct ub_ev_base *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NULL;
	b->super.magic = UB_EVENT_MAGIC;
	b->super.vmt = &ub_ev_base_vmt;
	b->loop = loop;
	b->after_cb = after_cb;
	b->after_arg = arg;
	return &b->super;
}

void
ub_ev_base_free(struct ub_event_base *b)
{
	free(b);
}

int
ub_ev_base_depth(const struct ub_event_base *b)
{
	return ((const struct ub_ev_base *)b)->depth;
}
