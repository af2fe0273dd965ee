/* SPDX-License-Identifier: MIT */
/*
 * Reports: a synthetic capture, written with the project's own writer,
 * whose every figure was worked out by hand (the comment of write_scenario
 * has the arithmetic), checked in each view, grouping, filter and format;
 * the temporary tracker against a naive model on random streams; damaged,
 * cut, empty and newer captures; --diff.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "errors.h"
#include "ma_config.h"
#include "profile.pb-c.h"
#include "report.h"
#include "textfit.h"

#define PY38 0x030800f0u

static char tmpdir[64];

static void mk_tmpdir(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ma-report-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void rm_tmpdir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	cr_expect_eq(system(cmd), 0);
}

TestSuite(report, .init = mk_tmpdir, .fini = rm_tmpdir);

static void tmp_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", tmpdir, name);
}

static const struct ma_capture_meta meta = {
	.pid = 777,
	.py_version_hex = 0x030b02f0,
	.flags = 7,
	.start_wall_ns = 1732550000000000000ull,
	.py_version = "3.11.2",
	.exe = "/usr/bin/python3.11",
	.cmdline = "python3 app.py",
};

struct wr {
	struct ma_capture_writer *w;
};

static void put(struct wr *w, const struct ma_event *ev)
{
	cr_assert_eq(ma_capture_write_event(w->w, ev), 0, "%s", ma_errmsg());
}

static uint8_t lnotab[80];

static void def_thread(struct wr *w, uint32_t idx, int32_t tid,
		       const char *name)
{
	struct ma_event ev = { .type = MA_EV_THREAD, .thread = idx };

	ev.thr.tid = tid;
	ev.thr.pthread = 0x7f0000000000ull + idx;
	snprintf(ev.thr.name, sizeof(ev.thr.name), "%s", name);
	put(w, &ev);
}

/* 3.8 co_lnotab: line = firstlineno + addr / 2 */
static void def_code(struct wr *w, uint32_t id, const char *name,
		     const char *file, int first)
{
	struct ma_event ev = { .type = MA_EV_CODE, .thread = 1 };

	for (int i = 0; i < 40; i++) {
		lnotab[2 * i] = 2;
		lnotab[2 * i + 1] = 1;
	}
	ev.code.id = id;
	ev.code.firstlineno = first;
	ev.code.version_hex = PY38;
	ev.code.name = name;
	ev.code.name_len = (uint32_t)strlen(name);
	ev.code.file = file;
	ev.code.file_len = (uint32_t)strlen(file);
	ev.code.linetable = lnotab;
	ev.code.linetable_len = sizeof(lnotab);
	put(w, &ev);
}

static void def_node(struct wr *w, uint32_t id, uint32_t parent, uint32_t code,
		     int32_t addr)
{
	struct ma_event ev = { .type = MA_EV_NODE, .thread = 1 };

	ev.node.id = id;
	ev.node.parent = parent;
	ev.node.code = code;
	ev.node.addr = addr;
	put(w, &ev);
}

static void ev_alloc(struct wr *w, uint32_t thread, uint64_t ptr, uint64_t size,
		     uint32_t node, int kind)
{
	struct ma_event ev = { .type = MA_EV_ALLOC, .thread = thread };

	ev.alloc.ptr = ptr;
	ev.alloc.size = size;
	ev.alloc.node = node;
	ev.alloc.kind = (uint8_t)kind;
	put(w, &ev);
}

static void ev_free(struct wr *w, uint32_t thread, uint64_t ptr)
{
	struct ma_event ev = { .type = MA_EV_FREE, .thread = thread };

	ev.free.ptr = ptr;
	ev.free.kind = MA_KIND_MALLOC;
	put(w, &ev);
}

static void ev_sample(struct wr *w, uint64_t t_ns, uint64_t rss)
{
	cr_assert_eq(ma_capture_sample(w->w, t_ns, rss, 0), 0);
}

/*
 * The scenario.  Threads: 1 = tid 100 "main", 2 = tid 101 "worker".
 * Frames (line = firstlineno + addr / 2):
 *   node 1 <module> main.py:3        node 2 <- 1 alloc_a a.py:11
 *   node 3 <- 1 alloc_b b.py:22      node 4 <- 2 helper a.py:30
 *   node 5 <- 3 helper a.py:30       node 6 <- 1 alloc_a a.py:11 (another
 *   bytecode offset, same line: the same frame as node 2 in the tree)
 *
 *  #  event                              live  temporary (window 1)
 *  1  T1 alloc 0x1000 1000 node 2         1000  T1 seq 1
 *  2  T1 alloc 0x2000   50 node 4         1050  T1 seq 2
 *  3  T1 free  0x2000                     1000  yes: 0 further (w >= 0)
 *     sample 1 s
 *  4  T2 alloc 0x3000 4000 node 5         5000  T2 seq 1
 *  5  T2 alloc 0x4000  300 node 3         5300  T2 seq 2
 *  6  T1 alloc 0x5000  700 node 6         6000  peak: 6000 in 4 blocks
 *  7  T1 free  0x3000 (T2's block)        2000  no: another thread
 *     sample 2 s
 *  8  T2 free  0x4000                     1700  yes: 0 further
 *  9  T1 free  0x9999 (never allocated)   1700  unknown free
 * 10  T1 alloc 0x6000   10 node 4         1710  T1 seq 4
 * 11  T1 alloc 0x7000   20 node 2         1730  T1 seq 5
 * 12  T1 free  0x6000                     1720  yes at w >= 1 (1 further)
 * 13  T1 free  0x5000                     1020  yes at w >= 2 (2 further)
 * 14  T1 free  0x7000                     1000  yes: 0 further
 * 15  T1 realloc -> 0x8000 2000 node 2    3000  T1 seq 6
 *     sample 3 s
 *
 * By line:          live       peak       total      temporary w=1
 *   alloc_a a:11    3000 (2)   1700 (2)   3720 (4)     20 (1)
 *   helper  a:30       0       4000 (1)   4060 (3)     60 (2)
 *   alloc_b b:22       0        300 (1)    300 (1)    300 (1)
 * Sums: live 3000 (2), peak 6000 (4), total 8080 (8), temporary 380 (4);
 * window 0: 370 (3); window 2: 1080 (5).  One unknown free.
 */
static uint64_t peak_event;
static uint64_t scenario_lost; /* the trailer's lost records */
static int try_load(const char *path, struct ma_report **out);
static char *render(struct ma_report *r,
		    int (*fn)(const struct ma_report *, FILE *), size_t *len);

static void write_scenario(const char *path, bool grow_more)
{
	struct wr w;

	cr_assert_eq(ma_capture_create(path, &meta, &w.w), 0, "%s",
		     ma_errmsg());
	def_thread(&w, 1, 100, "main");
	def_thread(&w, 2, 101, "worker");
	def_code(&w, 1, "<module>", "/app/main.py", 1);
	def_code(&w, 2, "alloc_a", "/app/a.py", 10);
	def_code(&w, 3, "alloc_b", "/app/b.py", 20);
	def_code(&w, 4, "helper", "/app/a.py", 30);
	def_node(&w, 1, 0, 1, 4);
	def_node(&w, 2, 1, 2, 2);
	def_node(&w, 3, 1, 3, 4);
	def_node(&w, 4, 2, 4, 0);
	def_node(&w, 5, 3, 4, 0);
	def_node(&w, 6, 1, 2, 3);
	ev_alloc(&w, 1, 0x1000, 1000, 2, MA_KIND_MALLOC);
	ev_alloc(&w, 1, 0x2000, 50, 4, MA_KIND_MALLOC);
	ev_free(&w, 1, 0x2000);
	ev_sample(&w, 1000000000ull, 10 << 20);
	ev_alloc(&w, 2, 0x3000, 4000, 5, MA_KIND_PYOBJ);
	ev_alloc(&w, 2, 0x4000, 300, 3, MA_KIND_PYOBJ);
	peak_event = ma_capture_events(w.w);
	ev_alloc(&w, 1, 0x5000, 700, 6, MA_KIND_MALLOC);
	ev_free(&w, 1, 0x3000);
	ev_sample(&w, 2000000000ull, 11 << 20);
	ev_free(&w, 2, 0x4000);
	ev_free(&w, 1, 0x9999);
	ev_alloc(&w, 1, 0x6000, 10, 4, MA_KIND_MALLOC);
	ev_alloc(&w, 1, 0x7000, 20, 2, MA_KIND_MALLOC);
	ev_free(&w, 1, 0x6000);
	ev_free(&w, 1, 0x5000);
	ev_free(&w, 1, 0x7000);
	ev_alloc(&w, 1, 0x8000, 2000, 2, MA_KIND_REALLOC);
	if (grow_more) /* for --diff: alloc_b keeps 5000 more */
		ev_alloc(&w, 2, 0xa000, 5000, 3, MA_KIND_PYOBJ);
	ev_sample(&w, 3000000000ull, 12 << 20);
	cr_assert_eq(ma_capture_close(w.w,
				      &(struct ma_capture_trailer){
					      .unknown_frees = 1,
					      .lost_records = scenario_lost,
					      .duration_ns = 3000000000ull,
					      .complete = 1 }),
		     0, "%s", ma_errmsg());
}

static struct ma_report *load(const char *path, struct ma_report_opts *o)
{
	struct ma_report *r = NULL;

	cr_assert_eq(ma_report_load(path, o, &r), 0, "%s", ma_errmsg());
	return r;
}

static const struct ma_rrow *row_named(const struct ma_report *r,
				       const char *fn, int line)
{
	for (size_t i = 0; i < r->nrows; i++)
		if (r->rows[i].function && !strcmp(r->rows[i].function, fn) &&
		    r->rows[i].line == line)
			return &r->rows[i];
	return NULL;
}

#define FIG(f, b, c)                                                           \
	do {                                                                   \
		cr_expect_eq((f).bytes, (uint64_t)(b),                         \
			     "%s bytes %llu != %llu", #f,                      \
			     (unsigned long long)(f).bytes,                    \
			     (unsigned long long)(b));                         \
		cr_expect_eq((f).count, (uint64_t)(c),                         \
			     "%s count %llu != %llu", #f,                      \
			     (unsigned long long)(f).count,                    \
			     (unsigned long long)(c));                         \
	} while (0)

/* MA_REPORT_SCENARIO=path also leaves a copy there (fuzz corpus seed) */
static void scenario(char *path, size_t len)
{
	const char *keep = getenv("MA_REPORT_SCENARIO");

	tmp_path(path, len, "scenario.cap");
	write_scenario(path, false);
	if (keep)
		write_scenario(keep, false);
}

Test(report, every_view_by_line_exact)
{
	struct ma_report_opts o;
	struct ma_report *r;
	const struct ma_rrow *a, *h, *b;
	char path[128];

	scenario(path, sizeof(path));
	ma_report_opts_init(&o);
	r = load(path, &o);
	FIG(r->sum[MA_RV_LIVE], 3000, 2);
	FIG(r->sum[MA_RV_PEAK], 6000, 4);
	FIG(r->sum[MA_RV_TOTAL], 8080, 8);
	FIG(r->sum[MA_RV_TEMP], 380, 4);
	cr_expect_eq(r->t.peak_bytes, 6000);
	cr_expect_eq(r->t.peak_index, peak_event);
	cr_expect_eq(r->t.peak_after_ns, 1000000000ull);
	cr_expect_eq(r->t.peak_before_ns, 2000000000ull);
	cr_expect_eq(r->unknown_frees, 1);
	cr_expect_not(r->unknown_from_trailer);
	cr_expect_eq(r->nrows, 3);
	a = row_named(r, "alloc_a", 11);
	h = row_named(r, "helper", 30);
	b = row_named(r, "alloc_b", 22);
	cr_assert(a && h && b);
	FIG(a->fig[MA_RV_LIVE], 3000, 2);
	FIG(a->fig[MA_RV_PEAK], 1700, 2);
	FIG(a->fig[MA_RV_TOTAL], 3720, 4);
	FIG(a->fig[MA_RV_TEMP], 20, 1);
	FIG(h->fig[MA_RV_LIVE], 0, 0);
	FIG(h->fig[MA_RV_PEAK], 4000, 1);
	FIG(h->fig[MA_RV_TOTAL], 4060, 3);
	FIG(h->fig[MA_RV_TEMP], 60, 2);
	FIG(b->fig[MA_RV_PEAK], 300, 1);
	FIG(b->fig[MA_RV_TOTAL], 300, 1);
	FIG(b->fig[MA_RV_TEMP], 300, 1);
	cr_expect_eq(r->rows[0].function, a->function, "live: alloc_a first");
	cr_expect_str_eq(r->rows[0].file, "/app/a.py");
	cr_expect_eq(ma_report_shown(r), 1, "one row has live bytes");
	/* nodes 2 and 6 are one frame of the tree; the tree: root,
	 * <module>, alloc_a, alloc_b, helper x2 */
	cr_expect_eq(r->nnodes, 6);
	ma_report_free(r);
}

Test(report, peak_total_temporary_rank_rows)
{
	struct ma_report_opts o;
	struct ma_report *r;
	char path[128];

	scenario(path, sizeof(path));
	ma_report_opts_init(&o);
	o.view = MA_RV_PEAK;
	r = load(path, &o);
	cr_expect_str_eq(r->rows[0].function, "helper");
	FIG(r->rows[0].fig[MA_RV_PEAK], 4000, 1);
	cr_expect_eq(ma_report_shown(r), 3);
	ma_report_free(r);
	o.view = MA_RV_TOTAL;
	r = load(path, &o);
	cr_expect_str_eq(r->rows[0].function, "helper");
	cr_expect_str_eq(r->rows[1].function, "alloc_a");
	ma_report_free(r);
	o.view = MA_RV_TEMP;
	r = load(path, &o);
	cr_expect_str_eq(r->rows[0].function, "alloc_b");
	FIG(r->rows[0].fig[MA_RV_TEMP], 300, 1);
	ma_report_free(r);
}

/*
 * An mmap region is never temporary, but it is an allocation of its
 * thread: the payload counts it in the distances it gives aggregated
 * captures (AGGTEMP) and short-lived pairs, so an event stream must count
 * it too, or --every-event and the default disagree on every block that
 * lives across an mmap (mmap.mmap() in a loop: its objects temporary at
 * window 1 with --every-event, at window 2 by default).  Thread 1
 * allocates 0x1000, maps a region, frees 0x1000: one further allocation.
 */
Test(report, temporary_counts_mmap_as_an_allocation)
{
	struct ma_report_opts o;
	struct ma_report *r;
	char path[128];
	struct wr w;

	tmp_path(path, sizeof(path), "tmp-mmap.cap");
	cr_assert_eq(ma_capture_create(path, &meta, &w.w), 0, "%s",
		     ma_errmsg());
	def_thread(&w, 1, 100, "main");
	def_code(&w, 1, "<module>", "/app/main.py", 1);
	def_code(&w, 2, "alloc_a", "/app/a.py", 10);
	def_node(&w, 1, 0, 1, 4);
	def_node(&w, 2, 1, 2, 2);
	ev_alloc(&w, 1, 0x1000, 64, 2, MA_KIND_PYOBJ);
	ev_alloc(&w, 1, 0x7f0000000000ull, 1 << 22, 2, MA_KIND_MMAP);
	ev_free(&w, 1, 0x1000);
	ev_sample(&w, 1000000000ull, 10 << 20);
	cr_assert_eq(ma_capture_close(w.w,
				      &(struct ma_capture_trailer){
					      .duration_ns = 1000000000ull,
					      .complete = 1 }),
		     0, "%s", ma_errmsg());
	ma_report_opts_init(&o);
	o.window = 0;
	r = load(path, &o);
	FIG(r->sum[MA_RV_TEMP], 0, 0);
	ma_report_free(r);
	o.window = 1;
	r = load(path, &o);
	FIG(r->sum[MA_RV_TEMP], 64, 1);
	ma_report_free(r);
}

Test(report, temporary_window)
{
	struct ma_report_opts o;
	struct ma_report *r;
	char path[128];

	scenario(path, sizeof(path));
	ma_report_opts_init(&o);
	o.window = 0;
	r = load(path, &o);
	FIG(r->sum[MA_RV_TEMP], 370, 3);
	ma_report_free(r);
	o.window = 2;
	r = load(path, &o);
	FIG(r->sum[MA_RV_TEMP], 1080, 5);
	FIG(row_named(r, "alloc_a", 11)->fig[MA_RV_TEMP], 720, 2);
	ma_report_free(r);
}

Test(report, groupings)
{
	struct ma_report_opts o;
	struct ma_report *r;
	char path[128];

	scenario(path, sizeof(path));
	ma_report_opts_init(&o);
	o.group = MA_VIEW_FILE;
	o.view = MA_RV_TOTAL;
	r = load(path, &o);
	cr_assert_eq(r->nrows, 2);
	cr_expect_str_eq(r->rows[0].file, "/app/a.py");
	cr_expect_null(r->rows[0].function);
	FIG(r->rows[0].fig[MA_RV_TOTAL], 7780, 7);
	FIG(r->rows[1].fig[MA_RV_TOTAL], 300, 1);
	ma_report_free(r);

	o.group = MA_VIEW_FUNCTION;
	r = load(path, &o);
	cr_assert_eq(r->nrows, 3);
	cr_expect_str_eq(r->rows[0].function, "helper");
	cr_expect_eq(r->rows[0].line, 30, "firstlineno");
	cr_expect_str_eq(r->rows[1].function, "alloc_a");
	cr_expect_eq(r->rows[1].line, 10, "firstlineno");
	ma_report_free(r);

	/* by stack: helper under alloc_a and under alloc_b are two rows */
	o.group = MA_VIEW_STACK;
	r = load(path, &o);
	cr_assert_eq(r->nrows, 4);
	cr_expect_str_eq(r->rows[0].function, "helper");
	FIG(r->rows[0].fig[MA_RV_TOTAL], 4000, 1);
	{
		uint32_t st[8];
		int d = ma_report_stack(r, r->rows[0].rep, st, 8);

		cr_assert_eq(d, 3);
		cr_expect_str_eq(r->nodes[st[1]].function, "alloc_b");
		cr_expect_str_eq(r->nodes[st[2]].function, "<module>");
	}
	ma_report_free(r);
}

Test(report, thread_filter)
{
	struct ma_report_opts o;
	struct ma_report *r;
	char path[128];

	scenario(path, sizeof(path));
	ma_report_opts_init(&o);
	o.threads[o.nthreads++] = "worker";
	r = load(path, &o);
	cr_expect_eq(r->threads_selected, 1);
	FIG(r->sum[MA_RV_LIVE], 0, 0);
	FIG(r->sum[MA_RV_TOTAL], 4300, 2);
	FIG(r->sum[MA_RV_PEAK], 4300, 2);
	FIG(r->sum[MA_RV_TEMP], 300, 1);
	/* other threads' frees look unknown to a filtered accounting: the
	 * footnote takes the whole capture's figure from the trailer */
	cr_expect(r->unknown_from_trailer);
	cr_expect_eq(r->unknown_frees, 1);
	ma_report_free(r);

	ma_report_opts_init(&o);
	o.threads[o.nthreads++] = "100";
	r = load(path, &o);
	FIG(r->sum[MA_RV_LIVE], 3000, 2);
	FIG(r->sum[MA_RV_TOTAL], 3780, 6);
	/* T1's own live bytes peak at the very end */
	FIG(r->sum[MA_RV_PEAK], 3000, 2);
	FIG(r->sum[MA_RV_TEMP], 80, 3);

	/* issue 11, defect 3: the header's frees are those of the thread's
	 * blocks (4 of main's: 0x2000, 0x5000, 0x6000, 0x7000), not the
	 * whole capture's 7 */
	cr_expect_eq(r->t.frees, 4);
	ma_report_free(r);
	ma_report_opts_init(&o);
	o.threads[o.nthreads++] = "worker";
	r = load(path, &o);
	cr_expect_eq(r->t.frees, 2, "0x3000 (by main) and 0x4000");
	ma_report_free(r);

	/* defect 3: a --thread that matches nothing is an error naming the
	 * capture's threads, not an empty report */
	ma_report_opts_init(&o);
	o.threads[o.nthreads++] = "nobody";
	ma_err_clear();
	r = NULL;
	cr_expect_eq(ma_report_load(path, &o, &r), -ESRCH);
	cr_expect_null(r);
	cr_expect_eq(ma_err_exit(), MA_EXIT_USAGE);
	cr_expect(strstr(ma_errmsg(), "'nobody'") &&
			  strstr(ma_errmsg(), "100 \"main\", 101 \"worker\""),
		  "%s", ma_errmsg());
}

/* --from/--to, on the scenario (samples at 1, 2 and 3 s) */
Test(report, time_ranges)
{
	struct ma_report_opts o;
	struct ma_report *r;
	char path[128];

	scenario(path, sizeof(path));
	/* --to 1.5: events 1-7, before the 2 s sample: allocated 1000, 50,
	 * 4000, 300, 700; 0x2000 and 0x3000 freed */
	ma_report_opts_init(&o);
	o.to_ns = 1500000000ull;
	r = load(path, &o);
	cr_expect(r->ranged);
	cr_expect_eq(r->range_end_ns, 2000000000ull);
	FIG(r->sum[MA_RV_TOTAL], 6050, 5);
	FIG(r->sum[MA_RV_LIVE], 2000, 3);
	FIG(r->sum[MA_RV_PEAK], 6000, 4);
	FIG(r->sum[MA_RV_TEMP], 50, 1);
	cr_expect_eq(r->t.frees, 2);
	cr_expect_not_null(r->trailer, "read to its end: not truncated");
	ma_report_free(r);

	/* --from 1.5: allocated after the 2 s sample: 10, 20 and the 2000
	 * of the realloc; 0x6000, 0x7000 freed (temporary, window 1); the
	 * peak (event 6) held none of them */
	ma_report_opts_init(&o);
	o.from_ns = 1500000000ull;
	r = load(path, &o);
	cr_expect_eq(r->range_start_ns, 2000000000ull);
	FIG(r->sum[MA_RV_TOTAL], 2030, 3);
	FIG(r->sum[MA_RV_LIVE], 2000, 1);
	FIG(r->sum[MA_RV_PEAK], 0, 0);
	FIG(r->sum[MA_RV_TEMP], 30, 2);
	cr_expect_eq(r->t.allocs, 3);
	cr_expect_eq(r->t.frees, 2);
	cr_expect_eq(r->t.live_bytes, 2000);
	cr_expect_eq(r->unknown_frees, 1, "blocks before --from are known");
	FIG(r->threads[1].fig[MA_RV_TOTAL], 2030, 3);
	FIG(r->threads[2].fig[MA_RV_TOTAL], 0, 0);
	cr_expect_eq(r->stats.by_alloc[MA_RA_MALLOC].count, 3);
	ma_report_free(r);

	/* both: from the 2 s sample to the 3 s one */
	ma_report_opts_init(&o);
	o.from_ns = 1500000000ull;
	o.to_ns = 2500000000ull;
	r = load(path, &o);
	FIG(r->sum[MA_RV_TOTAL], 2030, 3);
	cr_expect_eq(r->range_end_ns, 3000000000ull);
	ma_report_free(r);
}

/* Threads as a dimension: each thread's figures, and per stack */
Test(report, threads_figures)
{
	struct ma_report_opts o;
	struct ma_report *r;
	char path[128];
	struct ma_account_fig sum[MA_RV_N] = { 0 };

	scenario(path, sizeof(path));
	ma_report_opts_init(&o);
	o.by_thread = true;
	r = load(path, &o);
	cr_assert_eq(r->nthreads, 3, "thread 0 (unknown), main, worker");
	cr_expect_eq(r->threads[1].tid, 100);
	cr_expect_str_eq(r->threads[1].name, "main");
	cr_expect_str_eq(r->threads[2].name, "worker");
	/* main: live 0x1000 + 0x8000; at the peak 0x1000, 0x5000; total
	 * 1000 + 50 + 700 + 10 + 20 + 2000; temporary (window 1) 50, 10, 20 */
	FIG(r->threads[1].fig[MA_RV_LIVE], 3000, 2);
	FIG(r->threads[1].fig[MA_RV_PEAK], 1700, 2);
	FIG(r->threads[1].fig[MA_RV_TOTAL], 3780, 6);
	FIG(r->threads[1].fig[MA_RV_TEMP], 80, 3);
	/* worker: 0x3000 and 0x4000, both live at the peak */
	FIG(r->threads[2].fig[MA_RV_LIVE], 0, 0);
	FIG(r->threads[2].fig[MA_RV_PEAK], 4300, 2);
	FIG(r->threads[2].fig[MA_RV_TOTAL], 4300, 2);
	FIG(r->threads[2].fig[MA_RV_TEMP], 300, 1);
	FIG(r->threads[0].fig[MA_RV_TOTAL], 0, 0);
	/* the samples add up to the stacks' figures, one per (stack,
	 * thread): helper is allocated by both threads (under different
	 * callers), alloc_a by main only */
	for (size_t i = 0; i < r->nsamples; i++) {
		const struct ma_rsample *a = &r->samples[i];

		for (int v = 0; v < MA_RV_N; v++) {
			sum[v].bytes += a->fig[v].bytes;
			sum[v].count += a->fig[v].count;
		}
		cr_expect(i == 0 || a->node != r->samples[i - 1].node ||
				  a->thread != r->samples[i - 1].thread,
			  "one sample per (stack, thread)");
	}
	cr_expect_eq(r->nsamples, 4);
	for (int v = 0; v < MA_RV_N; v++)
		FIG(sum[v], r->all[v].bytes, r->all[v].count);
	ma_report_free(r);
}

Test(report, substring_filter)
{
	struct ma_report_opts o;
	struct ma_report *r;
	char path[128];

	scenario(path, sizeof(path));
	ma_report_opts_init(&o);
	o.filter = "alloc_b";
	o.view = MA_RV_TOTAL;
	r = load(path, &o);
	FIG(r->sum[MA_RV_TOTAL], 4300, 2);
	FIG(r->all[MA_RV_TOTAL], 8080, 8);
	cr_assert_eq(r->nrows, 2);
	cr_expect_str_eq(r->rows[0].function, "helper");
	FIG(r->rows[0].fig[MA_RV_TOTAL], 4000, 1);
	ma_report_free(r);
	o.filter = "b.py"; /* a file matches too */
	r = load(path, &o);
	FIG(r->sum[MA_RV_TOTAL], 4300, 2);
	ma_report_free(r);
}

/*
 * A deep stack: Thread._bootstrap <- ... <- worker <- rec x45 (recursion
 * on one line) allocating 1 MiB on thread 1; and a chain of 16 distinct
 * functions f0 .. f15 allocating 64 KiB on thread 2.  The text report must
 * still name worker and Thread.run, and mark where a tree is cut.
 */
static void write_deep(const char *path)
{
	struct wr w;
	uint32_t id;
	char name[16];

	cr_assert_eq(ma_capture_create(path, &meta, &w.w), 0, "%s",
		     ma_errmsg());
	def_thread(&w, 1, 200, "python3");
	def_thread(&w, 2, 201, "chain");
	def_code(&w, 1, "Thread._bootstrap", "/usr/lib/threading.py", 990);
	def_code(&w, 2, "Thread._bootstrap_inner", "/usr/lib/threading.py",
		 1030);
	def_code(&w, 3, "Thread.run", "/usr/lib/threading.py", 970);
	def_code(&w, 4, "worker", "/app/deep.py", 10);
	def_code(&w, 5, "rec", "/app/deep.py", 20);
	def_node(&w, 1, 0, 1, 0);
	def_node(&w, 2, 1, 2, 0);
	def_node(&w, 3, 2, 3, 0);
	def_node(&w, 4, 3, 4, 2);
	for (id = 5; id < 49; id++)
		def_node(&w, id, id - 1, 5, 2); /* rec (deep.py:21) */
	def_node(&w, 49, 48, 5, 4);		/* rec (deep.py:22) */
	for (int i = 0; i < 16; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		def_code(&w, 10 + (uint32_t)i, name, "/app/chain.py",
			 100 + 10 * i);
		def_node(&w, 100 + (uint32_t)i, i ? 99 + (uint32_t)i : 0,
			 10 + (uint32_t)i, 2);
	}
	ev_alloc(&w, 1, 0x10000, 1 << 20, 49, MA_KIND_MALLOC);
	ev_alloc(&w, 2, 0x20000, 64 << 10, 115, MA_KIND_MALLOC);
	ev_sample(&w, 1000000000ull, 20 << 20);
	cr_assert_eq(ma_capture_close(w.w,
				      &(struct ma_capture_trailer){
					      .duration_ns = 1000000000ull,
					      .complete = 1 }),
		     0, "%s", ma_errmsg());
}

/* The scenario's first events, a complete block, then a cut: no trailer */
static void write_truncated(const char *path, bool no_events)
{
	struct wr w;

	cr_assert_eq(ma_capture_create(path, &meta, &w.w), 0, "%s",
		     ma_errmsg());
	if (!no_events) {
		def_thread(&w, 1, 100, "main");
		def_code(&w, 1, "<module>", "/app/main.py", 1);
		def_code(&w, 2, "alloc_a", "/app/a.py", 10);
		def_node(&w, 1, 0, 1, 4);
		def_node(&w, 2, 1, 2, 2);
		ev_alloc(&w, 1, 0x1000, 1000, 2, MA_KIND_MALLOC);
		ev_sample(&w, 1000000000ull, 10 << 20);
		cr_assert_eq(ma_capture_flush(w.w), 0);
		ev_alloc(&w, 1, 0x2000, 2000, 2, MA_KIND_MALLOC); /* lost */
	}
	ma_capture_abort(w.w);
}

/* The scenario as another program wrote it */
static void write_other(const char *path)
{
	struct ma_capture_meta m = meta;
	struct wr w;

	m.pid = 888;
	m.cmdline = "python3 other.py";
	cr_assert_eq(ma_capture_create(path, &m, &w.w), 0, "%s", ma_errmsg());
	def_thread(&w, 1, 300, "main");
	def_code(&w, 1, "<module>", "/app/other.py", 1);
	def_node(&w, 1, 0, 1, 0);
	ev_alloc(&w, 1, 0x1000, 100, 1, MA_KIND_MALLOC);
	ev_sample(&w, 1000000000ull, 10 << 20);
	cr_assert_eq(ma_capture_close(w.w,
				      &(struct ma_capture_trailer){
					      .duration_ns = 1000000000ull,
					      .complete = 1 }),
		     0, "%s", ma_errmsg());
}

/*
 * Every allocator, sizes at the edges of the histogram's buckets (bucket
 * b holds sizes in (2^(b-1), 2^b], bucket 0 sizes 0 and 1):
 *   pymalloc 16 x3 (b4), 24 (b5)       PyMem 100 x2 (b7)
 *   PyMem_Raw 5000 (b13)               malloc 1 (b0), 0 (b0), LATE 17 (b5)
 *   calloc 64 (b6)   sample 1 s        aligned 4096 (b12, thread io)
 *   mmap 1 MiB (b20), 3 MiB (b22), both thread io, after the 2 s sample
 */
static void write_mixed(const char *path)
{
	struct wr w;
	uint64_t p = 0x100000;

	cr_assert_eq(ma_capture_create(path, &meta, &w.w), 0, "%s",
		     ma_errmsg());
	def_thread(&w, 1, 300, "main");
	def_thread(&w, 2, 301, "io");
	def_code(&w, 1, "<module>", "/app/mixed.py", 1);
	def_code(&w, 2, "load", "/app/mixed.py", 10);
	def_node(&w, 1, 0, 1, 0);
	def_node(&w, 2, 1, 2, 4);
	for (int i = 0; i < 3; i++)
		ev_alloc(&w, 1, p += 0x100, 16, 1, MA_KIND_PYOBJ);
	ev_alloc(&w, 1, p += 0x100, 24, 1, MA_KIND_PYOBJ);
	ev_alloc(&w, 1, p += 0x100, 100, 1, MA_KIND_PYMEM);
	ev_alloc(&w, 1, p += 0x100, 100, 1, MA_KIND_PYMEM);
	ev_alloc(&w, 1, p += 0x10000, 5000, 1, MA_KIND_PYMEM_RAW);
	ev_alloc(&w, 1, p += 0x100, 1, 1, MA_KIND_MALLOC);
	ev_alloc(&w, 1, p += 0x100, 0, 1, MA_KIND_MALLOC);
	ev_alloc(&w, 1, p += 0x100, 17, 1, MA_KIND_MALLOC | MA_KIND_LATE);
	ev_alloc(&w, 1, p += 0x100, 64, 1, MA_KIND_CALLOC);
	ev_sample(&w, 1000000000ull, 30 << 20);
	ev_alloc(&w, 2, p += 0x10000, 4096, 2, MA_KIND_ALIGNED);
	ev_sample(&w, 2000000000ull, 31 << 20);
	ev_alloc(&w, 2, 0x7f0000000000ull, 1 << 20, 2, MA_KIND_MMAP);
	ev_alloc(&w, 2, 0x7f0010000000ull, 3 << 20, 2, MA_KIND_MMAP);
	ev_sample(&w, 3000000000ull, 35 << 20);
	cr_assert_eq(ma_capture_close(w.w,
				      &(struct ma_capture_trailer){
					      .duration_ns = 3000000000ull,
					      .complete = 1 }),
		     0, "%s", ma_errmsg());
}

/* -f stats: the figures, exactly */
Test(report, stats_exact)
{
	static const struct {
		enum ma_ralloc a;
		unsigned bucket;
		uint64_t count, bytes;
	} hist[] = {
		{ MA_RA_PYMALLOC, 4, 3, 48 },	{ MA_RA_PYMALLOC, 5, 1, 24 },
		{ MA_RA_PYMEM, 7, 2, 200 },	{ MA_RA_RAW, 13, 1, 5000 },
		{ MA_RA_MALLOC, 0, 2, 1 },	{ MA_RA_MALLOC, 5, 1, 17 },
		{ MA_RA_MALLOC, 6, 1, 64 },	{ MA_RA_MALLOC, 12, 1, 4096 },
		{ MA_RA_MMAP, 20, 1, 1 << 20 }, { MA_RA_MMAP, 22, 1, 3 << 20 },
	};
	static const uint64_t big[] = { 3 << 20, 1 << 20, 5000, 4096, 100,
					100,	 64,	  24,	17,   16 };
	struct ma_report_opts o;
	struct ma_report *r;
	const struct ma_rstats *st;
	char path[128], *out;
	uint64_t n = 0;

	cr_expect_eq(ma_rstats_bucket(0), 0);
	cr_expect_eq(ma_rstats_bucket(1), 0);
	cr_expect_eq(ma_rstats_bucket(2), 1);
	cr_expect_eq(ma_rstats_bucket(16), 4);
	cr_expect_eq(ma_rstats_bucket(17), 5);
	cr_expect_eq(ma_rstats_bucket(UINT64_MAX), MA_RSTATS_BUCKETS - 1);
	tmp_path(path, sizeof(path), "mixed.cap");
	write_mixed(path);
	ma_report_opts_init(&o);
	r = load(path, &o);
	st = &r->stats;
	FIG(st->by_alloc[MA_RA_PYMALLOC], 72, 4);
	FIG(st->by_alloc[MA_RA_PYMEM], 200, 2);
	FIG(st->by_alloc[MA_RA_RAW], 5000, 1);
	FIG(st->by_alloc[MA_RA_MALLOC], 4178, 5);
	FIG(st->by_alloc[MA_RA_MMAP], 4 << 20, 2);
	for (size_t i = 0; i < sizeof(hist) / sizeof(hist[0]); i++) {
		FIG(st->hist[hist[i].a][hist[i].bucket], hist[i].bytes,
		    hist[i].count);
		n += hist[i].count;
	}
	cr_expect_eq(n, r->t.allocs, "every allocation in one bucket");
	cr_assert_eq(st->nbig, MA_RSTATS_BIG);
	for (size_t i = 0; i < MA_RSTATS_BIG; i++)
		cr_expect_eq(st->big[i].size, big[i], "largest #%zu", i);
	cr_expect_eq(st->big[0].alloc, MA_RA_MMAP);
	cr_expect_eq(r->threads[st->big[0].thread].tid, 301);
	cr_expect_eq(st->big[0].t_ns, 2000000000ull, "after the 2 s sample");
	cr_expect_str_eq(r->nodes[st->big[0].node].function, "load");
	cr_expect_eq(r->nodes[st->big[0].node].line, 12);
	cr_expect_eq(st->big[3].alloc, MA_RA_MALLOC, "aligned is malloc's");
	cr_expect_eq(st->big[9].index, 6, "of three 16s, the first (event 6)");
	r->opts.width = 100;
	out = render(r, ma_report_stats, NULL);
	cr_expect(strstr(out, "  mmap                2   4.00 MiB"), "%s", out);
	cr_expect(strstr(out, "     <= 16 B          3          -          -"
			      "          -          -       48 B\n"),
		  "%s", out);
	cr_expect(strstr(out, "    3.00 MiB mmap      io (301)"), "%s", out);
	free(out);
	ma_report_free(r);
}

/*
 * The captures the CLI test (tests/e2e/test_report_cli.py) runs memattach
 * on, written into $MA_REPORT_FIXTURES (else a temporary directory, to
 * check that they load): scenario.cap, scenario-b.cap (alloc_b keeps 5000
 * more), deep.cap, truncated.cap, empty-truncated.cap, other.cap.
 */
Test(report, write_fixtures)
{
	const char *dir = getenv("MA_REPORT_FIXTURES");
	static const char *const names[] = {
		"scenario.cap",	 "scenario-b.cap",	"deep.cap",
		"truncated.cap", "empty-truncated.cap", "other.cap"
	};
	char path[512];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct ma_report *r = NULL;
		int ret;

		if (dir)
			snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		else
			tmp_path(path, sizeof(path), names[i]);
		switch (i) {
		case 0:
		case 1:
			write_scenario(path, i == 1);
			break;
		case 2:
			write_deep(path);
			break;
		case 3:
		case 4:
			write_truncated(path, i == 4);
			break;
		default:
			write_other(path);
		}
		ret = try_load(path, &r);
		if (i == 4) {
			cr_expect_eq(ret, -ENODATA, "%s: %s", names[i],
				     ma_errmsg());
			cr_expect_eq(ma_err_exit(), MA_EXIT_CAPTURE);
		} else {
			cr_expect_eq(ret, 0, "%s: %s", names[i], ma_errmsg());
		}
		ma_report_free(r);
	}
}

/* ------------------------------------------------------------------ */
/* Formats, on the same scenario */

static char *render(struct ma_report *r,
		    int (*fn)(const struct ma_report *, FILE *), size_t *len)
{
	char *buf = NULL;
	size_t l = 0;
	FILE *f = open_memstream(&buf, &l);

	cr_assert_not_null(f);
	cr_assert_eq(fn(r, f), 0, "%s", ma_errmsg());
	fclose(f);
	if (len)
		*len = l;
	return buf;
}

Test(report, json_shape_and_figures)
{
	struct ma_report_opts o;
	struct ma_report *r;
	char path[128], *out;
	json_t *doc, *row;
	json_error_t e;

	scenario(path, sizeof(path));
	ma_report_opts_init(&o);
	r = load(path, &o);
	out = render(r, ma_report_json, NULL);
	doc = json_loads(out, 0, &e);
	cr_assert_not_null(doc, "%s", e.text);
	cr_expect_eq(json_integer_value(json_object_get(doc, "pid")), 777);
	cr_expect_str_eq(json_string_value(json_object_get(doc, "python")),
			 "3.11.2");
	cr_expect(json_is_true(json_object_get(doc, "complete")));
	cr_expect(json_is_false(json_object_get(doc, "truncated")));
	{
		json_t *t = json_object_get(doc, "totals");
		static const char *const keys[] = {
			"allocations",	 "allocated_bytes", "frees",
			"live_bytes",	 "live_count",	    "peak_bytes",
			"unknown_frees", "lost_records",    "threads"
		};
		/* frees: of tracked blocks (6), the unknown one apart */
		static const long long want[] = { 8,	8080, 6, 3000, 2,
						  6000, 1,    0, 2 };

		for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
			cr_expect_eq(
				json_integer_value(json_object_get(t, keys[i])),
				want[i], "%s", keys[i]);
	}
	row = json_array_get(json_object_get(doc, "rows"), 0);
	cr_expect_str_eq(json_string_value(json_object_get(row, "function")),
			 "alloc_a");
	cr_expect_eq(json_integer_value(json_object_get(row, "line")), 11);
	cr_expect_eq(json_integer_value(json_object_get(
			     json_object_get(row, "live"), "bytes")),
		     3000);
	cr_expect_eq(json_integer_value(json_object_get(
			     json_object_get(row, "temporary"), "count")),
		     1);
	cr_expect_eq(json_array_size(json_object_get(row, "stack")), 2);
	cr_expect_eq(json_integer_value(json_object_get(
			     json_object_get(doc, "peak"), "bytes")),
		     6000);
	json_decref(doc);
	free(out);
	ma_report_free(r);
}

Test(report, collapsed_csv_text)
{
	struct ma_report_opts o;
	struct ma_report *r;
	char path[128], *out;

	scenario(path, sizeof(path));
	ma_report_opts_init(&o);
	o.view = MA_RV_TOTAL;
	r = load(path, &o);
	out = render(r, ma_report_collapsed, NULL);
	cr_expect_str_eq(
		out, "<module> (/app/main.py:3);alloc_a (/app/a.py:11) 3720\n"
		     "<module> (/app/main.py:3);alloc_b (/app/b.py:22) 300\n"
		     "<module> (/app/main.py:3);alloc_a (/app/a.py:11);"
		     "helper (/app/a.py:30) 60\n"
		     "<module> (/app/main.py:3);alloc_b (/app/b.py:22);"
		     "helper (/app/a.py:30) 4000\n");
	free(out);

	out = render(r, ma_report_csv, NULL);
	cr_expect(strstr(out, "rank,function,file,line,bytes,count,share,") ==
		  out);
	cr_expect(strstr(out, "\n1,helper,/app/a.py,30,4060,3,0.502475,0,0,"
			      "4000,1,4060,3,60,2,"),
		  "%s", out);
	free(out);

	r->opts.width = 80;
	r->opts.color = 0;
	out = render(r, ma_report_text, NULL);
	cr_expect(strstr(out, "helper (/app/a.py:30)"), "%s", out);
	cr_expect(strstr(out, "<- alloc_b (/app/b.py:22)"), "%s", out);
	cr_expect(strstr(out, "1 free of memory allocated before the attach"),
		  "%s", out);
	cr_expect(strstr(out, "between 1.0 s and 2.0 s"), "%s", out);
	cr_expect_null(strchr(out, '\033'), "no colour when asked");
	for (char *l = out; l && *l;
	     l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		char *e = strchr(l, '\n');
		size_t n = e ? (size_t)(e - l) : strlen(l);

		cr_expect_leq(n, 80, "line wider than 80: %.*s", (int)n, l);
	}
	free(out);
	ma_report_free(r);
}

/* issue 11, defect 1: caller trees were cut at 12 levels without a mark,
 * and a recursion filled them all */
Test(report, caller_trees_fold_recursion_and_mark_cuts)
{
	struct ma_report_opts o;
	struct ma_report *r;
	char path[128], *out;

	tmp_path(path, sizeof(path), "deep.cap");
	write_deep(path);
	ma_report_opts_init(&o);
	o.width = 100;
	o.color = 0;
	r = load(path, &o);
	out = render(r, ma_report_text, NULL);
	cr_expect(strstr(out, "<- rec (/app/deep.py:21)  x44 (recursion)\n"),
		  "%s", out);
	cr_expect(strstr(out, "<- worker (/app/deep.py:11)"), "%s", out);
	cr_expect(strstr(out, "<- Thread.run (/usr/lib/threading.py:970)"),
		  "%s", out);
	cr_expect(strstr(out, "<- Thread._bootstrap (/usr/lib/threading.py"),
		  "%s", out);
	/* f15 <- f14 ... <- f3 shown (12 levels), f2, f1, f0 cut */
	cr_expect(strstr(out, "<- f3 (/app/chain.py:131)\n"), "%s", out);
	cr_expect_null(strstr(out, "<- f2 "), "%s", out);
	cr_expect(strstr(out, "   ... 3 more caller frames\n"), "%s", out);
	free(out);
	ma_report_free(r);
}

Test(report, speedscope_profiles)
{
	struct ma_report_opts o;
	struct ma_report *r;
	char path[128], *out;
	json_t *doc, *profs;
	json_error_t e;
	static const long long sums[] = { 3000, 6000, 8080, 380 };

	scenario(path, sizeof(path));
	ma_report_opts_init(&o);
	o.view = MA_RV_PEAK;
	r = load(path, &o);
	out = render(r, ma_report_speedscope, NULL);
	doc = json_loads(out, 0, &e);
	cr_assert_not_null(doc, "%s", e.text);
	cr_expect_eq(
		json_integer_value(json_object_get(doc, "activeProfileIndex")),
		1);
	profs = json_object_get(doc, "profiles");
	cr_assert_eq(json_array_size(profs), 4);
	for (size_t k = 0; k < 4; k++) {
		json_t *p = json_array_get(profs, k), *w, *s;
		long long sum = 0;
		size_t i;

		w = json_object_get(p, "weights");
		s = json_object_get(p, "samples");
		cr_expect_eq(json_array_size(w), json_array_size(s));
		for (i = 0; i < json_array_size(w); i++)
			sum += json_integer_value(json_array_get(w, i));
		cr_expect_eq(sum, sums[k], "profile %zu", k);
		cr_expect_eq(json_integer_value(json_object_get(p, "endValue")),
			     sums[k]);
	}
	json_decref(doc);
	free(out);
	ma_report_free(r);
}

/*
 * speedscope writes a profile for each of the four views; one the capture
 * cannot give (the temporary view of a sampled capture, the peak of a
 * --from range of an aggregated one) was an empty profile named like the
 * others, read as "nothing temporary".  Its name says it is not known.
 */
static const char *profile_name(const char *out, size_t k)
{
	static char name[512];
	json_error_t e;
	json_t *doc = json_loads(out, 0, &e);
	json_t *p;

	cr_assert_not_null(doc, "%s", e.text);
	p = json_array_get(json_object_get(doc, "profiles"), k);
	snprintf(name, sizeof(name), "%s",
		 json_string_value(json_object_get(p, "name")));
	json_decref(doc);
	return name;
}

/* r's figures read as a sampled capture's (mean 4 KiB): r->meta points to
 * *copy until the caller puts back the one returned */
static const struct ma_capture_meta *as_sampled(struct ma_report *r,
						struct ma_capture_meta *copy)
{
	const struct ma_capture_meta *was = r->meta;

	*copy = *was;
	copy->flags |= MA_TRACK_SAMPLE;
	copy->sample_mean = 4096;
	r->meta = copy;
	return was;
}

Test(report, speedscope_names_views_not_known)
{
	struct ma_report_opts o;
	struct ma_report *r;
	struct ma_capture_meta sampled;
	const struct ma_capture_meta *was;
	char path[128], *out;

	scenario(path, sizeof(path));
	ma_report_opts_init(&o);
	r = load(path, &o);
	/* every view known: no such words */
	out = render(r, ma_report_speedscope, NULL);
	for (size_t k = 0; k < 4; k++)
		cr_expect_null(strstr(profile_name(out, k), "NOT KNOWN"), "%s",
			       profile_name(out, k));
	free(out);
	/* the same figures, read as a sampled capture's */
	was = as_sampled(r, &sampled);
	out = render(r, ma_report_speedscope, NULL);
	cr_expect(strstr(profile_name(out, 3), "temporary bytes") &&
			  strstr(profile_name(out, 3), "NOT KNOWN"),
		  "%s", profile_name(out, 3));
	cr_expect_null(strstr(profile_name(out, 0), "NOT KNOWN"), "%s",
		       profile_name(out, 0));
	free(out);
	r->meta = was;
	ma_report_free(r);
}

/*
 * -f stats of a sampled capture: its counts and bytes by allocator and by
 * location are estimates, and it said nothing of it (the text report and
 * the other formats do).  The same figures read as a sampled capture's.
 */
Test(report, stats_says_estimates)
{
	struct ma_report_opts o;
	struct ma_report *r;
	struct ma_capture_meta sampled;
	const struct ma_capture_meta *was;
	char path[128], *out;

	scenario(path, sizeof(path));
	ma_report_opts_init(&o);
	r = load(path, &o);
	out = render(r, ma_report_stats, NULL);
	cr_expect_null(strstr(out, "ESTIMATES"), "%s", out);
	free(out);
	was = as_sampled(r, &sampled);
	out = render(r, ma_report_stats, NULL);
	cr_expect(strstr(out, "\n  ESTIMATES: blocks sampled every 4.00 KiB on "
			      "average (--sample); every figure is an "
			      "estimate\n"),
		  "%s", out);
	free(out);
	r->meta = was;
	ma_report_free(r);
}

/*
 * A function's frame in speedscope is named by its def line whatever the
 * line of its first node: a first node with no line (-1, as CPython 3.11+
 * gives some instructions) left the frame "f", with no file, def line nor
 * "line", for every node of f.  Code 2 "f" (first line 1): its 3.8
 * lnotab puts addr 0 at line -1 and addr 2 at line 2.
 */
Test(report, speedscope_frame_of_a_node_with_no_line)
{
	static uint8_t lt[] = { 0, 0xfe, 2, 3 };
	struct ma_event ev = { .type = MA_EV_CODE, .thread = 1 };
	struct ma_report_opts o;
	struct ma_report *r;
	struct wr w;
	char path[128], *out;
	json_t *doc, *frames;
	json_error_t e;
	int named = 0;

	tmp_path(path, sizeof(path), "noline.cap");
	cr_assert_eq(ma_capture_create(path, &meta, &w.w), 0, "%s",
		     ma_errmsg());
	def_thread(&w, 1, 100, "main");
	def_code(&w, 1, "<module>", "/app/main.py", 1);
	ev.code.id = 2;
	ev.code.firstlineno = 1;
	ev.code.version_hex = PY38;
	ev.code.name = "f";
	ev.code.name_len = 1;
	ev.code.file = "/app/f.py";
	ev.code.file_len = (uint32_t)strlen(ev.code.file);
	ev.code.linetable = lt;
	ev.code.linetable_len = sizeof(lt);
	put(&w, &ev);
	def_node(&w, 1, 0, 1, 4);
	def_node(&w, 2, 1, 2, 0); /* f, line -1 */
	def_node(&w, 3, 1, 2, 2); /* f, line 2 */
	ev_alloc(&w, 1, 0x1000, 100, 2, MA_KIND_MALLOC);
	ev_alloc(&w, 1, 0x2000, 200, 3, MA_KIND_MALLOC);
	ev_sample(&w, 1000000000ull, 10 << 20);
	cr_assert_eq(ma_capture_close(w.w,
				      &(struct ma_capture_trailer){
					      .duration_ns = 1000000000ull,
					      .complete = 1 }),
		     0, "%s", ma_errmsg());
	ma_report_opts_init(&o);
	r = load(path, &o);
	out = render(r, ma_report_speedscope, NULL);
	doc = json_loads(out, 0, &e);
	cr_assert_not_null(doc, "%s", e.text);
	frames = json_object_get(json_object_get(doc, "shared"), "frames");
	for (size_t i = 0; i < json_array_size(frames); i++) {
		json_t *fr = json_array_get(frames, i);
		const char *name =
			json_string_value(json_object_get(fr, "name"));

		if (strncmp(name, "f", 1))
			continue;
		named++;
		cr_expect_str_eq(name, "f (/app/f.py:1)", "%s", out);
		cr_expect_eq(json_integer_value(json_object_get(fr, "line")), 1,
			     "%s", out);
	}
	cr_expect_eq(named, 1, "one frame for f: %s", out);
	json_decref(doc);
	free(out);
	ma_report_free(r);
}

static uint8_t *gunzip(const char *in, size_t len, size_t *out_len)
{
	size_t cap = 1 << 20;
	uint8_t *out = malloc(cap);
	z_stream z = { 0 };

	cr_assert_eq(inflateInit2(&z, 15 + 16), Z_OK);
	z.next_in = (uint8_t *)in;
	z.avail_in = (uInt)len;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	cr_assert_eq(inflate(&z, Z_FINISH), Z_STREAM_END);
	*out_len = cap - z.avail_out;
	inflateEnd(&z);
	return out;
}

Test(report, pprof_decodes)
{
	struct ma_report_opts o;
	struct ma_report *r;
	Perftools__Profiles__Profile *p;
	char path[128], *out;
	uint8_t *raw;
	size_t len, rlen;
	int64_t sums[4] = { 0 };

	scenario(path, sizeof(path));
	ma_report_opts_init(&o);
	o.by_thread = true;
	r = load(path, &o);
	out = render(r, ma_report_pprof, &len);
	raw = gunzip(out, len, &rlen);
	p = perftools__profiles__profile__unpack(NULL, rlen, raw);
	cr_assert_not_null(p);
	cr_assert_eq(p->n_sample_type, 4);
	cr_expect_str_eq(p->string_table[p->sample_type[0]->type],
			 "alloc_objects");
	cr_expect_str_eq(p->string_table[p->sample_type[3]->type],
			 "inuse_space");
	cr_expect_str_eq(p->string_table[p->sample_type[3]->unit], "bytes");
	cr_expect_str_eq(p->string_table[p->default_sample_type],
			 "inuse_space");
	for (size_t i = 0; i < p->n_sample; i++)
		for (int k = 0; k < 4; k++)
			sums[k] += p->sample[i]->value[k];
	cr_expect_eq(sums[0], 8);
	cr_expect_eq(sums[1], 8080);
	cr_expect_eq(sums[2], 2);
	cr_expect_eq(sums[3], 3000);
	cr_expect_eq(p->n_location, r->nnodes - 1);
	cr_expect_eq(p->n_function, 4);
	/* issue 11, defect 6: a mapping (the executable), so that pprof
	 * knows the main binary; thread, tid and bytes labels */
	cr_assert_eq(p->n_mapping, 1);
	cr_expect_str_eq(p->string_table[p->mapping[0]->filename],
			 "/usr/bin/python3.11");
	cr_expect(p->mapping[0]->has_functions &&
		  p->mapping[0]->has_line_numbers);
	cr_expect_eq(p->n_sample, 4, "one per (stack, thread)");
	for (size_t i = 0; i < p->n_sample; i++) {
		Perftools__Profiles__Sample *s = p->sample[i];
		const char *th = NULL;
		int64_t tid = 0, bytes = 0;

		cr_expect_eq(p->location[s->location_id[0] - 1]->mapping_id, 1);
		cr_assert_eq(s->n_label, 3);
		for (size_t k = 0; k < s->n_label; k++) {
			const char *key = p->string_table[s->label[k]->key];

			if (!strcmp(key, "thread"))
				th = p->string_table[s->label[k]->str];
			else if (!strcmp(key, "tid"))
				tid = s->label[k]->num;
			else if (!strcmp(key, "bytes"))
				bytes = s->label[k]->num;
		}
		cr_assert_not_null(th);
		cr_expect(tid == (strcmp(th, "main") ? 101 : 100), "%s %lld",
			  th, (long long)tid);
		/* the mean size of the sample's blocks (total view) */
		cr_expect_eq(bytes, s->value[1] / s->value[0]);
	}
	/* the first location of each sample is its innermost frame */
	for (size_t i = 0; i < p->n_sample; i++) {
		uint64_t id = p->sample[i]->location_id[0];

		cr_expect_eq(p->sample[i]->n_location_id, r->nodes[id].depth);
	}
	perftools__profiles__profile__free_unpacked(p, NULL);
	free(raw);
	free(out);
	ma_report_free(r);
}

static Perftools__Profiles__Profile *pprof_of(const char *path,
					      struct ma_report_opts *o)
{
	struct ma_report *r = load(path, o);
	Perftools__Profiles__Profile *p;
	size_t len, rlen;
	char *out = render(r, ma_report_pprof, &len);
	uint8_t *raw = gunzip(out, len, &rlen);

	p = perftools__profiles__profile__unpack(NULL, rlen, raw);
	cr_assert_not_null(p);
	free(raw);
	free(out);
	ma_report_free(r);
	return p;
}

/* defects 5 and 6: the temporary view is never alloc_* (Pyroscope and
 * Parca read that as every allocation); a cut capture says so in the
 * profile */
Test(report, pprof_temporary_names_and_truncation)
{
	struct ma_report_opts o;
	Perftools__Profiles__Profile *p;
	char path[128];
	bool cut = false;

	scenario(path, sizeof(path));
	ma_report_opts_init(&o);
	o.view = MA_RV_TEMP;
	p = pprof_of(path, &o);
	cr_expect_str_eq(p->string_table[p->sample_type[0]->type],
			 "temporary_objects");
	cr_expect_str_eq(p->string_table[p->sample_type[1]->type],
			 "temporary_space");
	cr_expect_str_eq(p->string_table[p->default_sample_type],
			 "temporary_space");
	for (size_t i = 0; i < p->n_string_table; i++)
		cr_expect(strcmp(p->string_table[i], "alloc_objects") &&
				  strcmp(p->string_table[i], "alloc_space"),
			  "%s", p->string_table[i]);
	perftools__profiles__profile__free_unpacked(p, NULL);

	tmp_path(path, sizeof(path), "cut.cap");
	write_truncated(path, false);
	ma_report_opts_init(&o);
	p = pprof_of(path, &o);
	for (size_t i = 0; i < p->n_comment; i++)
		cut |= !strncmp(p->string_table[p->comment[i]],
				"TRUNCATED: ", 11);
	cr_expect(cut, "a comment says the capture was cut short");
	perftools__profiles__profile__free_unpacked(p, NULL);
}

Test(report, html_is_self_contained)
{
	struct ma_report_opts o;
	struct ma_report *r;
	char path[128], *out;

	scenario(path, sizeof(path));
	ma_report_opts_init(&o);
	r = load(path, &o);
	out = render(r, ma_report_html, NULL);
	cr_expect_null(strstr(out, "@@"), "every marker replaced");
	cr_expect(strstr(out, "\"strings\":["), "the data");
	cr_expect(strstr(out, "\\u003cmodule\\u003e"), "'<' escaped");
	cr_expect_null(strstr(out, "http://"), "nothing to fetch");
	cr_expect_null(strstr(out, "src=\"http"), "nothing to fetch");
	cr_expect(strstr(out, "function setView"), "the script");
	free(out);
	ma_report_free(r);
}

Test(report, diff_shows_growth)
{
	struct ma_report_opts o;
	struct ma_report *a, *b;
	char pa[128], pb[128], *buf = NULL;
	size_t len = 0;
	json_t *doc, *row;
	json_error_t e;
	FILE *f;

	tmp_path(pa, sizeof(pa), "a.cap");
	tmp_path(pb, sizeof(pb), "b.cap");
	write_scenario(pa, false);
	write_scenario(pb, true);
	ma_report_opts_init(&o);
	a = load(pa, &o);
	b = load(pb, &o);
	f = open_memstream(&buf, &len);
	cr_assert_eq(ma_report_diff_json(a, b, f), 0, "%s", ma_errmsg());
	fclose(f);
	doc = json_loads(buf, 0, &e);
	cr_assert_not_null(doc, "%s: %s", e.text, buf);
	cr_expect_eq(json_array_size(json_object_get(doc, "rows")), 1);
	row = json_array_get(json_object_get(doc, "rows"), 0);
	cr_expect_str_eq(json_string_value(json_object_get(row, "function")),
			 "alloc_b");
	cr_expect_eq(json_integer_value(json_object_get(
			     json_object_get(row, "delta"), "bytes")),
		     5000);
	json_decref(doc);
	free(buf);
	buf = NULL;
	f = open_memstream(&buf, &len);
	cr_assert_eq(ma_report_diff_collapsed(a, b, f), 0);
	fclose(f);
	cr_expect_str_eq(buf,
			 "<module> (/app/main.py:3);alloc_b (/app/b.py:22) "
			 "5000\n");
	free(buf);
	ma_report_free(a);
	ma_report_free(b);
}

/* An aggregated capture whose payload's key table filled: its key 0 (no
 * stack, no kind) is not malloc's in the statistics by allocator */
Test(report, stats_key_table_full_is_not_malloc)
{
	struct ma_capture_meta am = meta;
	struct ma_report_opts o;
	struct ma_report *r;
	struct ma_event ev;
	char path[128];
	struct wr w;

	am.flags = MA_TRACK_PYTHON | MA_TRACK_NATIVE | MA_TRACK_AGG;
	tmp_path(path, sizeof(path), "keysfull.cap");
	cr_assert_eq(ma_capture_create(path, &am, &w.w), 0, "%s", ma_errmsg());
	def_thread(&w, 1, 100, "main");
	def_code(&w, 1, "<module>", "/app/main.py", 1);
	def_node(&w, 1, 0, 1, 4);
	ev = (struct ma_event){ .type = MA_EV_AGG, .thread = 1 };
	ev.agg.node = 1;
	ev.agg.kind = MA_KIND_PYOBJ;
	ev.agg.allocs = 10;
	ev.agg.alloc_bytes = 640;
	put(&w, &ev);
	ev = (struct ma_event){ .type = MA_EV_AGG, .thread = 0 };
	ev.agg.allocs = 30;
	ev.agg.alloc_bytes = 960;
	put(&w, &ev);
	ev = (struct ma_event){ .type = MA_EV_AGGEND };
	ev.aggend.keys_full = 30;
	put(&w, &ev);
	ev_sample(&w, 1000000000ull, 10 << 20);
	cr_assert_eq(ma_capture_close(w.w,
				      &(struct ma_capture_trailer){
					      .duration_ns = 1000000000ull,
					      .complete = 1 }),
		     0, "%s", ma_errmsg());
	ma_report_opts_init(&o);
	r = load(path, &o);
	FIG(r->stats.by_alloc[MA_RA_PYMALLOC], 640, 10);
	FIG(r->stats.by_alloc[MA_RA_MALLOC], 0, 0);
	FIG(r->stats.by_alloc[MA_RA_UNKNOWN], 960, 30);
	cr_expect_str_eq(ma_ralloc_name(MA_RA_UNKNOWN), "unknown");
	ma_report_free(r);
}

/* A side whose ring lost records is as incomplete in a diff as in its own
 * report: said in the text, counted in the JSON */
Test(report, diff_says_a_side_lost_records)
{
	struct ma_report_opts o;
	struct ma_report *a, *b;
	char pa[128], pb[128], *buf = NULL;
	size_t len = 0;
	json_t *doc;
	json_error_t e;
	FILE *f;

	tmp_path(pa, sizeof(pa), "a.cap");
	tmp_path(pb, sizeof(pb), "b.cap");
	write_scenario(pa, false);
	scenario_lost = 7;
	write_scenario(pb, true);
	scenario_lost = 0;
	ma_report_opts_init(&o);
	a = load(pa, &o);
	b = load(pb, &o);
	f = open_memstream(&buf, &len);
	cr_assert_eq(ma_report_diff_text(a, b, f), 0, "%s", ma_errmsg());
	fclose(f);
	cr_expect(strstr(buf, "b.cap: 7 records were lost (ring full)"), "%s",
		  buf);
	cr_expect(!strstr(buf, "a.cap: "), "%s", buf);
	free(buf);
	buf = NULL;
	f = open_memstream(&buf, &len);
	cr_assert_eq(ma_report_diff_json(a, b, f), 0, "%s", ma_errmsg());
	fclose(f);
	doc = json_loads(buf, 0, &e);
	cr_assert_not_null(doc, "%s: %s", e.text, buf);
	cr_expect_eq(json_integer_value(json_object_get(
			     json_object_get(doc, "after"), "lost_records")),
		     7, "%s", buf);
	json_decref(doc);
	free(buf);
	ma_report_free(a);
	ma_report_free(b);
}

/* ------------------------------------------------------------------ */
/* Damaged captures: a clear error or a truncated report, never a crash */

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *b;
	int fd = open(path, O_RDONLY);

	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);
	b = malloc((size_t)st.st_size + 1);
	cr_assert_eq(read(fd, b, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

static void spit(const char *path, const uint8_t *b, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, b, len), (ssize_t)len);
	close(fd);
}

static int try_load(const char *path, struct ma_report **out)
{
	struct ma_report_opts o;

	ma_report_opts_init(&o);
	ma_err_clear();
	*out = NULL;
	return ma_report_load(path, &o, out);
}

Test(report, empty_missing_newer_not_a_capture)
{
	struct ma_report *r;
	char path[128], bad[128];
	uint8_t *b;
	size_t len;

	tmp_path(bad, sizeof(bad), "empty.cap");
	spit(bad, (const uint8_t *)"", 0);
	cr_expect_eq(try_load(bad, &r), -ENODATA);
	cr_expect(strstr(ma_errmsg(), "empty"), "%s", ma_errmsg());
	cr_expect_eq(ma_err_exit(), MA_EXIT_CAPTURE);

	tmp_path(bad, sizeof(bad), "missing.cap");
	cr_expect_eq(try_load(bad, &r), -ENOENT);
	cr_expect_eq(ma_err_exit(), MA_EXIT_CAPTURE);

	scenario(path, sizeof(path));
	b = slurp(path, &len);
	b[8] = MA_CAPTURE_VERSION + 1; /* a newer format version */
	tmp_path(bad, sizeof(bad), "newer.cap");
	spit(bad, b, len);
	cr_expect_eq(try_load(bad, &r), -EPROTONOSUPPORT);
	cr_expect(strstr(ma_errmsg(), "newer"), "%s", ma_errmsg());
	cr_expect_eq(ma_err_exit(), MA_EXIT_CAPTURE);

	tmp_path(bad, sizeof(bad), "text.cap");
	spit(bad, (const uint8_t *)"hello, world\n", 13);
	cr_expect_eq(try_load(bad, &r), -EPROTO);
	cr_expect(strstr(ma_errmsg(), "not a memattach capture"), "%s",
		  ma_errmsg());
	free(b);
}

Test(report, every_cut_and_many_corruptions)
{
	struct ma_report *r;
	char path[128], bad[128];
	uint8_t *b, *c;
	size_t len;
	uint64_t rng = 99;
	int truncated = 0, errors = 0;

	scenario(path, sizeof(path));
	b = slurp(path, &len);
	tmp_path(bad, sizeof(bad), "bad.cap");
	/* every length: an error before the first block, then truncated
	 * reports, each with fewer figures */
	for (size_t cut = 0; cut < len; cut++) {
		int ret;

		spit(bad, b, cut);
		ret = try_load(bad, &r);
		if (ret == 0) {
			cr_expect_null(r->trailer);
			cr_expect_not_null(r->warning);
			truncated++;
			ma_report_free(r);
		} else {
			cr_expect_eq(ma_err_exit(), MA_EXIT_CAPTURE, "cut %zu",
				     cut);
			cr_expect_neq(ma_errmsg()[0], '\0');
			errors++;
		}
	}
	cr_expect_gt(truncated, 0);
	cr_expect_gt(errors, 0);
	/* random byte flips: loads or fails cleanly (the sanitizer build
	 * runs this too) */
	c = malloc(len);
	for (int i = 0; i < 3000; i++) {
		memcpy(c, b, len);
		for (int k = 0; k < 1 + i % 4; k++) {
			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			c[rng % len] ^= (uint8_t)(1 + (rng >> 40) % 255);
		}
		spit(bad, c, len);
		if (try_load(bad, &r) == 0)
			ma_report_free(r);
		else
			cr_expect_neq(ma_errmsg()[0], '\0');
	}
	free(c);
	free(b);
}

/* ------------------------------------------------------------------ */
/* The temporary tracker against a naive model: per thread, the list of
 * its allocations in order; a free by the allocating thread is temporary
 * when fewer than window + 1 of that thread's allocations came after. */

struct naive_alloc {
	uint64_t ptr, size, seq;
	uint32_t thread, node;
	bool live;
};

Test(report, temporary_matches_naive_model)
{
	for (uint32_t window = 0; window < 6; window += 1) {
		static struct naive_alloc all[20000];
		uint64_t seq[4] = { 0 }, rng = 5 + window, want_b = 0,
			 want_c = 0;
		struct ma_temporary *t;
		struct ma_account_fig got;
		size_t n = 0;

		cr_assert_eq(ma_temporary_new(window, &t), 0);
		for (int i = 0; i < 20000; i++) {
			struct ma_event ev = { 0 };

			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			ev.thread = 1 + (uint32_t)(rng % 3);
			if ((rng >> 8) % 2 == 0 || n == 0) {
				struct naive_alloc *a = &all[n++];

				/* pointers reused often, as allocators do */
				a->ptr = 0x1000 + ((rng >> 16) % 64) * 16;
				for (size_t k = 0; k + 1 < n; k++)
					if (all[k].live && all[k].ptr == a->ptr)
						all[k].live = false; /* lost */
				a->size = 1 + (rng >> 24) % 100;
				a->thread = ev.thread;
				a->node = 1 + (uint32_t)((rng >> 32) % 5);
				a->seq = ++seq[ev.thread];
				a->live = true;
				ev.type = MA_EV_ALLOC;
				ev.alloc.ptr = a->ptr;
				ev.alloc.size = a->size;
				ev.alloc.node = a->node;
				ev.alloc.kind = MA_KIND_MALLOC;
			} else {
				/* free a random recent live block, from a
				 * random thread sometimes */
				size_t k =
					n - 1 - (rng >> 20) % (n < 8 ? n : 8);

				ev.type = MA_EV_FREE;
				ev.free.kind = MA_KIND_MALLOC;
				ev.free.ptr = all[k].ptr;
				if ((rng >> 40) % 4 == 0)
					ev.thread = all[k].thread;
				for (size_t j = n; j-- > 0;)
					if (all[j].live &&
					    all[j].ptr == ev.free.ptr) {
						if (all[j].thread ==
							    ev.thread &&
						    seq[ev.thread] -
								    all[j].seq <=
							    window) {
							want_b += all[j].size;
							want_c++;
						}
						all[j].live = false;
						break;
					}
			}
			cr_assert_eq(ma_temporary_feed(t, &ev), 0);
			if (n == sizeof(all) / sizeof(all[0]))
				break;
		}
		ma_temporary_total(t, &got);
		cr_expect_eq(got.bytes, want_b, "window %u", window);
		cr_expect_eq(got.count, want_c, "window %u", window);
		cr_expect_gt(want_c, 0);
		ma_temporary_free(t);
	}
}

/* A capture of several processes (format 3): each thread's process from
 * its PROC event, a process's figures its threads', --pid keeps one */
static void write_procs(const char *path)
{
	struct ma_capture_meta m = meta;
	struct ma_capture_trailer tr = { .complete = 1 };
	struct wr w;
	struct ma_event pe = { .type = MA_EV_PROC };

	m.version = MA_CAPTURE_VERSION;
	m.flags |= MA_CAPTURE_PROCS;
	cr_assert_eq(ma_capture_create(path, &m, &w.w), 0, "%s", ma_errmsg());
	pe.proc.pid = 500;
	put(&w, &pe);
	def_thread(&w, 1, 500, "master");
	pe.thread = 1;
	put(&w, &pe);
	def_code(&w, 1, "work", "app.py", 10);
	def_node(&w, 1, 0, 1, 0);
	def_node(&w, 2, 0, 1, 4);
	ev_alloc(&w, 1, 0x1000, 1000, 1, MA_KIND_MALLOC);
	ev_alloc(&w, 1, 0x2000, 500, 2, MA_KIND_MALLOC);
	pe = (struct ma_event){ .type = MA_EV_PROC,
				.proc = { .pid = 501, .ppid = 500 } };
	put(&w, &pe);
	def_thread(&w, 2, 501, "worker");
	pe.thread = 2;
	put(&w, &pe);
	/* the same address in the other process (tagged as the attacher
	 * does) is another block */
	ev_alloc(&w, 2, 0x1000 ^ (1ull << 48), 3000, 1, MA_KIND_MALLOC);
	ev_alloc(&w, 2, 0x3000 ^ (1ull << 48), 7, 1, MA_KIND_MALLOC);
	ev_free(&w, 2, 0x3000 ^ (1ull << 48));
	pe = (struct ma_event){
		.type = MA_EV_PROC,
		.proc = { .pid = 501, .ppid = 500, .state = MA_PROC_EXITED }
	};
	put(&w, &pe);
	pe = (struct ma_event){
		.type = MA_EV_PROC,
		.proc = { .pid = 502, .ppid = 500, .state = MA_PROC_SKIPPED }
	};
	put(&w, &pe);
	cr_assert_eq(ma_capture_close(w.w, &tr), 0, "%s", ma_errmsg());
}

Test(report, processes_and_pid_filter)
{
	struct ma_report_opts o;
	struct ma_report *r;
	const struct ma_rproc *p[3];
	uint32_t ord[3];
	char path[128];

	tmp_path(path, sizeof(path), "procs.cap");
	write_procs(path);
	ma_report_opts_init(&o);
	r = load(path, &o);
	cr_assert_eq(r->nprocs, 3);
	for (int i = 0; i < 3; i++)
		p[i] = &r->procs[i];
	cr_expect_eq(p[0]->pid, 500);
	cr_expect_eq(p[1]->ppid, 500);
	cr_expect_eq(p[1]->state, MA_PROC_EXITED);
	cr_expect_eq(p[2]->state, MA_PROC_SKIPPED);
	cr_expect_eq(p[0]->nthreads, 1);
	FIG(p[0]->fig[MA_RV_LIVE], 1500, 2);
	FIG(p[1]->fig[MA_RV_LIVE], 3000, 1);
	FIG(p[1]->fig[MA_RV_TOTAL], 3007, 2);
	FIG(p[2]->fig[MA_RV_TOTAL], 0, 0);
	FIG(r->sum[MA_RV_LIVE], 4500, 3);
	cr_expect_eq(ma_report_proc_order(r, ord), 3);
	cr_expect_eq(r->procs[ord[0]].pid, 501, "by live bytes");
	ma_report_free(r);

	ma_report_opts_init(&o);
	o.pids[o.npids++] = 501;
	r = load(path, &o);
	FIG(r->sum[MA_RV_LIVE], 3000, 1);
	FIG(r->sum[MA_RV_TOTAL], 3007, 2);
	cr_expect_str_eq(r->pid_desc, "501");
	cr_expect_eq(ma_report_proc_order(r, ord), 1);
	ma_report_free(r);

	/* a PID not in the capture: a usage error naming its processes */
	ma_report_opts_init(&o);
	o.pids[o.npids++] = 999;
	ma_err_clear();
	r = NULL;
	cr_expect_eq(ma_report_load(path, &o, &r), -ESRCH);
	cr_expect_null(r);
	cr_expect_eq(ma_err_exit(), MA_EXIT_USAGE);
	cr_expect(strstr(ma_errmsg(), "500, 501, 502"), "%s", ma_errmsg());
}

/*
 * --pid of a process of the capture with no thread (skipped, or one that
 * had not allocated yet at --to): a report of nothing.  It was refused as
 * a --thread naming no thread, "no thread of process 502 in X is  (a
 * kernel thread id or name); its threads: none", exit 2, and so was
 * --to T1 --diff-to T2 --pid of a worker that started after T1.
 */
Test(report, pid_of_a_process_with_no_thread)
{
	struct ma_report_opts o;
	struct ma_report *r = NULL;
	char path[128];

	tmp_path(path, sizeof(path), "procs0.cap");
	write_procs(path);
	ma_report_opts_init(&o);
	o.pids[o.npids++] = 502;
	ma_err_clear();
	cr_assert_eq(ma_report_load(path, &o, &r), 0, "%s", ma_errmsg());
	cr_expect_str_eq(r->pid_desc, "502");
	FIG(r->sum[MA_RV_LIVE], 0, 0);
	FIG(r->sum[MA_RV_TOTAL], 0, 0);
	ma_report_free(r);
}

static void ev_tname(struct wr *w, uint32_t thread, const char *name)
{
	struct ma_event ev = { .type = MA_EV_TNAME, .thread = thread };

	ev.tname.name = name;
	ev.tname.len = (uint32_t)strlen(name);
	put(w, &ev);
}

/*
 * TNAME (format 3): the thread an index stands for takes its Python name,
 * in every list and for --thread (from the TNAME on: before it the thread
 * was only its comm); an index defined again with the same tid and comm
 * stays the one thread, another THREAD on it starts without the name.
 */
Test(report, python_thread_names)
{
	struct ma_report_opts o;
	struct ma_report *r;
	struct wr w;
	char path[128];

	tmp_path(path, sizeof(path), "tname.cap");
	cr_assert_eq(ma_capture_create(path, &meta, &w.w), 0, "%s",
		     ma_errmsg());
	def_thread(&w, 1, 300, "python3");
	def_thread(&w, 2, 301, "python3");
	def_code(&w, 1, "<module>", "/app/a.py", 1);
	def_node(&w, 1, 0, 1, 0);
	ev_alloc(&w, 2, 0x1000, 100, 1, MA_KIND_MALLOC); /* before its name */
	ev_tname(&w, 1, "MainThread");
	ev_tname(&w, 2, "pool #2 (db)");
	ev_alloc(&w, 1, 0x2000, 10, 1, MA_KIND_MALLOC);
	ev_alloc(&w, 2, 0x3000, 1000, 1, MA_KIND_MALLOC);
	def_thread(&w, 2, 301, "python3"); /* the same thread again */
	ev_alloc(&w, 2, 0x4000, 2000, 1, MA_KIND_MALLOC);
	def_thread(&w, 1, 302, "python3"); /* index 1: another thread */
	ev_alloc(&w, 1, 0x5000, 5, 1, MA_KIND_MALLOC);
	ev_sample(&w, 1000000000ull, 10 << 20);
	cr_assert_eq(ma_capture_close(w.w,
				      &(struct ma_capture_trailer){
					      .duration_ns = 1000000000ull,
					      .complete = 1 }),
		     0, "%s", ma_errmsg());

	ma_report_opts_init(&o);
	r = load(path, &o);
	cr_assert_eq(r->nthreads, 4, "thread 0, 300, 301, 302");
	cr_expect_str_eq(r->threads[1].name, "MainThread");
	cr_expect_str_eq(r->threads[1].comm, "python3");
	cr_expect_str_eq(r->threads[2].name, "pool #2 (db)");
	cr_expect_eq(r->threads[3].tid, 302);
	cr_expect_str_eq(r->threads[3].name, "python3");
	ma_report_free(r);

	ma_report_opts_init(&o);
	o.threads[o.nthreads++] = "pool #2 (db)";
	r = load(path, &o);
	cr_expect_eq(r->threads_selected, 1);
	/* 0x3000 and 0x4000: 0x1000 came before the name */
	FIG(r->sum[MA_RV_TOTAL], 3000, 2);
	cr_expect(strstr(r->thread_desc, "301 \"pool #2 (db)\""), "%s",
		  r->thread_desc);
	ma_report_free(r);

	/* the comm still selects, from the THREAD on */
	ma_report_opts_init(&o);
	o.threads[o.nthreads++] = "301";
	r = load(path, &o);
	FIG(r->sum[MA_RV_TOTAL], 3100, 3);
	ma_report_free(r);
}

/*
 * --threads in the text: names padded and cut by characters, not bytes.
 * "wörker" (7 bytes, 6 characters) left its row a column short, and a
 * name longer than the column was cut at 32 bytes, inside a character
 * (invalid UTF-8 on the terminal).
 */
Test(report, thread_table_utf8_names)
{
	static const char *const exp[] = {
		"     101  wörker                                300 B ",
		"     102  üüüüüüüüüüüüüüüüüüüüüüüüüüüüüüüü      200 B ",
		"     103  main                                  100 B ",
	};
	char longname[128] = "";
	struct ma_report_opts o;
	struct ma_report *r;
	struct wr w;
	char path[128], *out;

	for (int i = 0; i < 40; i++)
		strcat(longname, "\xc3\xbc"); /* ü */
	tmp_path(path, sizeof(path), "utf8threads.cap");
	cr_assert_eq(ma_capture_create(path, &meta, &w.w), 0, "%s",
		     ma_errmsg());
	def_thread(&w, 1, 101, "python3");
	def_thread(&w, 2, 102, "python3");
	def_thread(&w, 3, 103, "main");
	def_code(&w, 1, "<module>", "/app/a.py", 1);
	def_node(&w, 1, 0, 1, 0);
	ev_tname(&w, 1, "w\xc3\xb6rker");
	ev_tname(&w, 2, longname);
	ev_alloc(&w, 1, 0x1000, 300, 1, MA_KIND_MALLOC);
	ev_alloc(&w, 2, 0x2000, 200, 1, MA_KIND_MALLOC);
	ev_alloc(&w, 3, 0x3000, 100, 1, MA_KIND_MALLOC);
	ev_sample(&w, 1000000000ull, 10 << 20);
	cr_assert_eq(ma_capture_close(w.w,
				      &(struct ma_capture_trailer){
					      .duration_ns = 1000000000ull,
					      .complete = 1 }),
		     0, "%s", ma_errmsg());
	ma_report_opts_init(&o);
	o.thread_table = true;
	o.by_thread = true; /* as the command sets it for --threads */
	o.width = 120;
	r = load(path, &o);
	out = render(r, ma_report_text, NULL);
	for (size_t i = 0; i < sizeof(exp) / sizeof(exp[0]); i++)
		cr_expect(strstr(out, exp[i]), "no '%s' in:\n%s", exp[i], out);
	free(out);
	ma_report_free(r);
}

/* A target's command line, printed on one line: control characters
 * escaped, the rest (UTF-8, backslashes) kept */
Test(textfit, escape_ctl)
{
	static const struct {
		const char *in, *out;
	} v[] = {
		{ "python3 -c import sys\nprint(1)",
		  "python3 -c import sys\\nprint(1)" },
		{ "a\tb\rc", "a\\tb\\rc" },
		{ "\x1b[31mred\x7f", "\\x1b[31mred\\x7f" },
		{ "caf\xc3\xa9 \xc2\x9b"
		  "1m \xc2\xa0",
		  "caf\xc3\xa9 \\u009b1m \xc2\xa0" },
		{ "back\\slash", "back\\slash" },
		{ "", "" },
		{ "\xc2", "\xc2" },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char *e = ma_escape_ctl(v[i].in);

		cr_assert(e);
		cr_expect_str_eq(e, v[i].out, "case %zu", i);
		free(e);
	}
}

/* names from the target made harmless to print: C0, DEL and UTF-8 C1 as
 * '?', the length kept, other UTF-8 untouched */
Test(textfit, ctl_sanitize)
{
	static const struct {
		const char *in, *out;
	} v[] = {
		{ "plain", "plain" },
		{ "\x1b[2J\x1b]0;T\x07x", "?[2J?]0;T?x" },
		{ "a\x7f"
		  "b",
		  "a?b" },
		{ "c\xc2\x9b"
		  "1m",
		  "c??1m" },
		{ "caf\xc3\xa9 \xe2\x82\xac \xc2\xa0",
		  "caf\xc3\xa9 \xe2\x82\xac \xc2\xa0" },
		{ "\xc2", "\xc2" },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char buf[64];
		size_t n = strlen(v[i].in);

		memcpy(buf, v[i].in, n + 1);
		ma_ctl_sanitize(buf, n);
		cr_expect_str_eq(buf, v[i].out, "case %zu", i);
	}
}
