/* SPDX-License-Identifier: MIT */
/*
 * A program that loads libpython and runs no Python: argv[1] is the
 * library; with "finalize" as argv[2] it calls Py_Initialize and
 * Py_Finalize first.  Prints READY, then waits for a line on stdin.
 * Its runtime has no interpreter (tests/e2e/test_errors.py).
 *
 * With "late SECONDS CODE" as argv[2..4] it is a Python that starts
 * slowly: libpython loaded, no interpreter for SECONDS, then
 * Py_Initialize and CODE run (tests/e2e/test_pools.py: attach --children
 * finds it before its interpreter exists).
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int late(void *h, const char *secs, const char *code)
{
	void (*init)(void) = (void (*)(void))dlsym(h, "Py_Initialize");
	int (*run)(const char *) =
		(int (*)(const char *))dlsym(h, "PyRun_SimpleString");
	double s = strtod(secs, NULL);
	struct timespec ts = { .tv_sec = (time_t)s,
			       .tv_nsec = (long)((s - (time_t)s) * 1e9) };

	if (!init || !run)
		return 1;
	nanosleep(&ts, NULL);
	init();
	return run(code) ? 1 : 0;
}

int main(int argc, char **argv)
{
	void *h = argc > 1 ? dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL) : NULL;
	char line[16];

	if (!h) {
		fprintf(stderr, "no_interp: %s\n", dlerror());
		return 1;
	}
	if (argc > 4 && !strcmp(argv[2], "late"))
		return late(h, argv[3], argv[4]);
	if (argc > 2 && !strcmp(argv[2], "finalize")) {
		void (*init)(void) = (void (*)(void))dlsym(h, "Py_Initialize");
		void (*fini)(void) = (void (*)(void))dlsym(h, "Py_Finalize");

		if (!init || !fini)
			return 1;
		init();
		fini();
	}
	printf("READY\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 0;
	return 0;
}
