/*
 * worker.h - `workers N`: N accept processes on the same listeners and
 * spool, the parent keeping the forwarder, control socket, metrics and
 * resolver (see ARCHITECTURE.md "Worker processes" and backmxd(8)).
 *
 * Parent side in worker.c, a worker's own loop in worker_child.c.  The
 * link between them is one SOCK_SEQPACKET socketpair per worker; each
 * packet is one line of text:
 *   worker -> parent  "Q ID SIZE"   committed, synced and acknowledged:
 *                                   schedule it (forward_queued)
 *                     "F DOMAIN"    ETRN: flush it, answer "N COUNT"
 *   parent -> worker  "N COUNT"     the answer to F
 *                     "P"           paused domains changed: read again
 * SIGHUP from the parent: reload (after the parent's own reload
 * succeeded); SIGTERM: close sessions with 421 and exit.
 */
#ifndef BACKMX_WORKER_H
#define BACKMX_WORKER_H

#include <stddef.h>

#include "config.h"

#define WORKER_MSG_MAX 512

/* worker_count - the processes cfg asks for: `workers`, auto = online
 * cores, and 1 with a `peer` (the replication transport lives in the
 * process that commits) */
int worker_count(const struct config *cfg);
/*
 * worker_start - fork n workers (n >= 2) once the spool is open and
 * before anything else is started.  Returns 0 in the parent; in a
 * worker it runs the worker's loop and exits.  -1 with err when the
 * shared tables or a fork fail (nothing forked stays running).
 */
int worker_start(int n, char *err, size_t errlen);
/* worker_running - the number of workers forked (0: one process) */
int worker_running(void);
/* worker_stop - SIGTERM to every worker (the parent's SIGTERM) */
void worker_stop(void);
/*
 * worker_wait - after the parent's loop: read what the workers still
 * send and reap them.  0 when every one exited cleanly, -1 when one
 * died (the environment then needs recovery: do not close it cleanly).
 */
int worker_wait(void);
/* worker_child_main - a worker's life (worker_child.c); never returns */
void worker_child_main(int slot, int fd, int nslots) __attribute__((noreturn));

#endif
