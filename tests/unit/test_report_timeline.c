/* SPDX-License-Identifier: MIT */
/*
 * The HTML report's timeline (report_timeline.c) on hand-made streams
 * whose spans were worked out by hand: blocks freed in a later bucket,
 * blocks freed in their own bucket (left out), blocks never freed, a
 * partial munmap, an aggregated key's frees matched to its latest
 * allocations first, and buckets merged two by two past
 * MA_TIMELINE_MAX_BUCKETS (spans that end up inside one bucket dropped).
 */
#include <criterion/criterion.h>

#include <stdlib.h>

#include "account.h"
#include "report_timeline.h"

static struct ma_account *acc;
static struct ma_timeline *tl;

static void setup(void)
{
	cr_assert_eq(ma_account_new(&acc), 0);
	cr_assert_eq(ma_timeline_new(&tl), 0);
}

static void teardown(void)
{
	ma_timeline_free(tl);
	ma_account_free(acc);
}

TestSuite(timeline, .init = setup, .fini = teardown);

static void feed(const struct ma_event *ev)
{
	cr_assert_eq(ma_timeline_before(tl, acc, ev), 0);
	cr_assert_eq(ma_account_feed(acc, ev), 0);
	cr_assert_eq(ma_timeline_after(tl, acc, ev), 0);
}

static void alloc(uint64_t ptr, uint64_t size, uint32_t vid, int kind)
{
	struct ma_event ev = { .type = MA_EV_ALLOC };

	ev.alloc.ptr = ptr;
	ev.alloc.size = size;
	ev.alloc.node = vid;
	ev.alloc.kind = (uint8_t)kind;
	feed(&ev);
}

static void dealloc(uint64_t ptr, uint64_t size, int kind)
{
	struct ma_event ev = { .type = MA_EV_FREE };

	ev.free.ptr = ptr;
	ev.free.size = size;
	ev.free.kind = (uint8_t)kind;
	feed(&ev);
}

static void sample(uint64_t t_ns)
{
	struct ma_event ev = { .type = MA_EV_SAMPLE };

	ev.sample.t_ns = t_ns;
	feed(&ev);
}

static void agg(uint32_t vid, uint64_t allocs, uint64_t ab, uint64_t frees,
		uint64_t fb)
{
	struct ma_event ev = { .type = MA_EV_AGG };

	ev.agg.node = vid;
	ev.agg.kind = MA_KIND_MALLOC;
	ev.agg.allocs = allocs;
	ev.agg.alloc_bytes = ab;
	ev.agg.frees = frees;
	ev.agg.free_bytes = fb;
	feed(&ev);
}

static uint64_t *bounds;
static size_t nbound, nspans;
static struct ma_tspan *spans;

static void finish(uint64_t end)
{
	cr_assert_eq(
		ma_timeline_finish(tl, end, &bounds, &nbound, &spans, &nspans),
		0);
}

static void done(void)
{
	free(bounds);
	free(spans);
}

/* the span (vid, ab, fb): its bytes and count, or -1 */
static void span(uint32_t vid, uint32_t ab, uint32_t fb, int64_t bytes,
		 int64_t count)
{
	for (size_t i = 0; i < nspans; i++)
		if (spans[i].vid == vid && spans[i].ab == ab &&
		    spans[i].fb == fb) {
			cr_expect_eq((int64_t)spans[i].bytes, bytes,
				     "span %u %u %u: %llu bytes", vid, ab, fb,
				     (unsigned long long)spans[i].bytes);
			cr_expect_eq((int64_t)spans[i].count, count,
				     "span %u %u %u: %llu blocks", vid, ab, fb,
				     (unsigned long long)spans[i].count);
			return;
		}
	cr_expect(bytes < 0, "no span %u %u %u", vid, ab, fb);
}

Test(timeline, every_event_exact)
{
	alloc(0x1000, 100, 1, MA_KIND_MALLOC); /* A: bucket 0 */
	sample(10);
	alloc(0x2000, 200, 1, MA_KIND_MALLOC); /* B: bucket 1 */
	dealloc(0x1000, 0, MA_KIND_MALLOC);    /* A freed in 1 */
	alloc(0x3000, 50, 2, MA_KIND_MALLOC);  /* C: born and dead in 1 */
	dealloc(0x3000, 0, MA_KIND_MALLOC);
	dealloc(0x9000, 0, MA_KIND_MALLOC); /* unknown: nothing */
	sample(20);
	dealloc(0x2000, 0, MA_KIND_MALLOC);  /* B freed in 2 */
	alloc(0x4000, 7, 2, MA_KIND_MALLOC); /* D: never freed */
	alloc(0x100000, 4096, 3, MA_KIND_MMAP);
	sample(30);
	dealloc(0x100000, 1024, MA_KIND_MMAP); /* a quarter unmapped in 3 */
	finish(40);

	cr_assert_eq(nbound, 4);
	cr_expect(bounds[0] == 0 && bounds[1] == 10 && bounds[2] == 20 &&
		  bounds[3] == 30 && bounds[4] == 40);
	span(1, 0, 1, 100, 1);
	span(1, 1, 2, 200, 1);
	span(2, 2, 4, 7, 1);
	span(3, 2, 3, 1024, 0);
	span(3, 2, 4, 3072, 1);
	cr_expect_eq(nspans, 5, "%zu spans (C is in none)", nspans);
	done();
}

Test(timeline, aggregated_lifo)
{
	agg(5, 10, 1000, 0, 0); /* bucket 0 */
	sample(10);
	agg(5, 5, 500, 7, 700); /* 500 of bucket 1, then 200 of bucket 0 */
	finish(15);

	cr_assert_eq(nbound, 2);
	span(5, 0, 1, 200, 2);
	span(5, 0, 2, 800, 8);
	span(5, 1, 2, -1, -1);
	cr_expect_eq(nspans, 2);
	done();
}

Test(timeline, buckets_merged)
{
	uint32_t s;

	alloc(0x1000, 11, 1, MA_KIND_MALLOC); /* sample count 0 */
	for (s = 1; s <= 1100; s++) {
		sample(s * 100);
		if (s == 600)
			dealloc(0x1000, 0, MA_KIND_MALLOC);
		if (s == 601)
			alloc(0x2000, 13, 2, MA_KIND_MALLOC);
		if (s == 602) /* a bucket later now, the same one in the end */
			dealloc(0x2000, 0, MA_KIND_MALLOC);
	}
	finish(1100 * 100 + 50);

	/* 1100 samples: buckets of 4 (1100 >> 2 = 275, so 276 buckets) */
	cr_assert_eq(nbound, 276);
	for (size_t c = 1; c < nbound; c++)
		cr_expect_eq(bounds[c], (uint64_t)(c << 2) * 100,
			     "bound %zu: %llu", c,
			     (unsigned long long)bounds[c]);
	cr_expect_eq(bounds[nbound], 1100 * 100 + 50);
	span(1, 0, 600 >> 2, 11, 1);
	cr_expect_eq(nspans, 1, "%zu spans", nspans);
	done();
}
