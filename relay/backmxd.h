/*
 * backmxd.h - the daemon's shared state: one libev loop, the current
 * configuration, the spool and schedule, the resolver.  Owned by main.c;
 * every relay/ module reads it through the global `backmxd`.
 */
#ifndef BACKMX_BACKMXD_H
#define BACKMX_BACKMXD_H

#include <ev.h>

#include "config.h"
#include "spool.h"
#include "stats.h"

struct dns;

struct backmxd {
	struct ev_loop *loop;
	struct config *cfg; /* replaced whole on SIGHUP */
	struct spool *spool;
	struct schedule *sched; /* next attempt per queued message */
	struct dns *dns;
	int foreground;
	int stopping; /* SIGTERM seen: no new sessions */
	/* addresses we listen on / are known by, for the MX cut */
	struct sockaddr_storage *own_addrs;
	int nown_addrs;
};

extern struct backmxd backmxd;

#endif
