/*
 * fuzz_config.c - relay/config.c on arbitrary files: every input either
 * loads or is refused with diagnostics; never a crash, leak or hang.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	static char diag[8192];
	struct config *c;
	FILE *fp;
	int nerr = 0;

	/* the input file on tmpfs where there is one: on a disk, its
	 * rewrite per input was most of this target's time */
	if (path[0] == '\0')
		snprintf(path, sizeof(path), "%s/fuzz-config-%d.conf",
		         access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp",
		         (int)getpid());
	if ((fp = fopen(path, "w")) == NULL)
		return 0;
	fwrite(data, 1, size, fp);
	fclose(fp);
	c = config_load(path, diag, sizeof(diag), &nerr);
	/* read: gone again, so no run leaves a file behind in /dev/shm */
	unlink(path);
	if (c != NULL) {
		/* a loaded config is internally consistent */
		if (nerr != 0 || c->nlisten < 1 || c->hostname == NULL ||
		    c->nretry < 1)
			abort();
		for (int i = 0; i < c->policy->ndomains; i++) {
			const struct policy_domain *d = c->policy->domains[i];

			if (d->recipients_file == NULL && !d->recipients_any)
				abort();
			if (d->percent_hack && !d->route_static)
				abort();
		}
		config_free(c);
	} else if (nerr == 0)
		abort();
	return 0;
}
