/* SPDX-License-Identifier: MIT */
/*
 * The heap census' walker (docs/heap.md).
 *
 * ma_heap_fork() runs in the target, every thread stopped by memattach: it
 * makes a copy of the process with a raw clone system call and returns.
 * Everything else here runs in that copy only, never in the target:
 *   - no exit signal (the target gets no SIGCHLD, and its wait() and
 *     waitpid(-1) never see the copy: only __WALL/__WCLONE waits do);
 *   - no atfork handler runs (no glibc fork());
 *   - the copy blocks every signal, leaves the target's process group,
 *     closes every descriptor it inherited (a socket the target closes must
 *     not stay open in the copy), and exits when memattach is gone;
 *   - it calls no malloc, no stdio, nothing that takes a lock another
 *     thread of the target may have held at the clone: those threads do not
 *     exist in the copy, and their locks would stay taken forever.
 * The copy walks the collector's lists, calls each container type's
 * tp_traverse to learn its referents (exact, extension types included), and
 * streams what it finds to memattach through struct ma_heap_box.  A fault
 * while reading a torn object (a thread was stopped mid-mutation) lands in
 * a SIGSEGV handler that skips the object.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "../common/ma_heap.h"

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

__attribute__((visibility("default"))) struct ma_heap_box ma_heap_box;

/* The copies this target made, until reaped (in the target's memory: a
 * memattach killed before it reaped its copy leaves its PID here for the
 * next one, which reaps exactly these and nothing else) */
__attribute__((visibility("default")))
int32_t ma_heap_copies[MA_HEAP_MAX_COPIES];

/* The configuration, copied from the attacher's call (its stack copy is
 * gone once ma_heap_fork returns in the target) */
static struct ma_heap_cfg hc;

/* Type flags, from CPython's object.h (stable since 3.0 for these) */
#define TPF_INLINE_VALUES   (1ul << 2) /* 3.13 */
#define TPF_MANAGED_WEAKREF (1ul << 3)
#define TPF_MANAGED_DICT    (1ul << 4)
#define TPF_HEAPTYPE	    (1ul << 9)
#define TPF_HAVE_GC	    (1ul << 14)
#define TPF_LONG	    (1ul << 24)
#define TPF_LIST	    (1ul << 25)
#define TPF_TUPLE	    (1ul << 26)
#define TPF_BYTES	    (1ul << 27)
#define TPF_UNICODE	    (1ul << 28)
#define TPF_DICT	    (1ul << 29)
#define TPF_TYPE	    (1ul << 31)

#define GC_HEAD	  16 /* sizeof(PyGC_Head): two words since 3.8 */
#define MAX_EDGES (1u << 26)

/* ------------------------------------------------------------------ */
/* Raw system calls: the copy's only way out */

static long rsys6(long n, long a, long b, long c, long d, long e, long f)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8),
			   "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

static long rsys(long n, long a, long b, long c, long d, long e)
{
	return rsys6(n, a, b, c, d, e, 0);
}

static __attribute__((noreturn)) void copy_exit(void)
{
	for (;;)
		rsys(SYS_exit_group, 0, 0, 0, 0, 0);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	rsys(SYS_clock_gettime, CLOCK_MONOTONIC, (long)&ts, 0, 0, 0);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void nap_us(long us)
{
	struct timespec ts = { 0, us * 1000 };

	rsys(SYS_nanosleep, (long)&ts, 0, 0, 0, 0);
}

static void *rmap(size_t len)
{
	long p = rsys6(SYS_mmap, 0, (long)len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p < 0 && p > -4096 ? NULL : (void *)p;
}

static void runmap(void *p, size_t len)
{
	if (p)
		rsys(SYS_munmap, (long)p, (long)len, 0, 0, 0);
}

/* Grow a mapping to at least want bytes (doubling) */
static int rgrow(void **p, size_t *cap, size_t want)
{
	size_t n = *cap ? *cap : 65536;
	long r;

	while (n < want)
		n *= 2;
	if (n == *cap)
		return 0;
	if (!*p) {
		*p = rmap(n);
		if (!*p)
			return -1;
		*cap = n;
		return 0;
	}
	r = rsys(SYS_mremap, (long)*p, (long)*cap, (long)n, MREMAP_MAYMOVE, 0);
	if (r < 0 && r > -4096)
		return -1;
	*p = (void *)r;
	*cap = n;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Memory we may read: the copy's readable mappings, from /proc/self/maps,
 * each with a bitmap of the objects already seen (one bit per 8 bytes,
 * mapped lazily: only the pages of it that are touched cost memory) */

struct range {
	uintptr_t lo, hi;
	uint8_t *seen;
};

static struct range *ranges;
static size_t nranges, ranges_cap;
static uint64_t mapped_bytes; /* what the walker mapped, for the report */

static uint64_t hex(const char **p)
{
	uint64_t v = 0;

	for (;; (*p)++) {
		char c = **p;

		if (c >= '0' && c <= '9')
			v = v * 16 + (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v * 16 + (uint64_t)(c - 'a' + 10);
		else
			return v;
	}
}

static int read_maps(void)
{
	static char buf[1 << 16];
	char line[512];
	size_t ll = 0;
	long fd = rsys(SYS_open, (long)"/proc/self/maps", O_RDONLY | O_CLOEXEC,
		       0, 0, 0);

	if (fd < 0)
		return (int)fd;
	for (;;) {
		long n = rsys(SYS_read, fd, (long)buf, sizeof(buf), 0, 0);

		if (n <= 0)
			break;
		for (long i = 0; i < n; i++) {
			if (buf[i] != '\n') {
				if (ll < sizeof(line) - 1)
					line[ll++] = buf[i];
				continue;
			}
			line[ll] = '\0';
			ll = 0;
			const char *p = line;
			uint64_t lo = hex(&p), hi;

			if (*p++ != '-')
				continue;
			hi = hex(&p);
			if (*p++ != ' ' || p[0] != 'r')
				continue;
			/* [vvar] faults on some pages; nothing lives there */
			if (strstr(p, "[vvar") || strstr(p, "[vsyscall]"))
				continue;
			if (nranges &&
			    ranges[nranges - 1].hi == lo) { /* merge */
				ranges[nranges - 1].hi = hi;
				continue;
			}
			if ((nranges + 1) * sizeof(*ranges) > ranges_cap &&
			    rgrow((void **)&ranges, &ranges_cap,
				  (nranges + 1) * sizeof(*ranges))) {
				rsys(SYS_close, fd, 0, 0, 0, 0);
				return -ENOMEM;
			}
			ranges[nranges++] = (struct range){ lo, hi, NULL };
		}
	}
	rsys(SYS_close, fd, 0, 0, 0, 0);
	return nranges ? 0 : -ENOENT;
}

static struct range *range_of(uintptr_t p)
{
	size_t lo = 0, hi = nranges;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (p < ranges[mid].lo)
			hi = mid;
		else if (p >= ranges[mid].hi)
			lo = mid + 1;
		else
			return &ranges[mid];
	}
	return NULL;
}

static int readable(uintptr_t p, size_t n)
{
	struct range *r = range_of(p);

	return r && p + n <= r->hi && p + n >= p;
}

/* Mark p seen; 1 if it was already */
static int seen_set(uintptr_t p)
{
	struct range *r = range_of(p);
	uint64_t bit;

	if (!r)
		return 1;
	if (!r->seen) {
		size_t len = ((r->hi - r->lo) / 8 + 7) / 8;

		len = (len + 4095) & ~(size_t)4095;
		r->seen = rmap(len);
		if (!r->seen)
			return 1;
		mapped_bytes += len;
	}
	bit = (p - r->lo) / 8;
	if (r->seen[bit / 8] & (1u << (bit % 8)))
		return 1;
	r->seen[bit / 8] |= (uint8_t)(1u << (bit % 8));
	return 0;
}

/* ------------------------------------------------------------------ */
/* Faults: a torn object skips itself */

static sigjmp_buf fault_jb;
static volatile int fault_armed;
static uint64_t faults;

static void on_fault(int sig)
{
	(void)sig;
	if (fault_armed) {
		fault_armed = 0;
		siglongjmp(fault_jb, 1);
	}
	copy_exit();
}

/* ------------------------------------------------------------------ */
/* The stream to the attacher */

static uint8_t *bufs[MA_HEAP_NBUFS], *chunk;
static size_t chunk_pos;
static uint32_t cur; /* the chunk being filled: its number */
static int attacher_fd = -1;
static uint64_t last_alive_check;

static void check_attacher(void)
{
	struct {
		int fd;
		short events, revents;
	} pfd = { attacher_fd, 1 /* POLLIN */, 0 };
	uint64_t now = now_ns();

	if (attacher_fd < 0 || now - last_alive_check < 50000000ull)
		return;
	last_alive_check = now;
	/* A pidfd polls readable once its process has exited */
	if (rsys(SYS_poll, (long)&pfd, 1, 0, 0, 0) > 0)
		copy_exit();
}

/* Hand the chunk over, and wait for a free buffer for the next one */
static void flush_chunk(void)
{
	ma_heap_box.len[cur % MA_HEAP_NBUFS] = chunk_pos;
	__atomic_store_n(&ma_heap_box.produced, cur + 1, __ATOMIC_RELEASE);
	cur++;
	for (uint32_t n = 0;
	     cur - __atomic_load_n(&ma_heap_box.consumed, __ATOMIC_ACQUIRE) >=
	     MA_HEAP_NBUFS;
	     n++) {
		nap_us(n < 100 ? 20 : 200);
		check_attacher();
	}
	chunk = bufs[cur % MA_HEAP_NBUFS];
	chunk_pos = 0;
}

static void emit(const void *p, size_t len)
{
	const uint8_t *s = p;

	while (len) {
		size_t room = hc.chunk_size - chunk_pos;
		size_t n = len < room ? len : room;

		memcpy(chunk + chunk_pos, s, n);
		chunk_pos += n;
		s += n;
		len -= n;
		if (chunk_pos == hc.chunk_size)
			flush_chunk();
	}
}

/* ------------------------------------------------------------------ */
/* Objects */

static inline uint64_t ld(uintptr_t p)
{
	return *(const uint64_t *)p;
}

static inline int32_t ld32(uintptr_t p)
{
	return *(const int32_t *)p;
}

/* Kinds of types whose size is not basicsize + itemsize x size */
enum kind {
	K_UNKNOWN = 0,
	K_PLAIN,
	K_LIST,
	K_DICT,
	K_SET,
	K_BYTEARRAY,
	K_STR,
	K_INT,
	K_NDARRAY,
	K_ARRAY, /* array.array */
	K_DEQUE, /* collections.deque */
	K_MODULE,
	K_CODE,
	K_BAD, /* not a type */
};

struct tent {
	uintptr_t type;
	uint8_t kind;
	uint8_t items; /* a tuple subclass walked by its items (tuple_items) */
};

static struct tent *types;
static size_t types_cap; /* entries, a power of two */
static size_t ntypes;

static int name_is(uintptr_t tp, const char *want)
{
	uintptr_t name;
	size_t n = strlen(want) + 1;

	if (!readable(tp + (uintptr_t)hc.off.type_name, 8))
		return 0;
	name = (uintptr_t)ld(tp + (uintptr_t)hc.off.type_name);
	return readable(name, n) && !memcmp((const void *)name, want, n);
}

static uint8_t classify(uintptr_t tp)
{
	unsigned long fl;
	uintptr_t t = tp, meta;

	if (!readable(tp, 400) || (tp & 7))
		return K_BAD;
	/* A type's type is a type: its flags say TYPE_SUBCLASS */
	meta = (uintptr_t)ld(tp + (uintptr_t)hc.off.object_type);
	if (!readable(meta, 400) ||
	    !(ld(meta + (uintptr_t)hc.off.type_flags) & TPF_TYPE))
		return K_BAD;
	fl = (unsigned long)ld(tp + (uintptr_t)hc.off.type_flags);
	if (fl & TPF_LIST)
		return K_LIST;
	if (fl & TPF_DICT)
		return K_DICT;
	if (fl & TPF_UNICODE)
		return K_STR;
	if (fl & TPF_LONG)
		return K_INT;
	if (fl & (TPF_TUPLE | TPF_BYTES | TPF_TYPE))
		return K_PLAIN;
	for (int depth = 0; t && depth < 32; depth++) {
		if (!readable(t, 400))
			break;
		if (name_is(t, "set") || name_is(t, "frozenset"))
			return K_SET;
		if (name_is(t, "bytearray"))
			return K_BYTEARRAY;
		if (name_is(t, "numpy.ndarray"))
			return K_NDARRAY;
		if (name_is(t, "array.array"))
			return K_ARRAY;
		if (name_is(t, "collections.deque"))
			return K_DEQUE;
		if (name_is(t, "module"))
			return K_MODULE;
		if (name_is(t, "code"))
			return K_CODE;
		t = (uintptr_t)ld(t + (uintptr_t)hc.off.type_base);
	}
	return K_PLAIN;
}

static uint8_t kind_of(uintptr_t tp)
{
	size_t mask, i;

	if (ntypes * 2 >= types_cap) {
		struct tent *old = types;
		size_t oldcap = types_cap, cap = oldcap ? oldcap * 2 : 4096;
		struct tent *nt = rmap(cap * sizeof(*nt));

		if (!nt)
			return K_BAD;
		mapped_bytes += cap * sizeof(*nt);
		for (size_t k = 0; k < oldcap; k++) {
			if (!old[k].type)
				continue;
			for (i = (old[k].type >> 4) & (cap - 1); nt[i].type;
			     i = (i + 1) & (cap - 1))
				;
			nt[i] = old[k];
		}
		runmap(old, oldcap * sizeof(*old));
		types = nt;
		types_cap = cap;
	}
	mask = types_cap - 1;
	for (i = (tp >> 4) & mask; types[i].type; i = (i + 1) & mask)
		if (types[i].type == tp)
			return types[i].kind;
	types[i].type = tp;
	types[i].kind = classify(tp);
	ntypes++;
	return types[i].kind;
}

/* The entry of a type kind_of has seen, or NULL */
static struct tent *tent_of(uintptr_t tp)
{
	size_t mask = types_cap - 1, i;

	if (!types_cap)
		return NULL;
	for (i = (tp >> 4) & mask; types[i].type; i = (i + 1) & mask)
		if (types[i].type == tp)
			return &types[i];
	return NULL;
}

static int tent_items(uintptr_t tp)
{
	struct tent *t = tent_of(tp);

	return t && t->items;
}

static void tent_set_items(uintptr_t tp)
{
	struct tent *t = tent_of(tp);

	if (t)
		t->items = 1;
}

static uint64_t ipow_size(uintptr_t o)
{
	int64_t n = (int64_t)ld(o + (uintptr_t)hc.off.varobject_size);

	return (uint64_t)(n < 0 ? -n : n);
}

/* 0 for a legacy (not compact) string: the caller falls back */
static uint64_t str_size(uintptr_t o)
{
	const struct ma_py_offsets *f = &hc.off;
	uint32_t st = (uint32_t)ld32(o + (uintptr_t)f->unicode_state);
	uint64_t len = ld(o + (uintptr_t)f->unicode_length);
	unsigned kind = (st >> f->unicode_kind_shift) & 7;
	uint64_t sz;

	if (!(st >> f->unicode_compact_bit & 1))
		return 0;
	if (st >> f->unicode_ascii_bit & 1)
		return (uint64_t)f->unicode_ascii_size + len + 1;
	sz = (uint64_t)f->unicode_compact_size + (len + 1) * kind;
	/* A UTF-8 copy made on demand (PyUnicode_AsUTF8) */
	if (f->unicode_utf8 >= 0 && ld(o + (uintptr_t)f->unicode_utf8))
		sz += ld(o + (uintptr_t)f->unicode_utf8_length) + 1;
	return sz;
}

/* numpy's PyArrayObject_fields (numpy 1.x and 2.x alike up to flags) */
#define NP_DATA	   16
#define NP_ND	   24
#define NP_DIMS	   32
#define NP_STRIDES 40
#define NP_BASE	   48
#define NP_FLAGS   64
#define NP_OWNDATA 0x0004

static uint64_t ndarray_data(uintptr_t o)
{
	int nd = ld32(o + NP_ND), fl = ld32(o + NP_FLAGS);
	uintptr_t dims = (uintptr_t)ld(o + NP_DIMS),
		  strides = (uintptr_t)ld(o + NP_STRIDES);
	uint64_t best = 0;

	if (!(fl & NP_OWNDATA) || nd <= 0 || nd > 64 ||
	    !readable(dims, (size_t)nd * 8) ||
	    !readable(strides, (size_t)nd * 8))
		return 0;
	/* An array that owns its data is contiguous (in C or Fortran order):
	 * its bytes are the largest dimension x |stride| */
	for (int i = 0; i < nd; i++) {
		int64_t d = (int64_t)ld(dims + 8 * (uintptr_t)i),
			s = (int64_t)ld(strides + 8 * (uintptr_t)i);
		uint64_t b;

		if (d == 0)
			return 0;
		b = (uint64_t)d * (uint64_t)(s < 0 ? -s : s);
		if (b > best)
			best = b;
	}
	return best;
}

static uint64_t preheader(unsigned long fl);

/*
 * array.array's and collections.deque's own sizes, as their __sizeof__
 * (the same layouts in 3.8-3.13; both count their subclasses' basicsize).
 * After the PyVarObject head: an array's ob_item, allocated and
 * ob_descr, whose itemsize is the int after its typecode char; a deque's
 * leftblock, rightblock and leftindex, its items in blocks of 64 slots and
 * two links (528 bytes).  Their buffers were not counted: a 3.2 MB array
 * was an 80-byte object.  0 when the words do not look right.
 */
#define DEQUE_BLOCK 528
static uint64_t array_bytes(uintptr_t o, uintptr_t *buf)
{
	uintptr_t at = o + (uintptr_t)hc.off.varobject_size + 8, descr;
	uint64_t alloc;
	int32_t isz;

	if (!readable(at, 24))
		return 0;
	*buf = (uintptr_t)ld(at);
	alloc = ld(at + 8);
	descr = (uintptr_t)ld(at + 16);
	if (!readable(descr, 8))
		return 0;
	memcpy(&isz, (const void *)(descr + 4), 4);
	if (isz < 1 || isz > 16 || alloc >= (1ull << 40))
		return 0;
	return alloc * (uint64_t)isz;
}

static uint64_t deque_bytes(uintptr_t o)
{
	uintptr_t at = o + (uintptr_t)hc.off.varobject_size;
	uint64_t n, left;

	if (!readable(at, 32))
		return 0;
	n = ld(at);
	left = ld(at + 24);
	if (n >= (1ull << 40) || left >= 64)
		return 0;
	return (left + n + 63) / 64 * DEQUE_BLOCK;
}

/* What sys.getsizeof(o) says (see docs/heap.md, "Sizes") */
static uint64_t size_of(uintptr_t o, uintptr_t tp, uint8_t kind)
{
	const struct ma_py_offsets *f = &hc.off;
	unsigned long fl = (unsigned long)ld(tp + (uintptr_t)f->type_flags);
	uint64_t basic = ld(tp + (uintptr_t)f->type_basicsize);
	uint64_t item = ld(tp + (uintptr_t)f->type_itemsize);
	uint64_t sz = basic;

	switch (kind) {
	case K_LIST:
		sz = basic + 8 * ld(o + (uintptr_t)f->list_allocated);
		break;
	case K_DICT:
		if (hc.dict_sizeof)
			sz = ((uint64_t(*)(uintptr_t))hc.dict_sizeof)(o);
		break;
	case K_SET: {
		uintptr_t table = (uintptr_t)ld(o + (uintptr_t)f->set_table);

		if (table < o || table >= o + basic)
			sz = basic + 16 * (ld(o + (uintptr_t)f->set_mask) + 1);
		break;
	}
	case K_BYTEARRAY:
		sz = basic + ld(o + (uintptr_t)f->bytearray_alloc);
		break;
	case K_STR: {
		uint64_t s = str_size(o);

		sz = s ? s : basic;
		break;
	}
	case K_INT:
		if (hc.flags & MA_HEAP_INT_TAG) {
			uint64_t nd = ld(o + (uintptr_t)f->varobject_size) >> 3;

			sz = basic + 4 * (nd ? nd : 1);
		} else {
			sz = basic + item * ipow_size(o);
		}
		break;
	case K_NDARRAY: {
		/* numpy's __sizeof__: its dimensions and strides too (one
		 * allocation of 2 x nd words), then the data it owns */
		int nd = ld32(o + NP_ND);

		sz = basic + (nd > 0 && nd <= 64 ? 16 * (uint64_t)nd : 0) +
		     ndarray_data(o);
		break;
	}
	case K_ARRAY: {
		uintptr_t buf;

		sz = basic + array_bytes(o, &buf);
		break;
	}
	case K_DEQUE:
		sz = basic + deque_bytes(o);
		break;
	default:
		/* A size that would run past the object's mapping is not a
		 * count of items (generators keep their frame there) */
		if (item && ipow_size(o) < (1ull << 40) &&
		    readable(o, basic + item * ipow_size(o)))
			sz = basic + item * ipow_size(o);
		break;
	}
	if (hc.flags & MA_HEAP_GC_ON_TYPE)
		sz += preheader(fl);
	else if ((fl & TPF_HAVE_GC) &&
		 (!(fl & TPF_TYPE) ||
		  (ld(o + (uintptr_t)f->type_flags) & TPF_HEAPTYPE)))
		sz += GC_HEAD; /* a static type object is not the collector's */
	return sz;
}

/* ------------------------------------------------------------------ */
/* pymalloc pools, seen through the blocks found */

static uintptr_t *pools;
static size_t pools_cap, npools; /* open addressing, power of two */
static struct ma_heap_pools pstat;
static uint32_t *arena_seen; /* bitmap over arena indexes */
#define MAX_ARENAS (1u << 22)

/* A pool's header, as obmalloc.c lays it out in every CPython 3.8-3.13 */
#define POOL_COUNT	  0  /* uint: blocks in use */
#define POOL_ARENA	  32 /* uint arenaindex */
#define POOL_SZIDX	  36 /* uint: size class, block size 16 x (szidx + 1) */
#define POOL_MAXNEXT	  44 /* uint: pool size - block size, set at init */
#define POOL_OVERHEAD	  48 /* the first block's offset */
#define PYMALLOC_MAX_SIZE 512

/* Count the pool in pstat, once */
static void pool_note(uintptr_t pool, uint32_t count, uint32_t arena,
		      uint32_t szidx)
{
	uint32_t psize = hc.pool_size;
	size_t mask, i;

	if ((npools + 1) * 2 > pools_cap) {
		uintptr_t *old = pools;
		size_t oldcap = pools_cap, cap = oldcap ? oldcap * 2 : 8192;
		uintptr_t *np = rmap(cap * sizeof(*np));

		if (!np)
			return;
		mapped_bytes += cap * sizeof(*np);
		for (size_t k = 0; k < oldcap; k++) {
			if (!old[k])
				continue;
			for (i = (old[k] / psize) & (cap - 1); np[i];
			     i = (i + 1) & (cap - 1))
				;
			np[i] = old[k];
		}
		runmap(old, oldcap * sizeof(*old));
		pools = np;
		pools_cap = cap;
	}
	mask = pools_cap - 1;
	for (i = (pool / psize) & mask; pools[i]; i = (i + 1) & mask)
		if (pools[i] == pool)
			return;
	pools[i] = pool;
	npools++;
	pstat.pools++;
	pstat.pools_per_class[szidx]++;
	pstat.used_blocks[szidx] += count;
	pstat.used_bytes += (uint64_t)count * 16 * (szidx + 1);
	if (!arena_seen) {
		arena_seen = rmap(MAX_ARENAS / 8);
		if (!arena_seen)
			return;
		mapped_bytes += MAX_ARENAS / 8;
	}
	if (!(arena_seen[arena / 32] & (1u << (arena % 32)))) {
		arena_seen[arena / 32] |= 1u << (arena % 32);
		pstat.arenas++;
	}
}

/* A pool seen through a pointer into it */
struct pool_at {
	uintptr_t pool, block; /* block: the start of p's block */
	uint32_t count, arena, szidx, bs;
};

/*
 * The block of a pymalloc pool that p lies in: 1 with *pa filled, or 0 when
 * p is in no pool.  pymalloc never hands out a block outside its arenas,
 * nor malloc memory inside them; what looks like a pool header at p's pool
 * boundary in malloc's memory would have to pass every check below.
 */
static int pool_at(uintptr_t p, struct pool_at *pa)
{
	uint32_t psize = hc.pool_size;

	if (!psize)
		return 0;
	pa->pool = p & ~(uintptr_t)(psize - 1);
	if (p < pa->pool + POOL_OVERHEAD || !readable(pa->pool, POOL_OVERHEAD))
		return 0;
	pa->count = (uint32_t)ld32(pa->pool + POOL_COUNT);
	pa->arena = (uint32_t)ld32(pa->pool + POOL_ARENA);
	pa->szidx = (uint32_t)ld32(pa->pool + POOL_SZIDX);
	if (pa->szidx >= PYMALLOC_MAX_SIZE / 16 || pa->count == 0 ||
	    pa->count > psize / 16 || pa->arena >= MAX_ARENAS)
		return 0;
	pa->bs = 16 * (pa->szidx + 1);
	if ((uint32_t)ld32(pa->pool + POOL_MAXNEXT) != psize - pa->bs)
		return 0;
	pa->block = pa->pool + POOL_OVERHEAD +
		    (p - pa->pool - POOL_OVERHEAD) / pa->bs * pa->bs;
	return 1;
}

/*
 * CPython's debug hooks (PYTHONMALLOC=pymalloc_debug, -X dev, and every
 * --with-pydebug build by default) wrap each block: before the bytes they
 * return, the size asked for (a big-endian word) and a word of the API's
 * letter ('r', 'm' or 'o') and seven bytes 0xFD; after them, a word of
 * 0xFD.  The pymalloc block then starts DEBUG_FRONT bytes earlier and was
 * asked for DEBUG_EXTRA bytes more.  1 when p is such a wrapped block.
 */
#define DEBUG_FRONT 16
#define DEBUG_EXTRA 24

static int debug_wrapped(uintptr_t p)
{
	const uint8_t *b = (const uint8_t *)(p - 8);

	if (p < DEBUG_FRONT || !readable(p - DEBUG_FRONT, DEBUG_FRONT) ||
	    (b[0] != 'r' && b[0] != 'm' && b[0] != 'o'))
		return 0;
	for (int i = 1; i < 8; i++)
		if (b[i] != 0xFD)
			return 0;
	return __builtin_bswap64(ld(p - DEBUG_FRONT)) <= PYMALLOC_MAX_SIZE;
}

/* 1 when block is a pymalloc block allocated for lo to hi bytes (its
 * pool's size class is theirs; the pool counted in pstat), else 0:
 * malloc's.  A block the debug hooks wrapped counts as the one around it. */
static int in_pool_for(uintptr_t block, uint64_t lo, uint64_t hi)
{
	struct pool_at pa;

	if (!block || lo == 0 || lo > PYMALLOC_MAX_SIZE)
		return 0;
	if (debug_wrapped(block)) {
		block -= DEBUG_FRONT;
		lo += DEBUG_EXTRA;
		hi += DEBUG_EXTRA;
	}
	if (lo > PYMALLOC_MAX_SIZE || !pool_at(block, &pa) ||
	    pa.block != block || pa.bs < (lo + 15) / 16 * 16 ||
	    pa.bs > (hi + 15) / 16 * 16)
		return 0;
	pool_note(pa.pool, pa.count, pa.arena, pa.szidx);
	return 1;
}

/* size when block is a pymalloc block allocated for size bytes, else 0 */
static uint64_t in_pool(uintptr_t block, uint64_t size)
{
	return in_pool_for(block, size, size) ? size : 0;
}

/* size when the size bytes at p lie inside one pymalloc block (a part that
 * does not start its block, or shares it), else 0 */
static uint64_t inside_pool(uintptr_t p, uint64_t size)
{
	struct pool_at pa;

	if (!p || size == 0 || size > PYMALLOC_MAX_SIZE || !pool_at(p, &pa) ||
	    p + size > pa.block + pa.bs)
		return 0;
	pool_note(pa.pool, pa.count, pa.arena, pa.szidx);
	return size;
}

/* ------------------------------------------------------------------ */
/* The walk */

static uintptr_t *work; /* objects found, not yet emitted */
static size_t work_cap, nwork;
static uint64_t *edges;
static size_t edges_cap, nedges;
static int edges_cut;
/* the current object: its record sent with a first piece of referents
 * (sent_edges of them so far, ma_heap_edges pieces after) */
static int rec_sent;
static uint64_t sent_edges;
static uint64_t n_objects, n_edges, n_unreadable;

/* A pointer that may be an object: aligned, its header readable, its type
 * a type */
static int looks_like_object(uintptr_t p)
{
	uintptr_t tp;

	if (!p || (p & 7) || !readable(p, 16))
		return 0;
	tp = (uintptr_t)ld(p + (uintptr_t)hc.off.object_type);
	return kind_of(tp) != K_BAD;
}

static void push_work(uintptr_t p)
{
	if ((nwork + 1) * sizeof(*work) > work_cap &&
	    rgrow((void **)&work, &work_cap, (nwork + 1) * sizeof(*work)))
		return;
	work[nwork++] = p;
}

static void edges_flush(uint32_t flags);

static int visit(uintptr_t child, void *arg)
{
	(void)arg;
	if (!child)
		return 0;
	if (nedges == MA_HEAP_EDGE_PIECE)
		edges_flush(0);
	if (sent_edges + nedges >= MAX_EDGES) {
		edges_cut = 1;
		return 0;
	}
	if ((nedges + 1) * 8 > edges_cap &&
	    rgrow((void **)&edges, &edges_cap, (nedges + 1) * 8)) {
		edges_cut = 1;
		return 0;
	}
	if (!looks_like_object(child))
		return 0;
	edges[nedges++] = child;
	/* Not in a collector's list (an atom, or an untracked container):
	 * found here first, walked later */
	if (!seen_set(child))
		push_work(child);
	return 0;
}

typedef int (*dict_next_t)(uintptr_t, intptr_t *, uintptr_t *, uintptr_t *);

typedef int (*visitproc_t)(uintptr_t, void *);
typedef int (*traverse_t)(uintptr_t, visitproc_t, void *);

/* The bytes before an object: the collector's header, and from 3.11 the
 * managed dict (and weakref) pointers */
static uint64_t preheader(unsigned long fl)
{
	uint64_t pre = fl & TPF_HAVE_GC ? GC_HEAD : 0;

	if ((hc.flags & MA_HEAP_PRE_DICT) &&
	    (fl & (TPF_MANAGED_DICT |
		   (hc.flags & MA_HEAP_PRE_WEAKREF ? TPF_MANAGED_WEAKREF : 0))))
		pre += 16;
	return pre;
}

/* The bytes of a compact str's UTF-8 copy (made on demand by
 * PyUnicode_AsUTF8, a block of its own) that str_size counts, its address
 * in *p */
static uint64_t str_utf8(uintptr_t o, uintptr_t *p)
{
	const struct ma_py_offsets *f = &hc.off;
	uint32_t st = (uint32_t)ld32(o + (uintptr_t)f->unicode_state);

	*p = 0;
	if (!(st >> f->unicode_compact_bit & 1) ||
	    (st >> f->unicode_ascii_bit & 1) || f->unicode_utf8 < 0)
		return 0;
	*p = (uintptr_t)ld(o + (uintptr_t)f->unicode_utf8);
	return *p ? ld(o + (uintptr_t)f->unicode_utf8_length) + 1 : 0;
}

/* PyDictObject's ma_keys and ma_values, after ma_used and the version (or
 * watcher) tag in every CPython 3.8-3.13 */
#define DICT_KEYS   32
#define DICT_VALUES 40

/*
 * Of size (what size_of says of o), the bytes that lie in pymalloc blocks;
 * *own: the object's own block is one.  The object's own block holds all of
 * size but what was allocated apart, which goes where it lives: a list's
 * item table, a set's table (when not the small one inside the object), a
 * bytearray's buffer, a dict's keys table and values, a str's UTF-8 copy,
 * a numpy array's data.  pymalloc serves requests of up to 512 bytes: a
 * bytearray of 1000 bytes has its object in a pymalloc block, its buffer in
 * malloc's.  docs/heap.md, "Where the objects' bytes lie".
 */
static uint64_t pymalloc_part(uintptr_t o, uintptr_t tp, uint8_t kind,
			      unsigned long fl, uint64_t pre, uint64_t size,
			      int *own)
{
	const struct ma_py_offsets *f = &hc.off;
	uint64_t basic = ld(tp + (uintptr_t)f->type_basicsize);
	uint64_t mine = size, block, rest, in = 0;
	uintptr_t p = 0;

	if (kind == K_LIST || kind == K_SET || kind == K_DICT ||
	    kind == K_BYTEARRAY || kind == K_NDARRAY || kind == K_ARRAY ||
	    kind == K_DEQUE)
		mine = basic + pre;
	else if (kind == K_STR)
		mine = size - str_utf8(o, &p);
	if (mine > size)
		mine = size;
	rest = size - mine;
	block = mine;
	/* 3.13 keeps an instance's attribute values inline after the object
	 * (_PyObject_InlineValues): in its block, not in what getsizeof says
	 * (3.13.0).  _PyInlineValuesSize sized them for the usable size of
	 * the class's shared keys, n: the order prefix (n bytes rounded up),
	 * a header word and n values.  Their first byte, the capacity, is n,
	 * or n - 1 when the allocation took one of the keys' usable slots
	 * (_PyObject_InitInlineValues): the block is one of the two sizes. */
	if ((hc.flags & MA_HEAP_INLINE_VALUES) && (fl & TPF_INLINE_VALUES) &&
	    readable(o + (uintptr_t)basic, 8)) {
		uint64_t n = *(const uint8_t *)(o + (uintptr_t)basic);

		*own = in_pool_for(o - pre,
				   block + (n + 7) / 8 * 8 + (n + 1) * 8,
				   block + (n + 8) / 8 * 8 + (n + 2) * 8);
	} else {
		*own = in_pool(o - pre, block) != 0;
	}
	if (*own)
		in = mine;
	if (!rest)
		return in;
	switch (kind) {
	case K_LIST:
		p = (uintptr_t)ld(o + (uintptr_t)f->list_items);
		break;
	case K_SET:
		p = (uintptr_t)ld(o + (uintptr_t)f->set_table);
		break;
	case K_BYTEARRAY: /* ob_bytes follows ob_alloc */
		p = (uintptr_t)ld(o + (uintptr_t)f->bytearray_alloc + 8);
		break;
	case K_NDARRAY:
		p = (uintptr_t)ld(o + NP_DATA);
		break;
	case K_ARRAY:
		(void)array_bytes(o, &p);
		break;
	case K_DEQUE: /* blocks of 528 bytes: malloc's, never pymalloc's */
		return in;
	case K_STR: /* p: the UTF-8 copy, from str_utf8 */
		break;
	case K_DICT: {
		uintptr_t values = (uintptr_t)ld(o + DICT_VALUES);

		/* A combined table: the rest is its keys table, allocated for
		 * that size (_PyDict_KeysSize is new_keys_object's request).
		 * A split one: the values, the shared keys being counted by
		 * the class; 3.11 and 3.12 put an order prefix before them in
		 * their block, 3.13 may keep them inline in the instance: they
		 * are in pymalloc when they lie inside one of its blocks.  A
		 * split table whose keys are its own too (rare) is counted
		 * as malloc's, its two parts' sizes not being known apart. */
		if (!values)
			return in + in_pool((uintptr_t)ld(o + DICT_KEYS), rest);
		return in + inside_pool(values, rest);
	}
	default:
		return in;
	}
	return in + in_pool(p, rest);
}

/*
 * A tuple subclass whose tp_traverse faults: its items read here.  A
 * structseq's traverse (sys.flags, sys.version_info, time.struct_time,
 * os.stat_result) looks up its type's n_fields through the interpreter,
 * found from the thread state: 3.10's _PyUnicode_FromId reads
 * _PyRuntime's current thread state, NULL when no thread held the GIL at
 * the clone, and 3.12's _PyType_GetDict reads a static builtin type's dict
 * through the thread-local one, NULL in the copy's thread.  Every census
 * of a 3.12 process (of a 3.10 one, now and then) counted sys.flags and
 * five others as unreadable, "being changed when the copy was made", with
 * none of their referents.  The items: the visible ones (ob_size), and
 * the hidden ones up to the last of the type's members (every field past
 * the visible ones has a name, so a member, at its item's offset).  The
 * type is then walked this way from the first fault on: one fault a type.
 */
#define MEMBER_SIZE   40 /* sizeof(PyMemberDef) */
#define MEMBER_OFFSET 16 /* PyMemberDef.offset */

static void tuple_items(uintptr_t o, uintptr_t tp, unsigned long fl)
{
	/* ob_item follows ob_size; tp_members is two words before tp_base
	 * (tp_getset between), in every PyTypeObject of 3.8-3.13 */
	uintptr_t items = o + (uintptr_t)hc.off.varobject_size + 8,
		  m = (uintptr_t)ld(tp + (uintptr_t)hc.off.type_base - 16);
	int64_t n = (int64_t)ld(o + (uintptr_t)hc.off.varobject_size);

	for (int k = 0; k < 1024 && m && readable(m, MEMBER_SIZE) && ld(m);
	     k++, m += MEMBER_SIZE) {
		int64_t at =
			(int64_t)ld(m + MEMBER_OFFSET) - (int64_t)(items - o);

		if (at >= 0 && at % 8 == 0 && at / 8 + 1 > n)
			n = at / 8 + 1;
	}
	if (fl & TPF_HEAPTYPE)
		visit(tp, NULL);
	if (n <= 0 || n > MAX_EDGES || !readable(items, (size_t)n * 8))
		return;
	for (int64_t i = 0; i < n; i++)
		visit((uintptr_t)ld(items + 8 * (uintptr_t)i), NULL);
}

/* A subclass of tuple: a tuple that faults is torn, not a structseq */
static int tuple_subclass(uintptr_t tp, unsigned long fl)
{
	uintptr_t base;

	if (!(fl & TPF_TUPLE))
		return 0;
	base = (uintptr_t)ld(tp + (uintptr_t)hc.off.type_base);
	return readable(base, 400) &&
	       (ld(base + (uintptr_t)hc.off.type_flags) & TPF_TUPLE);
}

/* o's referents by its tp_traverse, a tuple subclass' by its items when
 * the traverse faults (above); another fault goes to emit_object's
 * handler: the object is unreadable */
static void traverse(uintptr_t o, uintptr_t tp, unsigned long fl, traverse_t tr)
{
	sigjmp_buf outer;

	memcpy(outer, fault_jb, sizeof(outer));
	if (sigsetjmp(fault_jb, 0)) {
		memcpy(fault_jb, outer, sizeof(outer));
		/* items read again from the start: not once a piece of
		 * referents was sent (a tuple of more than a piece) */
		if (!tuple_subclass(tp, fl) || rec_sent)
			siglongjmp(fault_jb, 1);
		faults++;
		tent_set_items(tp);
		nedges = 0;
		edges_cut = 0;
		fault_armed = 1;
		tuple_items(o, tp, fl);
		return;
	}
	tr(o, visit, NULL);
	memcpy(fault_jb, outer, sizeof(outer));
}

static struct ma_heap_obj rec; /* static: set across sigsetjmp */

/* Send the referents gathered so far (nedges): with the object's record
 * the first time (its flags as known before its traverse), then as
 * ma_heap_edges pieces, flags the ones to add */
static void edges_flush(uint32_t flags)
{
	if (!rec_sent) {
		rec.nedges = (uint32_t)nedges;
		emit(&rec, sizeof(rec));
		rec_sent = 1;
	} else {
		struct ma_heap_edges e = { .tag = MA_HEAP_T_EDGES,
					   .nedges = (uint32_t)nedges,
					   .flags = flags };

		emit(&e, sizeof(e));
	}
	if (nedges)
		emit(edges, nedges * 8);
	sent_edges += nedges;
	nedges = 0;
}

static void emit_object(uintptr_t o, int gc)
{
	volatile uint32_t flags = gc ? MA_HEAP_O_GC : 0;
	uintptr_t tp;
	uint8_t kind;

	memset(&rec, 0, sizeof(rec));
	rec.tag = MA_HEAP_T_OBJ;
	rec.addr = o;
	nedges = 0;
	edges_cut = 0;
	rec_sent = 0;
	sent_edges = 0;
	if (sigsetjmp(fault_jb, 0)) {
		faults++;
		flags |= MA_HEAP_O_UNREADABLE;
		nedges = 0;
		goto out;
	}
	fault_armed = 1;
	if ((o & 7) || !readable(o, 16)) {
		flags |= MA_HEAP_O_UNREADABLE;
		goto disarm;
	}
	tp = (uintptr_t)ld(o + (uintptr_t)hc.off.object_type);
	kind = kind_of(tp);
	if (kind == K_BAD) {
		flags |= MA_HEAP_O_UNREADABLE;
		goto disarm;
	}
	rec.type = tp;
	rec.refcnt = ld(o);
	if (rec.refcnt > (1ull << 40))
		rec.refcnt = 1ull << 40;
	rec.size = size_of(o, tp, kind);

	unsigned long fl = (unsigned long)ld(tp + (uintptr_t)hc.off.type_flags);
	uint64_t pre = preheader(fl);
	int own = 0;

	rec.pymalloc =
		(uint32_t)pymalloc_part(o, tp, kind, fl, pre, rec.size, &own);
	if (own)
		flags |= MA_HEAP_O_PYMALLOC;
	/* A static type object is not the collector's (type_is_gc): its
	 * type_traverse is a fatal error there */
	if (fl & TPF_TYPE) {
		flags |= MA_HEAP_O_TYPE;
		if (!(ld(o + (uintptr_t)hc.off.type_flags) & TPF_HEAPTYPE))
			fl &= ~TPF_HAVE_GC;
	}
	/* what a first piece of referents sends with the record */
	rec.flags = flags;
	if ((fl & TPF_HAVE_GC) && tent_items(tp)) {
		tuple_items(o, tp, fl);
	} else if ((fl & TPF_HAVE_GC) && hc.off.type_traverse >= 0) {
		traverse_t tr =
			(traverse_t)ld(tp + (uintptr_t)hc.off.type_traverse);

		if (tr && readable((uintptr_t)tr, 1))
			traverse(o, tp, fl, tr);
	}
	/* A numpy array is no collector's object (no traverse): a view's
	 * base, the array or buffer that owns its data, is held by it all the
	 * same.  Unvisited, `v = np.ones(10**7)[::2]` left the 80 MB base out
	 * of the census (in "the rest: C allocations"). */
	if (kind == K_NDARRAY && readable(o + NP_BASE, 8))
		visit((uintptr_t)ld(o + NP_BASE), NULL);
	/* A dict whose keys are all str does not visit them (a str cannot
	 * make a cycle): they are referents all the same.  Its traverse
	 * visited one edge per entry then, two when it visited the keys. */
	if (kind == K_DICT && hc.dict_next) {
		intptr_t pos = 0;
		uintptr_t k, v;
		size_t n = 0;

		while (n < MAX_EDGES &&
		       ((dict_next_t)hc.dict_next)(o, &pos, &k, &v))
			n++;
		if (sent_edges + nedges < 2 * n) {
			pos = 0;
			while (((dict_next_t)hc.dict_next)(o, &pos, &k, &v))
				visit(k, NULL);
		}
	}
disarm:
	fault_armed = 0;
out:
	if (edges_cut)
		flags |= MA_HEAP_O_EDGES_CUT;
	if (flags & MA_HEAP_O_UNREADABLE)
		n_unreadable++;
	if (rec_sent) {
		/* the last piece, with the flags learnt since the first */
		edges_flush(flags & ~rec.flags);
	} else {
		rec.flags = flags;
		edges_flush(0);
	}
	n_objects++;
	n_edges += sent_edges;
	ma_heap_box.progress = n_objects;
	if ((n_objects & 0xffff) == 0)
		check_attacher();
}

/* Drain the objects found as referents (they may find more) */
static void drain_work(void)
{
	while (nwork) {
		uintptr_t o = work[--nwork];

		emit_object(o, 0);
	}
}

/* Every object of one collector list: the heads are PyGC_Head, the object
 * follows its head.  A list torn by a thread stopped inside an append is
 * cut where it stops making sense: an unreadable link, or one leading back
 * to an object already seen (no walk can loop). */
static uint64_t mark_list(uintptr_t head)
{
	uintptr_t g;
	uint64_t n = 0;

	if (!readable(head, 16))
		return 0;
	for (g = (uintptr_t)ld(head) & ~(uintptr_t)7; g != head;
	     g = (uintptr_t)ld(g) & ~(uintptr_t)7, n++) {
		if (!readable(g, GC_HEAD + 16) || seen_set(g + GC_HEAD))
			break;
	}
	return n;
}

static void walk_list(uintptr_t head, uint64_t count)
{
	uintptr_t g = (uintptr_t)ld(head) & ~(uintptr_t)7;

	for (uint64_t n = 0; n < count; n++) {
		uintptr_t next = (uintptr_t)ld(g) & ~(uintptr_t)7;

		emit_object(g + GC_HEAD, 1);
		drain_work();
		g = next;
	}
}

/* The lists of one collector state: the generations and the permanent one
 * (gc.freeze()) */
static int gc_lists(uintptr_t gcs, uintptr_t *heads, int max)
{
	int n = 0;

	for (int i = 0; i < 3 && n < max; i++)
		heads[n++] = gcs + (uintptr_t)hc.off.gc_generations +
			     (uintptr_t)(i * hc.off.gc_generation_size);
	if (n < max)
		heads[n++] = gcs + (uintptr_t)hc.off.gc_permanent;
	return n;
}

#define MAX_INTERPS 64

static int interpreters(uintptr_t *out)
{
	uintptr_t ip;
	int n = 0;

	if (!readable(hc.runtime_addr +
			      (uintptr_t)hc.off.runtime_interpreters_head,
		      8))
		return 0;
	ip = (uintptr_t)ld(hc.runtime_addr +
			   (uintptr_t)hc.off.runtime_interpreters_head);
	while (ip && n < MAX_INTERPS && readable(ip, 64)) {
		out[n++] = ip;
		ip = (uintptr_t)ld(ip + (uintptr_t)hc.off.interp_next);
	}
	return n;
}

/* A frame's local variables, as named roots */
static void frame_roots(uintptr_t frame, uintptr_t code, int64_t thread,
			uint32_t depth)
{
	const struct ma_py_offsets *f = &hc.off;
	uintptr_t names;
	int32_t n;

	if (f->frame_localsplus < 0 || f->code_nlocals < 0 ||
	    f->code_varnames < 0 || !readable(code, 256))
		return;
	n = ld32(code + (uintptr_t)f->code_nlocals);
	names = (uintptr_t)ld(code + (uintptr_t)f->code_varnames);
	if (n <= 0 || n > 65536 || !readable(names, 24 + 8 * (size_t)n) ||
	    !readable(frame + (uintptr_t)f->frame_localsplus, 8 * (size_t)n))
		return;
	for (int32_t i = 0; i < n; i++) {
		uintptr_t v =
			(uintptr_t)ld(frame + (uintptr_t)f->frame_localsplus +
				      8 * (uintptr_t)i);
		struct ma_heap_root r = {
			.tag = MA_HEAP_T_ROOT,
			.kind = MA_HEAP_R_LOCAL,
			.obj = v,
			.name = ld(names + 24 + 8 * (uintptr_t)i),
			.code = code,
			.frame = frame,
			.thread_id = thread,
			.depth = depth,
		};

		if (!looks_like_object(v))
			continue;
		emit(&r, sizeof(r));
		if (!seen_set(v))
			push_work(v);
	}
}

static void thread_roots(uintptr_t interp)
{
	const struct ma_py_offsets *f = &hc.off;
	uintptr_t ts;
	int nth = 0;

	if (!readable(interp + (uintptr_t)f->interp_threads_head, 8))
		return;
	for (ts = (uintptr_t)ld(interp + (uintptr_t)f->interp_threads_head);
	     ts && nth < 4096 && readable(ts, 256);
	     ts = (uintptr_t)ld(ts + (uintptr_t)f->tstate_next), nth++) {
		int64_t tid =
			f->tstate_native_thread_id >= 0
				? (int64_t)ld(
					  ts +
					  (uintptr_t)f->tstate_native_thread_id)
				: -(int64_t)ld(ts +
					       (uintptr_t)f->tstate_thread_id);
		uintptr_t fr = 0;
		uint32_t depth = 0;

		if (f->tstate_cframe >= 0) {
			uintptr_t cf =
				(uintptr_t)ld(ts + (uintptr_t)f->tstate_cframe);

			if (cf && readable(cf, 64))
				fr = (uintptr_t)ld(
					cf +
					(uintptr_t)f->cframe_current_frame);
		} else if (f->tstate_frame >= 0) {
			fr = (uintptr_t)ld(ts + (uintptr_t)f->tstate_frame);
		}
		for (; fr && depth < hc.max_frames && readable(fr, 64);
		     fr = (uintptr_t)ld(fr + (uintptr_t)f->frame_previous)) {
			uintptr_t code =
				(uintptr_t)ld(fr + (uintptr_t)f->frame_code);

			/* 3.12+: the C stack's shim frames own no locals */
			if (f->frame_owner >= 0 &&
			    *(const uint8_t *)(fr +
					       (uintptr_t)f->frame_owner) ==
				    MA_FRAME_OWNED_BY_CSTACK)
				continue;
			/* 3.13: f_executable may be something else */
			if (!looks_like_object(code) ||
			    kind_of((uintptr_t)ld(code +
						  (uintptr_t)f->object_type)) !=
				    K_CODE)
				continue;
			frame_roots(fr, code, tid, depth++);
		}
	}
}

static void module_root(uintptr_t o)
{
	struct ma_heap_root r = { .tag = MA_HEAP_T_ROOT,
				  .kind = MA_HEAP_R_MODULE,
				  .obj = o };

	if (hc.off.module_name >= 0 &&
	    readable(o + (uintptr_t)hc.off.module_name, 8))
		r.name = ld(o + (uintptr_t)hc.off.module_name);
	emit(&r, sizeof(r));
}

/* Modules are roots: found on the collector's lists, by type */
static void module_roots_list(uintptr_t head, uint64_t count)
{
	uintptr_t g = (uintptr_t)ld(head) & ~(uintptr_t)7;

	for (uint64_t n = 0; n < count;
	     n++, g = (uintptr_t)ld(g) & ~(uintptr_t)7) {
		uintptr_t o = g + GC_HEAD;

		if (kind_of((uintptr_t)ld(o + (uintptr_t)hc.off.object_type)) ==
		    K_MODULE)
			module_root(o);
	}
}

static int walk(void)
{
	uintptr_t interps[MAX_INTERPS], heads[8 * MAX_INTERPS];
	uint64_t counts[8 * MAX_INTERPS];
	int ni = interpreters(interps), nh = 0;
	uint32_t collecting = 0;
	uint64_t t0 = now_ns();

	if (!ni)
		return -ENOENT;
	if (hc.flags & MA_HEAP_GC_PER_INTERP) {
		for (int i = 0; i < ni; i++) {
			uintptr_t gcs =
				interps[i] + (uintptr_t)hc.off.interp_gc;

			nh += gc_lists(gcs, heads + nh, 8);
			if (hc.off.gc_collecting >= 0 &&
			    readable(gcs + (uintptr_t)hc.off.gc_collecting, 4))
				collecting |= (uint32_t)ld32(
					gcs + (uintptr_t)hc.off.gc_collecting);
		}
	} else {
		uintptr_t gcs = hc.runtime_addr + (uintptr_t)hc.off.runtime_gc;

		nh = gc_lists(gcs, heads, 8);
		if (hc.off.gc_collecting >= 0)
			collecting = (uint32_t)ld32(
				gcs + (uintptr_t)hc.off.gc_collecting);
	}
	/* Every object on a list is marked first, so that a referent on a
	 * list is not taken for an untracked one */
	for (int i = 0; i < nh; i++)
		counts[i] = mark_list(heads[i]);
	for (int i = 0; i < nh; i++)
		module_roots_list(heads[i], counts[i]);
	for (int i = 0; i < ni; i++)
		if (!sigsetjmp(fault_jb, 0)) {
			fault_armed = 1;
			thread_roots(interps[i]);
			fault_armed = 0;
		} else {
			faults++;
		}
	drain_work();
	for (int i = 0; i < nh; i++)
		walk_list(heads[i], counts[i]);
	drain_work();

	pstat.tag = MA_HEAP_T_POOLS;
	emit(&pstat, sizeof(pstat));
	struct ma_heap_end end = {
		.tag = MA_HEAP_T_END,
		.gc_collecting = collecting,
		.objects = n_objects,
		.edges = n_edges,
		.unreadable = n_unreadable,
		.faults = faults,
		.walk_ns = now_ns() - t0,
		.copy_bytes = mapped_bytes + MA_HEAP_NBUFS * hc.chunk_size,
	};

	emit(&end, sizeof(end));
	if (chunk_pos)
		flush_chunk();
	return 0;
}

/* ------------------------------------------------------------------ */
/* After the walk: names of dict entries, on request */

static uint64_t dict_key_of(uintptr_t d, uintptr_t v)
{
	intptr_t pos = 0;
	uintptr_t k, val;
	uint64_t found = 0;

	if (!hc.dict_next || !looks_like_object(d))
		return 0;
	if (sigsetjmp(fault_jb, 0))
		return 0;
	fault_armed = 1;
	for (int n = 0; n < (1 << 26); n++) {
		if (!((dict_next_t)hc.dict_next)(d, &pos, &k, &val))
			break;
		if (val == v) {
			found = k;
			break;
		}
	}
	fault_armed = 0;
	return found;
}

static __attribute__((noreturn)) void serve(void)
{
	for (uint32_t n = 0;; n++) {
		uint32_t req =
			__atomic_load_n(&ma_heap_box.req, __ATOMIC_ACQUIRE);

		if (req == MA_HEAP_REQ_EXIT)
			copy_exit();
		if (req == MA_HEAP_REQ_LABEL) {
			ma_heap_box.req_result = dict_key_of(ma_heap_box.req_a,
							     ma_heap_box.req_b);
			ma_heap_box.req = MA_HEAP_REQ_NONE;
			__atomic_fetch_add(&ma_heap_box.req_done, 1,
					   __ATOMIC_RELEASE);
			n = 0;
			continue;
		}
		nap_us(n < 1000 ? 20 : 1000);
		check_attacher();
	}
}

static void fail(int err, const char *msg)
{
	ma_heap_box.error = err;
	ma_fmt(ma_heap_box.message, sizeof(ma_heap_box.message), "%s", msg);
	__atomic_store_n(&ma_heap_box.state, MA_HEAP_ST_FAILED,
			 __ATOMIC_RELEASE);
}

/* Raising one's own oom_score_adj needs no privilege */
static void oom_first(void)
{
	long fd = rsys(SYS_open, (long)"/proc/self/oom_score_adj",
		       O_WRONLY | O_CLOEXEC, 0, 0, 0);

	if (fd < 0)
		return;
	rsys(SYS_write, fd, (long)"1000", 4, 0, 0);
	rsys(SYS_close, fd, 0, 0, 0, 0);
}

static __attribute__((noreturn)) void copy_main(void)
{
	uint64_t all = ~0ull;
	struct sigaction sa;
	uint64_t unblock;
	int err;

	/* Deaf to the target's signals (a Ctrl-C to its process group), and
	 * out of that group */
	rsys(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, 0, 8, 0);
	rsys(SYS_setpgid, 0, 0, 0, 0, 0);
	rsys(SYS_prctl, PR_SET_NAME, (long)"memattach-heap", 0, 0, 0);
	/* The target's threads first, when they want the CPU */
	rsys(SYS_setpriority, 0 /* PRIO_PROCESS */, 0, 10, 0, 0);
	/* and when memory runs short: the copy is the OOM killer's first
	 * choice, never the target.  It is in the target's cgroup with as
	 * many resident pages, and the pages the target writes meanwhile are
	 * charged there: a target near its limit was the one killed */
	oom_first();
	/* Nothing of the target's stays open here */
	if (rsys(SYS_close_range, 0, ~0u, 0, 0, 0) < 0)
		for (int fd = 0; fd < 65536; fd++)
			rsys(SYS_close, fd, 0, 0, 0, 0);
	if (hc.attacher_pid > 0) {
		attacher_fd =
			(int)rsys(SYS_pidfd_open, hc.attacher_pid, 0, 0, 0, 0);
		if (attacher_fd < 0)
			copy_exit(); /* memattach is gone already */
	}
	/* Faults are ours to recover from: SIGSEGV/SIGBUS unblocked, with a
	 * handler that skips the object being read */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fault;
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	unblock = (1ull << (SIGSEGV - 1)) | (1ull << (SIGBUS - 1));
	rsys(SYS_rt_sigprocmask, SIG_UNBLOCK, (long)&unblock, 0, 8, 0);

	for (int i = 0; i < MA_HEAP_NBUFS; i++) {
		bufs[i] = rmap(hc.chunk_size);
		if (!bufs[i]) {
			fail(-ENOMEM, "no memory for the chunk buffers");
			serve();
		}
		ma_heap_box.buf[i] = (uint64_t)(uintptr_t)bufs[i];
	}
	chunk = bufs[0];
	err = read_maps();
	if (err) {
		fail(err, "cannot read /proc/self/maps");
		serve();
	}
	pstat.pool_size = hc.pool_size;
	ma_heap_box.magic = MA_HEAP_MAGIC;
	__atomic_store_n(&ma_heap_box.state, MA_HEAP_ST_WALKING,
			 __ATOMIC_RELEASE);
	err = walk();
	if (err)
		fail(err, "no interpreter found");
	else
		__atomic_store_n(&ma_heap_box.state, MA_HEAP_ST_DONE,
				 __ATOMIC_RELEASE);
	serve();
}

/*
 * Called in the target (remote call, every thread stopped): make the copy.
 * Returns its PID, or -errno.  The copy starts stopped under memattach's
 * ptrace (it set PTRACE_O_TRACECLONE on this thread), and, should memattach
 * die before it takes hold, finds no memattach and exits (copy_main).
 */
__attribute__((visibility("default"), noinline)) long
ma_heap_fork(const struct ma_heap_cfg *c)
{
	long pid;

	if (!c || c->magic != MA_HEAP_MAGIC || c->abi != MA_HEAP_ABI ||
	    c->chunk_size < 4096 || c->off.abi != MA_OFFSETS_ABI)
		return -EINVAL;
	memcpy(&hc, c, sizeof(hc));
	memset(&ma_heap_box, 0, sizeof(ma_heap_box));
	/* clone(flags = 0: no exit signal, same stack (a copy of it)) */
	pid = rsys(SYS_clone, 0, 0, 0, 0, 0);
	if (pid == 0)
		copy_main();
	if (pid > 0) {
		int slot = 0;

		for (int i = 0; i < MA_HEAP_MAX_COPIES; i++)
			if (!ma_heap_copies[i]) {
				slot = i;
				break;
			}
		ma_heap_copies[slot] = (int32_t)pid;
	}
	return pid;
}

/*
 * Called in the target (remote call): reap the copies that have ended.
 * Only they: wait4 on each recorded PID, never on any child.  Returns how
 * many were reaped.
 */
__attribute__((visibility("default"), noinline)) int ma_heap_reap(void)
{
	int n = 0;

	for (int i = 0; i < MA_HEAP_MAX_COPIES; i++) {
		long r;

		if (!ma_heap_copies[i])
			continue;
		r = rsys(SYS_wait4, ma_heap_copies[i], 0, __WALL | WNOHANG, 0,
			 0);
		/* reaped, or not our child any more (ECHILD): forget it */
		if (r == ma_heap_copies[i] || r == -ECHILD) {
			ma_heap_copies[i] = 0;
			n += r > 0;
		}
	}
	return n;
}
