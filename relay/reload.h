/*
 * reload.h - swap in a new configuration while running (SIGHUP and
 * `backmxctl reload [--force]`).
 *
 * A new file is refused whole, and the running configuration kept, when
 * it has any error (config_load), when its TLS certificate/key cannot be
 * loaded, or when it would drop a domain that still has queued mail
 * (unless force: the mail then stays queued, deferred with 4.3.5 until
 * the domain is configured again, and bounces when its lifetime ends).  A
 * refusal is logged at err.  The old configuration is freed after a
 * grace period (deliveries may point into its domain table), or at exit.
 */
#ifndef BACKMX_RELOAD_H
#define BACKMX_RELOAD_H

#include <stddef.h>

/* reload_set_path - the file reload_config() reads (main.c's -c) */
void reload_set_path(const char *path);
/*
 * reload_config - load and swap.  0 on success, -1 when refused; either
 * way msg holds a one-line summary for the operator.  Logs everything.
 */
int reload_config(int force, char *msg, size_t msglen);
/* reload_log_diag - config_load diagnostics, one log line each: errors
 * at err, warnings at warning (diag is modified) */
void reload_log_diag(char *diag);
/* reload_free_old - at exit: free every configuration still in grace */
void reload_free_old(void);
/* called after a successful reload (worker.c: SIGHUP to the workers) */
extern void (*reload_done_hook)(void);

#endif
