/*
 * fuzz_ldap.c - libFuzzer target for what an ldap:FILE lookup makes of a
 * hostile directory's answers: the fuzz input is what the "directory"
 * writes on a real libldap connection, decoded by libldap's BER reader
 * (ldap_result) and judged by relay/ldap_result.c's ldap_result_next,
 * exactly as ldap_src.c does on the loop.
 *
 * Per input: a handle made as ldap_open.c makes one (ldap_initialize,
 * LDAPv3, no referrals, the 1 MB message cap of ldap_result_limit) on an
 * ldapi:// socket whose other end we hold, made non-blocking as
 * ldap_src.c makes it (ldap_result_nonblock); two searches in flight
 * (ids 1 and 2, no attributes asked, as ldap_src.c sends them); the first
 * octet picks whether the second is abandoned (a lookup that timed out)
 * and where the input is cut: the part before the cut is written and
 * every complete result taken, then the rest and EOF, and every result
 * taken again until the connection is found closed.
 * Invariants: ldap_result_next answers 1, 0 or -1 only; an answer is
 * yes, no or unknown, with a reason exactly when unknown; a failed
 * connection has a reason; no search is answered twice; after EOF the
 * connection ends as failed within a bounded number of wake-ups (never
 * "nothing yet" for ever, whatever errno the loop left behind); and
 * sanitizers stay quiet.  (libldap itself is not instrumented: the
 * coverage that guides the fuzzer is ours.)
 */
#include <errno.h>
#include <ftw.h>
#include <ldap.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ldap_result.h"

/*
 * libldap 2.5's try_read1msg decodes the matchedDN and diagnosticMessage
 * of an unsolicited response (message id 0) into a request on its stack
 * and never frees them: a leak inside the library, on its own strings
 * (ber_scanf's "A", which our code never asks for: ldap_parse_result is
 * called without matched or message pointers).  ldap_result_next closes
 * the connection on such a message, so the daemon loses at most one
 * message's strings per reconnect.  And a search result that fails to
 * decode (e.g. an LDAPResult longer than its message) makes libldap
 * return the error without releasing its hold on the search's request,
 * which ldap_unbind_ext then never frees: one request (its ~4 KB BER)
 * per such connection, closed by us at once.  Here those two libldap
 * leaks are named and ignored (allocated under ber_get_stringa_null and
 * ldap_search_ext); any other stays fatal: a message we failed to free
 * is allocated under ldap_result's reading, not there.
 */
const char *__asan_default_options(void);
const char *
__asan_default_options(void)
{
	/* libldap has no frame pointers: the suppression below needs the
	 * slow unwinder to see past liblber's allocator */
	return "fast_unwind_on_malloc=0";
}

const char *__lsan_default_suppressions(void);
const char *
__lsan_default_suppressions(void)
{
	/* ldap_result: a message whose operation tag libldap cannot
	 * decode (input corpus/ldap/regress-libldap-undecodable-tag) makes
	 * ldap_result() return -1 with the result code still 0 and leaves
	 * that message (an LDAPMessage and its BER, 152 octets)
	 * unreferenced, in a static function of libldap that has no
	 * symbol; ldap_result_next closes the connection on -1, so 152
	 * octets per reconnect.  This rule is wider than the two above: it
	 * would also hide a message ldap_result gave us that we did not
	 * free (found by this target before: the type-0 message).  Open:
	 * count the messages handed out and freed in the harness instead. */
	return "leak:ber_get_stringa_null\n"
	       "leak:ldap_pvt_search\n"
	       "leak:ldap_result\n";
}

static char fuzz_dir[] = "/dev/shm/fuzz_ldap.XXXXXX";
static char fuzz_tmp[] = "/tmp/fuzz_ldap.XXXXXX";
static char *dir;
static char url[300];
static int listener = -1, echo;

static int
fuzz_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
fuzz_cleanup(void)
{
	if (dir != NULL)
		nftw(dir, fuzz_rm, 8, FTW_DEPTH | FTW_PHYS);
}

/* fuzz_setup - the "directory": a listening socket ldapi:// reaches */
static void
fuzz_setup(void)
{
	struct sockaddr_un sun;
	char *o;
	const char *p;

	if ((dir = mkdtemp(fuzz_dir)) == NULL &&
	    (dir = mkdtemp(fuzz_tmp)) == NULL)
		abort();
	atexit(fuzz_cleanup);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/s", dir);
	if ((listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(listener, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    listen(listener, 4) < 0)
		abort();
	/* ldapi://%2Fdev%2Fshm%2F...%2Fs */
	o = url + snprintf(url, sizeof(url), "ldapi://");
	for (p = sun.sun_path; *p != '\0'; p++)
		o += *p == '/' ? snprintf(o, 4, "%%2F")
		               : snprintf(o, 2, "%c", *p);
}

/* fuzz_write_all - what the directory sends; the input fits the socket
 * buffer (LLVMFuzzerTestOneInput caps it) */
static void
fuzz_write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			abort();
		p += k;
		n -= (size_t)k;
	}
}

/*
 * fuzz_take - every result the connection holds now; 1 while it is up,
 * 0 when ldap_result_next found it failed.  answered[i]: search i+1
 * got its answer.
 */
static int
fuzz_take(LDAP *ld, int answered[2])
{
	enum policy_answer a;
	const char *why;
	int rc, msgid, n;

	for (n = 0; n < 100000; n++) {
		a = (enum policy_answer) - 1;
		why = "unset";
		msgid = -1;
		/* what the loop's other work leaves behind (a client's read
		 * that would block): ldap_result_next must not depend on it */
		errno = EAGAIN;
		rc = ldap_result_next(ld, &msgid, &a, &why);
		if (echo) /* debugging a seed */
			fprintf(stderr, "rc %d msgid %d answer %d why %s\n", rc,
			        msgid, (int)a, why ? why : "-");
		if (rc == 0)
			return 1;
		if (rc < 0) {
			if (why == NULL || why[0] == '\0')
				abort();
			return 0;
		}
		if (rc != 1)
			abort();
		switch (a) {
		case POLICY_ANS_YES:
		case POLICY_ANS_NO:
			if (why != NULL)
				abort();
			break;
		case POLICY_ANS_UNKNOWN:
			if (why == NULL || why[0] == '\0')
				abort();
			break;
		default:
			abort();
		}
		if (msgid == LDAP_RES_UNSOLICITED)
			abort(); /* must have ended the connection */
		if (msgid == 1 || msgid == 2) {
			if (answered[msgid - 1]++)
				abort(); /* a search answered twice */
		}
	}
	abort(); /* results without end from a finite input */
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct timeval tv = {5, 0};
	char *attrs[] = {LDAP_NO_ATTRS, NULL};
	int v3 = LDAP_VERSION3, id1 = -1, id2 = -1, srv, up;
	int answered[2] = {0, 0};
	size_t cut, rounds;
	LDAP *ld = NULL;

	if (listener < 0) {
		fuzz_setup();
		echo = getenv("FUZZ_LDAP_ECHO") != NULL;
	}
	/* an AF_UNIX stream socket buffers ~200 KB: the write never
	 * waits for a reader that is this same thread */
	if (size < 1 || size > 64 * 1024)
		return 0;
	if (ldap_initialize(&ld, url) != LDAP_SUCCESS)
		abort();
	ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
	ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
	ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
	ldap_result_limit(ld);
	/* the first search connects */
	if (ldap_search_ext(ld, "ou=people,dc=example,dc=org",
	                    LDAP_SCOPE_SUBTREE, "(mail=alice@example.org)",
	                    attrs, 1, NULL, NULL, &tv, 2,
	                    &id1) != LDAP_SUCCESS ||
	    (srv = accept4(listener, NULL, NULL, SOCK_CLOEXEC)) < 0)
		abort();
	/* bound: handed to the loop (ldap_src.c's lc_watch) */
	if (ldap_result_nonblock(ld) < 0)
		abort();
	if (ldap_search_ext(ld, "ou=people,dc=example,dc=org",
	                    LDAP_SCOPE_SUBTREE, "(mail=bob@example.org)", attrs,
	                    1, NULL, NULL, &tv, 2, &id2) != LDAP_SUCCESS ||
	    id1 != 1 || id2 != 2)
		abort();
	if (data[0] & 1) { /* search 2 timed out: abandoned */
		ldap_abandon_ext(ld, id2, NULL, NULL);
		answered[1] = 1; /* must never be answered */
	}
	data++;
	size--;
	cut = size * (size_t)(data[-1] >> 1) / 127;
	if (cut > size)
		cut = size;

	fuzz_write_all(srv, data, cut);
	up = fuzz_take(ld, answered);
	if (up) {
		fuzz_write_all(srv, data + cut, size - cut);
		if (shutdown(srv, SHUT_WR) < 0)
			abort();
		/* everything is there, then EOF: each wake-up of the loop
		 * reads on, so the connection is found closed within a
		 * wake-up per octet; more would be a loop that spins */
		for (rounds = 0; up && rounds <= size + 2; rounds++)
			up = fuzz_take(ld, answered);
		if (up)
			abort();
	}
	ldap_unbind_ext(ld, NULL, NULL);
	close(srv);
	return 0;
}
