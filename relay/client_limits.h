/*
 * client_limits.h - per-client session limits: max_clients_per_ip and
 * client_limit (concurrent sessions) and client_rate (new sessions per
 * window), per client address, IPv6 counted per /64.
 *
 * smtpd.c calls client_limits_open() for every new session (with the
 * address a PROXY header carried, if any) and client_limits_close() when
 * an admitted session ends.  Memory is bounded: an address has an entry
 * while it has sessions, plus at most LIMITS_IDLE_MAX idle entries that
 * remember recent rates (the oldest is forgotten first).
 */
#ifndef BACKMX_CLIENT_LIMITS_H
#define BACKMX_CLIENT_LIMITS_H

#include <ev.h>
#include <stddef.h>
#include <sys/socket.h>

#define LIMITS_IDLE_MAX 16384

enum limits_verdict {
	LIMITS_OK,
	LIMITS_PER_IP,     /* max_clients_per_ip */
	LIMITS_CONCURRENT, /* client_limit */
	LIMITS_RATE,       /* client_rate */
};

/* client_limits_open - LIMITS_OK: counted, close it later; else refused
 * (and not counted) */
enum limits_verdict client_limits_open(const struct sockaddr_storage *ss,
                                       ev_tstamp now);
void client_limits_close(const struct sockaddr_storage *ss);
size_t client_limits_entries(void); /* entries held now (tests) */
/* client_limits_share - map the shared table for max_sessions open
 * sessions before forking workers (else done at first use); 0 / -1 */
int client_limits_share(size_t max_sessions);

#endif
