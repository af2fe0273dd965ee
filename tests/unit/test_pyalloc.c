/* SPDX-License-Identifier: MIT */
/*
 * The payload's swaps of CPython's allocator domains (injector/pyalloc.c)
 * while other threads read them.  Debian's python3.11 copies a domain's
 * struct in PyMem_SetAllocator with `rep movsl`, four bytes at a time: a
 * thread loading a function pointer between the two halves of its store
 * calls an address made of half of each (a target died so).  Here CPython's
 * three domains are structs of this test's data, PyMem_SetAllocator is a
 * copy four bytes at a time that waits, after each low half, until the
 * readers have looked at the half-written pointer, and reader threads check
 * that every function pointer they load is the original or ours, whole.
 *
 * The payload's source is compiled in: the swaps are the target's.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../injector/util.c"
#include "../../injector/sample.c"
#include "../../injector/pyalloc.c"

__thread struct ma_tls ma_tls;
uint32_t ma_enabled;

/* record.c's: nothing is recorded here (ma_enabled is 0) */
void ma_rec_alloc(struct ma_tls *t, const void *p, size_t size, int kind)
{
	(void)t, (void)p, (void)size, (void)kind;
}

void ma_rec_free(struct ma_tls *t, const void *p, size_t size, int kind)
{
	(void)t, (void)p, (void)size, (void)kind;
}

void ma_rec_alloc_gil(struct ma_tls *t, const void *p, size_t size, int kind)
{
	(void)t, (void)p, (void)size, (void)kind;
}

void ma_rec_free_gil(struct ma_tls *t, const void *p, int kind)
{
	(void)t, (void)p, (void)kind;
}

/* ------------------------------------------------------------------ */
/* CPython's side */

/*
 * The originals: addresses in libc, so that their upper halves differ from
 * ours (compiled into this executable), as _PyObject_Free's in python3's
 * text and ours in the payload's mapping do.  Never called: nothing
 * allocates through these domains here.
 */
#define o_malloc  ((void *(*)(void *, size_t))(uintptr_t)&malloc)
#define o_calloc  ((void *(*)(void *, size_t, size_t))(uintptr_t)&calloc)
#define o_realloc ((void *(*)(void *, void *, size_t))(uintptr_t)&realloc)
#define o_free	  ((void (*)(void *, void *))(uintptr_t)&free)

/* Up to 3.11 MEM and OBJ are both pymalloc: identical images */
static struct py_alloc original;
static struct py_alloc domain[NDOM];
/* a copy of a domain elsewhere in the data (a tool's saved allocator):
 * external, so that it stays although nothing here reads it */
struct py_alloc ma_test_decoy;

static uint64_t reads; /* reader iterations, all readers */
static uint64_t torn;  /* pointers read that were neither function */
static int readers_stop;
static int set_calls;

static void fake_get(int d, struct py_alloc *out)
{
	memcpy(out, &domain[d], sizeof(*out));
}

/* Wait until the readers made two more passes (at most ~50 ms) */
static int readers_running;

static void let_readers_look(void)
{
	uint64_t r0 = __atomic_load_n(&reads, __ATOMIC_ACQUIRE);

	if (!readers_running)
		return;
	for (long i = 0; i < 50000000; i++) {
		if (__atomic_load_n(&reads, __ATOMIC_ACQUIRE) >= r0 + 2)
			return;
		__builtin_ia32_pause();
	}
}

/* PyMem_SetAllocator as Debian's 3.11 compiles it, with the window open */
static void fake_set(int d, struct py_alloc *in)
{
	volatile uint32_t *dst = (volatile uint32_t *)&domain[d];
	const uint32_t *src = (const uint32_t *)in;

	for (int i = 0; i < 10; i++) {
		dst[i] = src[i];
		if (!(i & 1) && dst[i + 1] != src[i + 1])
			let_readers_look();
	}
	set_calls++;
}

static int valid(const void *v, const void *orig_fn, const void *ours_fn)
{
	return v == orig_fn || v == ours_fn;
}

static void *reader(void *arg)
{
	(void)arg;
	while (!__atomic_load_n(&readers_stop, __ATOMIC_ACQUIRE)) {
		for (int d = 0; d < NDOM; d++) {
			struct py_alloc *a = &domain[d];
			void *m = __atomic_load_n(&a->malloc, __ATOMIC_RELAXED);
			void *c = __atomic_load_n(&a->calloc, __ATOMIC_RELAXED);
			void *r =
				__atomic_load_n(&a->realloc, __ATOMIC_RELAXED);
			void *f = __atomic_load_n(&a->free, __ATOMIC_RELAXED);

			if (!valid(m, o_malloc, ours[d].malloc) ||
			    !valid(c, o_calloc, ours[d].calloc) ||
			    !valid(r, o_realloc, ours[d].realloc) ||
			    !valid(f, o_free, ours[d].free))
				__atomic_add_fetch(&torn, 1, __ATOMIC_RELAXED);
		}
		__atomic_add_fetch(&reads, 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

static pthread_t readers[2];

static void readers_start(void)
{
	__atomic_store_n(&readers_stop, 0, __ATOMIC_RELEASE);
	for (int i = 0; i < 2; i++)
		cr_assert(pthread_create(&readers[i], NULL, reader, NULL) == 0);
	readers_running = 1;
}

static void readers_join(void)
{
	__atomic_store_n(&readers_stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 2; i++)
		pthread_join(readers[i], NULL);
	readers_running = 0;
}

/* ma_start's install, with the other threads stopped (no readers) */
static void install(void)
{
	char msg[128] = "";

	if (!original.malloc) {
		original = (struct py_alloc){ NULL, o_malloc, o_calloc,
					      o_realloc, o_free };
		for (int d = 0; d < NDOM; d++)
			domain[d] = original;
	}
	get_alloc = fake_get;
	set_alloc = fake_set;
	cr_assert(ma_pyalloc_install(msg, sizeof(msg)) == 0, "%s", msg);
	for (int d = 0; d < NDOM; d++)
		cr_assert(domain[d].malloc == ours[d].malloc, "domain %d", d);
}

#define CYCLES 300

/* Located once, every later swap is whole pointers, threads running */
Test(pyalloc, swaps_with_threads_running_write_whole_pointers)
{
	install();
	ma_pyalloc_locate();
	for (int d = 0; d < NDOM; d++)
		cr_expect(dom_at[d] == &domain[d], "domain %d located at %p", d,
			  (void *)dom_at[d]);
	set_calls = 0;
	readers_start();
	for (int i = 0; i < CYCLES; i++) {
		char msg[128] = "";

		ma_pyalloc_restore(1); /* the watchdog's stop */
		cr_assert(!ma_pyalloc_installed(), "cycle %d: restored", i);
		cr_assert(ma_pyalloc_install(msg, sizeof(msg)) == 0);
	}
	readers_join();
	cr_expect(torn == 0, "%lu torn pointers read in %lu passes",
		  (unsigned long)torn, (unsigned long)reads);
	cr_expect(set_calls == 0, "PyMem_SetAllocator called %d times",
		  set_calls);
	ma_pyalloc_restore(1);
	cr_expect(memcmp(&domain[DOM_OBJ], &original, sizeof(original)) == 0);
}

/* The control: the same swaps through PyMem_SetAllocator tear */
Test(pyalloc, setallocator_with_threads_running_tears)
{
	install();
	readers_start();
	for (int i = 0; i < 20; i++) {
		ma_pyalloc_restore(0); /* not located: PyMem_SetAllocator */
		install();
	}
	readers_join();
	cr_expect(torn > 0,
		  "no torn pointer read in %lu passes: the test "
		  "cannot see a tear",
		  (unsigned long)reads);
}

/*
 * Not located (a second copy of ours in the data, or a tool's wrapper over
 * ours when the scan ran): a stop with the threads running leaves ours in
 * place, idle; one with the threads stopped puts the original back.
 */
Test(pyalloc, unlocated_domain_stays_ours_until_threads_stop)
{
	install();
	ma_test_decoy = domain[DOM_OBJ];
	/* MEM wrapped by another tool, which saved ours */
	struct py_alloc tool = { NULL, o_malloc, o_calloc, o_realloc, o_free };
	struct py_alloc saved = domain[DOM_MEM];

	tool.ctx = &tool;
	domain[DOM_MEM] = tool;
	ma_pyalloc_locate();
	cr_expect(dom_at[DOM_RAW] == &domain[DOM_RAW]);
	cr_expect(dom_at[DOM_MEM] == NULL,
		  "a wrapped domain is not looked for");
	cr_expect(dom_at[DOM_OBJ] == NULL, "two copies: not located");
	set_calls = 0;
	readers_start();
	ma_pyalloc_restore(1);
	readers_join();
	cr_expect(torn == 0);
	cr_expect(set_calls == 0, "no PyMem_SetAllocator, threads running");
	cr_expect(domain[DOM_RAW].malloc == o_malloc, "RAW restored");
	cr_expect(domain[DOM_OBJ].malloc == ours[DOM_OBJ].malloc,
		  "OBJ stays ours");
	cr_expect(domain[DOM_MEM].ctx == &tool, "MEM stays the tool's");
	/* the tool stops, putting ours back */
	domain[DOM_MEM] = saved;
	ma_pyalloc_restore(1);
	cr_expect(domain[DOM_MEM].malloc == ours[DOM_MEM].malloc);
	ma_pyalloc_restore(0);
	cr_expect(set_calls == 2, "threads stopped: PyMem_SetAllocator");
	for (int d = 0; d < NDOM; d++)
		cr_expect(memcmp(&domain[d], &original, sizeof(original)) == 0,
			  "domain %d back to the original", d);
	cr_expect(!ma_pyalloc_installed());
}
