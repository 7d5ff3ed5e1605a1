/*
 * config_private.h - what config.c shares with its helpers
 * (config_util.c: value parsers; config_check.c: backmxd -t checks).
 * Not for other modules: they use config.h.
 */
#ifndef BACKMX_CONFIG_PRIVATE_H
#define BACKMX_CONFIG_PRIVATE_H

#include "config.h"

/*
 * config_parse_hostport - "addr:port", "[v6]:port", "host:port",
 * "[addr]:port" into a host (brackets removed) and port; *literal is set
 * when the host was bracketed; default_port < 0 = the port is required.
 */
int config_parse_hostport(const char *s, char *host, size_t hostlen, int *port,
                          int *literal, int default_port);
/* config_sockaddr - numeric host + port into a sockaddr; -1 if not numeric */
int config_sockaddr(const char *host, int port, struct sockaddr_storage *ss,
                    socklen_t *len);
/* config_valid_hostname - a host name (LDH labels, dots), at most max octets
 * (RFC 5321 4.5.3.1.2: 255 for a domain; 253 for a DNS name) */
int config_valid_hostname(const char *s, size_t max);

#endif
