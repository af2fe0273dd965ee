/* SPDX-License-Identifier: MIT */
/*
 * The real allocator functions, and the hooks the GOT slots are pointed to.
 *
 * Hazard 7: Debian's /usr/bin/python3.11 is a non-PIE executable that takes
 * the address of malloc and free, so it exports them with the address of
 * its own PLT stubs ("canonical PLT entries"), and every reference to
 * malloc by address, dlsym(RTLD_DEFAULT, "malloc") included, lands on that
 * stub, which jumps through the very GOT slot we patch.  Calling that stub
 * (what the libraries' slots held, or malloc by name) from a hook would
 * recurse forever.  So the
 * hooks only call functions resolved here: the global scope's definition
 * when it is a real one (an LD_PRELOADed jemalloc must keep serving its own
 * blocks); when it is the executable's stub, what the executable's own GOT
 * slot resolved to (the same jemalloc, or libc); else libc's own, from
 * libc's handle.
 *
 * Every hook: pass straight through when nested (guard) or idle; else set
 * the guard, call the real function, record with errno preserved.  Frees are
 * recorded before the call that frees: once the block is free another
 * thread may get the same address, and its ALLOC must come after our FREE
 * in the ring (reservation order is ring order).
 */
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

struct ma_real ma_real;

/* ------------------------------------------------------------------ */
/* Resolution */

/* p is a PLT stub standing for an undefined symbol (canonical PLT entry) */
static int is_plt_stub(void *p)
{
	const ElfW(Sym) *sym = NULL;
	Dl_info info;

	if (!dladdr1(p, &info, (void **)&sym, RTLD_DL_SYMENT))
		return 1; /* in no module: do not trust it */
	return sym && sym->st_shndx == SHN_UNDEF;
}

static void *resolve_one(void *libc, const char *name)
{
	void *p = dlsym(RTLD_DEFAULT, name);

	if (p && !ma_in_payload(p) && !is_plt_stub(p))
		return p;
	/* the executable's stub jumps through its GOT slot: what that slot
	 * holds (before we patch it) is what the whole process calls,
	 * e.g. an LD_PRELOADed jemalloc's malloc, not necessarily libc's */
	if (p && !ma_in_payload(p)) {
		void *q = ma_exe_got_target(name);

		if (q && !ma_in_payload(q) && !is_plt_stub(q))
			return q;
	}
	p = dlsym(libc, name);
	if (p && ma_in_payload(p))
		return NULL;
	return p;
}

int ma_real_resolve(char *msg, size_t len)
{
	void *libc = dlopen("libc.so.6", RTLD_NOLOAD | RTLD_LAZY);
	struct ma_real r;

	if (!libc) {
		ma_fmt(msg, len, "libc.so.6 is not loaded");
		return -ENOENT;
	}
#define R(f) r.f = (__typeof__(r.f))resolve_one(libc, #f)
	R(malloc);
	R(calloc);
	R(realloc);
	R(reallocarray);
	R(free);
	R(posix_memalign);
	R(aligned_alloc);
	R(memalign);
	R(valloc);
	R(pvalloc);
	R(malloc_usable_size);
	R(mmap);
	R(mmap64);
	R(munmap);
	R(mremap);
	R(dlopen);
	R(dlmopen);
	R(fork);
	R(_Fork);
#undef R
	/* the handle is a reference on libc: drop it (libc stays, of course) */
	dlclose(libc);
	if (!r.malloc || !r.calloc || !r.realloc || !r.free || !r.mmap ||
	    !r.munmap || !r.mremap || !r.dlopen || !r.fork) {
		ma_fmt(msg, len, "cannot resolve libc's allocator functions");
		return -ENOENT;
	}
	/* optional ones fall back so that a hook never calls NULL */
	if (!r.mmap64)
		r.mmap64 = r.mmap;
	ma_real = r;
	return 0;
}

/* ------------------------------------------------------------------ */
/* malloc family */

static __attribute__((noinline)) void *hk_malloc_full(size_t n)
{
	struct ma_tls *t = &ma_tls;
	void *p;

	if (t->guard || !ma_on())
		return ma_real.malloc(n);
	t->guard = 1;
	p = ma_real.malloc(n);
	if (p && !ma_samp_skip_alloc(t, n)) {
		MA_ERRNO_SAVE(e);

		ma_rec_alloc(t, p, n, MA_KIND_MALLOC);
		MA_ERRNO_RESTORE(e);
	}
	t->guard = 0;
	return p;
}

static __attribute__((noinline)) void *hk_calloc_full(size_t n, size_t m)
{
	struct ma_tls *t = &ma_tls;
	void *p;

	if (t->guard || !ma_on())
		return ma_real.calloc(n, m);
	t->guard = 1;
	p = ma_real.calloc(n, m);
	if (p && !ma_samp_skip_alloc(t, (uint64_t)n * m)) {
		int e = errno;

		ma_rec_alloc(t, p, n * m, MA_KIND_CALLOC);
		errno = e;
	}
	t->guard = 0;
	return p;
}

static __attribute__((noinline)) void hk_free_full(void *p)
{
	struct ma_tls *t = &ma_tls;

	if (!p || t->guard || !ma_on() || ma_samp_skip_free(p)) {
		ma_real.free(p);
		return;
	}
	t->guard = 1;
	{
		MA_ERRNO_SAVE(e);

		ma_rec_free(t, p, 0, MA_KIND_MALLOC);
		MA_ERRNO_RESTORE(e);
	}
	ma_real.free(p);
	t->guard = 0;
}

/* The fast halves: a sampled session's common case (ma_samp_pass) */
static void *hk_malloc(size_t n)
{
	struct ma_tls *t = &ma_tls;
	void *p;

	if (!ma_samp_pass(t, n))
		return hk_malloc_full(n);
	t->guard = 1;
	p = ma_real.malloc(n);
	t->guard = 0;
	return p;
}

static void *hk_calloc(size_t n, size_t m)
{
	struct ma_tls *t = &ma_tls;
	void *p;

	if (!ma_samp_pass(t, (uint64_t)n * m))
		return hk_calloc_full(n, m);
	t->guard = 1;
	p = ma_real.calloc(n, m);
	t->guard = 0;
	return p;
}

static void hk_free(void *p)
{
	if (!ma_samp_skip_free(p))
		hk_free_full(p);
	else
		ma_real.free(p);
}

/* Size of a block that a failed realloc left in place, for the ALLOC that
 * undoes our early FREE */
static size_t usable(void *p)
{
	return ma_real.malloc_usable_size ? ma_real.malloc_usable_size(p) : 0;
}

/* Sampled tracking: the old block is recorded freed only when it may be a
 * sampled one, the new one only when sampled; a realloc that neither
 * concerns is a plain call */
static void *realloc_common(struct ma_tls *t, void *p, size_t n, size_t m,
			    int array)
{
	size_t size = n;
	int overflow = array && __builtin_mul_overflow(n, m, &size);
	int rec_old = p && !ma_samp_skip_free(p);
	int rec_new = !ma_samp_skip_alloc(t, size);
	void *q;
	int e;

	t->guard = 1;
	if (!rec_old && !rec_new) {
		q = array ? ma_real.reallocarray(p, n, m)
			  : ma_real.realloc(p, n);
		t->guard = 0;
		return q;
	}
	e = errno;
	if (rec_old)
		ma_rec_free(t, p, 0, MA_KIND_MALLOC);
	errno = e;
	q = array ? ma_real.reallocarray(p, n, m) : ma_real.realloc(p, n);
	e = errno;
	if (q && rec_new)
		ma_rec_alloc(t, q, size, MA_KIND_REALLOC);
	else if (!q && rec_old && (overflow || size))
		/* failed (size 0 frees instead): the old block is still
		 * there, undo our early FREE */
		ma_rec_alloc(t, p, usable(p), MA_KIND_REALLOC);
	errno = e;
	t->guard = 0;
	return q;
}

static void *hk_realloc(void *p, size_t n)
{
	struct ma_tls *t = &ma_tls;

	if (t->guard || !ma_on())
		return ma_real.realloc(p, n);
	return realloc_common(t, p, n, 0, 0);
}

static void *hk_reallocarray(void *p, size_t n, size_t m)
{
	struct ma_tls *t = &ma_tls;

	if (!ma_real.reallocarray) {
		errno = ENOSYS;
		return NULL;
	}
	if (t->guard || !ma_on())
		return ma_real.reallocarray(p, n, m);
	return realloc_common(t, p, n, m, 1);
}

static int hk_posix_memalign(void **out, size_t align, size_t n)
{
	struct ma_tls *t = &ma_tls;
	int r;

	if (!ma_real.posix_memalign)
		return ENOSYS;
	if (t->guard || !ma_on())
		return ma_real.posix_memalign(out, align, n);
	t->guard = 1;
	r = ma_real.posix_memalign(out, align, n);
	if (r == 0 && !ma_samp_skip_alloc(t, n)) {
		int e = errno;

		ma_rec_alloc(t, *out, n, MA_KIND_ALIGNED);
		errno = e;
	}
	t->guard = 0;
	return r;
}

/* aligned_alloc, memalign: (alignment, size) */
static void *aligned2(void *(*f)(size_t, size_t), size_t a, size_t n)
{
	struct ma_tls *t = &ma_tls;
	void *p;

	if (!f) { /* not in this libc: nothing could have bound to it */
		errno = ENOSYS;
		return NULL;
	}
	if (t->guard || !ma_on())
		return f(a, n);
	t->guard = 1;
	p = f(a, n);
	if (p && !ma_samp_skip_alloc(t, n)) {
		int e = errno;

		ma_rec_alloc(t, p, n, MA_KIND_ALIGNED);
		errno = e;
	}
	t->guard = 0;
	return p;
}

/* valloc, pvalloc: (size) */
static void *aligned1(void *(*f)(size_t), size_t n)
{
	struct ma_tls *t = &ma_tls;
	void *p;

	if (!f) {
		errno = ENOSYS;
		return NULL;
	}
	if (t->guard || !ma_on())
		return f(n);
	t->guard = 1;
	p = f(n);
	if (p && !ma_samp_skip_alloc(t, n)) {
		int e = errno;

		ma_rec_alloc(t, p, n, MA_KIND_ALIGNED);
		errno = e;
	}
	t->guard = 0;
	return p;
}

static void *hk_aligned_alloc(size_t a, size_t n)
{
	return aligned2(ma_real.aligned_alloc, a, n);
}

static void *hk_memalign(size_t a, size_t n)
{
	return aligned2(ma_real.memalign, a, n);
}

static void *hk_valloc(size_t n)
{
	return aligned1(ma_real.valloc, n);
}

static void *hk_pvalloc(size_t n)
{
	return aligned1(ma_real.pvalloc, n);
}

/* ------------------------------------------------------------------ */
/* mmap family */

static void *mmap_common(void *(*f)(void *, size_t, int, int, int, off_t),
			 void *a, size_t n, int prot, int fl, int fd, off_t off)
{
	struct ma_tls *t = &ma_tls;
	void *p;

	if (t->guard || !ma_on())
		return f(a, n, prot, fl, fd, off);
	t->guard = 1;
	p = f(a, n, prot, fl, fd, off);
	if (p != MAP_FAILED) {
		int e = errno;

		ma_rec_alloc(t, p, n, MA_KIND_MMAP);
		errno = e;
	}
	t->guard = 0;
	return p;
}

static void *hk_mmap(void *a, size_t n, int prot, int fl, int fd, off_t off)
{
	return mmap_common(ma_real.mmap, a, n, prot, fl, fd, off);
}

static void *hk_mmap64(void *a, size_t n, int prot, int fl, int fd, off_t off)
{
	return mmap_common(ma_real.mmap64, a, n, prot, fl, fd, off);
}

static int hk_munmap(void *a, size_t n)
{
	struct ma_tls *t = &ma_tls;
	int r, e;

	if (!a || t->guard || !ma_on())
		return ma_real.munmap(a, n);
	t->guard = 1;
	e = errno;
	ma_rec_free(t, a, n, MA_KIND_MMAP);
	errno = e;
	r = ma_real.munmap(a, n);
	t->guard = 0;
	return r;
}

static void *hk_mremap(void *old, size_t old_n, size_t new_n, int flags, ...)
{
	struct ma_tls *t = &ma_tls;
	void *na = NULL, *p;
	int e;

	if (flags & MREMAP_FIXED) {
		va_list ap;

		va_start(ap, flags);
		na = va_arg(ap, void *);
		va_end(ap);
	}
	if (t->guard || !ma_on())
		return ma_real.mremap(old, old_n, new_n, flags, na);
	t->guard = 1;
	e = errno;
	ma_rec_free(t, old, old_n, MA_KIND_MMAP);
	errno = e;
	p = ma_real.mremap(old, old_n, new_n, flags, na);
	e = errno;
	if (p != MAP_FAILED)
		ma_rec_alloc(t, p, new_n, MA_KIND_MMAP);
	else
		ma_rec_alloc(t, old, old_n, MA_KIND_MMAP);
	errno = e;
	t->guard = 0;
	return p;
}

/* ------------------------------------------------------------------ */
/* Loader: patch what dlopen brought in */

/*
 * glibc's dlopen searches the caller's DT_RPATH/DT_RUNPATH for a bare name,
 * and finds the caller from its return address: called from our hook it
 * would search ours (none).  For a bare name from a caller that has search
 * paths of its own we therefore jump straight to the real dlopen (a sibling
 * call keeps the caller's return address) and leave the new modules to the
 * watchdog's rescan, at most ~50 ms later.
 */
static int caller_has_search_path(const void *ra)
{
	struct link_map *lm = NULL;
	Dl_info info;

	if (!ra || !dladdr1(ra, &info, (void **)&lm, RTLD_DL_LINKMAP) || !lm)
		return 0;
	for (const ElfW(Dyn) *d = lm->l_ld; d && d->d_tag != DT_NULL; d++)
		if (d->d_tag == DT_RPATH || d->d_tag == DT_RUNPATH)
			return 1;
	return 0;
}

/*
 * The control lock is busy while the watchdog rescans (it may have seen
 * this very module appear and be patching it) or while a session starts or
 * stops.  Returning at once would leave the new module's first allocations
 * unseen until the watchdog's next tick, and the caller usually allocates
 * through the module right away; so wait for the lock, but only a bounded
 * while: the holder's work is short, except when it waits for the loader
 * lock that this thread still holds (a dlopen from a library constructor).
 */
#define DLOPEN_WAIT_NS 100000000ull

static void after_dlopen(void)
{
	struct ma_tls *t = &ma_tls;
	uint64_t t0 = ma_ring_now_ns();
	int e = errno;

	t->guard++;
	for (;;) {
		if (ma_ctl_trylock()) {
			ma_got_rescan();
			ma_ctl_unlock();
			break;
		}
		if (!ma_on() || ma_ring_now_ns() - t0 > DLOPEN_WAIT_NS)
			break;
		ma_sleep_ns(50000);
	}
	t->guard--;
	errno = e;
}

static void *hk_dlopen(const char *file, int mode)
{
	void *h;

	if (file && !strchr(file, '/') &&
	    caller_has_search_path(__builtin_return_address(0)))
		return ma_real.dlopen(file, mode);
	h = ma_real.dlopen(file, mode);
	if (h && ma_on())
		after_dlopen();
	return h;
}

static void *hk_dlmopen(long lmid, const char *file, int mode)
{
	void *h;

	if (!ma_real.dlmopen) {
		errno = ENOSYS;
		return NULL;
	}
	/* other namespaces are invisible to our scan anyway */
	if (lmid != LM_ID_BASE ||
	    (file && !strchr(file, '/') &&
	     caller_has_search_path(__builtin_return_address(0))))
		return ma_real.dlmopen(lmid, file, mode);
	h = ma_real.dlmopen(lmid, file, mode);
	if (h && ma_on())
		after_dlopen();
	return h;
}

/* ------------------------------------------------------------------ */
/* fork: the parent logs the child's PID (pthread_atfork handlers do not
 * get it); the child turns tracking off in the atfork child handler. */

static pid_t hk_fork(void)
{
	struct ma_tls *t = &ma_tls;
	pid_t pid;
	int e;

	t->in_fork++;
	pid = ma_real.fork();
	t->in_fork--;
	if (pid > 0) {
		e = errno;
		ma_rec_fork(t, pid);
		errno = e;
	}
	return pid;
}

/* _Fork runs no atfork handlers: do the child's part ourselves, or the
 * child would write into the parent's ring */
static pid_t hk__Fork(void)
{
	struct ma_tls *t = &ma_tls;
	pid_t pid;
	int e;

	if (!ma_real._Fork) {
		errno = ENOSYS;
		return -1;
	}
	t->in_fork++;
	pid = ma_real._Fork();
	t->in_fork--;
	e = errno;
	if (pid == 0)
		ma_after_fork_child();
	else if (pid > 0)
		ma_rec_fork(t, pid);
	errno = e;
	return pid;
}

/* ------------------------------------------------------------------ */

const struct ma_hook_def ma_hook_defs[] = {
	{ "malloc", (void *)hk_malloc, MA_HC_NATIVE },
	{ "calloc", (void *)hk_calloc, MA_HC_NATIVE },
	{ "realloc", (void *)hk_realloc, MA_HC_NATIVE },
	{ "reallocarray", (void *)hk_reallocarray, MA_HC_NATIVE },
	{ "free", (void *)hk_free, MA_HC_NATIVE },
	{ "posix_memalign", (void *)hk_posix_memalign, MA_HC_NATIVE },
	{ "aligned_alloc", (void *)hk_aligned_alloc, MA_HC_NATIVE },
	{ "memalign", (void *)hk_memalign, MA_HC_NATIVE },
	{ "valloc", (void *)hk_valloc, MA_HC_NATIVE },
	{ "pvalloc", (void *)hk_pvalloc, MA_HC_NATIVE },
	{ "mmap", (void *)hk_mmap, MA_HC_MMAP },
	{ "mmap64", (void *)hk_mmap64, MA_HC_MMAP },
	{ "munmap", (void *)hk_munmap, MA_HC_MMAP },
	{ "mremap", (void *)hk_mremap, MA_HC_MMAP },
	{ "dlopen", (void *)hk_dlopen, MA_HC_LOADER },
	{ "dlmopen", (void *)hk_dlmopen, MA_HC_LOADER },
	{ "fork", (void *)hk_fork, MA_HC_FORK },
	{ "_Fork", (void *)hk__Fork, MA_HC_FORK },
};

const int ma_nhooks = sizeof(ma_hook_defs) / sizeof(ma_hook_defs[0]);

int ma_hook_index(const char *name)
{
	/* called for every relocation of every module: reject most names on
	 * their first letter */
	switch (name[0]) {
	case 'm':
	case 'c':
	case 'r':
	case 'f':
	case 'p':
	case 'a':
	case 'v':
	case 'd':
	case '_':
		break;
	default:
		return -1;
	}
	for (int i = 0; i < ma_nhooks; i++)
		if (strcmp(name, ma_hook_defs[i].name) == 0)
			return i;
	return -1;
}
