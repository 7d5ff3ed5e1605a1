/*
 * smtpd.h - the inbound ESMTP server: one session per accepted
 * connection, a command table, the smuggling-safe DATA/BDAT reader, the
 * Received header, and group commit (250 only after a log flush that
 * covered the message's commit: smtpd_commit.c, in a committer thread
 * when the spool is threaded).
 *
 * listen.c hands accepted sockets to smtpd_session_new(); main.c calls
 * smtpd_init() once and smtpd_shutdown() on SIGTERM.  A session owns its
 * transaction; everything is freed by the session's close.
 */
#ifndef BACKMX_SMTPD_H
#define BACKMX_SMTPD_H

#include <stdint.h>

#include <sys/socket.h>

void smtpd_init(void);
/* smtpd_shutdown - answer waiting commits, then 421 to every session */
void smtpd_shutdown(void);
/* smtpd_session_new - take over fd (non-blocking); refuses over limits */
void smtpd_session_new(int fd, const struct sockaddr *sa, socklen_t salen);
int smtpd_count(void);

/* the pure DATA reader, exported for unit tests and fuzzing */
#define SMTPD_DATA_BARE 0x01 /* bare CR or LF seen */
#define SMTPD_DATA_NUL 0x02  /* NUL seen */
#define SMTPD_DATA_LONG 0x04 /* line over 1000 octets with CRLF */

struct smtpd_data {
	int state;
	int flags; /* SMTPD_DATA_* */
	size_t linelen;
	int done; /* CRLF.CRLF seen */
};

/*
 * smtpd_data_feed - run len octets of DATA through the reader: undo dot
 * stuffing, find the end of data.  Octets of the message (CRLF kept) are
 * passed to emit in spans.  Returns the number of input octets consumed:
 * less than len only when the end of data was reached (the rest belongs
 * to the next command).
 */
size_t smtpd_data_feed(struct smtpd_data *d, const char *buf, size_t len,
                       void (*emit)(void *arg, const char *p, size_t n),
                       void *arg);

/*
 * smtpd_bdat_verdict - a BDAT chunk of n octets announced when the
 * message holds `have` octets and max_size is max (0 = no limit):
 * SMTPD_BDAT_OK to read it, SMTPD_BDAT_DISCARD to answer 552 now and
 * read the chunk into nowhere (the session stays in sync), or
 * SMTPD_BDAT_CLOSE to answer 552 and close: a chunk larger than a whole
 * message may be is not worth reading through (RFC 3030 BDAT 2^64-1).
 */
#define SMTPD_BDAT_OK 0
#define SMTPD_BDAT_DISCARD 1
#define SMTPD_BDAT_CLOSE 2
int smtpd_bdat_verdict(uint64_t have, uint64_t n, uint64_t max);

#ifdef BACKMX_FUZZ
/*
 * The loop-free fuzz driver's hook (tests/fuzz/fuzz_smtp_cmd.c; compiled
 * only into the fuzz build, -DBACKMX_FUZZ, never into backmxd): with
 * smtpd_fuzz_io set, every session reads and writes through it instead of
 * its socket (read/write(2) semantics: -1 with EAGAIN = nothing now, 0 =
 * EOF), and smtpd_fuzz_step() runs the callbacks the loop would.  The
 * session's fd is then only closed at the end (any open descriptor will
 * do); its timer never fires.
 */
struct smtpd_fuzz_io {
	ssize_t (*read)(void *arg, char *p, size_t n);
	ssize_t (*write)(void *arg, const char *p, size_t n);
	void *arg;
};
extern const struct smtpd_fuzz_io *smtpd_fuzz_io;
int smtpd_fuzz_step(void);
#endif

#endif
