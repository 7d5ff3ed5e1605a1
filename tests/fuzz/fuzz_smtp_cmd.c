/*
 * fuzz_smtp_cmd.c - the inbound SMTP session (relay/smtpd.c) driven
 * whole, without socket or event loop: the session reads and writes
 * through smtpd.h's fuzz hook (smtpd_fuzz_io) and smtpd_fuzz_step() runs
 * the callbacks libev would, so an input costs no system call per piece.
 * The fuzz input is handed to the session in pieces whose sizes the first
 * octet picks (the same octet makes some of our writes short or EAGAIN,
 * so the output buffering and the "client does not read" stop run too),
 * then EOF.  The command parser, MAIL/RCPT parameters, DATA/BDAT and the
 * group commit all run against a real spool in a temporary directory.
 * fuzz_smtp_sock.c is the same over a socketpair and the loop.
 * Invariants: the session always ends (no leak of sessions), every reply
 * line is "DDD" + " " or "-" + text + CRLF within 512 octets, nothing is
 * answered after a 221 or 421, and sanitizers stay quiet.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backmxd.h"
#include "config.h"
#include "forward.h"
#include "log.h"
#define BACKMX_FUZZ 1 /* smtpd.h's hook */
#include "smtpd.h"
#include "spool.h"

struct backmxd backmxd;
struct stats stats;

/*
 * ASan's quarantine of freed memory at 16 MB instead of 256: a session
 * frees a ~20 KB transaction (its 16 KB emit buffer) per MAIL, and with
 * the default every new one came from pages the kernel had to fault in
 * again (half the time of an input).  A use after free inside one input
 * is still caught: a session never frees 16 MB.  (ASAN_OPTIONS can
 * override it.)
 */
const char *__asan_default_options(void);
const char *
__asan_default_options(void)
{
	return "quarantine_size_mb=16";
}

/* forward.h stand-ins: the fuzzer never delivers; accepted mail is
 * removed again so the spool does not grow run after run */
void
forward_queued(const struct spool_envelope *e)
{
	spool_message_delete(backmxd.spool, e->id);
}

void
forward_presuspend(struct spool_envelope *e)
{
}

int
forward_flush(const char *domain)
{
	/* ETRN's 250 and 251 both get exercised */
	return domain == NULL || domain[0] == 'a';
}

/* callouts (via rcpt_verify) ask whether the primary is suspended; the
 * fuzzer's domains use no callout, and nothing is ever suspended */
int
forward_domain_suspended(const struct policy_domain *pd, char *why,
                         size_t whylen)
{
	return 0;
}

/* the queue operations of the control socket (linked in with control.c,
 * which ETRN shares); the fuzzer never drives them */
int
forward_hold(const char *id_or_domain, int hold)
{
	return -1;
}

int
forward_flush_id(const char *id, int requeue)
{
	return -1;
}

int
forward_delete(const char *id)
{
	return -1;
}

int
forward_bounce(const char *id)
{
	return -1;
}

static void
fuzz_write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
		abort();
}

static char *fuzz_dir;

static int
fuzz_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

/* fuzz_cleanup - the scratch spool goes when the fuzzer exits (tmpfs is
 * memory) */
static void
fuzz_cleanup(void)
{
	if (fuzz_dir != NULL)
		nftw(fuzz_dir, fuzz_rm, 16, FTW_DEPTH | FTW_PHYS);
}

static void
fuzz_setup(void)
{
	/* the spool on tmpfs where there is one: its group commit's
	 * fdatasync is then no disk write per accepted message */
	static char shm[] = "/dev/shm/fuzz_smtp_cmd.XXXXXX";
	static char tmp[] = "/tmp/fuzz_smtp_cmd.XXXXXX";
	char *dir = mkdtemp(shm);
	char path[256], conf[2048], diag[4096], err[256];
	int nerr = 0;

	if (dir == NULL && (dir = mkdtemp(tmp)) == NULL)
		abort();
	fuzz_dir = dir;
	atexit(fuzz_cleanup);
	snprintf(path, sizeof(path), "%s/rcpts", dir);
	fuzz_write_file(path, "alice\nbob\npostmaster\n");
	snprintf(conf, sizeof(conf),
	         "hostname mx2.example.net\n"
	         "listen 127.0.0.1:2525\n"
	         "spool %s/spool\n"
	         "control %s/control.sock\n"
	         "max_size 64K\n"
	         "max_recipients 5\n"
	         "max_hops 3\n"
	         "timeout 30s\n"
	         "etrn_allow 192.0.2.0/24\n"
	         "domain example.org { recipients %s route mx }\n"
	         "domain a.example { recipients * route mx }\n"
	         "domain example.com { recipients %s "
	         "route [192.0.2.9]:25 percent_hack on }\n",
	         dir, dir, path, path);
	snprintf(path, sizeof(path), "%s/backmx.conf", dir);
	fuzz_write_file(path, conf);
	snprintf(conf, sizeof(conf), "%s/spool", dir);
	mkdir(conf, 0700);

	log_open("fuzz_smtp_cmd", 0); /* syslog: quiet on the terminal */
	/* the lines are still formatted (log.c is covered), but syslog()
	 * drops them before it (re)connects to /dev/log: without a syslog
	 * daemon that was a socket+connect+close per line */
	setlogmask(LOG_MASK(LOG_EMERG));
	backmxd.loop = ev_default_loop(0);
	backmxd.cfg = config_load(path, diag, sizeof(diag), &nerr);
	if (backmxd.cfg == NULL) {
		fprintf(stderr, "fuzz_smtp_cmd: config: %s\n", diag);
		abort();
	}
	backmxd.spool = spool_open(conf, err, sizeof(err));
	if (backmxd.spool == NULL) {
		fprintf(stderr, "fuzz_smtp_cmd: spool: %s\n", err);
		abort();
	}
	smtpd_init();
}

/* fuzz_check_replies - the invariants on what the server wrote */
static void
fuzz_check_replies(const char *out, size_t len)
{
	size_t pos = 0;
	int final_seen = 0;

	while (pos < len) {
		const char *line = out + pos;
		const char *crlf = memmem(line, len - pos, "\r\n", 2);
		size_t n;

		if (crlf == NULL)
			abort(); /* a reply not ended by CRLF */
		n = crlf - line + 2;
		if (n > 512 || n < 6)
			abort();
		if (line[0] < '2' || line[0] > '5' || line[1] < '0' ||
		    line[1] > '9' || line[2] < '0' || line[2] > '9' ||
		    (line[3] != ' ' && line[3] != '-'))
			abort();
		if (memchr(line, '\n', n - 1) != NULL ||
		    memchr(line, '\r', n - 2) != NULL)
			abort();
		if (final_seen)
			abort(); /* talking after 221/421 */
		if (line[3] == ' ' && (memcmp(line, "221", 3) == 0 ||
		                       memcmp(line, "421", 3) == 0))
			final_seen = 1;
		pos += n;
	}
}

/* what the session wrote; past the end only counted (truncated) */
static char out[1 << 22];

/* rounds without progress before the client moves on (see below) */
#define FUZZ_IDLE_ROUNDS 2

/*
 * fuzz_next_gate - how far the client may write from pos before it waits
 * for a reply: past the next line that starts with EHLO or HELO.  The
 * server rightly refuses a client that pipelines behind EHLO (RFC 2920),
 * and an input that did so would never get further.
 */
static size_t
fuzz_next_gate(const uint8_t *data, size_t size, size_t pos)
{
	size_t i = pos;

	while (i < size) {
		const uint8_t *lf = memchr(data + i, '\n', size - i);
		size_t end = lf != NULL ? (size_t)(lf - data) + 1 : size;

		if (end - i >= 4 &&
		    (strncasecmp((const char *)data + i, "EHLO", 4) == 0 ||
		     strncasecmp((const char *)data + i, "HELO", 4) == 0))
			return end;
		i = end;
	}
	return size;
}

/* the client: the input, how far the session has read it, and where it
 * must wait for a reply (after EHLO/HELO) */
struct fuzz_client {
	const uint8_t *data;
	size_t size, pos, gate, outlen;
	unsigned rseed, wseed;
	int eof, truncated, progress;
};

static ssize_t
fuzz_read(void *arg, char *p, size_t n)
{
	struct fuzz_client *c = arg;
	size_t k = 1 + (c->rseed % 97) * 7;

	if (c->pos >= c->gate) {
		if (c->eof && c->pos == c->size)
			return 0;
		errno = EAGAIN;
		return -1;
	}
	c->rseed = c->rseed * 1103515245u + 12345u;
	if (k > c->gate - c->pos)
		k = c->gate - c->pos;
	if (k > n)
		k = n;
	memcpy(p, c->data + c->pos, k);
	c->pos += k;
	c->progress = 1;
	return k;
}

static ssize_t
fuzz_write(void *arg, const char *p, size_t n)
{
	struct fuzz_client *c = arg;
	unsigned r = (c->wseed >> 16) & 15;

	c->wseed = c->wseed * 1103515245u + 12345u;
	if (r == 0) { /* a full socket buffer now and then */
		errno = EAGAIN;
		return -1;
	}
	if (r == 1 && n > 1)
		n = 1 + n / 2; /* a short write */
	if (c->outlen + n <= sizeof(out))
		memcpy(out + c->outlen, p, n);
	else
		c->truncated = 1;
	c->outlen += n;
	c->progress = 1;
	/* a reply came: the client may go past EHLO */
	if (c->pos == c->gate)
		c->gate = fuzz_next_gate(c->data, c->size, c->pos);
	return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready, nullfd;
	static struct smtpd_fuzz_io io;
	static struct fuzz_client c;
	struct sockaddr_in sin;
	size_t len;
	int fd, rounds, idle = 0;

	if (!ready) {
		fuzz_setup();
		if ((nullfd = open("/dev/null", O_RDWR)) < 0)
			abort();
		io.read = fuzz_read;
		io.write = fuzz_write;
		io.arg = &c;
		smtpd_fuzz_io = &io;
		ready = 1;
	}
	if (size < 1 || size > 256 * 1024)
		return 0;
	memset(&c, 0, sizeof(c));
	c.rseed = data[0];
	c.wseed = data[0] * 2654435761u;
	c.data = data + 1;
	c.size = size - 1;
	c.gate = fuzz_next_gate(c.data, c.size, 0);

	/* the session closes it; never read or written */
	if ((fd = dup(nullfd)) < 0)
		abort();
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(40000);
	/* odd seeds come from the ETRN-allowed network */
	sin.sin_addr.s_addr = htonl((data[0] & 1) ? 0xc0000201 : 0xc6336401);
	smtpd_session_new(fd, (struct sockaddr *)&sin, sizeof(sin));

	/*
	 * One step: the session reads what the client offers (up to the
	 * gate) and writes its replies.  Two steps in a row without
	 * progress mean it waits for the client: then the client goes past
	 * an EHLO that got no reply (e.g. inside DATA), or, at the end of
	 * the input, sends EOF; the session must then end.
	 */
	for (rounds = 0; rounds < 1000000 && smtpd_count() > 0; rounds++) {
		c.progress = 0;
		smtpd_fuzz_step();
		idle = c.progress ? 0 : idle + 1;
		if (idle < FUZZ_IDLE_ROUNDS)
			continue;
		if (c.pos == c.gate && c.pos < c.size) {
			/* no reply to wait for (e.g. EHLO inside DATA) */
			c.gate = fuzz_next_gate(c.data, c.size, c.pos);
			idle = 0;
		} else if (c.pos == c.size && !c.eof) {
			c.eof = 1;
			idle = 0;
		} else if (idle > 1000) {
			break; /* the session neither reads nor ends */
		}
	}
	if (smtpd_count() != 0)
		abort();
	len = c.truncated ? sizeof(out) : c.outlen;
	if (getenv("FUZZ_SMTP_CMD_ECHO") != NULL) /* debugging a seed */
		fwrite(out, 1, len, stderr);
	if (c.truncated) { /* check the complete lines that were kept */
		while (len > 0 && !(len >= 2 && out[len - 2] == '\r' &&
		                    out[len - 1] == '\n'))
			len--;
	}
	fuzz_check_replies(out, len);
	return 0;
}
