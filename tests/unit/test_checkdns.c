/*
 * test_checkdns.c - relay/checkdns.c against a fake resolver: this file
 * defines dns_query/dns_cancel itself (the archive's dns.o is then
 * never linked), answers from a table of fake records, and checks the
 * lines, nfail, the async rules (nothing inside checkdns_start), and
 * cancellation from outside and from inside line_cb.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "backmxd.h"
#include "checkdns.h"
#include "config.h"
#include "dns.h"
#include "policy.h"

/* no loop: checkdns does not fetch MTA-STS policies here */
struct backmxd backmxd;

/* ------------------------------------------------------------------ */
/* the fake resolver */

struct dns {
	int fail_queries; /* dns_query returns NULL for this many */
};

struct dns_query {
	struct dns_query *next;
	char name[300];
	int type;
	dns_cb cb;
	void *arg;
};

static struct dns_query *live;
static int nlive, ncancelled;

struct dns_query *
dns_query(struct dns *d, const char *name, int rrtype, dns_cb cb, void *arg)
{
	struct dns_query *q;

	if (d->fail_queries > 0) {
		d->fail_queries--;
		return NULL;
	}
	q = calloc(1, sizeof(*q));
	assert_non_null(q);
	snprintf(q->name, sizeof(q->name), "%s", name);
	q->type = rrtype;
	q->cb = cb;
	q->arg = arg;
	q->next = live;
	live = q;
	nlive++;
	return q;
}

void
dns_cancel(struct dns_query *q)
{
	struct dns_query **pp;

	for (pp = &live; *pp != NULL; pp = &(*pp)->next)
		if (*pp == q) {
			*pp = q->next;
			free(q);
			nlive--;
			ncancelled++;
			return;
		}
	fail_msg("dns_cancel of a query that is not live");
}

/* fake records: "name type" -> status and data ("|"-separated) */
struct fake {
	const char *name;
	int type;
	enum dns_status status;
	const char *data; /* MX "10 host|20 host", A/AAAA addrs, TXT */
	const char *canon;
	int secure;
};

static const struct fake *zone;

static const struct fake *
fake_find(const char *name, int type)
{
	const struct fake *f;

	for (f = zone; f->name != NULL; f++)
		if (strcasecmp(f->name, name) == 0 && f->type == type)
			return f;
	return NULL;
}

/* answer - answer one live query (the oldest) from the zone table */
static int
answer_one(void)
{
	struct dns_query **pp, *q;
	const struct fake *f;
	struct dns_result r;
	struct policy_mx mx[64];
	struct sockaddr_storage addr[16];
	struct dns_tlsa tlsa[8];
	uint8_t tdata[4] = {1, 2, 3, 4};
	char *txt[32], buf[4096], *tok, *save;
	int n = 0;

	if (live == NULL)
		return 0;
	for (pp = &live; (*pp)->next != NULL; pp = &(*pp)->next)
		;
	q = *pp;
	*pp = NULL;
	nlive--;

	memset(&r, 0, sizeof(r));
	r.rrtype = q->type;
	r.qname = q->name;
	if ((f = fake_find(q->name, q->type)) == NULL) {
		r.status = DNS_NXDOMAIN;
		snprintf(r.why, sizeof(r.why), "name does not exist");
	} else {
		r.status = f->status;
		r.secure = f->secure;
		r.canonname = f->canon;
		snprintf(r.why, sizeof(r.why), "fake %d", f->status);
		snprintf(buf, sizeof(buf), "%s",
		         f->data != NULL ? f->data : "");
		for (tok = strtok_r(buf, "|", &save);
		     f->status == DNS_OK && tok != NULL;
		     tok = strtok_r(NULL, "|", &save)) {
			switch (q->type) {
			case DNS_T_MX:
				assert_true(n < 64);
				memset(&mx[n], 0, sizeof(mx[n]));
				sscanf(tok, "%d %255s", &mx[n].pref,
				       mx[n].host);
				if (strcmp(mx[n].host, ".") == 0)
					mx[n].host[0] = '\0';
				n++;
				break;
			case DNS_T_A:
			case DNS_T_AAAA:
				memset(&addr[n], 0, sizeof(addr[n]));
				if (q->type == DNS_T_A) {
					addr[n].ss_family = AF_INET;
					inet_pton(
					    AF_INET, tok,
					    &((struct sockaddr_in *)&addr[n])
					         ->sin_addr);
				} else {
					addr[n].ss_family = AF_INET6;
					inet_pton(
					    AF_INET6, tok,
					    &((struct sockaddr_in6 *)&addr[n])
					         ->sin6_addr);
				}
				n++;
				break;
			case DNS_T_TXT:
			case DNS_T_PTR:
				assert_true(n < 32);
				txt[n++] = tok;
				break;
			case DNS_T_TLSA:
				tlsa[n].usage = (uint8_t)atoi(tok);
				tlsa[n].selector = 1;
				tlsa[n].mtype = 1;
				tlsa[n].data = tdata;
				tlsa[n].len = sizeof(tdata);
				n++;
				break;
			}
		}
		r.n = n;
		r.mx = mx;
		r.addr = addr;
		r.txt = txt;
		r.tlsa = tlsa;
	}
	q->cb(q->arg, &r);
	free(q);
	return 1;
}

static void
answer_all(void)
{
	while (answer_one())
		;
}

/* ------------------------------------------------------------------ */
/* the audit's callbacks */

static char out[16384];
static int nlines, done_calls, done_nfail, cancel_after;
static struct checkdns *running;

static void
line_cb(void *arg, const char *level, const char *check, const char *text)
{
	size_t o = strlen(out);

	snprintf(out + o, sizeof(out) - o, "%s %s %s\n", level, check, text);
	nlines++;
	if (cancel_after > 0 && nlines == cancel_after)
		checkdns_cancel(running);
}

static void
done_cb(void *arg, int nfail)
{
	done_calls++;
	done_nfail = nfail;
}

static struct config *
config_make(const char *hostname, const char *domain, enum policy_tls tls)
{
	static struct config cfg;
	struct policy_domain *pd;

	memset(&cfg, 0, sizeof(cfg));
	cfg.policy = policy_new(hostname);
	assert_non_null(cfg.policy);
	cfg.hostname = cfg.policy->hostname;
	if (domain != NULL) {
		pd = policy_add_domain(cfg.policy, domain);
		assert_non_null(pd);
		pd->tls = tls;
	}
	return &cfg;
}

static int
setup(void **state)
{
	out[0] = '\0';
	nlines = done_calls = done_nfail = cancel_after = 0;
	ncancelled = 0;
	running = NULL;
	return 0;
}

static int
teardown(void **state)
{
	/* nothing may be left pending after a test */
	assert_null(live);
	assert_int_equal(nlive, 0);
	return 0;
}

/* run - audit domain with hostname over the zone; returns nfail */
static int
run(const struct fake *z, const char *hostname, const char *domain,
    enum policy_tls tls)
{
	struct dns d = {0};
	struct config *cfg = config_make(hostname, domain, tls);

	zone = z;
	running = checkdns_start(&d, cfg, domain, line_cb, done_cb, NULL);
	assert_non_null(running);
	/* the config may be reloaded while the audit runs */
	policy_free(cfg->policy);
	cfg->policy = NULL;
	assert_int_equal(nlines, 0);
	assert_int_equal(done_calls, 0);
	answer_all();
	assert_int_equal(done_calls, 1);
	return done_nfail;
}

static void
expect_line(const char *line)
{
	if (strstr(out, line) == NULL)
		fail_msg("missing \"%s\" in:\n%s", line, out);
}

static void
expect_no(const char *line)
{
	if (strstr(out, line) != NULL)
		fail_msg("unexpected \"%s\" in:\n%s", line, out);
}

/* ------------------------------------------------------------------ */

static const struct fake zone_base[] = {
    {"example.org", DNS_T_MX, DNS_OK, "20 mx2.example.net|10 mx1.example.org",
     NULL, 0},
    {"example.org", DNS_T_TXT, DNS_OK,
     "hello|v=spf1 ip6:2001:db8::/32 -mx -all", NULL, 0},
    {"mx1.example.org", DNS_T_A, DNS_OK, "192.0.2.1", NULL, 0},
    {"mx1.example.org", DNS_T_AAAA, DNS_NODATA, NULL, NULL, 0},
    {"mx2.example.net", DNS_T_A, DNS_OK, "192.0.2.2", NULL, 0},
    {"mx2.example.net", DNS_T_AAAA, DNS_OK, "2001:db8::2", NULL, 0},
    {NULL, 0, 0, NULL, NULL, 0},
};

static void
test_checkdns_order_and_ipv6_spf(void **state)
{
	/* no PTR for either of our addresses in the fake: 2 FAIL */
	assert_int_equal(
	    run(zone_base, "mx2.example.net", "example.org", POLICY_TLS_MAY),
	    2);
	expect_line("FAIL ptr 192.0.2.2 (ours) has no PTR record");
	expect_line("FAIL ptr 2001:db8::2 (ours) has no PTR record");
	/* sorted by preference; our IPv6 address is in ip6:2001:db8::/32 */
	expect_line("OK mx MX set of example.org: 10 mx1.example.org, "
	            "20 mx2.example.net\n");
	expect_line("OK self mx2.example.net is MX 20, behind the primary "
	            "mx1.example.org (10)\n");
	expect_line("OK target mx2.example.net (20): 192.0.2.2, 2001:db8::2 "
	            "(us)\n");
	expect_line("OK spf \"v=spf1 ip6:2001:db8::/32 -mx -all\" passes for "
	            "our address 2001:db8::2 (matched by ip6:2001:db8::/32)\n");
	/* our IPv4 address is an MX host's, and -mx says fail */
	expect_line("WARN spf \"v=spf1 ip6:2001:db8::/32 -mx -all\" gives "
	            "fail for our address 192.0.2.2: ");
	/* mx lines come before targets, targets before spf */
	assert_true(strstr(out, "OK mx") < strstr(out, "OK self"));
	assert_true(strstr(out, "OK target mx1") <
	            strstr(out, "OK target mx2"));
	assert_true(strstr(out, "OK target mx2") < strstr(out, "OK spf"));
	/* example.org's _mta-sts is NXDOMAIN in the fake */
	expect_line("OK mta-sts no MTA-STS record");
}

static const struct fake zone_minus_mx[] = {
    {"example.org", DNS_T_MX, DNS_OK, "10 mx1.example.org|20 mx2.example.net",
     NULL, 0},
    {"example.org", DNS_T_TXT, DNS_OK,
     "v=spf1 -mx ip4:192.0.2.0/31 "
     "ip4:192.0.2.2/33 ip4:nonsense -all",
     NULL, 0},
    {"mx1.example.org", DNS_T_A, DNS_OK, "192.0.2.1", NULL, 0},
    {"mx2.example.net", DNS_T_A, DNS_OK, "192.0.2.2", NULL, 0},
    {NULL, 0, 0, NULL, NULL, 0},
};

static void
test_checkdns_spf_minus_mx(void **state)
{
	/* ip4:192.0.2.2/33 is a syntax error: the record is a permerror
	 * whatever comes first (RFC 7208 4.6), so FAIL; and no PTR */
	assert_int_equal(run(zone_minus_mx, "mx2.example.net", "example.org",
	                     POLICY_TLS_MAY),
	                 2);
	expect_line("FAIL spf permerror for our address 192.0.2.2: "
	            "example.org: \"ip4:192.0.2.2/33\" is not an SPF term");
}

static void
test_checkdns_many_mx(void **state)
{
	static char data[4096];
	struct fake z[3] = {
	    {"big.example", DNS_T_MX, DNS_OK, data, NULL, 0},
	    {"h7.big.example", DNS_T_A, DNS_OK, "192.0.2.7", NULL, 0},
	    {NULL, 0, 0, NULL, NULL, 0},
	};
	size_t o = 0;
	int i;

	for (i = 0; i < 40; i++)
		o += snprintf(data + o, sizeof(data) - o,
		              "%s%d h%d.big.example", i ? "|" : "", 100 - i, i);
	/*
	 * The first 32 records given are kept (h0..h31, prefs 100..69);
	 * only h7 (93, us) has an address: 31 FAIL target lines, and
	 * one for its missing PTR.
	 */
	assert_int_equal(
	    run(z, "h7.big.example", "big.example", POLICY_TLS_MAY), 32);
	expect_line("OK self h7.big.example is MX 93, behind the primary "
	            "h31.big.example (69)");
	expect_no("h32.big.example (");
	expect_line("(and more)");
	expect_line("OK target h7.big.example (93): 192.0.2.7 (us)");
}

static const struct fake zone_null[] = {
    {"null.example", DNS_T_MX, DNS_OK, "0 .|10 mx.null.example", NULL, 0},
    {"mx.null.example", DNS_T_A, DNS_OK, "192.0.2.9", NULL, 0},
    {NULL, 0, 0, NULL, NULL, 0},
};

static void
test_checkdns_null_mixed(void **state)
{
	run(zone_null, "mx2.example.net", "null.example", POLICY_TLS_MAY);
	expect_line("OK mx MX set of null.example: 0 ., 10 mx.null.example");
	expect_line("FAIL null-mx null.example mixes a null MX");
	expect_line("FAIL self mx2.example.net is not in the MX set");
}

static const struct fake zone_tempfail[] = {
    {"t.example", DNS_T_MX, DNS_OK, "10 mx1.t.example|20 us.example", NULL, 0},
    {"mx1.t.example", DNS_T_A, DNS_TEMPFAIL, NULL, NULL, 0},
    {"mx1.t.example", DNS_T_AAAA, DNS_TEMPFAIL, NULL, NULL, 0},
    {"us.example", DNS_T_A, DNS_BOGUS, NULL, NULL, 0},
    {"us.example", DNS_T_AAAA, DNS_BOGUS, NULL, NULL, 0},
    {"t.example", DNS_T_TXT, DNS_TEMPFAIL, NULL, NULL, 0},
    {"_mta-sts.t.example", DNS_T_TXT, DNS_OK, "v=STSv1; id=x y;", NULL, 0},
    {"_25._tcp.us.example", DNS_T_TLSA, DNS_OK, "1|0", NULL, 1},
    {NULL, 0, 0, NULL, NULL, 0},
};

static void
test_checkdns_failures(void **state)
{
	assert_int_equal(
	    run(zone_tempfail, "us.example", "t.example", POLICY_TLS_DANE), 1);
	expect_line("WARN target mx1.t.example (10): address lookup failed: "
	            "fake 3");
	expect_line("FAIL target us.example (20): fake 4");
	expect_line("WARN spf TXT lookup for t.example failed: fake 3");
	expect_line("WARN mta-sts _mta-sts.t.example TXT is invalid");
	expect_line("WARN tlsa _25._tcp.us.example has 2 TLSA record(s), none "
	            "DANE-TA(2) or DANE-EE(3)");
	expect_no("domain");
}

static const struct fake zone_sts[] = {
    {"s.example", DNS_T_MX, DNS_OK, "10 mx1.s.example|20 us.example", NULL, 0},
    {"mx1.s.example", DNS_T_A, DNS_OK, "192.0.2.1", NULL, 0},
    {"us.example", DNS_T_A, DNS_OK, "192.0.2.2", NULL, 0},
    {"s.example", DNS_T_TXT, DNS_OK, "v=spf1 mx -all", NULL, 0},
    {"_mta-sts.s.example", DNS_T_TXT, DNS_OK,
     "v=spf1 nonsense|v=STSv1; id=abc;", NULL, 0},
    {NULL, 0, 0, NULL, NULL, 0},
};

static void
test_checkdns_sts_no_loop(void **state)
{
	/* backmxd.loop is NULL here: the record is judged, nothing fetched */
	assert_int_equal(
	    run(zone_sts, "us.example", "s.example", POLICY_TLS_MAY),
	    1); /* no PTR */
	expect_line("OK mta-sts MTA-STS record present (id=abc)\n");
	expect_line("WARN mta-sts policy not fetched (no event loop");
}

static const struct fake zone_listen[] = {
    {"l.example", DNS_T_MX, DNS_OK, "10 mx1.l.example|20 nat.l.example", NULL,
     0},
    {"mx1.l.example", DNS_T_A, DNS_OK, "192.0.2.1", NULL, 0},
    {"nat.l.example", DNS_T_A, DNS_OK, "198.51.100.9", NULL, 0},
    {NULL, 0, 0, NULL, NULL, 0},
};

static void
test_checkdns_listen_addr(void **state)
{
	struct sockaddr_storage ss;

	/* our listening address (not our name's) is an MX target's */
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_INET;
	inet_pton(AF_INET, "198.51.100.9",
	          &((struct sockaddr_in *)&ss)->sin_addr);
	backmxd.own_addrs = &ss;
	backmxd.nown_addrs = 1;
	run(zone_listen, "us.example", "l.example", POLICY_TLS_MAY);
	backmxd.own_addrs = NULL;
	backmxd.nown_addrs = 0;
	expect_line(
	    "WARN target nat.l.example (20) has our address "
	    "198.51.100.9 but is neither our hostname nor a hostname_alias");
}

static void
test_checkdns_cancel(void **state)
{
	struct dns d = {0};
	struct config *cfg =
	    config_make("us.example", "t.example", POLICY_TLS_DANE);

	zone = zone_tempfail;
	running = checkdns_start(&d, cfg, "t.example", line_cb, done_cb, NULL);
	assert_non_null(running);
	/* MX TXT DMARC TLS-RPT STS A AAAA TLSA */
	assert_int_equal(nlive, 8);
	/* the MX answer starts the target lookups */
	assert_int_equal(answer_one(), 1);
	assert_int_equal(nlive, 11);
	checkdns_cancel(running);
	assert_int_equal(nlive, 0);
	assert_int_equal(ncancelled, 11);
	assert_int_equal(nlines, 0);
	assert_int_equal(done_calls, 0);
	checkdns_cancel(NULL);
	policy_free(cfg->policy);
}

static void
test_checkdns_cancel_in_line_cb(void **state)
{
	cancel_after = 2;
	{
		struct dns d = {0};
		struct config *cfg = config_make("mx2.example.net",
		                                 "example.org", POLICY_TLS_MAY);

		zone = zone_base;
		running = checkdns_start(&d, cfg, "example.org", line_cb,
		                         done_cb, NULL);
		assert_non_null(running);
		answer_all();
		policy_free(cfg->policy);
	}
	assert_int_equal(nlines, 2);
	assert_int_equal(done_calls, 0);
}

static void
test_checkdns_start_refused(void **state)
{
	struct dns d = {0};
	struct config *cfg = config_make("us.example", NULL, POLICY_TLS_MAY);
	const char *bad[] = {
	    "",        ".",           "a b.example", "x\n.example",
	    "ex*.org", "a.example..", "a..example",  ".a.example",
	    NULL};
	char big[300];
	int i;

	for (i = 0; bad[i] != NULL; i++)
		assert_null(
		    checkdns_start(&d, cfg, bad[i], line_cb, done_cb, NULL));
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_null(checkdns_start(&d, cfg, big, line_cb, done_cb, NULL));
	assert_null(
	    checkdns_start(NULL, cfg, "ok.example", line_cb, done_cb, NULL));
	/* no lookup can start: NULL and nothing left behind */
	d.fail_queries = 100;
	assert_null(
	    checkdns_start(&d, cfg, "ok.example", line_cb, done_cb, NULL));
	assert_int_equal(nlive, 0);
	assert_int_equal(nlines, 0);
	/* only the MX lookup fails to start: reported, not fatal */
	d.fail_queries = 1;
	zone = zone_base;
	running =
	    checkdns_start(&d, cfg, "example.org", line_cb, done_cb, NULL);
	assert_non_null(running);
	answer_all();
	assert_int_equal(done_calls, 1);
	expect_line("FAIL mx MX lookup for example.org failed: could not start "
	            "the lookup");
	expect_line("WARN domain example.org has no domain block");
	policy_free(cfg->policy);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_checkdns_order_and_ipv6_spf,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_checkdns_spf_minus_mx, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_checkdns_many_mx, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_checkdns_null_mixed, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_checkdns_failures, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_checkdns_sts_no_loop, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_checkdns_listen_addr, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_checkdns_cancel, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_checkdns_cancel_in_line_cb,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_checkdns_start_refused, setup,
	                                    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
