/* SPDX-License-Identifier: MIT */
/*
 * The sampled mode's arithmetic (common/ma_sample.h), which the payload
 * computes without libm: its exp and ln against libm's, the countdown's
 * distribution (an exponential of the mean: mean and tail), and the
 * sampling itself simulated as the payload does it: per block of s bytes,
 * sampled with probability 1 - exp(-s/mean), and the estimates unbiased.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../../common/ma_sample.h"

Test(sample, exp_neg_matches_libm)
{
	for (double x = 0; x < 60; x += 0.0137) {
		double a = ma_sample_exp_neg(x), b = exp(-x);

		cr_assert(fabs(a - b) <= 1e-14 * b, "exp(-%g): %.17g vs %.17g",
			  x, a, b);
	}
	cr_assert_eq(ma_sample_exp_neg(0), 1.0);
	cr_assert_eq(ma_sample_exp_neg(800), 0.0);
}

Test(sample, ln_matches_libm)
{
	for (double u = 1e-300; u <= 1.0; u *= 1.37) {
		double a = ma_sample_ln(u), b = log(u);

		cr_assert(fabs(a - b) <= 1e-12 * fabs(b) + 1e-15,
			  "ln(%g): %.17g vs %.17g", u, a, b);
	}
	cr_assert(fabs(ma_sample_ln(1.0)) < 1e-15);
	cr_assert(fabs(ma_sample_ln(0.5) + M_LN2) < 1e-15);
}

Test(sample, prob_matches_libm)
{
	const uint64_t mean = 512 << 10;
	uint64_t sizes[] = { 1,	    16,	    48,	     512,	 4096,
			     65536, 524288, 1 << 20, 64ull << 20 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		double want = -expm1(-(double)sizes[i] / (double)mean);
		double got = ma_sample_prob(sizes[i], mean);

		cr_assert(fabs(got - want) <= 1e-12 * want,
			  "p(%llu): %.17g vs %.17g",
			  (unsigned long long)sizes[i], got, want);
	}
}

/* The countdown is ceil(Exp(mean)): its mean is mean + 1/2, and
 * P(countdown > x) = exp(-x / mean) */
Test(sample, countdown_is_exponential)
{
	const uint64_t mean = 4096;
	const int n = 400000;
	uint64_t st = 0x1234567887654321ull;
	double sum = 0;
	int over = 0;

	for (int i = 0; i < n; i++) {
		int64_t d = ma_sample_draw(&st, mean);

		cr_assert(d >= 1);
		sum += (double)d;
		over += d > 2 * (int64_t)mean;
	}
	/* standard errors: mean/sqrt(n) = 6.5 bytes; sqrt(p(1-p)/n) */
	cr_assert(fabs(sum / n - (mean + 0.5)) < 5 * 6.5, "mean %g", sum / n);
	cr_assert(fabs((double)over / n - exp(-2.0)) <
			  5 * sqrt(exp(-2.0) * (1 - exp(-2.0)) / n),
		  "tail %g", (double)over / n);
}

/*
 * The payload's decision, simulated: a countdown per thread, blocks of a
 * few sizes in turn; each size's sampled fraction is p(s) and the sum of
 * s / p(s) over its samples estimates its bytes.
 */
Test(sample, sampling_is_unbiased)
{
	const uint64_t mean = 32768;
	const uint64_t sizes[] = { 32, 480, 4096, 65536, 1 << 20 };
	enum { NS = sizeof(sizes) / sizeof(sizes[0]) };
	const int rounds = 200000;
	uint64_t st = 99, taken[NS] = { 0 };
	double est[NS] = { 0 };
	int64_t left = ma_sample_draw(&st, mean);

	for (int r = 0; r < rounds; r++)
		for (int k = 0; k < NS; k++) {
			left -= (int64_t)sizes[k];
			if (left > 0)
				continue;
			left = ma_sample_draw(&st, mean);
			taken[k]++;
			est[k] += (double)sizes[k] /
				  ma_sample_prob(sizes[k], mean);
		}
	for (int k = 0; k < NS; k++) {
		double p = ma_sample_prob(sizes[k], mean);
		double bytes = (double)sizes[k] * rounds;
		/* the estimate's standard error: sqrt(n s^2 (1-p)/p) */
		double se = sqrt(rounds * (double)sizes[k] * sizes[k] *
				 (1 - p) / p);

		cr_assert(fabs((double)taken[k] / rounds - p) <=
				  5 * sqrt(p * (1 - p) / rounds) + 1e-12,
			  "size %llu: sampled %g, p %g",
			  (unsigned long long)sizes[k],
			  (double)taken[k] / rounds, p);
		cr_assert(fabs(est[k] - bytes) <= 5 * se + 1e-6 * bytes,
			  "size %llu: estimate %g of %g (se %g)",
			  (unsigned long long)sizes[k], est[k], bytes, se);
	}
}

/* The free's filter is sized from the heap at the start: small heaps get
 * the smallest, each doubling of the expected sampled blocks doubles it,
 * up to the largest */
Test(sample, filter_size_follows_the_heap)
{
	const uint64_t mean = 512 << 10;
	uint32_t prev = MA_SAMPLE_FILTER_BITS_MIN;

	cr_assert_eq(ma_sample_filter_bits(0, mean), MA_SAMPLE_FILTER_BITS_MIN);
	cr_assert_eq(ma_sample_filter_bits(50ull << 20, mean),
		     MA_SAMPLE_FILTER_BITS_MIN);
	cr_assert_eq(ma_sample_filter_bits(1ull << 40, mean),
		     MA_SAMPLE_FILTER_BITS_MAX);
	cr_assert_eq(ma_sample_filter_bits(1ull << 30, 0),
		     MA_SAMPLE_FILTER_BITS_MIN);
	for (uint64_t rss = 1 << 20; rss <= (1ull << 42); rss *= 2) {
		uint32_t b = ma_sample_filter_bits(rss, mean);
		uint64_t want = (rss / mean + 1) * MA_SAMPLE_FILTER_PER_BLOCK;

		cr_assert(b >= prev && b - prev <= 1,
			  "rss %llu: 2^%u after 2^%u", (unsigned long long)rss,
			  b, prev);
		cr_assert(b == MA_SAMPLE_FILTER_BITS_MAX || (1ull << b) >= want,
			  "rss %llu: 2^%u counters for %llu wanted",
			  (unsigned long long)rss, b, (unsigned long long)want);
		cr_assert(b == MA_SAMPLE_FILTER_BITS_MIN ||
				  (1ull << (b - 1)) < want,
			  "rss %llu: 2^%u counters, larger than needed",
			  (unsigned long long)rss, b);
		prev = b;
	}
}

/*
 * The share of the frees of unsampled blocks that the filter sends to the
 * full path, simulated: rss / mean sampled blocks at random 16-byte
 * aligned addresses of a heap of rss bytes, their counters set, then
 * other addresses of the same heap looked up.  Within 5 % while the size
 * is not capped (32 counters per block: about 3 %), where the fixed 64 KiB
 * filter of before sent 11 % of a 4 GiB heap's frees (and 70 % of a
 * 40 GiB one's) to the full path.
 */
static double filter_false_share(uint64_t rss, uint64_t mean, uint32_t bits)
{
	static uint8_t f[1u << MA_SAMPLE_FILTER_BITS_MAX];
	const uint64_t base = 0x7f0000000000ull;
	uint32_t mask = (1u << bits) - 1;
	uint64_t st = rss ^ mean, n = rss / mean, hits = 0;
	const uint64_t probes = 400000;

	memset(f, 0, sizeof(f));
	for (uint64_t i = 0; i < n; i++) {
		uint64_t p = base + (ma_sample_rand(&st) % (rss / 16)) * 16;

		f[ma_sample_filter_hash(p, mask)] = 1;
	}
	for (uint64_t i = 0; i < probes; i++) {
		uint64_t p = base + (ma_sample_rand(&st) % (rss / 16)) * 16;

		hits += f[ma_sample_filter_hash(p, mask)];
	}
	return (double)hits / (double)probes;
}

Test(sample, filter_false_positives_stay_few)
{
	const struct {
		uint64_t rss, mean;
	} cases[] = {
		{ 50ull << 20, 512 << 10 }, { 4ull << 30, 512 << 10 },
		{ 40ull << 30, 512 << 10 }, { 1ull << 30, 32 << 10 },
		{ 256ull << 20, 4 << 10 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint32_t b = ma_sample_filter_bits(cases[i].rss, cases[i].mean);
		double fp = filter_false_share(cases[i].rss, cases[i].mean, b);

		cr_assert(b < MA_SAMPLE_FILTER_BITS_MAX ||
				  cases[i].rss / cases[i].mean *
						  MA_SAMPLE_FILTER_PER_BLOCK <=
					  (1ull << b) * 2,
			  "case %zu capped", i);
		cr_assert(fp <= 0.05,
			  "rss %llu, mean %llu: 2^%u counters, %.1f %% of "
			  "other frees take the full path",
			  (unsigned long long)cases[i].rss,
			  (unsigned long long)cases[i].mean, b, 100 * fp);
	}
	/* the test can fail: the fixed 64 KiB filter on a 4 GiB heap */
	cr_assert(filter_false_share(4ull << 30, 512 << 10,
				     MA_SAMPLE_FILTER_BITS_MIN) > 0.08);
}
