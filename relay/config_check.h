/*
 * config_check.h - what `backmxd -t` checks beyond the file's syntax:
 * things config_load() cannot see because they depend on files, the
 * clock or the user the daemon drops to.
 *
 *   - tls_cert/tls_key: readable, parseable, the key matches the
 *     certificate, the certificate is valid now (expired or not yet
 *     valid: error; expiring within 14 days: warning);
 *   - recipient files (and any file a recipient source registers through
 *     config_check_file) readable by `user`: a SIGHUP reload runs as
 *     that user and would fail;
 *   - the spool directory usable by `user`: its parent directories
 *     searchable, the files already in it readable and writable;
 *   - file modes (config_check_modes, also checked at every start): the
 *     spool not world-writable, tls_key/peer_key not readable or
 *     writable by others.
 *
 * Problems are appended to diag as "FILE: message\n" (warnings with
 * "warning: "), as config_load() does; the return value counts errors.
 */
#ifndef BACKMX_CONFIG_CHECK_H
#define BACKMX_CONFIG_CHECK_H

#include <stddef.h>

#include "config.h"

int config_check(const struct config *c, char *diag, size_t diaglen);

/*
 * config_check_modes - the file modes the daemon refuses to start with
 * (also run by config_check): a world-writable spool directory, a
 * tls_key or peer_key that others can read or write (mode & 007).
 */
int config_check_modes(const struct config *c, char *diag, size_t diaglen);

/*
 * config_check_file - hook for recipient sources with files of their own
 * (e.g. ldap:FILE): check that path is readable by c->user (when set and
 * we are root) and readable at all; what names it in the message
 * ("domain example.org: ldap file").  Appends to diag; 0 or 1 error.
 */
int config_check_file(const struct config *c, const char *path,
                      const char *what, char *diag, size_t diaglen);

#endif
