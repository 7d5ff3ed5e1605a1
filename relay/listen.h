/*
 * listen.h - the SMTP listening sockets: bound as root at start-up,
 * accepted on the loop, handed to smtpd_session_new().
 */
#ifndef BACKMX_LISTEN_H
#define BACKMX_LISTEN_H

#include <stddef.h>

#include "config.h"

int listener_open(const struct config *cfg, char *err, size_t errlen);
void listener_start(void);
void listener_stop(void);

#endif
