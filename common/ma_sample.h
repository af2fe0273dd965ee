/* SPDX-License-Identifier: MIT */
/*
 * Sampled tracking (`memattach attach --sample BYTES`): the arithmetic both
 * sides share, header only and libc-free (the payload links no libm).
 *
 * Allocated bytes are sampled as a Poisson process of rate 1/mean on the
 * line of all bytes a thread allocates: each thread keeps a countdown drawn
 * from an exponential distribution of mean `mean`; an allocation that
 * crosses it is sampled and a fresh countdown is drawn (the process is
 * memoryless, so the overshoot is dropped).  A block of s bytes is then
 * sampled with probability p(s) = 1 - exp(-s / mean), independently of
 * every other block, and s / p(s) bytes, 1 / p(s) blocks, are its unbiased
 * estimates (Horvitz-Thompson).
 */
#ifndef MA_SAMPLE_H
#define MA_SAMPLE_H

#include <stdint.h>

#define MA_SAMPLE_MIN	 1ull		/* bytes */
#define MA_SAMPLE_MAX	 (1ull << 30)	/* the capture header's 32 bits */
#define MA_SAMPLE_ADVICE (512ull << 10) /* what docs/memattach.md advises */

/* e^-x for 0 <= x: x = k ln 2 + r, |r| <= ln2 / 2, a Taylor series of
 * degree 13 for e^-r (relative error below 1e-15), scaled by 2^-k through
 * the exponent bits */
static inline double ma_sample_exp_neg(double x)
{
	const double ln2 = 0.6931471805599453094;
	union {
		double d;
		uint64_t u;
	} s;
	double r, t = 1.0, sum = 1.0;
	int64_t k;

	if (!(x > 0.0))
		return 1.0;
	if (x > 700.0)
		return 0.0;
	k = (int64_t)(x / ln2 + 0.5);
	r = -(x - (double)k * ln2);
	for (int i = 1; i <= 13; i++) {
		t *= r / i;
		sum += t;
	}
	s.u = (uint64_t)(1023 - k) << 52; /* 2^-k, k <= 1010 */
	return sum * s.d;
}

/* ln(u) for 0 < u <= 1: u = m 2^e, m in [sqrt(1/2), sqrt(2)), ln m =
 * 2 atanh(t) with t = (m - 1) / (m + 1), |t| < 0.172 (series to t^21) */
static inline double ma_sample_ln(double u)
{
	const double ln2 = 0.6931471805599453094;
	union {
		double d;
		uint64_t u;
	} b = { .d = u };
	int64_t e = (int64_t)((b.u >> 52) & 0x7ff) - 1023;
	double m, t, t2, term, sum;

	if (!(u > 0.0))
		return -745.0;
	b.u = (b.u & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
	m = b.d;
	if (m > 1.4142135623730951) {
		m *= 0.5;
		e++;
	}
	t = (m - 1.0) / (m + 1.0);
	t2 = t * t;
	term = t;
	sum = 0.0;
	for (int i = 1; i <= 21; i += 2) {
		sum += term / i;
		term *= t2;
	}
	return 2.0 * sum + (double)e * ln2;
}

/* p(s): the probability that a block of s bytes is sampled */
static inline double ma_sample_prob(uint64_t s, uint64_t mean)
{
	double x = (double)s / (double)mean;

	if (x < 1e-4) /* 1 - e^-x without cancellation */
		return x * (1.0 - x * (0.5 - x / 6.0));
	return 1.0 - ma_sample_exp_neg(x);
}

/* A per-thread xorshift64* generator (state never 0) */
static inline uint64_t ma_sample_rand(uint64_t *st)
{
	uint64_t x = *st;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*st = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* Uniform in (0, 1] */
static inline double ma_sample_unit(uint64_t *st)
{
	return (double)((ma_sample_rand(st) >> 11) + 1) *
	       (1.0 / 9007199254740992.0);
}

/* The next countdown: the ceiling of an exponential of mean `mean` */
static inline int64_t ma_sample_draw(uint64_t *st, uint64_t mean)
{
	double v = -ma_sample_ln(ma_sample_unit(st)) * (double)mean;

	/* ceil: a block of n bytes crosses it (n >= countdown) exactly when
	 * v <= n, i.e. with probability p(n) */
	if (v > 4e18)
		return (int64_t)4e18;
	return (int64_t)v + 1;
}

/*
 * The free's filter (injector/sample.c): 2^bits 8-bit counters of the live
 * sampled blocks per hash of their address.  A free whose counter is 0
 * passes with one load; any other takes the full path (a table lookup), so
 * the filter must stay mostly zeros: its size is chosen when a session
 * starts, 32 counters per sampled block expected live then (about 3 % of
 * the frees of unsampled blocks take the full path), from the target's RSS
 * over the mean (an upper bound of the live heap).  64 KiB at least (what
 * a small process needs), 4 MiB at most (a 40 GiB heap sampled every
 * 512 KiB: 80,000 blocks live).  The payload maps none of it: its pages
 * are touched only as counters are used.
 */
#define MA_SAMPLE_FILTER_BITS_MIN  16
#define MA_SAMPLE_FILTER_BITS_MAX  22
#define MA_SAMPLE_FILTER_PER_BLOCK 32

static inline uint32_t ma_sample_filter_bits(uint64_t rss, uint64_t mean)
{
	uint64_t want;
	uint32_t bits = MA_SAMPLE_FILTER_BITS_MIN;

	if (!mean)
		return bits;
	want = (rss / mean + 1) * MA_SAMPLE_FILTER_PER_BLOCK;
	while (bits < MA_SAMPLE_FILTER_BITS_MAX && (1ull << bits) < want)
		bits++;
	return bits;
}

/* A block's counter: neighbouring blocks share a line of the filter (the
 * frees of one pymalloc pool often come together), and an address 1 MiB
 * away lands elsewhere.  mask: 2^bits - 1 */
static inline uint32_t ma_sample_filter_hash(uint64_t p, uint32_t mask)
{
	return (uint32_t)((p >> 4) ^ (p >> 20)) & mask;
}

#endif
