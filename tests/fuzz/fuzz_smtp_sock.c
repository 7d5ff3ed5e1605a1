/*
 * fuzz_smtp_sock.c - the inbound SMTP session (relay/smtpd.c) driven
 * whole over a real socket (fuzz_smtp_cmd.c is the same session without
 * socket or loop, ~10x faster; this variant keeps what only a socket
 * shows: the early-talker peek before the banner, net.c's reads and
 * writes, libev's readiness): a real session on one end of a socketpair, the
 * fuzz input written to the other end in pieces whose sizes the first octet
 * picks, then EOF.  The command parser, MAIL/RCPT parameters, DATA/BDAT and the
 * group commit all run against a real spool in a temporary directory.
 * Invariants: the session always ends (no leak of sessions), every reply
 * line is "DDD" + " " or "-" + text + CRLF within 512 octets, nothing is
 * answered after a 221 or 421, and sanitizers stay quiet.
 */
#include <arpa/inet.h>
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
#include "smtpd.h"
#include "spool.h"

struct backmxd backmxd;
struct stats stats;

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
	static char shm[] = "/dev/shm/fuzz_smtp_sock.XXXXXX";
	static char tmp[] = "/tmp/fuzz_smtp_sock.XXXXXX";
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

	log_open("fuzz_smtp_sock", 0); /* syslog: quiet on the terminal */
	/* the lines are still formatted (log.c is covered), but syslog()
	 * drops them before it (re)connects to /dev/log: without a syslog
	 * daemon that was a socket+connect+close per line */
	setlogmask(LOG_MASK(LOG_EMERG));
	backmxd.loop = ev_default_loop(0);
	backmxd.cfg = config_load(path, diag, sizeof(diag), &nerr);
	if (backmxd.cfg == NULL) {
		fprintf(stderr, "fuzz_smtp_sock: config: %s\n", diag);
		abort();
	}
	backmxd.spool = spool_open(conf, err, sizeof(err));
	if (backmxd.spool == NULL) {
		fprintf(stderr, "fuzz_smtp_sock: spool: %s\n", err);
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

static char out[1 << 20];

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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	struct sockaddr_in sin;
	size_t pos = 0, outlen = 0;
	unsigned seed;
	size_t gate;
	int sv[2], rounds, idle = 0;

	if (!ready) {
		fuzz_setup();
		ready = 1;
	}
	if (size < 1 || size > 256 * 1024)
		return 0;
	seed = data[0];
	data++;
	size--;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		abort();
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(40000);
	/* odd seeds come from the ETRN-allowed network */
	sin.sin_addr.s_addr = htonl((seed & 1) ? 0xc0000201 : 0xc6336401);
	smtpd_session_new(sv[0], (struct sockaddr *)&sin, sizeof(sin));

	/*
	 * One round: write a piece (up to the gate), one non-blocking loop
	 * iteration, read what came.  The server's work between rounds is
	 * all ev_io/ev_prepare/ev_idle (the group commit included), so a
	 * few rounds in a row without progress (nothing written, nothing
	 * read) mean it waits for the client: then the client goes past
	 * an EHLO that got no reply (e.g. inside DATA), or, at the end of
	 * the input, sends EOF.  (Fixed counts of 20-50 empty rounds made
	 * this target spend most of its time in epoll_wait.)
	 */
	gate = fuzz_next_gate(data, size, 0);
	for (rounds = 0; rounds < 100000; rounds++) {
		ssize_t n;
		int progress = 0;

		if (pos < gate) {
			size_t k = 1 + (seed % 97) * 7;

			seed = seed * 1103515245u + 12345u;
			if (k > gate - pos)
				k = gate - pos;
			n = write(sv[1], data + pos, k);
			if (n > 0) {
				pos += n;
				progress = 1;
			}
		}
		ev_run(backmxd.loop, EVRUN_NOWAIT);
		while ((n = read(sv[1], out + outlen, sizeof(out) - outlen)) >
		       0) {
			outlen += n;
			progress = 1;
			/* a reply came: the client may go past EHLO */
			if (pos == gate)
				gate = fuzz_next_gate(data, size, pos);
		}
		if (n == 0 || outlen == sizeof(out))
			break; /* the server closed */
		idle = progress ? 0 : idle + 1;
		if (idle < FUZZ_IDLE_ROUNDS)
			continue;
		if (pos == gate && pos < size) {
			/* no reply to wait for (e.g. EHLO inside DATA) */
			gate = fuzz_next_gate(data, size, pos);
			idle = 0;
		} else if (pos == size) {
			/*
			 * EOF only once the replies had time to come: a
			 * session that reads EOF closes without flushing
			 */
			break;
		} else if (idle > 1000) {
			break; /* the server stopped reading */
		}
	}
	/* a client that stopped writing (EOF) always ends its session */
	shutdown(sv[1], SHUT_WR);
	while (smtpd_count() > 0 && rounds++ < 200000)
		ev_run(backmxd.loop, EVRUN_NOWAIT);
	if (smtpd_count() != 0)
		abort();
	close(sv[1]);
	if (getenv("FUZZ_SMTP_SOCK_ECHO") != NULL) /* debugging a seed */
		fwrite(out, 1, outlen, stderr);
	fuzz_check_replies(out, outlen);
	return 0;
}
