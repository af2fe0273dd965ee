/* SPDX-License-Identifier: MIT */
/*
 * CPython's allocator domains (RAW, MEM, OBJ), wrapped with
 * PyMem_GetAllocator/PyMem_SetAllocator.
 *
 * Why swapping is safe while other threads run (hazard 4): CPython calls a
 * domain as `_PyObject.malloc(_PyObject.ctx, n)`, two separate loads.  Our
 * struct keeps the ORIGINAL ctx, and our functions ignore the ctx they get
 * and call the saved original with its own.  So whatever mix of old and new
 * fields a thread loads, it calls a valid (function, ctx) pair: the
 * original's, or ours (which forwards), provided that each field is
 * written whole.  PyMem_SetAllocator does not promise that: Debian's 3.11
 * copies the struct with `rep movsl`, four bytes at a time, and a thread
 * that loads `_PyObject.free` between the two halves of the store calls
 * an address made of half of each pointer (a target died so, one stop in
 * a few thousand, with four threads allocating).  Hence the domains' own
 * structs are found in CPython's data (ma_pyalloc_locate, once, by the image of
 * ours after the first install), and every later swap writes them field by
 * field with aligned 8-byte stores.  Until they are found, a swap with the
 * other threads running (the watchdog's stop) is not done: ours stays in
 * place, idle, and the next swap with the threads stopped (ma_stop,
 * ma_start) puts the originals back.  A thread that loaded our function
 * just before the un-swap still gets a working wrapper: the payload is
 * never unloaded and the saved originals stay.
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
#include <link.h>

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
/* each domain's struct in CPython's data, once found (ma_pyalloc_locate) */
static struct py_alloc *dom_at[NDOM];

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

/*
 * Swap domain d from `from` (what it holds now) to v.  Where its struct is
 * known and holds `from`, field by field: one aligned 8-byte store each, so
 * that a thread reading a field sees the old function or the new one, never
 * half of each; ctx is the same in both (see above).  Otherwise through
 * PyMem_SetAllocator, whose copy may tear a pointer: only while the other
 * threads are stopped (!others_run); -EBUSY if they run.
 */
static int dom_write(int d, const struct py_alloc *from,
		     const struct py_alloc *v, int others_run)
{
	struct py_alloc *a = __atomic_load_n(&dom_at[d], __ATOMIC_ACQUIRE);

	if (a && __atomic_load_n(&a->ctx, __ATOMIC_RELAXED) == v->ctx &&
	    __atomic_load_n(&a->malloc, __ATOMIC_RELAXED) == from->malloc) {
		__atomic_store_n(&a->malloc, v->malloc, __ATOMIC_RELEASE);
		__atomic_store_n(&a->calloc, v->calloc, __ATOMIC_RELEASE);
		__atomic_store_n(&a->realloc, v->realloc, __ATOMIC_RELEASE);
		__atomic_store_n(&a->free, v->free, __ATOMIC_RELEASE);
		return 0;
	}
	if (others_run)
		return -EBUSY;
	set_alloc(d, (struct py_alloc *)v);
	return 0;
}

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
		dom_write(d, &cur, &w, 0);
		installed[d] = 1;
	}
	return 0;
}

void ma_pyalloc_restore(int others_run)
{
	for (int d = 0; d < NDOM; d++) {
		struct py_alloc cur;

		if (!installed[d])
			continue;
		get_alloc(d, &cur);
		if (cur.malloc != ours[d].malloc)
			continue; /* someone wrapped ours: leave it, idle */
		if (dom_write(d, &cur, &orig[d], others_run) == 0)
			installed[d] = 0;
	}
}

uint32_t ma_pyalloc_located(void)
{
	uint32_t bits = 0;

	for (int d = 0; d < NDOM; d++)
		if (__atomic_load_n(&dom_at[d], __ATOMIC_ACQUIRE))
			bits |= 1u << d;
	return bits;
}

int ma_pyalloc_installed(void)
{
	return installed[DOM_RAW] || installed[DOM_MEM] || installed[DOM_OBJ];
}

/* ------------------------------------------------------------------ */
/* Where the domains' structs are (dom_write) */

struct seg_scan {
	uintptr_t fn; /* an address in the module that holds the structs */
	uintptr_t lo[8], hi[8]; /* its writable segments */
	int n;
};

static int find_segments(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct seg_scan *sc = arg;
	int here = 0;

	(void)size;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;

		if (ph->p_type == PT_LOAD && sc->fn >= lo &&
		    sc->fn < lo + ph->p_memsz)
			here = 1;
	}
	if (!here)
		return 0;
	for (int i = 0; i < info->dlpi_phnum && sc->n < 8; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W))
			continue;
		sc->lo[sc->n] = info->dlpi_addr + ph->p_vaddr;
		sc->hi[sc->n] = sc->lo[sc->n] + ph->p_memsz;
		sc->n++;
	}
	return 1;
}

/*
 * The structs live in the data of the module that defines
 * PyMem_SetAllocator (obmalloc.c's statics up to 3.11, _PyRuntime's from
 * 3.12).  While ours is installed, a domain's struct is the only place
 * there holding our four functions in a row: a domain is located when
 * exactly one such place exists (a copy elsewhere, e.g. a tool that saved
 * ours, leaves it unlocated); a domain that does not hold ours now (a
 * tool wrapped it) is not looked for.  Only reads; on the watchdog,
 * threads running: about 1.5 MB of Debian's python3 data, once per
 * process.  It reads whatever lies there, the gaps between variables
 * included: not for AddressSanitizer (unit tests).
 */
__attribute__((no_sanitize_address)) void ma_pyalloc_locate(void)
{
	struct seg_scan sc = { .fn = (uintptr_t)set_alloc };
	struct py_alloc *found[NDOM] = { NULL };
	int count[NDOM] = { 0 }, look[NDOM] = { 0 }, want = 0;

	if (!get_alloc || !set_alloc)
		return;
	for (int d = 0; d < NDOM; d++) {
		struct py_alloc cur;

		if (!installed[d] || dom_at[d])
			continue;
		get_alloc(d, &cur);
		look[d] = cur.malloc == ours[d].malloc;
		want |= look[d];
	}
	if (!want)
		return;
	dl_iterate_phdr(find_segments, &sc);
	for (int i = 0; i < sc.n; i++) {
		uintptr_t a = (sc.lo[i] + 7) & ~(uintptr_t)7;

		for (; a + sizeof(struct py_alloc) <= sc.hi[i]; a += 8) {
			const struct py_alloc *p = (const struct py_alloc *)a;

			for (int d = 0; d < NDOM; d++) {
				/* ours[] itself, where the payload is
				 * compiled into the module (unit tests) */
				if (!look[d] || p == &ours[d] ||
				    p->malloc != ours[d].malloc ||
				    p->calloc != ours[d].calloc ||
				    p->realloc != ours[d].realloc ||
				    p->free != ours[d].free)
					continue;
				found[d] = (struct py_alloc *)a;
				count[d]++;
			}
		}
	}
	for (int d = 0; d < NDOM; d++)
		if (count[d] == 1) /* look[d]: not located before */
			__atomic_store_n(&dom_at[d], found[d],
					 __ATOMIC_RELEASE);
}
