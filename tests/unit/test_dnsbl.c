/*
 * test_dnsbl.c - relay/dnsbl.c query names (IPv4 reversed octets, IPv6
 * nibbles, IPv4-mapped as IPv4) and relay/config_filter.c's dnsbl
 * answer filters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "backmxd.h"
#include "config_filter.h"
#include "dnsbl.h"

struct backmxd backmxd;
struct stats stats;

static void
name_of(const char *a, const char *zone, const char *want)
{
	struct sockaddr_storage ss;
	char out[320];

	memset(&ss, 0, sizeof(ss));
	if (strchr(a, ':')) {
		ss.ss_family = AF_INET6;
		inet_pton(AF_INET6, a,
		          &((struct sockaddr_in6 *)&ss)->sin6_addr);
	} else {
		ss.ss_family = AF_INET;
		inet_pton(AF_INET, a, &((struct sockaddr_in *)&ss)->sin_addr);
	}
	assert_int_equal(dnsbl_query_name(&ss, zone, out, sizeof(out)), 0);
	assert_string_equal(out, want);
}

static void
test_dnsbl_names(void **state)
{
	name_of("192.0.2.99", "bl.example", "99.2.0.192.bl.example");
	name_of("::ffff:192.0.2.1", "z.example", "1.2.0.192.z.example");
	name_of("2001:db8::99", "bl.example",
	        "9.9.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0."
	        "0.2.bl.example");
}

static void
test_dnsbl_filters(void **state)
{
	struct config_dnsbl d;
	unsigned char a2[4] = {127, 0, 0, 2}, a1[4] = {127, 0, 0, 1},
	              a11[4] = {127, 0, 0, 11}, a12[4] = {127, 0, 0, 12},
	              x[4] = {10, 0, 0, 2};

	assert_int_equal(config_dnsbl_parse("zen.example=127.0.0.[2..11]", &d),
	                 0);
	assert_string_equal(d.zone, "zen.example");
	assert_true(config_dnsbl_match(&d, a2));
	assert_true(config_dnsbl_match(&d, a11));
	assert_false(config_dnsbl_match(&d, a1));
	assert_false(config_dnsbl_match(&d, a12));
	assert_int_equal(config_dnsbl_parse("Z.Example.", &d), 0);
	assert_string_equal(d.zone, "z.example");
	assert_true(config_dnsbl_match(&d, a1));
	assert_false(config_dnsbl_match(&d, x));
	assert_int_equal(config_dnsbl_parse("z.example=127.0.0.4", &d), 0);
	assert_false(config_dnsbl_match(&d, a2));
	static const char *bad[] = {
	    "",
	    "=127.0.0.2",
	    "z..example",
	    "z.example=",
	    "z.example=127.0.0",
	    "z.example=127.0.0.[3..2]",
	    "z.example=127.0.0.256",
	    "z.example=127.0.0.[2..11",
	    "z.example=127.0.0.2.5",
	    "z ex",
	    "z.example=127.0.0.[2-11]",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (config_dnsbl_parse(bad[i], &d) == 0)
			fail_msg("accepted \"%s\"", bad[i]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_dnsbl_names),
	    cmocka_unit_test(test_dnsbl_filters),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
