/* SPDX-License-Identifier: MIT */
/*
 * A program that loads libpython and runs no Python: argv[1] is the
 * library; with "finalize" as argv[2] it calls Py_Initialize and
 * Py_Finalize first.  Prints READY, then waits for a line on stdin.
 * Its runtime has no interpreter (tests/e2e/test_errors.py).
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	void *h = argc > 1 ? dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL) : NULL;
	char line[16];

	if (!h) {
		fprintf(stderr, "no_interp: %s\n", dlerror());
		return 1;
	}
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
