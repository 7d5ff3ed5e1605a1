/*
 * ub_ev.h - libunbound's pluggable event API (unbound-event.h) on a libev
 * loop: libunbound's worker runs inside our own loop, with no thread;
 * libevent (libunbound's dependency) is loaded but never called.
 */
#ifndef BACKMX_UB_EV_H
#define BACKMX_UB_EV_H

#include <ev.h>

struct ub_event_base;

/*
 * ub_ev_base_new - an event base for ub_ctx_create_ub_event() on loop;
 * after_cb(arg) runs after every libunbound callback has returned (the
 * place to finish what could not be done inside it).  NULL: no memory.
 */
struct ub_event_base *ub_ev_base_new(struct ev_loop *loop,
                                     void (*after_cb)(void *), void *arg);
/* ub_ev_base_free - after ub_ctx_delete() */
void ub_ev_base_free(struct ub_event_base *b);
/* ub_ev_base_depth - >0 while a libunbound callback runs */
int ub_ev_base_depth(const struct ub_event_base *b);

#endif
