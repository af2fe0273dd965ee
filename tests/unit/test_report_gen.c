/* SPDX-License-Identifier: MIT */
/*
 * A generator of large, program-like captures for the report benchmark
 * (bench/report_bench.py), kept compiled and honest by a test: it writes a
 * capture with the project's writer while keeping its own exact account
 * (what it allocated, freed, what is live, what was freed at once by the
 * allocating thread), and the report must agree to the byte.
 *
 * Shape: F functions in F/10 files with line tables, a frame tree of S
 * nodes under a common spine of 12 frames (depth ~25), T threads; sizes
 * mostly small with some large blocks; frees mostly of the newest block
 * (LIFO, like a churning interpreter), some of a random live block, some
 * never (growth), and a live set held near L blocks; freed addresses are
 * reused first, as an allocator's caches do.  A sample every 100 k events.
 *
 *   MA_REPORT_GEN=out.cap MA_REPORT_GEN_EVENTS=100000000
 *   MA_REPORT_GEN_STACKS=20000 MA_REPORT_GEN_LIVE=1000000
 *   build/tests/test_report_gen  (bench/report_bench.py does this)
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "errors.h"
#include "report.h"

#define PY38	0x030800f0u
#define SPINE	12
#define THREADS 8

struct blk {
	uint64_t ptr, size, seq;
	uint32_t node, thread;
};

struct gen {
	uint64_t rng;
	struct ma_capture_writer *w;
	uint32_t nfn, nstacks, nnodes;
	uint32_t *leaf; /* nodes allocations are made from */
	struct blk *live;
	size_t nlive, live_cap, live_target;
	uint64_t *freed; /* addresses to reuse, newest last */
	size_t nfreed, freed_cap;
	uint64_t next_ptr, t_ns;
	uint64_t allocs, alloc_bytes, frees, live_bytes, immediate;
	uint64_t immediate_bytes;
	uint64_t seq[THREADS + 1]; /* allocations of each thread */
	uint32_t last_thread;
};

static uint64_t rnd(struct gen *g)
{
	g->rng ^= g->rng << 13;
	g->rng ^= g->rng >> 7;
	g->rng ^= g->rng << 17;
	return g->rng;
}

static void put(struct gen *g, const struct ma_event *ev)
{
	cr_assert_eq(ma_capture_write_event(g->w, ev), 0, "%s", ma_errmsg());
}

static void defs(struct gen *g)
{
	static uint8_t lnotab[200];
	struct ma_event ev;
	char name[64], file[128];

	for (int i = 0; i < 100; i++) {
		lnotab[2 * i] = 2;
		lnotab[2 * i + 1] = 1;
	}
	for (uint32_t t = 1; t <= THREADS; t++) {
		memset(&ev, 0, sizeof(ev));
		ev.type = MA_EV_THREAD;
		ev.thread = t;
		ev.thr.tid = 5000 + (int32_t)t;
		snprintf(ev.thr.name, sizeof(ev.thr.name),
			 t == 1 ? "python3" : "worker-%u", t - 1);
		put(g, &ev);
	}
	for (uint32_t c = 1; c <= g->nfn; c++) {
		memset(&ev, 0, sizeof(ev));
		snprintf(name, sizeof(name), "%s_%u",
			 c % 3 ? "handle" : "build", c);
		snprintf(file, sizeof(file), "/srv/app/pkg%u/mod%u.py",
			 (c / 10) % 20, c / 10);
		ev.type = MA_EV_CODE;
		ev.thread = 1;
		ev.code.id = c;
		ev.code.firstlineno = 10 + (int32_t)(c % 50) * 7;
		ev.code.version_hex = PY38;
		ev.code.name = name;
		ev.code.name_len = (uint32_t)strlen(name);
		ev.code.file = file;
		ev.code.file_len = (uint32_t)strlen(file);
		ev.code.linetable = lnotab;
		ev.code.linetable_len = sizeof(lnotab);
		put(g, &ev);
	}
	/* the spine, then a random tree under it */
	for (uint32_t id = 1; id <= g->nstacks; id++) {
		memset(&ev, 0, sizeof(ev));
		ev.type = MA_EV_NODE;
		ev.thread = 1;
		ev.node.id = id;
		if (id <= SPINE) {
			ev.node.parent = id - 1;
		} else {
			/* depth ~ SPINE + ln(stacks) */
			ev.node.parent =
				SPINE + (uint32_t)(rnd(g) % (id - SPINE));
			if (ev.node.parent == SPINE && rnd(g) % 2)
				ev.node.parent = SPINE;
		}
		ev.node.code = 1 + (uint32_t)(rnd(g) % g->nfn);
		ev.node.addr = (int32_t)(rnd(g) % 100) * 2;
		put(g, &ev);
		g->leaf[id - 1] = id;
	}
	g->nnodes = g->nstacks;
}

static uint64_t new_ptr(struct gen *g, uint64_t size)
{
	if (g->nfreed && rnd(g) % 4)
		return g->freed[--g->nfreed];
	g->next_ptr += (size + 15) & ~15ull;
	return g->next_ptr;
}

static void do_alloc(struct gen *g, uint32_t thread)
{
	uint64_t r = rnd(g);
	/* skewed: a few stacks allocate most */
	uint64_t a = r % g->nnodes, b = (r >> 20) % g->nnodes;
	uint32_t node = g->leaf[a * b / g->nnodes];
	uint64_t size = (r >> 40) % 100 == 0 ? 4096 + (r >> 44) % 65536
					     : 16 + (r >> 44) % 500;
	struct ma_event ev = { .type = MA_EV_ALLOC, .thread = thread };
	struct blk *bl;

	if (g->nlive == g->live_cap) {
		g->live_cap = g->live_cap ? g->live_cap * 2 : 1 << 16;
		g->live = realloc(g->live, g->live_cap * sizeof(*g->live));
		cr_assert_not_null(g->live);
	}
	bl = &g->live[g->nlive++];
	bl->ptr = new_ptr(g, size);
	bl->size = size;
	bl->node = node;
	bl->thread = thread;
	bl->seq = ++g->seq[thread];
	ev.alloc.ptr = bl->ptr;
	ev.alloc.size = size;
	ev.alloc.node = node;
	ev.alloc.kind = MA_KIND_PYOBJ;
	put(g, &ev);
	g->allocs++;
	g->alloc_bytes += size;
	g->live_bytes += size;
}

static void do_free(struct gen *g, size_t k, uint32_t thread)
{
	struct ma_event ev = { .type = MA_EV_FREE, .thread = thread };
	struct blk b = g->live[k];

	g->live[k] = g->live[--g->nlive];
	if (b.thread == thread && g->seq[thread] == b.seq) {
		/* freed by its thread before it allocated again */
		g->immediate++;
		g->immediate_bytes += b.size;
	}
	ev.free.ptr = b.ptr;
	ev.free.kind = MA_KIND_PYOBJ;
	put(g, &ev);
	g->frees++;
	g->live_bytes -= b.size;
	if (g->nfreed == g->freed_cap) {
		g->freed_cap = g->freed_cap ? g->freed_cap * 2 : 1 << 16;
		g->freed = realloc(g->freed, g->freed_cap * sizeof(*g->freed));
		cr_assert_not_null(g->freed);
	}
	if (g->nfreed < (1u << 20))
		g->freed[g->nfreed++] = b.ptr;
}

/* Write about `events` events; returns the number written */
static uint64_t generate(struct gen *g, const char *path, uint64_t events)
{
	static const struct ma_capture_meta meta = {
		.pid = 31337,
		.py_version_hex = 0x030b02f0,
		.flags = 7,
		.start_wall_ns = 1732550000000000000ull,
		.py_version = "3.11.2",
		.exe = "/usr/bin/python3.11",
		.cmdline = "python3 -m app.server --workers 8",
	};
	uint64_t n;

	g->leaf = calloc(g->nstacks, sizeof(*g->leaf));
	cr_assert_not_null(g->leaf);
	g->next_ptr = 0x7f0000000000ull;
	cr_assert_eq(ma_capture_create(path, &meta, &g->w), 0, "%s",
		     ma_errmsg());
	defs(g);
	while ((n = ma_capture_events(g->w)) < events) {
		uint64_t r = rnd(g);
		uint32_t thread = 1 + (uint32_t)(r % THREADS);

		if (n % 100000 == 0) {
			g->t_ns += 10000000;
			cr_assert_eq(
				ma_capture_sample(g->w, g->t_ns,
						  g->live_bytes + (50ull << 20),
						  g->live_bytes),
				0);
			continue;
		}
		/* a thread runs for a while before another one */
		if ((r >> 8) % 64)
			thread = g->last_thread ? g->last_thread : 1;
		g->last_thread = thread;
		if (!g->nlive ||
		    ((r >> 16) % 100 < 52 && g->nlive < 2 * g->live_target)) {
			do_alloc(g, thread);
		} else if ((r >> 16) % 100 < 90 || g->nlive > g->live_target) {
			/* the newest block, by the thread that made it */
			do_free(g, g->nlive - 1, g->live[g->nlive - 1].thread);
		} else {
			do_free(g, (r >> 24) % g->nlive, thread);
		}
	}
	cr_assert_eq(
		ma_capture_close(
			g->w,
			&(struct ma_capture_trailer){
				.duration_ns = g->t_ns,
				.end_wall_ns = meta.start_wall_ns + g->t_ns,
				.complete = 1 }),
		0, "%s", ma_errmsg());
	return n;
}

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);

	return v ? strtoull(v, NULL, 0) : def;
}

Test(report_gen, generate_and_check, .timeout = 3600)
{
	const char *out = getenv("MA_REPORT_GEN");
	struct gen g = { .rng = 0x9e3779b97f4a7c15ull };
	struct ma_report_opts o;
	struct ma_report *r;
	char path[256];
	uint64_t events;

	g.nstacks = (uint32_t)env_u64("MA_REPORT_GEN_STACKS", 2000);
	g.nfn = g.nstacks / 4 + 16;
	g.live_target = env_u64("MA_REPORT_GEN_LIVE", 20000);
	events = env_u64("MA_REPORT_GEN_EVENTS", 400000);
	if (out)
		snprintf(path, sizeof(path), "%s", out);
	else
		snprintf(path, sizeof(path), "/tmp/ma-report-gen-%d.cap",
			 (int)getpid());
	generate(&g, path, events);
	if (out) {
		fprintf(stderr,
			"wrote %s: %llu events, %llu allocations, %llu live "
			"blocks, %u stacks\n",
			path, (unsigned long long)events,
			(unsigned long long)g.allocs,
			(unsigned long long)g.nlive, g.nstacks);
		goto done;
	}
	/* the report agrees with the generator's own account */
	ma_report_opts_init(&o);
	o.window = 0;
	cr_assert_eq(ma_report_load(path, &o, &r), 0, "%s", ma_errmsg());
	cr_expect_eq(r->t.allocs, g.allocs);
	cr_expect_eq(r->t.alloc_bytes, g.alloc_bytes);
	cr_expect_eq(r->t.frees, g.frees);
	cr_expect_eq(r->sum[MA_RV_LIVE].bytes, g.live_bytes);
	cr_expect_eq(r->sum[MA_RV_LIVE].count, g.nlive);
	cr_expect_eq(r->sum[MA_RV_TOTAL].bytes, g.alloc_bytes);
	cr_expect_eq(r->unknown_frees, 0);
	/* window 0: freed by its thread before it allocated anything else:
	 * exactly the generator's "newest block freed by its own thread" */
	cr_expect_eq(r->sum[MA_RV_TEMP].count, g.immediate);
	cr_expect_eq(r->sum[MA_RV_TEMP].bytes, g.immediate_bytes);
	cr_expect_geq(r->sum[MA_RV_PEAK].bytes, g.live_bytes);
	cr_expect_eq(r->t.threads, THREADS);
	/* every frame of the tree is one of the generator's (no node lost
	 * on the way to the tree) */
	cr_expect_leq(r->nnodes, (size_t)g.nstacks + 1);
	ma_report_free(r);
	unlink(path);
done:
	free(g.leaf);
	free(g.live);
	free(g.freed);
}
