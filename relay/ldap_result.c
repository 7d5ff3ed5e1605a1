/*
 * ldap_result.c - a search's answer from the messages libldap decoded
 * (see ldap_result.h).  No I/O of its own: ldap_result() with a zero
 * timeout only takes what the connection already holds.  The lookups
 * ask for no attributes (LDAP_NO_ATTRS), so an entry's presence is the
 * whole answer; its DN and any values the directory sends anyway are
 * never read.
 */
#include <ldap.h>
#include <stddef.h>

#include "ldap_result.h"

void
ldap_result_limit(LDAP *ld)
{
	ber_len_t max = LDAP_REPLY_MAX;
	Sockbuf *sb = NULL;

	if (ldap_get_option(ld, LDAP_OPT_SOCKBUF, &sb) == LDAP_OPT_SUCCESS &&
	    sb != NULL)
		ber_sockbuf_ctrl(sb, LBER_SB_OPT_SET_MAX_INCOMING, &max);
}

int
ldap_result_nonblock(LDAP *ld)
{
	Sockbuf *sb = NULL;

	if (ldap_get_option(ld, LDAP_OPT_SOCKBUF, &sb) != LDAP_OPT_SUCCESS ||
	    sb == NULL ||
	    ber_sockbuf_ctrl(sb, LBER_SB_OPT_SET_NONBLOCK, (void *)1) != 1)
		return -1;
	return 0;
}

int
ldap_result_next(LDAP *ld, int *msgid, enum policy_answer *a, const char **why)
{
	struct timeval zero = {0, 0};
	LDAPMessage *msg = NULL, *res;
	int rc, err = LDAP_OTHER, entries;

	rc = ldap_result(ld, LDAP_RES_ANY, LDAP_MSG_ALL, &zero, &msg);
	if (rc == 0 && msg == NULL)
		return 0; /* nothing complete yet */
	if (rc == 0) {
		/* ldap_result answers with the message's type, and a message
		 * of type 0 is no LDAP operation: it came all the same and
		 * is ours to free (was leaked, up to 1 MB each, for as long
		 * as the directory sent them) */
		ldap_msgfree(msg);
		*why = "malformed message from the directory";
		return -1;
	}
	if (rc < 0) {
		if (ldap_get_option(ld, LDAP_OPT_RESULT_CODE, &err) !=
		    LDAP_OPT_SUCCESS)
			err = LDAP_OTHER;
		/* a message libldap could not decode (an operation tag it
		 * does not know) fails with the result code still 0: say
		 * what it was, not "Success" */
		*why = err == LDAP_SUCCESS
		           ? "malformed message from the directory"
		           : ldap_err2string(err);
		return -1;
	}
	/*
	 * An unsolicited notification (message id 0; RFC 4511 4.4 defines
	 * only the Notice of Disconnection, which libldap takes itself)
	 * ends the connection: libldap 2.5 keeps the matchedDN and
	 * diagnosticMessage of such a message in a request of its own that
	 * it never frees, so a directory sending them without end would
	 * grow us without end; closed, it is one message per reconnect.
	 */
	if ((*msgid = ldap_msgid(msg)) == LDAP_RES_UNSOLICITED) {
		ldap_msgfree(msg);
		*why = "unsolicited notification from the directory";
		return -1;
	}
	entries = ldap_count_entries(ld, msg);
	/* the result message follows the entries */
	for (res = msg;
	     res != NULL && ldap_msgtype(res) != LDAP_RES_SEARCH_RESULT;
	     res = ldap_next_message(ld, res))
		;
	/* no result, or one that does not decode whole: unknown, never
	 * "no" from a code read before the decoding failed */
	if (res == NULL)
		err = LDAP_OTHER;
	else if ((rc = ldap_parse_result(ld, res, &err, NULL, NULL, NULL, NULL,
	                                 0)) != LDAP_SUCCESS)
		err = rc;
	ldap_msgfree(msg);
	*why = NULL;
	if (entries > 0)
		*a = POLICY_ANS_YES;
	else if (err == LDAP_SUCCESS || err == LDAP_NO_SUCH_OBJECT)
		*a = POLICY_ANS_NO;
	else {
		*a = POLICY_ANS_UNKNOWN;
		*why = ldap_err2string(err);
	}
	return 1;
}
