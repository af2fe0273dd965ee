/* SPDX-License-Identifier: MIT */
/*
 * Ring producer and consumer (see ma_ring_io.h and the layout in ma_ring.h).
 *
 * Memory ordering, in one place:
 *   - a producer reserves with a CAS on head after an acquire load of tail,
 *     so the consumer's zeroing of that space (done before its release store
 *     of tail) is visible before the producer writes there;
 *   - a producer writes the body, then the first word with a release store;
 *     the consumer acquire-loads that word, so a non-zero word means the
 *     whole record is there;
 *   - the consumer zeroes what it read, then release-stores tail.
 * Reservation order (the CAS on head) is the order the consumer sees, which
 * is what lets the payload log a free before the call that frees, and an
 * allocation after the call that allocates: an address handed out again is
 * always seen freed first.
 */
#include "ma_ring_io.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

uint64_t ma_ring_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

int ma_ring_init(void *mem, uint64_t data_size, uint32_t pid, uint64_t now_ns)
{
	struct ma_ring_hdr *h = mem;

	if (!is_pow2(data_size) || data_size < MA_RING_MIN_DATA ||
	    data_size > MA_RING_MAX_DATA)
		return -EINVAL;
	memset(h, 0, MA_RING_HDR_SIZE);
	h->version = MA_RING_VERSION;
	h->hdr_size = MA_RING_HDR_SIZE;
	h->data_size = data_size;
	h->target_pid = pid;
	h->start_ns = now_ns;
	h->state = MA_STATE_STARTING;
	/* magic last: a reader that sees it sees a complete header */
	__atomic_store_n(&h->magic, MA_RING_MAGIC, __ATOMIC_RELEASE);
	return 0;
}

void ma_ring_producer(struct ma_ring *r, void *mem, uint32_t full_wait_us)
{
	r->hdr = mem;
	r->data = (uint8_t *)mem + MA_RING_HDR_SIZE;
	r->size = r->hdr->data_size;
	r->full_wait_us = full_wait_us;
	r->_pad = 0;
	r->stalled_tail = 0;
}

/* Not a cancellation point (nanosleep() is): we may be inside a malloc
 * hook, where unwinding the thread would leave our state half-updated. */
static void short_sleep(long ns)
{
	struct timespec ts = { 0, ns };

	syscall(SYS_nanosleep, &ts, NULL);
}

/* Fetch a line for writing (prefetchw: exclusive, no upgrade later);
 * older CPUs without it treat it as a NOP */
static inline void prefetch_w(const void *p)
{
#if defined(__x86_64__)
	__asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
#else
	__builtin_prefetch(p, 1, 3);
#endif
}

static void *drop(struct ma_ring *r, uint32_t len)
{
	__atomic_fetch_add(&r->hdr->lost_records, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&r->hdr->lost_bytes, len, __ATOMIC_RELAXED);
	return NULL;
}

void *ma_ring_reserve(struct ma_ring *r, uint32_t len)
{
	struct ma_ring_hdr *h = r->hdr;
	const uint64_t size = r->size, mask = size - 1;
	uint64_t head, pos, pad, deadline = 0;
	unsigned int spins = 0;

	if (len < sizeof(struct ma_rec) || (len & 7) || len > size / 4 ||
	    len > 0xffffffu)
		return NULL;
	head = __atomic_load_n(&h->head, __ATOMIC_RELAXED);
	for (;;) {
		pos = head & mask;
		/* a record never wraps: pad to the end, start at 0 */
		pad = pos + len > size ? size - pos : 0;
		uint64_t tail = __atomic_load_n(&h->tail, __ATOMIC_ACQUIRE);

		if (head + pad + len - tail > size) {
			uint64_t now;

			if (r->full_wait_us == 0 ||
			    __atomic_load_n(&r->stalled_tail,
					    __ATOMIC_RELAXED) == tail + 1)
				return drop(r, len);
			now = ma_ring_now_ns();
			if (!deadline) {
				deadline = now + r->full_wait_us * 1000ull;
			} else if (now >= deadline) {
				__atomic_store_n(&r->stalled_tail, tail + 1,
						 __ATOMIC_RELAXED);
				return drop(r, len);
			}
			if (++spins < 64)
				__builtin_ia32_pause();
			else
				short_sleep(20000);
			head = __atomic_load_n(&h->head, __ATOMIC_RELAXED);
			continue;
		}
		if (__atomic_compare_exchange_n(
			    &h->head, &head, head + pad + len, 0,
			    __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
			break;
	}
	/* ask for the lines a few records ahead now: each new line is a cache
	 * miss, and the next locked CAS would wait for this record's stores
	 * to reach it */
	prefetch_w(r->data + ((head + pad + len + 512) & mask));
	if (pad) {
		struct ma_rec *p = (struct ma_rec *)(r->data + pos);

		p->thread = 0;
		__atomic_store_n(&p->type_len,
				 ma_rec_make(MA_REC_PAD, (uint32_t)pad),
				 __ATOMIC_RELEASE);
		pos = 0;
	}
	return r->data + pos;
}

void ma_ring_commit(void *rec, uint32_t type, uint32_t len)
{
	__atomic_store_n(&((struct ma_rec *)rec)->type_len,
			 ma_rec_make(type, len), __ATOMIC_RELEASE);
}

/* ------------------------------------------------------------------ */
/* Consumer */

int ma_ring_reader_init(struct ma_ring_reader *r, void *map, size_t map_len)
{
	struct ma_ring_hdr *h = map;
	/*
	 * The target owns the memfd and may rewrite the header at any time
	 * (a hostile target, issue 13): every field is loaded once, and only
	 * the checked copies are used.  An unaligned tail would make every
	 * record word an unaligned (and, at the end of the data, overrunning)
	 * load: the producer only ever moves it by multiples of 8.
	 */
	uint64_t data_size = __atomic_load_n(&h->data_size, __ATOMIC_RELAXED);
	uint64_t tail;

	memset(r, 0, sizeof(*r));
	r->fd = -1;
	if (map_len < MA_RING_HDR_SIZE ||
	    __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != MA_RING_MAGIC ||
	    h->version != MA_RING_VERSION || h->hdr_size != MA_RING_HDR_SIZE ||
	    !is_pow2(data_size) || data_size < MA_RING_MIN_DATA ||
	    data_size > MA_RING_MAX_DATA ||
	    data_size > map_len - MA_RING_HDR_SIZE)
		return -EPROTO;
	tail = __atomic_load_n(&h->tail, __ATOMIC_ACQUIRE);
	if (tail & 7)
		return -EPROTO;
	r->hdr = h;
	r->data = (uint8_t *)map + MA_RING_HDR_SIZE;
	r->size = data_size;
	r->mask = data_size - 1;
	r->tail = tail;
	r->released = r->tail;
	return 0;
}

int ma_ring_next(struct ma_ring_reader *r, const struct ma_rec **out)
{
	for (;;) {
		uint64_t pos = r->tail & r->mask;
		const struct ma_rec *rec = (const void *)(r->data + pos);
		uint32_t w, len;

		/* a whole lap read and not released: what follows is this
		 * lap's records again, not new ones */
		if (r->tail - r->released >= r->size)
			return 0;
		w = __atomic_load_n(&rec->type_len, __ATOMIC_ACQUIRE);
		len = ma_rec_len(w);
		if (!w)
			return 0;
		if (len < sizeof(struct ma_rec) || (len & 7) ||
		    pos + len > r->size)
			return -EPROTO;
		r->tail += len;
		if (ma_rec_type(w) == MA_REC_PAD)
			continue;
		r->word = w;
		*out = rec;
		return 1;
	}
}

/*
 * Zero n bytes at p.  Whole cache lines get non-temporal stores: with plain
 * stores every line of the ring would sit modified in the consumer's cache
 * and each producer write would first fetch it from there (measured with a
 * one-producer, one-consumer loop on the project's machine: 6.4 ns per
 * 32-byte record with memset, 2.6 ns with streaming stores; in a tracked
 * Python process it was a quarter of the tracking cost).
 */
static void zero_stream(uint8_t *p, uint64_t n)
{
#if defined(__x86_64__)
	uint8_t *end = p + n;
	uint8_t *a = (uint8_t *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
	uint8_t *b = (uint8_t *)((uintptr_t)end & ~(uintptr_t)63);

	if (a >= b) {
		memset(p, 0, n);
		return;
	}
	memset(p, 0, (size_t)(a - p));
	for (; a < b; a += 64)
		__asm__ volatile("movnti %1, 0(%0)\n\t"
				 "movnti %1, 8(%0)\n\t"
				 "movnti %1, 16(%0)\n\t"
				 "movnti %1, 24(%0)\n\t"
				 "movnti %1, 32(%0)\n\t"
				 "movnti %1, 40(%0)\n\t"
				 "movnti %1, 48(%0)\n\t"
				 "movnti %1, 56(%0)"
				 :
				 : "r"(a), "r"(0ul)
				 : "memory");
	memset(b, 0, (size_t)(end - b));
#else
	memset(p, 0, n);
#endif
}

#define RING_PAGE 4096ull

/*
 * Clear the ring's bytes [from, to) (byte counters, less than a lap): zero
 * them, or, punch set, punch them out of the ring's file (whole pages):
 * they read as zeroes after, in every mapping, and the writer that comes
 * to them next faults in fresh ones.  The data size is a multiple of the
 * page, so no page straddles the lap.  What the file refuses is zeroed,
 * and the reader stops trying.
 */
static void clear_range(struct ma_ring_reader *r, uint64_t from, uint64_t to,
			int punch)
{
	while (from < to) {
		uint64_t pos = from & r->mask;
		uint64_t n = to - from;

		if (n > r->size - pos)
			n = r->size - pos;
		if (punch && r->fd >= 0 &&
		    fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(MA_RING_HDR_SIZE + pos), (off_t)n) == 0) {
			r->given_back += n;
		} else {
			if (punch)
				r->fd = -1;
			zero_stream(r->data + pos, n);
		}
		from += n;
	}
}

/* Whether to give pages back now: the last whole second's reading rate
 * was under max_rate (the first second counts as slow) */
static int give_back_now(struct ma_ring_reader *r)
{
	uint64_t now = ma_ring_now_ns(), dt = now - r->rate_t0;

	if (dt >= 1000000000ull) {
		uint64_t bytes = r->tail - r->rate_mark;

		r->slow = bytes / (dt / 1000000ull) < r->max_rate / 1000ull;
		r->rate_t0 = now;
		r->rate_mark = r->tail;
	}
	return r->slow;
}

void ma_ring_give_back(struct ma_ring_reader *r, int fd, uint64_t max_rate)
{
	r->fd = fd;
	r->max_rate = max_rate;
	r->slow = 1;
	r->rate_t0 = ma_ring_now_ns();
	r->rate_mark = r->tail;
}

void ma_ring_release(struct ma_ring_reader *r)
{
	uint64_t to = r->tail;

	if (r->released == to)
		return;
	if (r->fd >= 0 && give_back_now(r)) {
		/*
		 * Only whole pages are handed back: the bytes before
		 * `released` may be written by a producer as soon as the ring
		 * wraps, so a page holding some of them cannot be punched.
		 * Publishing the tail at a page boundary keeps the next
		 * release's first page whole; the bytes read past it wait
		 * for the next release.
		 */
		uint64_t first =
			(r->released + RING_PAGE - 1) & ~(RING_PAGE - 1);
		uint64_t last = to & ~(RING_PAGE - 1);

		if (last <= r->released)
			return;
		clear_range(r, r->released, first, 0);
		clear_range(r, first, last, 1);
		to = last;
	} else {
		clear_range(r, r->released, to, 0);
	}
	r->released = to;
#if defined(__x86_64__)
	/* streaming stores are weakly ordered: the zeroes must be visible
	 * before the tail that hands them back */
	__asm__ volatile("sfence" ::: "memory");
#endif
	__atomic_store_n(&r->hdr->tail, r->released, __ATOMIC_RELEASE);
}

uint64_t ma_ring_backlog(const struct ma_ring_reader *r)
{
	return __atomic_load_n(&r->hdr->head, __ATOMIC_ACQUIRE) - r->tail;
}

void ma_ring_heartbeat(struct ma_ring_hdr *h, uint64_t now_ns)
{
	__atomic_store_n(&h->heartbeat_ns, now_ns, __ATOMIC_RELEASE);
}

void ma_ring_request_stop(struct ma_ring_hdr *h)
{
	__atomic_store_n(&h->command, MA_CMD_STOP, __ATOMIC_RELEASE);
}

uint32_t ma_ring_state(const struct ma_ring_hdr *h)
{
	return __atomic_load_n(&h->state, __ATOMIC_ACQUIRE);
}

int ma_ring_map_fd(int fd, void **map, size_t *len)
{
	struct ma_ring_hdr h;
	struct stat st;
	ssize_t n = pread(fd, &h, sizeof(h), 0);
	size_t total;
	void *p;

	*map = NULL;
	*len = 0;
	if (n < 0)
		return -errno;
	if ((size_t)n < sizeof(h) || h.magic != MA_RING_MAGIC ||
	    h.hdr_size != MA_RING_HDR_SIZE || !is_pow2(h.data_size) ||
	    h.data_size > MA_RING_MAX_DATA)
		return -EPROTO;
	if (fstat(fd, &st) < 0)
		return -errno;
	total = MA_RING_HDR_SIZE + (size_t)h.data_size;
	if ((uint64_t)st.st_size < total)
		return -EPROTO;
	p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	*map = p;
	*len = total;
	return 0;
}
