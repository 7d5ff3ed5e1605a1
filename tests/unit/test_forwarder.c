/*
 * test_forwarder.c - the forwarder (relay/forward.c, fwd_*.c) on a fake
 * clock: schedule and backoff, suspension and recovery of a destination,
 * per-recipient deferral, lifetime expiry and its bounce, the delay
 * warning's due time, the FIFO hand-over of a connection, the MX cut and
 * a reload seen through the config pointer.
 *
 * Real parts: the spool (Berkeley DB in a temporary directory), the
 * schedule, the config parser, the bounce composer, the forwarder's own
 * code.  Faked through the forwarder's seam (struct fwd_io, function
 * pointers in struct forwarder): the resolver, which records each query
 * until the test answers it, and the SMTP client, which records each
 * connection and transaction until the test says how it went.  No
 * socket is opened and the libev loop never runs: fwd_run() is called
 * where the timer would fire, after the fake clock was moved.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* cmocka needs the headers above first */
#include <cmocka.h>

#include "backmxd.h"
#include "callout.h"
#include "fwd_dsn.h"
#include "fwd_int.h"
#include "spool.h"

#define SPOOL_FIXTURE_TAG "forwarder"
#include "spool_fixture.h"

struct backmxd backmxd;
struct stats stats;

#define T0 1800000000.0

static struct forwarder fw;
static struct config *cfg; /* fw.cfg points here: a reload swaps it */
static struct sockaddr_storage *own;
static int nown;
static double fake_t;

/* ------------------------------------------------------------ fakes */

static double
fake_now(const struct forwarder *f)
{
	return fake_t;
}

struct fake_q {
	char name[256];
	int type;
	dns_cb cb;
	void *arg;
	int live;
};
static struct fake_q qs[64];
static int nq;

static struct dns_query *
fake_dns_query(struct forwarder *f, const char *name, int rrtype, dns_cb cb,
               void *arg)
{
	struct fake_q *q;

	assert_true(nq < 64);
	q = &qs[nq++];
	snprintf(q->name, sizeof(q->name), "%s", name);
	q->type = rrtype;
	q->cb = cb;
	q->arg = arg;
	q->live = 1;
	return (struct dns_query *)(void *)q;
}

static void
fake_dns_cancel(struct forwarder *f, struct dns_query *q)
{
	((struct fake_q *)(void *)q)->live = 0;
}

struct fake_client {
	smtp_client_cb cb;
	void *arg;
	struct sockaddr_storage addr;
	char relay[128];
	struct smtp_client_tx *tx;
	int nsend;
	int usable;
	int closed; /* quit or freed */
};
static struct fake_client conns[64];
static int nconn;
static int nsend;

#define FC(c) ((struct fake_client *)(void *)(c))

static struct smtp_client *
fake_client_new(struct forwarder *f, const struct smtp_client_params *p,
                smtp_client_cb cb, void *arg)
{
	struct fake_client *c;
	char ip[64];

	assert_true(nconn < 64);
	c = &conns[nconn++];
	memset(c, 0, sizeof(*c));
	c->cb = cb;
	c->arg = arg;
	c->addr = p->addr;
	c->usable = 1;
	inet_ntop(
	    AF_INET,
	    &((const struct sockaddr_in *)(const void *)&p->addr)->sin_addr, ip,
	    sizeof(ip));
	snprintf(c->relay, sizeof(c->relay), "%s[%s]:%d", p->mxhost, ip,
	         ntohs(((const struct sockaddr_in *)(const void *)&p->addr)
	                   ->sin_port));
	return (struct smtp_client *)(void *)c;
}

static int
fake_send(struct smtp_client *c, struct smtp_client_tx *tx)
{
	FC(c)->tx = tx;
	FC(c)->nsend++;
	nsend++;
	return 0;
}

static void
fake_set_cb(struct smtp_client *c, smtp_client_cb cb, void *arg)
{
	FC(c)->cb = cb;
	FC(c)->arg = arg;
}

static int
fake_usable(const struct smtp_client *c)
{
	return FC(c)->usable;
}

static const char *
fake_relay(const struct smtp_client *c)
{
	return FC(c)->relay;
}

static const char *
fake_tls(const struct smtp_client *c)
{
	return NULL;
}

static void
fake_times(const struct smtp_client *c, double *setup, int *use)
{
	*setup = 0;
	*use = FC(c)->nsend;
}

static int
fake_tls_failed(const struct smtp_client *c)
{
	return 0;
}

static int
fake_has(const struct smtp_client *c, int cap)
{
	return 0;
}

static void
fake_close(struct smtp_client *c)
{
	if (c != NULL)
		FC(c)->closed = 1;
}

static const struct fwd_io fake_io = {
    .dns_query = fake_dns_query,
    .dns_cancel = fake_dns_cancel,
    .client_new = fake_client_new,
    .client_send = fake_send,
    .client_set_cb = fake_set_cb,
    .client_usable = fake_usable,
    .client_relay = fake_relay,
    .client_tls = fake_tls,
    .client_times = fake_times,
    .client_tls_failed = fake_tls_failed,
    .client_has = fake_has,
    .client_quit = fake_close,
    .client_free = fake_close,
};

/* ---------------------------------------------------------- helpers */

static struct config *
load(const char *extra)
{
	char path[] = "/tmp/test_forwarder.conf.XXXXXX", diag[4096];
	char text[4096];
	int fd = mkstemp(path), nerr, len;
	struct config *c;

	len = snprintf(text, sizeof(text),
	               "hostname mx2.test.example\n"
	               "listen 127.0.0.1:2525\n"
	               "spool %s\n"
	               "queue_lifetime 1h\n"
	               "%s\n"
	               "domain s.example {\n recipients *\n"
	               " route [192.0.2.10]:25\n}\n"
	               "domain t.example {\n recipients *\n"
	               " route [192.0.2.11]:25\n}\n"
	               "domain m.example {\n recipients *\n}\n",
	               dir, extra);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, (size_t)len), len);
	close(fd);
	c = config_load(path, diag, sizeof(diag), &nerr);
	unlink(path);
	if (c == NULL)
		fail_msg("config: %s", diag);
	return c;
}

static void
start(const char *extra)
{
	fixture_mkdir();
	cfg = load(extra);
	memset(&fw, 0, sizeof(fw));
	memset(qs, 0, sizeof(qs));
	nq = nconn = nsend = 0;
	fake_t = T0;
	fw.loop = ev_loop_new(EVFLAG_AUTO);
	fw.now = fake_now;
	fw.spool = open_spool();
	fw.sched = schedule_new();
	fw.cfg = &cfg;
	own = NULL;
	nown = 0;
	fw.own_addrs = &own;
	fw.nown_addrs = &nown;
	fw.io = &fake_io;
	/* callout.c and metrics_domain.c read the daemon's globals */
	backmxd.loop = fw.loop;
	backmxd.cfg = cfg;
	assert_int_equal(fwd_init(&fw), 0);
}

static void
stop(void)
{
	if (fw.spool == NULL)
		return; /* stopped already */

	fwd_shutdown(&fw);
	callout_shutdown();
	spool_close(fw.spool);
	schedule_free(fw.sched);
	ev_loop_destroy(fw.loop);
	config_free(cfg);
	free(own);
	own = NULL;
	fw.spool = NULL;
	assert_int_equal(fixture_rmdir(), 0);
}

/* teardown - after a failed assertion too: nothing leaks into the next */
static int
teardown(void **state)
{
	stop();
	return 0;
}

/* queue - a message from sender to the recipients, as smtpd.c commits
 * it; its id in id */
#define queue(id, sender, ...)                                                 \
	queue_list(id, sender, (const char *const[]){__VA_ARGS__, NULL})

static void
queue_list(char *id, const char *sender, const char *const *to)
{
	static const char body[] = "Subject: test\r\n\r\nhello\r\n";
	struct spool_rcpt rc[8];
	struct spool_envelope e;
	struct spool_writer *w;

	memset(&e, 0, sizeof(e));
	memset(rc, 0, sizeof(rc));
	e.arrival = (int64_t)fake_t;
	e.sender = (char *)sender;
	e.rcpt = rc;
	for (; *to != NULL && e.nrcpt < 8; to++) {
		rc[e.nrcpt].address = (char *)*to;
		rc[e.nrcpt].next_attempt = e.arrival;
		e.nrcpt++;
	}
	assert_non_null(w = spool_writer_new(fw.spool));
	assert_int_equal(spool_writer_append(w, body, sizeof(body) - 1), 0);
	fwd_presuspend(&fw, &e);
	assert_int_equal(spool_writer_commit(w, &e), 0);
	strcpy(id, e.id);
	fwd_queued(&fw, &e);
	for (int i = 0; i < e.nrcpt; i++)
		free(rc[i].last_error);
}

/* at - move the fake clock to T0 + s and let the timer fire */
static void
at(double s)
{
	fake_t = T0 + s;
	fwd_run(&fw);
}

static struct spool_envelope *
env(const char *id)
{
	return spool_envelope_get(fw.spool, id);
}

/* exists - is id still in the spool? */
static int
exists(const char *id)
{
	struct spool_envelope *e = env(id);

	spool_envelope_free(e);
	return e != NULL;
}

/* rcpt_of - recipient i of id as the spool has it now: its numbers
 * (next attempt, state, step, flags); the strings are not kept */
static struct spool_rcpt
rcpt_of(const char *id, int i)
{
	struct spool_envelope *e = env(id);
	struct spool_rcpt r;

	assert_non_null(e);
	r = e->rcpt[i];
	r.address = r.orcpt = r.last_error = r.route = NULL;
	spool_envelope_free(e);
	return r;
}

#define rcpt_next(id, i) (rcpt_of(id, i).next_attempt)
#define rcpt_state(id, i) (rcpt_of(id, i).state)

/* answer - hand result r of connection c to the forwarder's callback */
static void
answer(int c, const struct result *r)
{
	conns[c].cb(conns[c].arg, (struct smtp_client *)(void *)&conns[c], r);
}

/* up - connection c answered: greeting, EHLO done */
static void
up(int c)
{
	struct result r;

	result_set(&r, 250, "", "ready");
	answer(c, &r);
}

/* refused - connection c failed before a transaction */
static void
refused(int c)
{
	struct result r;

	result_set(&r, 451, "4.4.1", "connection refused by %s",
	           conns[c].relay);
	answer(c, &r);
}

/* reply - the transaction on connection c ends: code k for recipient k */
static void
reply(int c, ...)
{
	struct smtp_client_tx *tx = conns[c].tx;
	struct result r;
	va_list ap;

	assert_non_null(tx);
	conns[c].tx = NULL;
	va_start(ap, c);
	for (int k = 0; k < tx->nrcpt; k++) {
		int code = va_arg(ap, int);

		result_set(&tx->res[k], code,
		           code / 100 == 2   ? "2.0.0"
		           : code / 100 == 4 ? "4.2.0"
		                             : "5.1.1",
		           "reply %d", code);
		if (tx->remote != NULL)
			tx->remote[k] = 1;
	}
	va_end(ap);
	result_set(&r, 250, "", "done");
	answer(c, &r);
}

/* port_of, ip_of - where connection c went */
static int
port_of(int c)
{
	return ntohs(((struct sockaddr_in *)(void *)&conns[c].addr)->sin_port);
}

static const char *
ip_of(int c)
{
	static char b[64];

	inet_ntop(AF_INET,
	          &((struct sockaddr_in *)(void *)&conns[c].addr)->sin_addr, b,
	          sizeof(b));
	return b;
}

/* find_q - the live query of name and type, -1 when none */
static int
find_q(const char *name, int type)
{
	for (int i = 0; i < nq; i++)
		if (qs[i].live && qs[i].type == type &&
		    !strcmp(qs[i].name, name))
			return i;
	return -1;
}

static void
answer_mx(const char *name, int n, const char *const *hosts, const int *prefs)
{
	struct policy_mx mx[8];
	struct dns_result r;
	int q = find_q(name, DNS_T_MX);

	assert_true(q >= 0);
	memset(&r, 0, sizeof(r));
	memset(mx, 0, sizeof(mx));
	for (int i = 0; i < n; i++) {
		snprintf(mx[i].host, sizeof(mx[i].host), "%s", hosts[i]);
		mx[i].pref = prefs[i];
		mx[i].self = 0;
	}
	r.status = DNS_OK;
	r.rrtype = DNS_T_MX;
	r.qname = name;
	r.n = n;
	r.mx = mx;
	qs[q].live = 0;
	qs[q].cb(qs[q].arg, &r);
}

/* answer_a - A of name is ip (NULL: NODATA); its AAAA NODATA */
static void
answer_a(const char *name, const char *ip)
{
	struct sockaddr_storage ss;
	struct dns_result r;
	int q;

	memset(&ss, 0, sizeof(ss));
	memset(&r, 0, sizeof(r));
	r.qname = name;
	if ((q = find_q(name, DNS_T_AAAA)) >= 0) {
		r.status = DNS_NODATA;
		r.rrtype = DNS_T_AAAA;
		qs[q].live = 0;
		qs[q].cb(qs[q].arg, &r);
	}
	q = find_q(name, DNS_T_A);
	assert_true(q >= 0);
	r.rrtype = DNS_T_A;
	if (ip != NULL) {
		ss.ss_family = AF_INET;
		assert_int_equal(
		    inet_pton(AF_INET, ip,
		              &((struct sockaddr_in *)(void *)&ss)->sin_addr),
		    1);
		r.status = DNS_OK;
		r.n = 1;
		r.addr = &ss;
	} else
		r.status = DNS_NODATA;
	qs[q].live = 0;
	qs[q].cb(qs[q].arg, &r);
}

/* bounces - how many DSNs (is_bounce) the spool holds; the last one's
 * first recipient in to (when not NULL) */
struct scan_b {
	int n;
	char to[256];
	char subject_kind[32];
};

static int
scan_bounce_cb(void *arg, const struct spool_envelope *e)
{
	struct scan_b *b = arg;

	if (e->is_bounce) {
		b->n++;
		snprintf(b->to, sizeof(b->to), "%s", e->rcpt[0].address);
	}
	return 0;
}

static int
bounces(char *to, size_t len)
{
	struct scan_b b = {0};

	assert_true(spool_scan(fw.spool, "", 0, scan_bounce_cb, &b) >= 0);
	if (to != NULL)
		snprintf(to, len, "%s", b.to);
	return b.n;
}

/* ------------------------------------------------------------ tests */

/*
 * A queued message with a static route is tried when due: one
 * connection to the route's address and port, no DNS query; a 250
 * removes it from the spool and the schedule.  Fails if the route were
 * ignored, a lookup made, or the message kept after delivery.
 */
static void
test_deliver_static(void **state)
{
	char id[SPOOL_ID_LEN + 1];

	start("");
	queue(id, "a@sender.example", "x@s.example");
	assert_int_equal(nconn, 0); /* nothing before the timer */
	at(0);
	assert_int_equal(nconn, 1);
	assert_int_equal(nq, 0);
	assert_string_equal(ip_of(0), "192.0.2.10");
	assert_int_equal(port_of(0), 25);
	up(0);
	assert_int_equal(nsend, 1);
	assert_int_equal(conns[0].tx->nrcpt, 1);
	reply(0, 250);
	assert_false(exists(id));
	assert_int_equal(schedule_size(fw.sched), 0);
	assert_int_equal(fw.active, 0);
	assert_true(conns[0].closed); /* nobody took it over: QUIT */
	stop();
}

/*
 * A connection-level failure defers with the first retry step: nothing
 * is tried before it comes (fake clock at +59 s), the retry happens once
 * it has (+10% jitter at most).  Fails if the backoff were not applied
 * or the schedule fired early or never.
 */
static void
test_backoff_first_step(void **state)
{
	char id[SPOOL_ID_LEN + 1];
	int64_t next;

	start("retry 1m 5m 15m");
	queue(id, "a@sender.example", "x@s.example");
	at(0);
	refused(0);
	assert_int_equal(rcpt_state(id, 0), SPOOL_RCPT_PENDING);
	next = rcpt_next(id, 0);
	assert_true(next >= (int64_t)T0 + 60 && next <= (int64_t)T0 + 66);
	assert_int_equal(schedule_when(fw.sched, id), next);
	at(59);
	assert_int_equal(nconn, 1);
	at((double)(next - (int64_t)T0));
	assert_int_equal(nconn, 2);
	stop();
}

/*
 * Failures at their scheduled times walk the retry list, the last step
 * repeating: 1m, 5m, 15m, 15m (each with up to 10% jitter).  Fails if a
 * step were skipped, repeated early, or the list not honoured.
 */
static void
test_backoff_steps(void **state)
{
	static const long want[] = {60, 300, 900, 900};
	char id[SPOOL_ID_LEN + 1];
	int64_t t = (int64_t)T0;

	start("retry 1m 5m 15m\nqueue_lifetime 5d");
	queue(id, "a@sender.example", "x@s.example");
	for (int k = 0; k < 4; k++) {
		int64_t next;

		at((double)(t - (int64_t)T0));
		assert_int_equal(nconn, k + 1);
		refused(k);
		next = rcpt_next(id, 0);
		assert_true(next - t >= want[k]);
		assert_true(next - t <= want[k] + want[k] / 10);
		t = next;
	}
	stop();
}

/*
 * A flush makes a deferred message due at once; when it fails again
 * early, its step and next time stay (the early attempt does not count).
 * Fails if the flush did nothing or the early failure advanced the step.
 */
static void
test_flush_keeps_step(void **state)
{
	char id[SPOOL_ID_LEN + 1];
	int64_t next;
	struct spool_envelope *e;

	start("retry 1m 5m 15m");
	queue(id, "a@sender.example", "x@s.example");
	at(0);
	refused(0);
	next = rcpt_next(id, 0);
	fake_t = T0 + 10;
	assert_int_equal(fwd_flush_match(&fw, NULL, NULL, 0), 1);
	at(10);
	assert_int_equal(nconn, 2);
	refused(1);
	e = env(id);
	assert_non_null(e);
	assert_int_equal(e->rcpt[0].next_attempt, next);
	assert_int_equal(e->rcpt[0].step, 1);
	assert_int_equal(e->rcpt[0].attempts, 2);
	spool_envelope_free(e);
	stop();
}

/*
 * Nobody answered: the destination is suspended.  While it is, one
 * message a second still probes with a real connection; others are
 * deferred at once with "delivery temporarily suspended", without a
 * connection.  Fails if every message knocked (a storm) or none probed.
 */
static void
test_suspend_and_probe(void **state)
{
	char a[SPOOL_ID_LEN + 1], b[SPOOL_ID_LEN + 1], c[SPOOL_ID_LEN + 1];
	struct spool_envelope *e;

	start("retry 1m 5m");
	queue(a, "a@sender.example", "x@s.example");
	at(0);
	refused(0);
	assert_true(fwd_dest_find(&fw, "s:192.0.2.10:25:0") != NULL);
	assert_true(fwd_dest_find(&fw, "s:192.0.2.10:25:0")->dead_until >
	            (int64_t)T0);
	fake_t = T0 + 0.2;
	queue(b, "a@sender.example", "x@s.example");
	queue(c, "a@sender.example", "y@s.example");
	at(0.2);
	assert_int_equal(nconn, 2); /* b probes, c is not tried */
	assert_int_equal(fw.active, 1);
	e = env(c);
	assert_non_null(e);
	assert_int_equal(e->rcpt[0].attempts, 1);
	assert_non_null(strstr(e->rcpt[0].last_error, FWD_SUSPENDED_TEXT));
	assert_true(e->rcpt[0].flags & SPOOL_RCPT_F_CONN);
	assert_true(e->rcpt[0].next_attempt >= (int64_t)T0 + 60);
	spool_envelope_free(e);
	refused(1);
	at(0.9);
	assert_int_equal(nconn, 2); /* within the second: no knock */
	stop();
}

/*
 * A message accepted while its destination is suspended and a probe is
 * in flight gets its deferral written with it (forward_presuspend): the
 * forwarder does not touch it now.  Fails if it were left due at once.
 */
static void
test_presuspend_at_accept(void **state)
{
	char a[SPOOL_ID_LEN + 1], b[SPOOL_ID_LEN + 1], c[SPOOL_ID_LEN + 1];
	struct spool_envelope *e;

	start("retry 1m 5m");
	queue(a, "a@sender.example", "x@s.example");
	at(0);
	refused(0);
	fake_t = T0 + 2;
	queue(b, "a@sender.example", "x@s.example");
	at(2);
	assert_int_equal(nconn, 2); /* probe in flight */
	queue(c, "a@sender.example", "x@s.example");
	e = env(c);
	assert_non_null(e);
	assert_int_equal(e->rcpt[0].attempts, 1);
	assert_int_equal(e->rcpt[0].step, 1);
	assert_non_null(strstr(e->rcpt[0].last_error, FWD_SUSPENDED_TEXT));
	assert_true(e->rcpt[0].next_attempt >= (int64_t)T0 + 60);
	spool_envelope_free(e);
	assert_true(schedule_when(fw.sched, c) >= (int64_t)T0 + 60);
	at(2.5);
	assert_int_equal(nconn, 2);
	stop();
}

/*
 * A delivery that gets through ends the suspension, and makes due now
 * the messages deferred without an answer (connection-level) — but not
 * one whose recipient the live primary deferred itself (450).  Fails if
 * the recovery were not seen, or it also woke the 450-deferred one.
 */
static void
test_recovery_makes_due(void **state)
{
	char a[SPOOL_ID_LEN + 1], b[SPOOL_ID_LEN + 1], c[SPOOL_ID_LEN + 1];
	struct fwd_dest *dest;

	start("retry 10m 20m");
	queue(c, "a@sender.example", "y@t.example");
	at(0);
	up(0);
	reply(0, 450); /* the t.example primary defers y */
	queue(a, "a@sender.example", "x@s.example");
	at(0);
	refused(1); /* s.example: nobody answers */
	assert_true(schedule_when(fw.sched, a) >= (int64_t)T0 + 600);
	fake_t = T0 + 30;
	queue(b, "a@sender.example", "x@s.example");
	at(30);
	assert_int_equal(nconn, 3);
	up(2);
	reply(2, 250);
	assert_false(exists(b));
	dest = fwd_dest_find(&fw, "s:192.0.2.10:25:0");
	assert_non_null(dest);
	assert_int_equal(dest->dead_until, 0);
	assert_int_equal(dest->failures, 0);
	/* a was made due and took the recovered connection over */
	assert_int_equal(nconn, 3);
	assert_non_null(conns[2].tx);
	assert_string_equal(conns[2].tx->env->id, a);
	reply(2, 250);
	assert_false(exists(a));
	/* c keeps its own time */
	assert_true(schedule_when(fw.sched, c) >= (int64_t)T0 + 600);
	stop();
}

/*
 * Per-recipient deferral: of two recipients in one transaction, the one
 * delivered is done, the one deferred (450) keeps its own retry time;
 * the destination is not suspended (it answered), and later traffic to
 * it does not retry the deferred one before its time (no retry storm).
 * Fails if both were retried, the delivered one re-sent, or the
 * destination suspended.
 */
static void
test_per_rcpt_deferral(void **state)
{
	char a[SPOOL_ID_LEN + 1], b[SPOOL_ID_LEN + 1];
	struct spool_envelope *e;
	int64_t next;

	start("retry 1m 5m");
	queue(a, "a@sender.example", "x@s.example", "y@s.example");
	at(0);
	assert_int_equal(nconn, 1);
	up(0);
	assert_int_equal(conns[0].tx->nrcpt, 2);
	reply(0, 250, 450);
	e = env(a);
	assert_non_null(e);
	assert_int_equal(e->rcpt[0].state, SPOOL_RCPT_DELIVERED);
	assert_int_equal(e->rcpt[1].state, SPOOL_RCPT_PENDING);
	assert_false(e->rcpt[1].flags & SPOOL_RCPT_F_CONN);
	next = e->rcpt[1].next_attempt;
	assert_true(next >= (int64_t)T0 + 60);
	spool_envelope_free(e);
	assert_int_equal(fwd_dest_find(&fw, "s:192.0.2.10:25:0")->dead_until,
	                 0);
	for (int k = 1; k <= 5; k++) {
		fake_t = T0 + k;
		queue(b, "a@sender.example", "z@s.example");
		at(k);
		up(k);
		assert_int_equal(conns[k].tx->nrcpt, 1);
		reply(k, 250);
	}
	assert_int_equal(nsend, 6);
	assert_int_equal(rcpt_next(a, 1), next);
	at((double)(next - (int64_t)T0));
	assert_int_equal(nconn, 7);
	up(6);
	assert_int_equal(conns[6].tx->nrcpt, 1); /* only y */
	assert_int_equal(conns[6].tx->rcpt[0], 1);
	reply(6, 250);
	assert_false(exists(a));
	stop();
}

/*
 * Recipients of one message keep their own schedules: x (s.example)
 * deferred at +0 and y (t.example) deferred at +30 come due apart; when
 * x's time comes only x is tried, y waits for its own.  Fails if a due
 * message retried every pending recipient (y early, a retry storm).
 */
static void
test_sibling_keeps_schedule(void **state)
{
	char a[SPOOL_ID_LEN + 1];
	int64_t tx, ty;

	start("retry 1m 5m");
	queue(a, "a@sender.example", "x@s.example", "y@t.example");
	at(0);
	assert_int_equal(nconn, 2);
	assert_string_equal(ip_of(0), "192.0.2.10");
	up(0);
	reply(0, 450); /* x deferred by the s.example primary */
	fake_t = T0 + 30;
	up(1);
	reply(1, 450); /* y, later */
	tx = rcpt_next(a, 0);
	ty = rcpt_next(a, 1);
	assert_true(ty > tx);
	assert_int_equal(schedule_when(fw.sched, a), tx);
	at((double)(tx - (int64_t)T0));
	assert_int_equal(nconn, 3);
	assert_string_equal(ip_of(2), "192.0.2.10");
	up(2);
	assert_int_equal(conns[2].tx->nrcpt, 1);
	reply(2, 250);
	assert_int_equal(rcpt_next(a, 1), ty);
	assert_int_equal(schedule_when(fw.sched, a), ty);
	at((double)(ty - (int64_t)T0));
	assert_int_equal(nconn, 4);
	assert_string_equal(ip_of(3), "192.0.2.11");
	stop();
}

/*
 * A message with recipients at two destinations: one delivery each, in
 * parallel, each with its own recipients.  Fails if they were merged or
 * one destination waited for the other.
 */
static void
test_two_destinations(void **state)
{
	char a[SPOOL_ID_LEN + 1];

	start("");
	queue(a, "a@sender.example", "x@s.example", "y@t.example");
	at(0);
	assert_int_equal(nconn, 2);
	assert_int_equal(fw.active, 2);
	assert_string_equal(ip_of(0), "192.0.2.10");
	assert_string_equal(ip_of(1), "192.0.2.11");
	up(0);
	up(1);
	assert_int_equal(conns[0].tx->nrcpt, 1);
	assert_int_equal(conns[1].tx->nrcpt, 1);
	reply(0, 250);
	assert_int_equal(rcpt_state(a, 0), SPOOL_RCPT_DELIVERED);
	assert_int_equal(rcpt_state(a, 1), SPOOL_RCPT_PENDING);
	reply(1, 250);
	assert_false(exists(a));
	stop();
}

/*
 * queue_lifetime over: a due message is not tried again, its recipient
 * fails with 4.4.7 and a bounce to the sender is queued (and scheduled);
 * the message leaves the spool.  Fails if it were tried once more, kept,
 * or dropped without a bounce.
 */
static void
test_lifetime_expiry_bounce(void **state)
{
	char a[SPOOL_ID_LEN + 1], to[256];
	int64_t t = (int64_t)T0;

	start("retry 10m 20m\nqueue_lifetime 1h");
	queue(a, "a@sender.example", "x@s.example");
	while (nconn < 10) {
		int k = nconn;

		at((double)(t - (int64_t)T0));
		if (nconn == k)
			break; /* expired: no attempt */
		refused(k);
		if (!exists(a))
			break;
		t = rcpt_next(a, 0);
		assert_true(t <= (int64_t)T0 + 3600); /* clipped */
	}
	assert_true(nconn >= 3 && nconn < 10);
	assert_false(exists(a));
	assert_int_equal(bounces(to, sizeof(to)), 1);
	assert_string_equal(to, "a@sender.example");
	/* the bounce is on its way: its delivery asks for the sender's MX */
	assert_true(find_q("sender.example", DNS_T_MX) >= 0);
	assert_int_equal(fw.active, 1);
	stop();
}

/*
 * A 4xx that arrives after the lifetime ended (the attempt began before)
 * bounces at once as 4.4.7; a 5xx bounces whatever the time.  Fails if
 * the late 4xx were deferred again or a 5xx retried.
 */
static void
test_late_4xx_and_5xx_bounce(void **state)
{
	char a[SPOOL_ID_LEN + 1], b[SPOOL_ID_LEN + 1];

	start("queue_lifetime 1h");
	queue(a, "a@sender.example", "x@s.example");
	queue(b, "b@sender.example", "y@t.example");
	at(0);
	assert_int_equal(nconn, 2);
	up(0);
	up(1);
	fake_t = T0 + 3601;
	reply(0, 451);
	assert_false(exists(a));
	assert_int_equal(bounces(NULL, 0), 1);
	fake_t = T0 + 3602;
	reply(1, 550);
	assert_false(exists(b));
	assert_int_equal(bounces(NULL, 0), 2);
	stop();
}

/*
 * The delay warning's due time: with delay_warning 10m and retries at
 * +1m, +16m, the schedule wakes the message at +10m for the
 * warning (not only at the next retry); then the DSN is queued once,
 * delay_warned is written, and no delivery is started.  Fails if the
 * wake-up were missed, the warning sent twice, or it forced an attempt.
 */
static void
test_delay_warning_due(void **state)
{
	char a[SPOOL_ID_LEN + 1], to[256];
	struct spool_envelope *e;
	int64_t next;

	start("retry 1m 15m\ndelay_warning 10m\nqueue_lifetime 5d");
	queue(a, "a@sender.example", "x@s.example");
	at(0);
	refused(0);
	at((double)(rcpt_next(a, 0) - (int64_t)T0));
	refused(1);
	next = rcpt_next(a, 0);
	assert_true(next > (int64_t)T0 + 600);
	assert_int_equal(schedule_when(fw.sched, a), (int64_t)T0 + 600);
	at(599);
	assert_int_equal(bounces(NULL, 0), 0);
	at(600);
	assert_int_equal(nconn, 2); /* woken for the warning only */
	assert_int_equal(bounces(to, sizeof(to)), 1);
	assert_string_equal(to, "a@sender.example");
	e = env(a);
	assert_non_null(e);
	assert_true(e->delay_warned);
	assert_int_equal(e->rcpt[0].state, SPOOL_RCPT_PENDING);
	spool_envelope_free(e);
	assert_int_equal(schedule_when(fw.sched, a), next);
	at((double)(next - (int64_t)T0));
	assert_int_equal(nconn, 3);
	refused(2);
	assert_int_equal(bounces(NULL, 0), 1); /* once */
	stop();
}

/*
 * fwd_dsn_warn_time: no warning for a null sender, for a bounce, when
 * the lifetime ends first, or once sent.  Fails if any of them had one.
 */
static void
test_delay_warning_none(void **state)
{
	struct spool_rcpt rc = {.address = "x@s.example"};
	struct spool_envelope e = {
	    .arrival = 1000, .sender = "a@b.example", .nrcpt = 1, .rcpt = &rc};

	start("delay_warning 10m");
	assert_int_equal(fwd_dsn_warn_time(&fw, &e, 3600), 1600);
	assert_int_equal(fwd_dsn_warn_time(&fw, &e, 600), -1);
	e.sender = "";
	assert_int_equal(fwd_dsn_warn_time(&fw, &e, 3600), -1);
	e.sender = "a@b.example";
	e.is_bounce = 1;
	assert_int_equal(fwd_dsn_warn_time(&fw, &e, 3600), -1);
	e.is_bounce = 0;
	e.delay_warned = 1;
	assert_int_equal(fwd_dsn_warn_time(&fw, &e, 3600), -1);
	e.delay_warned = 0;
	rc.notify = SPOOL_NOTIFY_FAILURE; /* NOTIFY without DELAY */
	assert_int_equal(fwd_dsn_warn_time(&fw, &e, 3600), -1);
	stop();
}

/*
 * max_per_destination 1: of three messages for one destination one
 * starts, two wait in its FIFO; each delivery's end hands the open
 * connection to the next (RSET and the next transaction on the same
 * client), in queue order, so three messages cost one connection.
 * Fails if a second connection were opened, the order changed, or a
 * waiting message were lost.
 */
static void
test_fifo_handover(void **state)
{
	char a[SPOOL_ID_LEN + 1], b[SPOOL_ID_LEN + 1], c[SPOOL_ID_LEN + 1];

	start("max_per_destination 1");
	queue(a, "a@sender.example", "x@s.example");
	queue(b, "a@sender.example", "y@s.example");
	queue(c, "a@sender.example", "z@s.example");
	at(0);
	assert_int_equal(nconn, 1);
	assert_int_equal(fw.nwaiting, 2);
	up(0);
	assert_string_equal(conns[0].tx->env->id, a);
	reply(0, 250);
	assert_int_equal(nconn, 1);
	assert_int_equal(nsend, 2);
	assert_false(conns[0].closed);
	assert_string_equal(conns[0].tx->env->id, b);
	reply(0, 250);
	assert_int_equal(nsend, 3);
	assert_string_equal(conns[0].tx->env->id, c);
	reply(0, 250);
	assert_int_equal(nconn, 1);
	assert_int_equal(fw.nwaiting, 0);
	assert_true(conns[0].closed);
	assert_false(exists(a));
	assert_false(exists(b));
	assert_false(exists(c));
	stop();
}

/*
 * The connection a delivery leaves is not usable (the server closed it):
 * the next waiting message gets a new connection.  Fails if the dead
 * client were reused.
 */
static void
test_fifo_unusable_connection(void **state)
{
	char a[SPOOL_ID_LEN + 1], b[SPOOL_ID_LEN + 1];

	start("max_per_destination 1");
	queue(a, "a@sender.example", "x@s.example");
	queue(b, "a@sender.example", "y@s.example");
	at(0);
	up(0);
	conns[0].usable = 0;
	reply(0, 250);
	assert_true(conns[0].closed);
	assert_int_equal(nconn, 2);
	assert_int_equal(conns[1].nsend, 0);
	up(1);
	assert_string_equal(conns[1].tx->env->id, b);
	reply(1, 250);
	assert_false(exists(b));
	stop();
}

/*
 * MX route as a backup MX: MX lookup, then A/AAAA of each host; our own
 * address marks us (pref 20), so only the better MX (pref 10) is tried,
 * never the worse one (pref 30); when it does not answer, the recipient
 * is deferred without trying further.  Fails if the cut were not made
 * (a connection to mx3 or to ourselves).
 */
static void
test_mx_cut(void **state)
{
	static const char *const hosts[] = {"mx1.m.example", "mx2.m.example",
	                                    "mx3.m.example"};
	static const int prefs[] = {10, 20, 30};
	char a[SPOOL_ID_LEN + 1];
	struct sockaddr_in *s4;

	start("");
	nown = 1;
	own = calloc(1, sizeof(*own));
	s4 = (struct sockaddr_in *)(void *)own;
	s4->sin_family = AF_INET;
	s4->sin_port = htons(25);
	inet_pton(AF_INET, "192.0.2.22", &s4->sin_addr);
	queue(a, "a@sender.example", "x@m.example");
	at(0);
	assert_int_equal(nconn, 0);
	answer_mx("m.example", 3, hosts, prefs);
	answer_a("mx1.m.example", "192.0.2.21");
	answer_a("mx2.m.example", "192.0.2.22");
	assert_int_equal(nconn, 0);
	answer_a("mx3.m.example", "192.0.2.23");
	assert_int_equal(nconn, 1);
	assert_string_equal(ip_of(0), "192.0.2.21");
	refused(0);
	assert_int_equal(nconn, 1);
	assert_int_equal(rcpt_state(a, 0), SPOOL_RCPT_PENDING);
	stop();
}

/*
 * We are the best MX: the mail would loop, so it is deferred (4.4.6)
 * without a connection.  Fails if it connected to itself.
 */
static void
test_mx_self_best(void **state)
{
	static const char *const hosts[] = {"mx2.m.example", "mx3.m.example"};
	static const int prefs[] = {10, 30};
	char a[SPOOL_ID_LEN + 1];
	struct spool_envelope *e;
	struct sockaddr_in *s4;

	start("");
	nown = 1;
	own = calloc(1, sizeof(*own));
	s4 = (struct sockaddr_in *)(void *)own;
	s4->sin_family = AF_INET;
	s4->sin_port = htons(25);
	inet_pton(AF_INET, "192.0.2.22", &s4->sin_addr);
	queue(a, "a@sender.example", "x@m.example");
	at(0);
	answer_mx("m.example", 2, hosts, prefs);
	answer_a("mx2.m.example", "192.0.2.22");
	answer_a("mx3.m.example", "192.0.2.23");
	assert_int_equal(nconn, 0);
	e = env(a);
	assert_non_null(e);
	assert_int_equal(e->rcpt[0].state, SPOOL_RCPT_PENDING);
	assert_non_null(strstr(e->rcpt[0].last_error, "4.4.6"));
	spool_envelope_free(e);
	stop();
}

/*
 * A reload swaps the config whole (reload.c: backmxd.cfg = new): the
 * forwarder reads it through its pointer, so the next deferral uses the
 * new retry list.  Fails if the context kept the old config.
 */
static void
test_reload_seen(void **state)
{
	char a[SPOOL_ID_LEN + 1];
	struct config *old;
	int64_t next;

	start("retry 1m\nqueue_lifetime 5d");
	queue(a, "a@sender.example", "x@s.example");
	at(0);
	refused(0);
	next = rcpt_next(a, 0);
	assert_true(next <= (int64_t)T0 + 66);
	old = cfg;
	cfg = load("retry 2h 4h\nqueue_lifetime 5d");
	backmxd.cfg = cfg;
	config_free(old);
	at((double)(next - (int64_t)T0));
	assert_int_equal(nconn, 2);
	refused(1);
	assert_true(rcpt_next(a, 0) - next >= 7200);
	stop();
}

/*
 * Held messages are not tried at their time; released, they are due at
 * once.  Fails if a held message were delivered or a release forgotten.
 */
static void
test_hold_release(void **state)
{
	char a[SPOOL_ID_LEN + 1];

	start("");
	queue(a, "a@sender.example", "x@s.example");
	assert_int_equal(fwd_hold(&fw, a, 1), 1);
	assert_true(schedule_when(fw.sched, a) < 0); /* out of the schedule */
	at(0);
	at(100);
	assert_int_equal(nconn, 0);
	fake_t = T0 + 200;
	assert_int_equal(fwd_hold(&fw, a, 0), 1);
	at(200);
	assert_int_equal(nconn, 1);
	stop();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_deliver_static, teardown),
	    cmocka_unit_test_teardown(test_backoff_first_step, teardown),
	    cmocka_unit_test_teardown(test_backoff_steps, teardown),
	    cmocka_unit_test_teardown(test_flush_keeps_step, teardown),
	    cmocka_unit_test_teardown(test_suspend_and_probe, teardown),
	    cmocka_unit_test_teardown(test_presuspend_at_accept, teardown),
	    cmocka_unit_test_teardown(test_recovery_makes_due, teardown),
	    cmocka_unit_test_teardown(test_per_rcpt_deferral, teardown),
	    cmocka_unit_test_teardown(test_sibling_keeps_schedule, teardown),
	    cmocka_unit_test_teardown(test_two_destinations, teardown),
	    cmocka_unit_test_teardown(test_lifetime_expiry_bounce, teardown),
	    cmocka_unit_test_teardown(test_late_4xx_and_5xx_bounce, teardown),
	    cmocka_unit_test_teardown(test_delay_warning_due, teardown),
	    cmocka_unit_test_teardown(test_delay_warning_none, teardown),
	    cmocka_unit_test_teardown(test_fifo_handover, teardown),
	    cmocka_unit_test_teardown(test_fifo_unusable_connection, teardown),
	    cmocka_unit_test_teardown(test_mx_cut, teardown),
	    cmocka_unit_test_teardown(test_mx_self_best, teardown),
	    cmocka_unit_test_teardown(test_reload_seen, teardown),
	    cmocka_unit_test_teardown(test_hold_release, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
