/* SPDX-License-Identifier: MIT */
/* A pure C thread that allocates without ever holding the GIL: blocks of
 * 4242 bytes, once a millisecond.  Loaded with ctypes by test targets. */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static void *alloc_loop(void *arg)
{
	for (;;) {
		volatile char *p = malloc(4242);

		if (p)
			p[0] = 1;
		free((void *)p);
		usleep(1000);
	}
	return arg;
}

int ma_native_alloc_start(void)
{
	pthread_t t;

	return pthread_create(&t, NULL, alloc_loop, NULL);
}

/* malloc/free without pause, forever, on the calling thread (called from
 * Python through ctypes, which releases the GIL): the thread is inside
 * malloc or free, holding its arena's lock, most of the time (the sizes are
 * above the tcache's, which would need no lock) */
void ma_native_alloc_tight_run(void)
{
	for (;;) {
		volatile char *p = malloc(2048 + (size_t)(rand() & 4095));

		if (p)
			p[0] = 1;
		free((void *)p);
	}
}
