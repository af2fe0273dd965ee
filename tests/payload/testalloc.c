/* SPDX-License-Identifier: MIT */
/*
 * A library for the payload tests: each function calls the allocator
 * through this library's own PLT/GOT, which the payload patches, so a test
 * target (via ctypes) can make native allocations of known sizes, and read
 * what its GOT holds for malloc (a GLOB_DAT slot: the address taken here).
 */
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

void *ma_test_malloc(size_t n)
{
	return malloc(n);
}

void *ma_test_calloc(size_t n, size_t m)
{
	return calloc(n, m);
}

void *ma_test_realloc(void *p, size_t n)
{
	return realloc(p, n);
}

void ma_test_free(void *p)
{
	free(p);
}

void *ma_test_memalign(size_t a, size_t n)
{
	void *p = NULL;

	return posix_memalign(&p, a, n) ? NULL : p;
}

void *ma_test_mmap(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

int ma_test_munmap(void *p, size_t n)
{
	return munmap(p, n);
}

/* What the GOT holds for malloc right now */
void *ma_test_malloc_addr(void)
{
	void *(*volatile f)(size_t) = malloc;

	return (void *)f;
}

/* Allocate and free in a loop for ms milliseconds (called from Python
 * threads through ctypes, which releases the GIL: these are the native
 * threads that race with the payload's stop).  Returns the operations done. */
unsigned long ma_test_churn(unsigned int ms)
{
	struct timespec t0, t;
	unsigned long n = 0;
	void *keep[64] = { 0 };

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		for (int i = 0; i < 256; i++, n++) {
			unsigned int k = (unsigned int)(n * 2654435761u) % 64;

			if (keep[k]) {
				if (n % 3 == 0)
					keep[k] =
						realloc(keep[k], 64 + n % 4000);
				else {
					free(keep[k]);
					keep[k] = NULL;
				}
			} else {
				keep[k] = n % 5 ? malloc(16 + n % 2000)
						: calloc(4, 16 + n % 500);
			}
			if (n % 997 == 0) {
				void *p = mmap(
					NULL, 65536, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

				if (p != MAP_FAILED)
					munmap(p, 65536);
			}
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 +
			    (t.tv_nsec - t0.tv_nsec) / 1000000 >=
		    (long)ms)
			break;
	}
	for (int k = 0; k < 64; k++)
		free(keep[k]);
	return n;
}
