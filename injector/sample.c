/* SPDX-License-Identifier: MIT */
/*
 * Sampled tracking (MA_TRACK_SAMPLE, docs/payload.md "Sampled tracking"):
 * the countdown's slow path, the estimates of a sampled block and the
 * filter of sampled addresses that lets a free of any other block pass
 * with one load.
 *
 * The hot paths are inline in internal.h: an allocation subtracts its size
 * from the thread's countdown (a TLS word) and, while it stays above 0,
 * only calls the real function; a free reads the filter's counter for its
 * address and, when it is 0, only calls the real function.  What is
 * sampled goes the aggregated way (agg.c) with its estimates as figures.
 */
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../common/ma_sample.h"
#include "internal.h"

struct ma_samp_hot ma_samp_hot __attribute__((
	aligned(64))) = { .fmask = (1u << MA_SAMPLE_FILTER_BITS_MIN) - 1 };
uint64_t ma_samp_mean;
/* mincore's unit (filter_clear): x86_64's page */
#define FILTER_PAGE 4096u
uint8_t ma_samp_filter[1u << MA_SAMPLE_FILTER_BITS_MAX]
	__attribute__((aligned(FILTER_PAGE)));
/* counters that a session may have written: the rest are still zero
 * pages, never touched */
static uint32_t filter_used;

/* A seed of this thread's own: its TLS address and tid, the clock */
static void seed(struct ma_tls *t)
{
	uint64_t x =
		(uintptr_t)t ^ (uint64_t)ma_gettid() << 32 ^ ma_ring_now_ns();

	/* splitmix64's finaliser: neighbouring seeds, unrelated states */
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	x ^= x >> 31;
	t->rng = x ? x : 1;
}

int ma_samp_cross(struct ma_tls *t, uint64_t n, uint32_t g)
{
	uint64_t mean = __atomic_load_n(&ma_samp_mean, __ATOMIC_RELAXED);

	if (ma_unlikely(!mean))
		return 1;
	if (t->sgen != g) {
		/* this thread's first allocation in the session: its
		 * countdown starts here (memoryless: as good as any) */
		if (ma_unlikely(!t->rng))
			seed(t);
		t->sgen = g;
		t->left = ma_sample_draw(&t->rng, mean) - (int64_t)n;
		if (t->left > 0)
			return 0;
	}
	t->left = ma_sample_draw(&t->rng, mean);
	return 1;
}

void ma_samp_weights(uint64_t size, uint64_t *wbytes, uint64_t *wcount)
{
	struct ma_tls *t = &ma_tls;
	uint64_t mean = __atomic_load_n(&ma_samp_mean, __ATOMIC_RELAXED);
	double p, c, b;
	uint64_t ci;

	if (!mean || !size) {
		*wbytes = size;
		*wcount = 1;
		return;
	}
	p = ma_sample_prob(size, mean);
	b = (double)size / p;
	c = 1.0 / p;
	if (ma_unlikely(!t->rng))
		seed(t);
	/* rounded at random: E[count] = 1 / p exactly (the bytes are
	 * rounded to the nearest, at most half a byte off) */
	ci = (uint64_t)c;
	if (ma_sample_unit(&t->rng) <= c - (double)ci)
		ci++;
	*wbytes = (uint64_t)(b + 0.5);
	*wcount = ci ? ci : 1;
}

/* Saturated counters stay (a false positive costs a table lookup) */
void ma_samp_filter_add(uint64_t p)
{
	uint8_t *c = &ma_samp_filter[ma_samp_hash(p)];
	uint8_t v = __atomic_load_n(c, __ATOMIC_RELAXED);

	while (v != 0xff &&
	       !__atomic_compare_exchange_n(c, &v, v + 1, 1, __ATOMIC_RELEASE,
					    __ATOMIC_RELAXED))
		;
}

void ma_samp_filter_del(uint64_t p)
{
	uint8_t *c = &ma_samp_filter[ma_samp_hash(p)];
	uint8_t v = __atomic_load_n(c, __ATOMIC_RELAXED);

	while (v != 0xff && v != 0 &&
	       !__atomic_compare_exchange_n(c, &v, v - 1, 1, __ATOMIC_RELAXED,
					    __ATOMIC_RELAXED))
		;
}

/*
 * Zero the first n counters (a multiple of the page size), page by page,
 * only the pages in memory: the others were never written (writing them
 * would fault them in, threads stopped: 10 ms for 4 MiB, measured), or
 * were swapped out, whose counters stay, costing a table lookup at the
 * frees they send to the full path, never a free missed (a counter left
 * is only ever higher than the blocks it counts)
 */
static void filter_clear(uint32_t n)
{
	unsigned char vec[(1u << MA_SAMPLE_FILTER_BITS_MAX) / FILTER_PAGE];

	if (mincore(ma_samp_filter, n, vec) < 0) {
		memset(ma_samp_filter, 0, n);
		return;
	}
	for (uint32_t i = 0; i < n / FILTER_PAGE; i++)
		if (vec[i] & 1)
			memset(ma_samp_filter + (size_t)i * FILTER_PAGE, 0,
			       FILTER_PAGE);
}

/* Threads stopped (ma_start): a hook that had read the mask before they
 * were stopped reads a counter of the cleared filter, of a block no
 * earlier than this session (0: a free that passes, as it should) */
void ma_samp_start(uint32_t gen, uint64_t mean, uint32_t filter_bits)
{
	uint32_t n;

	if (filter_bits < MA_SAMPLE_FILTER_BITS_MIN)
		filter_bits = MA_SAMPLE_FILTER_BITS_MIN;
	if (filter_bits > MA_SAMPLE_FILTER_BITS_MAX)
		filter_bits = MA_SAMPLE_FILTER_BITS_MAX;
	n = 1u << filter_bits;
	filter_clear(filter_used);
	if (filter_used < n)
		filter_used = n;
	__atomic_store_n(&ma_samp_hot.fmask, n - 1, __ATOMIC_RELAXED);
	__atomic_store_n(&ma_samp_mean, mean, __ATOMIC_RELAXED);
	__atomic_store_n(&ma_samp_hot.gen, gen, __ATOMIC_RELEASE);
}
