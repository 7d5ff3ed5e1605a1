/*
 * fuzz_control.c - libFuzzer target for the control request parser
 * (control_proto.c) and the JSON escaping of json.c.  Beyond memory
 * safety it checks: an accepted request has its argument count in range,
 * printable ASCII arguments, a 12-hex lowercase id, a lowercase domain
 * or (verify) an address;
 * escaped output holds no raw control octet and only valid escapes.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "json.h"

static void
fuzz_check_json(const struct json_buf *b)
{
	size_t i;

	if (b->oom || b->len < 2 || b->data[0] != '"' ||
	    b->data[b->len - 1] != '"')
		abort();
	for (i = 1; i < b->len - 1; i++) {
		unsigned char c = (unsigned char)b->data[i];

		if (c < 0x20 || c == 0x7f)
			abort();
		if (c == '"')
			abort(); /* an unescaped quote ends the string */
		if (c == '\\') {
			c = (unsigned char)b->data[++i];
			if (strchr("\"\\nrtu", c) == NULL || c == '\0')
				abort();
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct control_request req;
	struct json_buf b;
	char err[256];
	size_t i;
	int k;

	if (control_request_parse((const char *)data, size, &req, err,
	                          sizeof(err)) == 0) {
		if (req.nargs < 0 || req.nargs > CONTROL_ARGS_MAX ||
		    req.name == NULL)
			abort();
		for (k = 0; k < req.nargs; k++)
			for (i = 0; req.args[k][i] != '\0'; i++)
				if (req.args[k][i] < 0x21 ||
				    req.args[k][i] > 0x7e)
					abort();
		if (req.nargs > 0 && req.arg_is_id) {
			if (!control_is_id(req.args[0]))
				abort();
			for (i = 0; req.args[0][i]; i++)
				if (isupper((unsigned char)req.args[0][i]))
					abort();
		} else if (req.nargs > 0 && req.cmd != CONTROL_VERIFY) {
			/* a domain (verify's argument is an address, parsed
			 * by the recipient code, and keeps its local part) */
			for (i = 0; req.args[0][i]; i++)
				if (isupper((unsigned char)req.args[0][i]) ||
				    req.args[0][i] == '@')
					abort();
		}
	} else if (strlen(err) == 0)
		abort();

	json_buf_init(&b);
	json_put_string(&b, (const char *)data, size);
	fuzz_check_json(&b);
	json_buf_free(&b);

	{
		char *s = malloc(size + 1);

		if (s == NULL)
			return 0;
		memcpy(s, data, size);
		s[size] = '\0';
		json_buf_init(&b);
		json_put_text(&b, s);
		for (i = 0; i < b.len; i++)
			if (((unsigned char)b.data[i] < 0x20 &&
			     b.data[i] != '\t') ||
			    b.data[i] == 0x7f)
				abort();
		json_buf_free(&b);
		free(s);
	}
	return 0;
}
