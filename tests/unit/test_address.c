/*
 * test_address.c - policy/address.c and policy/rcpt_gate.c: the path
 * parser and the RCPT gate.
 * One table of address forms (valid, refused, every nmap open-relay form,
 * percent-hack variants, limits, UTF-8) with the exact reply, enhanced
 * code and rewritten address each must get; plus xtext and canon keys.
 */
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

#include "policy.h"

/* table rows leave the trailing fields out when they do not matter */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define HOST "mx2.example.net"
#define U8 POLICY_PARSE_SMTPUTF8

static char tmpdir[] = "/tmp/backmx-test-address-XXXXXX";
static struct policy *pol;

struct addr_case {
	char mode;      /* 'R' policy_check_rcpt, 'M' parse for MAIL */
	const char *in; /* {L64} {D255} ... expanded, see expand() */
	int flags;
	int code;
	const char *enh;
	const char *addr; /* expected address (NULL: don't check) */
	int pct;
	const char *orcpt;
};

static const struct addr_case cases[] = {
    /* plain recipients */
    {'R', "<alice@example.org>", 0, 250, "2.1.5", "alice@example.org"},
    {'R', "<ALICE@Example.ORG>", 0, 250, "2.1.5", "ALICE@example.org"},
    {'R', "<alice@EXAMPLE.ORG>", 0, 250, "2.1.5", "alice@example.org"},
    {'R', "<bob@example.org>", 0, 250, "2.1.5", "bob@example.org"},
    {'R', "<mallory@example.org>", 0, 550, "5.1.1", NULL},
    {'R', "<carol@example.org>", 0, 550, "5.1.1", NULL},
    {'R', "<anyone@any.example>", 0, 250, "2.1.5", "anyone@any.example"},
    {'R', "<\"alice\"@example.org>", 0, 250, "2.1.5", "\"alice\"@example.org"},
    {'R', "<\"john doe\"@example.org>", 0, 250, "2.1.5",
     "\"john doe\"@example.org"},
    {'R', "<\"al\\\"ice\"@example.org>", 0, 550, "5.1.1", NULL},
    {'R', "<alice@example.org> NOTIFY=NEVER", 0, 250, "2.1.5",
     "alice@example.org"},
    /* postmaster */
    {'R', "<postmaster@example.org>", 0, 250, "2.1.5",
     "postmaster@example.org"},
    {'R', "<POSTMASTER@example.org>", 0, 250, "2.1.5",
     "POSTMASTER@example.org"},
    {'R', "<PostMaster@customer.example>", 0, 250, "2.1.5",
     "PostMaster@customer.example"},
    {'R', "<Postmaster>", 0, 250, "2.1.5", "postmaster@example.org"},
    {'R', "<postmaster>", 0, 250, "2.1.5", "postmaster@example.org"},
    {'R', "<\"postmaster\">", 0, 501, "5.1.3", NULL},
    {'R', "<@a.example:Postmaster>", 0, 501, "5.1.3", NULL},
    {'R', "<postmaster@[192.0.2.1]>", 0, 550, "5.7.1", NULL},
    {'R', "<postmaster@" HOST ">", 0, 550, "5.7.1", NULL},
    {'R', "<>", 0, 501, "5.1.3", NULL},
    /* nmap smtp-open-relay forms (digest section 4) */
    {'R', "<relaytest@nmap.scanme.org>", 0, 550, "5.7.1", NULL},
    {'R', "<relaytest%nmap.scanme.org@[192.0.2.1]>", 0, 550, "5.7.1"},
    {'R', "<relaytest%nmap.scanme.org@" HOST ">", 0, 550, "5.7.1"},
    {'R', "<\"relaytest@nmap.scanme.org\">", 0, 501, "5.1.3"},
    {'R', "<\"relaytest%nmap.scanme.org\">", 0, 501, "5.1.3"},
    {'R', "<relaytest@nmap.scanme.org@[192.0.2.1]>", 0, 501, "5.1.3"},
    {'R', "<relaytest@nmap.scanme.org@" HOST ">", 0, 501, "5.1.3"},
    {'R', "<\"relaytest@nmap.scanme.org\"@[192.0.2.1]>", 0, 550, "5.7.1"},
    {'R', "<\"relaytest@nmap.scanme.org\"@" HOST ">", 0, 550, "5.7.1"},
    {'R', "<@[192.0.2.1]:relaytest@nmap.scanme.org>", 0, 550, "5.7.1"},
    {'R', "<@" HOST ":relaytest@nmap.scanme.org>", 0, 550, "5.7.1"},
    {'R', "<nmap.scanme.org!relaytest>", 0, 501, "5.1.3"},
    {'R', "<nmap.scanme.org!relaytest@[192.0.2.1]>", 0, 550, "5.7.1"},
    {'R', "<nmap.scanme.org!relaytest@" HOST ">", 0, 550, "5.7.1"},
    /* percent hack: the one accepted form and its variants */
    {'R', "<user%customer.example@" HOST ">", 0, 250, "2.1.5",
     "user@customer.example", 1, "rfc822;user%customer.example@" HOST},
    {'R', "<USER%Customer.Example@MX2.example.net>", 0, 250, "2.1.5",
     "USER@customer.example", 1,
     "rfc822;USER%Customer.Example@MX2.example.net"},
    {'R', "<user%customer.example@mx.provider.net>", 0, 250, "2.1.5",
     "user@customer.example", 1,
     "rfc822;user%customer.example@mx.provider.net"},
    /* the contract refuses every source route, even to the percent hack */
    {'R', "<@relay.example:user%customer.example@" HOST ">", 0, 550, "5.7.1"},
    {'R', "<postmaster%customer.example@" HOST ">", 0, 250, "2.1.5",
     "postmaster@customer.example", 1},
    {'R', "<nobody%customer.example@" HOST ">", 0, 550, "5.1.1"},
    {'R', "<user%off.example@" HOST ">", 0, 550, "5.7.1"},
    {'R', "<user%mxroute.example@" HOST ">", 0, 550, "5.7.1"},
    {'R', "<user%foreign.example@" HOST ">", 0, 550, "5.7.1"},
    {'R', "<user%%customer.example@" HOST ">", 0, 550, "5.7.1"},
    {'R', "<user%a%customer.example@" HOST ">", 0, 550, "5.7.1"},
    {'R', "<user%customer.example@[192.0.2.1]>", 0, 550, "5.7.1"},
    {'R', "<\"user%customer.example\"@" HOST ">", 0, 550, "5.7.1"},
    {'R', "<\"user@customer.example\"@" HOST ">", 0, 550, "5.7.1"},
    {'R', "<user!x%customer.example@" HOST ">", 0, 550, "5.7.1"},
    {'R', "<customer.example!user@" HOST ">", 0, 550, "5.7.1"},
    {'R', "<customer.example!user>", 0, 501, "5.1.3"},
    {'R', "<user%customer.example@other.example>", 0, 550, "5.7.1"},
    {'R', "<user%customer.example@customer.example>", 0, 550, "5.7.1"},
    {'R', "<user%customer.example@example.org>", 0, 550, "5.7.1"},
    {'R', "<%customer.example@" HOST ">", 0, 550, "5.7.1"},
    {'R', "<user%@" HOST ">", 0, 550, "5.7.1"},
    {'R', "<user%customer_x.example@" HOST ">", 0, 550, "5.7.1"},
    {'R', "<user%customer.example.@" HOST ">", 0, 501, "5.1.3"},
    {'R', "<user%[192.0.2.9]@" HOST ">", 0, 501, "5.1.3"},
    {'R', "<user%customer.example@" HOST ".>", 0, 501, "5.1.3"},
    /* our own host name is not a mail domain */
    {'R', "<user@" HOST ">", 0, 550, "5.7.1"},
    {'R', "<user@mx.provider.net>", 0, 550, "5.7.1"},
    {'R', "<user@MX2.EXAMPLE.NET>", 0, 550, "5.7.1"},
    /* routing characters at a domain of ours */
    {'R', "<\"a@b\"@example.org>", 0, 550, "5.7.1"},
    {'R', "<\"a%b\"@example.org>", 0, 550, "5.7.1"},
    {'R', "<\"a!b\"@example.org>", 0, 550, "5.7.1"},
    {'R', "<a!b@example.org>", 0, 550, "5.7.1"},
    {'R', "<a%b@any.example>", 0, 550, "5.7.1"},
    {'R', "<a%b@any.example@" HOST ">", 0, 501, "5.1.3"},
    /* source routes are parsed (RFC 5321 syntax) but refused with 550
     * (3.6.2 allows it; the contract requires it), even to our domains */
    {'R', "<@foreign.example:alice@example.org>", 0, 550, "5.7.1"},
    {'R', "<@a.example,@b.example:alice@example.org>", 0, 550, "5.7.1"},
    {'R', "<@a.example,@b.example:relay@foreign.example>", 0, 550, "5.7.1"},
    {'R', "<@:alice@example.org>", 0, 501, "5.1.3"},
    {'R', "<@a.example alice@example.org>", 0, 501, "5.1.3"},
    {'R', "<@a.example,b.example:alice@example.org>", 0, 501, "5.1.3"},
    /* address literals are never ours */
    {'R', "<alice@[IPv6:2001:db8::1]>", 0, 550, "5.7.1"},
    {'R', "<alice@[x-tag:stuff]>", 0, 550, "5.7.1"},
    {'R', "<alice@[300.1.1.1]>", 0, 501, "5.1.3"},
    {'R', "<alice@[IPv6:zz::1]>", 0, 501, "5.1.3"},
    {'R', "<alice@[192.0.2.1>", 0, 501, "5.1.3"},
    /* limits: 64/65 local, 255/256 domain, 256/257 mailbox */
    {'R', "<{L64}@any.example>", 0, 250, "2.1.5"},
    {'R', "<{L65}@any.example>", 0, 501, "5.1.3"},
    {'R', "<\"{L64}\"@any.example>", 0, 250, "2.1.5"},
    {'R', "<\"{L65}\"@any.example>", 0, 501, "5.1.3"},
    {'R', "<@{D255}:alice@example.org>", 0, 550, "5.7.1"},
    {'R', "<@{D256}:alice@example.org>", 0, 501, "5.1.3"},
    {'R', "<a@{D254}>", 0, 550, "5.7.1"},
    {'R', "<ab@{D254}>", 0, 501, "5.1.3"},
    {'R', "<a@{D256}>", 0, 501, "5.1.3"},
    {'R', "<a@{LABEL64}.example>", 0, 501, "5.1.3"},
    /* UTF-8 needs SMTPUTF8 */
    {'R', "<j\xc3\xb6rg@example.org>", 0, 553, "5.6.7"},
    {'R', "<j\xc3\xb6rg@example.org>", U8, 250, "2.1.5",
     "j\xc3\xb6rg@example.org"},
    {'R', "<J\xc3\x96RG@example.org>", U8, 550, "5.1.1"},
    {'R', "<alice@ex\xc3\xa4mple.org>", 0, 553, "5.6.7"},
    {'R', "<alice@ex\xc3\xa4mple.org>", U8, 550, "5.7.1"},
    {'R', "<a\xff@example.org>", U8, 501, "5.6.7"},
    {'R', "<a\xc0\xaf@example.org>", U8, 501, "5.6.7"},
    {'R', "<\"j\xc3\xb6rg\"@example.org>", U8, 250, "2.1.5"},
    /* plain syntax errors */
    {'R',
     "<a\x01"
     "b@example.org>",
     0, 501, "5.1.3"},
    {'R', "<a\x7f@example.org>", 0, 501, "5.1.3"},
    {'R', "<a b@example.org>", 0, 501, "5.1.3"},
    {'R', "alice@example.org", 0, 501, "5.5.2"},
    {'R', "<alice@example.org", 0, 501, "5.5.2"},
    {'R', "", 0, 501, "5.5.2"},
    {'R', "<", 0, 501, "5.5.2"},
    {'R', "<alice@under_score.example>", 0, 501, "5.1.3"},
    {'R', "<alice@-bad.example>", 0, 501, "5.1.3"},
    {'R', "<alice@bad-.example>", 0, 501, "5.1.3"},
    {'R', "<alice@example.org.>", 0, 501, "5.1.3"},
    {'R', "<alice@example..org>", 0, 501, "5.1.3"},
    {'R', "<.alice@example.org>", 0, 501, "5.1.3"},
    {'R', "<alice.@example.org>", 0, 501, "5.1.3"},
    {'R', "<al..ice@example.org>", 0, 501, "5.1.3"},
    {'R', "<@example.org>", 0, 501, "5.1.3"},
    {'R', "<alice@>", 0, 501, "5.1.3"},
    {'R', "<alice>", 0, 501, "5.1.3"},
    {'R', "<\"unterminated@example.org>", 0, 501, "5.5.2"},
    {'R', "<\"a\"b@example.org>", 0, 501, "5.1.3"},
    {'R', "<(comment)alice@example.org>", 0, 501, "5.1.3"},
    /* MAIL FROM reverse-paths */
    {'M', "<>", 0, 250, "2.1.0", ""},
    {'M', "<> SIZE=100", 0, 250, "2.1.0", ""},
    {'M', "<a@b.example>", 0, 250, "2.1.0", "a@b.example"},
    {'M', "<A@B.Example>", 0, 250, "2.1.0", "A@b.example"},
    {'M', "<\"a b\"@c.example>", 0, 250, "2.1.0", "\"a b\"@c.example"},
    {'M', "<@r.example:a@b.example>", 0, 250, "2.1.0", "a@b.example"},
    {'M', "<a@[192.0.2.1]>", 0, 250, "2.1.0", "a@[192.0.2.1]"},
    {'M', "<Postmaster>", 0, 501, "5.1.3"},
    {'M', "<j\xc3\xb6rg@b.example>", 0, 553, "5.6.7"},
    {'M', "<j\xc3\xb6rg@b.example>", U8, 250, "2.1.0"},
};

/* expand - replace {L64} {L65} {D254} {D255} {D256} {LABEL64} */
static const char *
expand(const char *in)
{
	static char out[2048];
	size_t o = 0;

	while (*in != '\0' && o < sizeof(out) - 300) {
		int n = 0, dlen = 0;

		if (sscanf(in, "{L%d}%n", &dlen, &n) == 1 && n > 0) {
			memset(out + o, 'l', dlen);
			o += dlen;
			in += n;
		} else if (sscanf(in, "{LABEL%d}%n", &dlen, &n) == 1 && n > 0) {
			memset(out + o, 'x', dlen);
			o += dlen;
			in += n;
		} else if (sscanf(in, "{D%d}%n", &dlen, &n) == 1 && n > 0) {
			/* labels of 63, the last one shorter; never ends in
			 * a dot or begins a label with one */
			int left = dlen;

			while (left > 0) {
				int l = left > 63 ? 63 : left;

				if (left - l == 1)
					l--; /* avoid a 0-length tail */
				memset(out + o, 'd', l);
				o += l;
				left -= l;
				if (left > 0) {
					out[o++] = '.';
					left--;
				}
			}
			in += n;
		} else
			out[o++] = *in++;
	}
	out[o] = '\0';
	return out;
}

static void
write_file(const char *name, const char *text)
{
	char path[512];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static struct policy_domain *
add_domain(const char *name, const char *rcpts, int pct, int route_static)
{
	struct policy_domain *d = policy_add_domain(pol, name);
	char err[512], path[512];

	assert_non_null(d);
	d->percent_hack = pct;
	d->route_static = route_static;
	if (rcpts == NULL) {
		d->recipients_any = 1;
		return d;
	}
	snprintf(path, sizeof(path), "%s/%s", tmpdir, rcpts);
	d->recipients_file = strdup(path);
	if (policy_domain_load_recipients(d, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	return d;
}

static int
setup(void **state)
{
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	write_file("org.rcpts", "alice\nBob\n\"john doe\"\nj\xc3\xb6rg\n"
	                        "carol@other.example\n");
	write_file("cust.rcpts", "# customer\nuser\nalice\n");
	pol = policy_new(HOST);
	policy_add_alias(pol, "MX.Provider.NET");
	add_domain("example.org", "org.rcpts", 0, 0);
	add_domain("customer.example", "cust.rcpts", 1, 1);
	add_domain("off.example", "cust.rcpts", 0, 1);
	add_domain("mxroute.example", "cust.rcpts", 1, 0);
	add_domain("any.example", NULL, 0, 0);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[600];

	policy_free(pol);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd);
}

static void
test_address_table(void **state)
{
	size_t i, bad = 0;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct addr_case *c = &cases[i];
		const char *in = expand(c->in);
		struct policy_rcpt r;
		struct result res;
		size_t end = 0;
		const char *addr;
		int rc, ok;

		memset(&res, 0, sizeof(res));
		if (c->mode == 'R') {
			rc = policy_check_rcpt(pol, in, strlen(in), c->flags,
			                       &r, &end, &res);
			addr = r.address;
		} else {
			rc = policy_parse_path(in, strlen(in), c->flags,
			                       &r.path, &end, &res);
			addr = r.path.address;
		}
		ok = res.code == c->code && strcmp(res.enh, c->enh) == 0 &&
		     (rc == 0) == (c->code / 100 == 2);
		if (ok && rc == 0) {
			/* end is just past the path's closing ">" */
			if (end == 0 || end > strlen(in) || in[end - 1] != '>')
				ok = 0;
			if (c->addr != NULL && strcmp(addr, c->addr) != 0)
				ok = 0;
			if (c->mode == 'R' && r.percent_hack != c->pct)
				ok = 0;
			if (c->orcpt != NULL && strcmp(r.orcpt, c->orcpt) != 0)
				ok = 0;
			if (c->mode == 'R' && r.domain == NULL)
				ok = 0;
		}
		if (!ok) {
			bad++;
			print_error("case %zu %c %s: got %d %s \"%s\" rc=%d "
			            "addr=\"%s\" pct=%d orcpt=\"%s\"; want %d "
			            "%s %s\n",
			            i, c->mode, c->in, res.code, res.enh,
			            res.text, rc, rc == 0 ? addr : "",
			            c->mode == 'R' ? r.percent_hack : 0,
			            c->mode == 'R' ? r.orcpt : "", c->code,
			            c->enh, c->addr ? c->addr : "");
		}
	}
	assert_true(sizeof(cases) / sizeof(cases[0]) >= 60);
	assert_int_equal(bad, 0);
}

/* the parameters start right after the path */
static void
test_address_endp(void **state)
{
	const char *in = "<\"a>b\"@example.org> NOTIFY=NEVER";
	struct policy_path p;
	struct result res;
	size_t end = 0;

	assert_int_equal(policy_parse_path(in, strlen(in), 0, &p, &end, &res),
	                 0);
	assert_string_equal(in + end, " NOTIFY=NEVER");
	assert_true(p.quoted);
	assert_string_equal(p.local, "\"a>b\"");
	assert_int_equal(policy_parse_path("<> X", 4, 0, &p, &end, &res), 0);
	assert_int_equal(p.kind, POLICY_PATH_NULL);
	assert_int_equal(end, 2);
	/* len bounds the parse: the ">" beyond it is not seen */
	assert_int_equal(
	    policy_parse_path("<a@b.example>", 12, 0, &p, &end, &res), -1);
	in = "<@a.example:u@d.example>";
	assert_int_equal(policy_parse_path(in, strlen(in), 0, &p, &end, &res),
	                 0);
	assert_true(p.source_route);
	assert_string_equal(p.address, "u@d.example");
	in = "<u@[IPv6:2001:DB8::1]>";
	assert_int_equal(policy_parse_path(in, strlen(in), 0, &p, &end, &res),
	                 0);
	assert_true(p.literal);
	assert_string_equal(p.domain, "[IPv6:2001:DB8::1]");
	assert_string_equal(p.domain_lc, "[ipv6:2001:db8::1]");
}

static void
test_address_canon(void **state)
{
	static const struct {
		const char *in, *out;
	} t[] = {
	    {"Alice", "alice"},
	    {"\"Alice\"", "alice"},
	    {"\"a.b\"", "a.b"},
	    {"\"a..b\"", "\"a..b\""},
	    {"\"john doe\"", "\"john doe\""},
	    {"\"j\\o\\hn\"", "john"},
	    {"\"a\\\"b\"", "\"a\\\"b\""},
	    {"J\xc3\x96RG", "J\xc3\x96RG"},
	    {".a", NULL},
	    {"a b", NULL},
	    {"\"a", NULL},
	    {"", NULL},
	};
	char out[POLICY_LOCAL_MAX * 2 + 3];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int rc = policy_local_canon(t[i].in, out, sizeof(out));

		if (t[i].out == NULL) {
			assert_int_equal(rc, -1);
			continue;
		}
		assert_int_equal(rc, 0);
		assert_string_equal(out, t[i].out);
	}
}

static void
test_address_xtext(void **state)
{
	static const struct {
		const char *s;
		int ok;
	} t[] = {
	    {"rfc822;user@example.org", 1},
	    {"rfc822;a+2Bb@example.org", 1},
	    {"", 1},
	    {"a+2b", 0},
	    {"a+2", 0},
	    {"a+", 0},
	    {"a=b", 0},
	    {"a b", 0},
	    {"a\x7f", 0},
	    {"caf\xc3\xa9", 0},
	    {"+3D+2B", 1},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		assert_int_equal(policy_xtext_valid(t[i].s, strlen(t[i].s)),
		                 t[i].ok);
	/* the length bounds the check, not a NUL */
	assert_int_equal(policy_xtext_valid("ab+2", 2), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_address_table),
	    cmocka_unit_test(test_address_endp),
	    cmocka_unit_test(test_address_canon),
	    cmocka_unit_test(test_address_xtext),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
