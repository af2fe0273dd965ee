/* SPDX-License-Identifier: MIT */
#include "teststep.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int ma_step_on;

static struct {
	int log;
	char stop_at[128];
	unsigned long stop_count;
	int tstp; /* stop with a Ctrl-Z (SIGTSTP to the process) */
	/* passages so far, per step name (a small open table: there are a
	 * few dozen names) */
	struct {
		const char *name;
		unsigned long n;
	} seen[256];
} st;

void ma_step_init(void)
{
	const char *log = getenv("MEMATTACH_TEST_STEP_LOG");
	const char *at = getenv("MEMATTACH_TEST_STOP_AT");

	const char *sig = getenv("MEMATTACH_TEST_STOP_SIGNAL");

	st.log = log && *log && strcmp(log, "0");
	st.tstp = sig && !strcmp(sig, "TSTP");
	if (at && *at) {
		const char *hash = strchr(at, '#');
		size_t len = hash ? (size_t)(hash - at) : strlen(at);

		if (len >= sizeof(st.stop_at))
			len = sizeof(st.stop_at) - 1;
		memcpy(st.stop_at, at, len);
		st.stop_at[len] = '\0';
		st.stop_count = hash ? strtoul(hash + 1, NULL, 10) : 1;
		if (!st.stop_count)
			st.stop_count = 1;
	}
	ma_step_on = st.log || st.stop_at[0];
}

static unsigned long count(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(st.seen) / sizeof(st.seen[0]); i++) {
		if (!st.seen[i].name) {
			/* names may be built in a caller's buffer */
			st.seen[i].name = strdup(name);
			if (!st.seen[i].name)
				return 0;
			break;
		}
		if (!strcmp(st.seen[i].name, name))
			break;
	}
	if (i == sizeof(st.seen) / sizeof(st.seen[0]))
		return 0;
	return ++st.seen[i].n;
}

void ma_step_slow(const char *name)
{
	unsigned long k = count(name);
	char line[200];
	int n;

	if (st.log) {
		n = snprintf(line, sizeof(line), "memattach: step %s #%lu\n",
			     name, k);
		/* write(2), not stdio: a step may sit between a fork and an
		 * exec one day, and stderr may be a pipe the test reads */
		if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0)
			return;
	}
	if (st.stop_at[0] && k == st.stop_count && !strcmp(name, st.stop_at)) {
		n = snprintf(line, sizeof(line),
			     "memattach: test stop at step %s #%lu\n", name, k);
		if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0)
			return;
		if (st.tstp)
			kill(getpid(), SIGTSTP);
		else
			raise(SIGSTOP);
	}
}
