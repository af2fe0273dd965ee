/* SPDX-License-Identifier: MIT */
/*
 * CPython's allocator domains (RAW, MEM, OBJ), wrapped with
 * PyMem_GetAllocator/PyMem_SetAllocator.
 *
 * Why swapping is safe while other threads run (hazard 4): CPython calls a
 * domain as `_PyObject.malloc(_PyObject.ctx, n)`, two separate loads, and
 * PyMem_SetAllocator copies the struct word by word.  Our struct keeps the
 * ORIGINAL ctx, and our functions ignore the ctx they get and call the
 * saved original with its own.  So whatever mix of old and new words a
 * thread loads, it calls a valid (function, ctx) pair: the original's, or
 * ours (which forwards).  Un-swapping on stop is safe for the same reason,
 * and a thread that loaded our function just before the un-swap still gets
 * a working wrapper: the payload is never unloaded and the saved originals
 * stay.
 *
 * Nesting: pymalloc serves large requests from PyMem_RawMalloc, which calls
 * malloc through the PLT.  The outermost hook records and sets the guard;
 * the inner ones pass through: one record per allocation, with the size
 * Python asked for and the domain's kind.
 *
 * If another tool wrapped a domain on top of ours while we tracked (e.g.
 * tracemalloc started), we cannot take ours out of its chain: it stays,
 * passing through while idle, and is simply recording again in the next
 * session without being installed twice.
 */
#include <dlfcn.h>
#include <errno.h>

#include "internal.h"

/* PyMemAllocatorEx: identical in 3.8 to 3.13 */
struct py_alloc {
	void *ctx;
	void *(*malloc)(void *ctx, size_t size);
	void *(*calloc)(void *ctx, size_t nelem, size_t elsize);
	void *(*realloc)(void *ctx, void *ptr, size_t new_size);
	void (*free)(void *ctx, void *ptr);
};

enum { DOM_RAW = 0, DOM_MEM = 1, DOM_OBJ = 2, NDOM = 3 };

static struct py_alloc orig[NDOM];
static int installed[NDOM]; /* ours is in place, maybe under another's */
static void (*get_alloc)(int, struct py_alloc *);
static void (*set_alloc)(int, struct py_alloc *);

static const uint8_t kinds[NDOM] = { MA_KIND_PYMEM_RAW, MA_KIND_PYMEM,
				     MA_KIND_PYOBJ };

/* MEM and OBJ are called with the GIL held: their short-lived small blocks
 * are counted rather than recorded one by one (record.c) */
static inline __attribute__((always_inline)) void
rec_alloc(int d, struct ma_tls *t, const void *p, size_t n)
{
	if (d == DOM_RAW)
		ma_rec_alloc(t, p, n, kinds[d]);
	else
		ma_rec_alloc_gil(t, p, n, kinds[d]);
}

static inline __attribute__((always_inline)) void
rec_free(int d, struct ma_tls *t, const void *p)
{
	if (d == DOM_RAW)
		ma_rec_free(t, p, 0, kinds[d]);
	else
		ma_rec_free_gil(t, p, kinds[d]);
}

static inline __attribute__((always_inline)) void *w_malloc(int d, size_t n)
{
	struct ma_tls *t = &ma_tls;
	void *p;

	if (t->guard || !ma_on())
		return orig[d].malloc(orig[d].ctx, n);
	t->guard = 1;
	p = orig[d].malloc(orig[d].ctx, n);
	if (ma_likely(p != NULL) && !ma_samp_skip_alloc(t, n)) {
		MA_ERRNO_SAVE(e);

		rec_alloc(d, t, p, n);
		MA_ERRNO_RESTORE(e);
	}
	t->guard = 0;
	return p;
}

static inline __attribute__((always_inline)) void *w_calloc(int d, size_t n,
							    size_t m)
{
	struct ma_tls *t = &ma_tls;
	void *p;

	if (t->guard || !ma_on())
		return orig[d].calloc(orig[d].ctx, n, m);
	t->guard = 1;
	p = orig[d].calloc(orig[d].ctx, n, m);
	if (p && !ma_samp_skip_alloc(t, (uint64_t)n * m)) {
		MA_ERRNO_SAVE(e);

		rec_alloc(d, t, p, n * m);
		MA_ERRNO_RESTORE(e);
	}
	t->guard = 0;
	return p;
}

static inline __attribute__((always_inline)) void *w_realloc(int d, void *p,
							     size_t n)
{
	struct ma_tls *t = &ma_tls;
	int rec_old, rec_new;
	void *q;
	int e;

	if (t->guard || !ma_on())
		return orig[d].realloc(orig[d].ctx, p, n);
	/* sampled tracking: see realloc_common in hooks.c */
	rec_old = p && !ma_samp_skip_free(p);
	rec_new = !ma_samp_skip_alloc(t, n);
	t->guard = 1;
	if (!rec_old && !rec_new) {
		q = orig[d].realloc(orig[d].ctx, p, n);
		t->guard = 0;
		return q;
	}
	e = errno;
	if (rec_old)
		rec_free(d, t, p);
	errno = e;
	q = orig[d].realloc(orig[d].ctx, p, n);
	e = errno;
	if (q && rec_new)
		rec_alloc(d, t, q, n);
	else if (!q && rec_old)
		/* failed: the old block lives on (size unknown here) */
		rec_alloc(d, t, p, 0);
	errno = e;
	t->guard = 0;
	return q;
}

static inline __attribute__((always_inline)) void w_free(int d, void *p)
{
	struct ma_tls *t = &ma_tls;

	if (!p || t->guard || !ma_on() || ma_samp_skip_free(p)) {
		orig[d].free(orig[d].ctx, p);
		return;
	}
	t->guard = 1;
	{
		MA_ERRNO_SAVE(e);

		rec_free(d, t, p);
		MA_ERRNO_RESTORE(e);
	}
	orig[d].free(orig[d].ctx, p);
	t->guard = 0;
}

/* Each domain's functions: the fast half of a sampled session's common
 * case (ma_samp_pass, internal.h), then the full half above, out of line so
 * that the fast half needs no frame of its own */
#define DOMAIN(D, sfx)                                                         \
	static __attribute__((noinline)) void *sfx##_malloc_full(size_t n)     \
	{                                                                      \
		return w_malloc(D, n);                                         \
	}                                                                      \
	static __attribute__((noinline)) void *sfx##_calloc_full(size_t n,     \
								 size_t m)     \
	{                                                                      \
		return w_calloc(D, n, m);                                      \
	}                                                                      \
	static __attribute__((noinline)) void sfx##_free_full(void *p)         \
	{                                                                      \
		w_free(D, p);                                                  \
	}                                                                      \
	static void *sfx##_malloc(void *ctx, size_t n)                         \
	{                                                                      \
		struct ma_tls *t = &ma_tls;                                    \
		void *p;                                                       \
                                                                               \
		if (!ma_samp_pass(t, n))                                       \
			return sfx##_malloc_full(n);                           \
		t->guard = 1;                                                  \
		p = orig[D].malloc(orig[D].ctx, n);                            \
		t->guard = 0;                                                  \
		return p;                                                      \
	}                                                                      \
	static void *sfx##_calloc(void *ctx, size_t n, size_t m)               \
	{                                                                      \
		struct ma_tls *t = &ma_tls;                                    \
		void *p;                                                       \
                                                                               \
		if (!ma_samp_pass(t, (uint64_t)n * m))                         \
			return sfx##_calloc_full(n, m);                        \
		t->guard = 1;                                                  \
		p = orig[D].calloc(orig[D].ctx, n, m);                         \
		t->guard = 0;                                                  \
		return p;                                                      \
	}                                                                      \
	static void *sfx##_realloc(void *ctx, void *p, size_t n)               \
	{                                                                      \
		return w_realloc(D, p, n);                                     \
	}                                                                      \
	static void sfx##_free(void *ctx, void *p)                             \
	{                                                                      \
		if (!ma_samp_skip_free(p))                                     \
			sfx##_free_full(p);                                    \
		else                                                           \
			orig[D].free(orig[D].ctx, p);                          \
	}

DOMAIN(DOM_RAW, raw)
DOMAIN(DOM_MEM, mem)
DOMAIN(DOM_OBJ, obj)

static const struct py_alloc ours[NDOM] = {
	{ NULL, raw_malloc, raw_calloc, raw_realloc, raw_free },
	{ NULL, mem_malloc, mem_calloc, mem_realloc, mem_free },
	{ NULL, obj_malloc, obj_calloc, obj_realloc, obj_free },
};

int ma_pyalloc_install(char *msg, size_t len)
{
	if (!get_alloc || !set_alloc) {
		get_alloc = (__typeof__(get_alloc))dlsym(RTLD_DEFAULT,
							 "PyMem_GetAllocator");
		set_alloc = (__typeof__(set_alloc))dlsym(RTLD_DEFAULT,
							 "PyMem_SetAllocator");
	}
	if (!get_alloc || !set_alloc) {
		ma_fmt(msg, len,
		       "no PyMem_SetAllocator here: Python allocations "
		       "are seen as malloc only");
		return -ENOENT;
	}
	for (int d = 0; d < NDOM; d++) {
		struct py_alloc cur, w;

		get_alloc(d, &cur);
		if (cur.malloc == ours[d].malloc) {
			/* still in place from an earlier session */
			installed[d] = 1;
			continue;
		}
		if (installed[d])
			continue; /* chained under another tool's: still runs */
		if (!cur.malloc || !cur.calloc || !cur.realloc || !cur.free)
			continue;
		orig[d] = cur;
		w = ours[d];
		w.ctx = cur.ctx;
		/* orig[] is complete before any thread can reach a wrapper:
		 * the swap below is a later store (x86 keeps store order) */
		__atomic_thread_fence(__ATOMIC_RELEASE);
		set_alloc(d, &w);
		installed[d] = 1;
	}
	return 0;
}

void ma_pyalloc_restore(void)
{
	for (int d = 0; d < NDOM; d++) {
		struct py_alloc cur;

		if (!installed[d])
			continue;
		get_alloc(d, &cur);
		if (cur.malloc != ours[d].malloc)
			continue; /* someone wrapped ours: leave it, idle */
		set_alloc(d, &orig[d]);
		installed[d] = 0;
	}
}

int ma_pyalloc_installed(void)
{
	return installed[DOM_RAW] || installed[DOM_MEM] || installed[DOM_OBJ];
}
