/*
 * pause.h - domains the operator paused (`backmxctl pause DOMAIN`): new
 * mail for them gets 450 4.3.2 at RCPT until `resume`; queued mail is
 * still delivered.  The set lives outside the config, so a reload keeps
 * it, and in the spool directory (paused.domains, one name a line,
 * rewritten atomically on each change), so a restart keeps it too.
 * Callers: control_start() loads it, smtpd.c asks, the control server
 * changes it.
 */
#ifndef BACKMX_PAUSE_H
#define BACKMX_PAUSE_H

#include <stddef.h>

#define PAUSE_MAX 4096

/* pause_load - read SPOOLDIR/paused.domains (missing file: none paused) */
void pause_load(const char *spooldir);
/* pause_reread - forget the set and read the file again (a worker
 * process, when the parent's control server changed it) */
void pause_reread(const char *spooldir);
/* called after pause_set changed the file (worker.c tells workers) */
extern void (*pause_changed_hook)(void);
/* pause_is_paused - 1 when new mail for domain (any case) is refused */
int pause_is_paused(const char *domain);
/*
 * pause_set - pause (on=1) or resume a domain and save the set.
 * Returns 1 when the state changed, 0 when it already was so, -1 when
 * the set is full or cannot be saved (err says why; the change is undone).
 */
int pause_set(const char *domain, int on, char *err, size_t errlen);
/* pause_count / pause_name - the paused domains, sorted */
size_t pause_count(void);
const char *pause_name(size_t i);

#endif
