/*
 * listen.h - the SMTP listening sockets: bound as root at start-up,
 * accepted on the loop, handed to smtpd_session_new().
 */
#ifndef BACKMX_LISTEN_H
#define BACKMX_LISTEN_H

#include <stddef.h>

#include "config.h"

/* listener_open - bind every `listen` address copies times (copies > 1:
 * SO_REUSEPORT, one copy per worker) */
int listener_open(const struct config *cfg, int copies, char *err,
                  size_t errlen);
/* listener_keep - close every copy but this one (-1: all; the parent of
 * workers, which accepts nothing) */
void listener_keep(int copy);
void listener_start(void);
void listener_stop(void);

#endif
