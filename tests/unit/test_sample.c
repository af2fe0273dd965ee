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
