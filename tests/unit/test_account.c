/* SPDX-License-Identifier: MIT */
/*
 * Accounting: hand-made scenarios with figures worked out by hand, and a
 * random stream (malloc family, realloc, cross-thread and unknown frees,
 * lost frees, mmap with overlaps and partial munmap) checked against a
 * deliberately naive model written here: linear lists, byte ranges split
 * by brute force, and a full copy of every node's figures at each new
 * peak.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "account.h"
#include "errors.h"
#include "units.h"

#define PY38 0x030800f0u

static struct ma_account *acc;

static void setup(void)
{
	cr_assert_eq(ma_account_new(&acc), 0);
}

static void teardown(void)
{
	ma_account_free(acc);
	acc = NULL;
}

TestSuite(account, .init = setup, .fini = teardown);

static void feed(const struct ma_event *ev)
{
	cr_assert_eq(ma_account_feed(acc, ev), 0, "%s", ma_errmsg());
}

static void alloc_ev(uint32_t thread, uint64_t ptr, uint64_t size,
		     uint32_t node, int kind)
{
	struct ma_event ev = { .type = MA_EV_ALLOC, .thread = thread };

	ev.alloc.ptr = ptr;
	ev.alloc.size = size;
	ev.alloc.node = node;
	ev.alloc.kind = (uint8_t)kind;
	feed(&ev);
}

static void free_ev(uint32_t thread, uint64_t ptr, uint64_t size, int kind)
{
	struct ma_event ev = { .type = MA_EV_FREE, .thread = thread };

	ev.free.ptr = ptr;
	ev.free.size = size;
	ev.free.kind = (uint8_t)kind;
	feed(&ev);
}

static void sample_ev(uint64_t t_ns)
{
	struct ma_event ev = { .type = MA_EV_SAMPLE };

	ev.sample.t_ns = t_ns;
	ev.sample.rss = t_ns / 1000;
	feed(&ev);
}

/*
 * Code objects whose line table (3.8 co_lnotab) advances one line every 2
 * bytes of bytecode, `steps` times: line(addr) = first + min(addr / 2,
 * steps).
 */
static void code_ev(uint32_t id, const char *name, const char *file, int first,
		    int steps)
{
	struct ma_event ev = { .type = MA_EV_CODE };
	static uint8_t lt[256];

	for (int i = 0; i < steps; i++) {
		lt[2 * i] = 2;
		lt[2 * i + 1] = 1;
	}
	ev.code.id = id;
	ev.code.firstlineno = first;
	ev.code.version_hex = PY38;
	ev.code.name = name;
	ev.code.name_len = (uint32_t)strlen(name);
	ev.code.file = file;
	ev.code.file_len = (uint32_t)strlen(file);
	ev.code.linetable = lt;
	ev.code.linetable_len = (uint32_t)(2 * steps);
	feed(&ev);
}

static void node_ev(uint32_t id, uint32_t parent, uint32_t code, int addr)
{
	struct ma_event ev = { .type = MA_EV_NODE };

	ev.node.id = id;
	ev.node.parent = parent;
	ev.node.code = code;
	ev.node.addr = addr;
	feed(&ev);
}

static const struct ma_account_totals *T(void)
{
	return ma_account_totals(acc);
}

static void expect_fig(uint32_t node, uint64_t live_b, uint64_t live_n,
		       uint64_t total_b, uint64_t total_n, uint64_t peak_b,
		       uint64_t peak_n)
{
	struct ma_account_fig l, t, p;

	ma_account_node_figs(acc, node, &l, &t, &p);
	cr_expect_eq(l.bytes, live_b, "node %u live bytes %llu != %llu", node,
		     (unsigned long long)l.bytes, (unsigned long long)live_b);
	cr_expect_eq(l.count, live_n, "node %u live count %llu != %llu", node,
		     (unsigned long long)l.count, (unsigned long long)live_n);
	cr_expect_eq(t.bytes, total_b, "node %u total bytes", node);
	cr_expect_eq(t.count, total_n, "node %u total count", node);
	cr_expect_eq(p.bytes, peak_b, "node %u peak bytes %llu != %llu", node,
		     (unsigned long long)p.bytes, (unsigned long long)peak_b);
	cr_expect_eq(p.count, peak_n, "node %u peak count %llu != %llu", node,
		     (unsigned long long)p.count, (unsigned long long)peak_n);
}

/* ------------------------------------------------------------------ */
/* Hand-made scenarios */

Test(account, realloc_is_a_free_and_an_allocation)
{
	alloc_ev(1, 0x1000, 100, 1, MA_KIND_MALLOC);
	free_ev(1, 0x1000, 0, MA_KIND_MALLOC);
	alloc_ev(1, 0x2000, 300, 2, MA_KIND_REALLOC);
	cr_expect_eq(T()->allocs, 2);
	cr_expect_eq(T()->alloc_bytes, 400);
	cr_expect_eq(T()->reallocs, 1);
	cr_expect_eq(T()->frees, 1);
	cr_expect_eq(T()->freed_bytes, 100);
	cr_expect_eq(T()->live_bytes, 300);
	cr_expect_eq(T()->live_count, 1);
	cr_expect_eq(T()->peak_bytes, 300);
	cr_expect_eq(T()->peak_index, 2);
	cr_expect_eq(T()->unknown_frees, 0);
	expect_fig(1, 0, 0, 100, 1, 0, 0);
	expect_fig(2, 300, 1, 300, 1, 300, 1);

	/* realloc in place: same pointer */
	free_ev(1, 0x2000, 0, MA_KIND_MALLOC);
	alloc_ev(1, 0x2000, 500, 2, MA_KIND_REALLOC);
	cr_expect_eq(T()->live_bytes, 500);
	cr_expect_eq(T()->live_count, 1);
	cr_expect_eq(T()->peak_bytes, 500);
	cr_expect_eq(T()->peak_index, 4);

	/* realloc of a block from before the attach */
	free_ev(1, 0x9000, 0, MA_KIND_MALLOC);
	alloc_ev(1, 0x9100, 64, 2, MA_KIND_REALLOC);
	cr_expect_eq(T()->unknown_frees, 1);
	cr_expect_eq(T()->live_bytes, 564);
	cr_expect_eq(T()->reallocs, 3);
	expect_fig(2, 564, 2, 864, 3, 564, 2);
}

Test(account, cross_thread_free_and_unknown_frees)
{
	alloc_ev(1, 0xa000, 10, 1, MA_KIND_MALLOC);
	alloc_ev(2, 0xb000, 20, 1, MA_KIND_PYOBJ);
	free_ev(3, 0xa000, 0, MA_KIND_MALLOC); /* thread 3 frees thread 1's */
	free_ev(1, 0xb000, 0, MA_KIND_PYOBJ);
	cr_expect_eq(T()->live_bytes, 0);
	cr_expect_eq(T()->live_count, 0);
	cr_expect_eq(T()->unknown_frees, 0);
	free_ev(1, 0xa000, 0, MA_KIND_MALLOC); /* double free: unknown now */
	free_ev(1, 0xc000, 0, MA_KIND_MALLOC);
	free_ev(1, 0, 0, MA_KIND_MALLOC); /* free(NULL): not unknown */
	cr_expect_eq(T()->unknown_frees, 2);
	cr_expect_eq(T()->frees, 5);
	cr_expect_eq(T()->peak_bytes, 30);
	cr_expect_eq(T()->peak_count, 2);
	cr_expect_eq(T()->peak_index, 1);
	expect_fig(1, 0, 0, 30, 2, 30, 2);
}

Test(account, lost_free_replaces_the_block)
{
	alloc_ev(1, 0x100, 10, 1, MA_KIND_MALLOC);
	alloc_ev(1, 0x100, 20, 2, MA_KIND_MALLOC); /* its FREE was lost */
	cr_expect_eq(T()->replaced, 1);
	cr_expect_eq(T()->live_bytes, 20);
	cr_expect_eq(T()->live_count, 1);
	expect_fig(1, 0, 0, 10, 1, 0, 0);
	expect_fig(2, 20, 1, 20, 1, 20, 1);
	/* a failed allocation (NULL) counts as allocated, not live */
	alloc_ev(1, 0, 99, 3, MA_KIND_MALLOC);
	cr_expect_eq(T()->allocs, 3);
	cr_expect_eq(T()->live_bytes, 20);
	expect_fig(3, 0, 0, 99, 1, 0, 0);
}

Test(account, partial_munmap)
{
	const int M = MA_KIND_MMAP;

	alloc_ev(1, 0x10000, 0x10000, 3, M); /* [10000, 20000) */
	cr_expect_eq(T()->live_bytes, 0x10000);
	free_ev(1, 0x10000, 0x1000, M); /* head */
	cr_expect_eq(T()->live_bytes, 0xf000);
	cr_expect_eq(T()->live_count, 1);
	free_ev(1, 0x1f000, 0x1000, M); /* tail */
	cr_expect_eq(T()->live_bytes, 0xe000);
	free_ev(1, 0x14000, 0x1000, M); /* a hole: two regions now */
	cr_expect_eq(T()->live_bytes, 0xd000);
	cr_expect_eq(T()->live_count, 2);
	/* across the hole: [12000,14000) and [15000,18000) go */
	free_ev(1, 0x12000, 0x6000, M);
	cr_expect_eq(T()->live_bytes, 0xd000 - 0x2000 - 0x3000);
	cr_expect_eq(T()->live_count, 2); /* [11000,12000) [18000,1f000) */
	expect_fig(3, 0x8000, 2, 0x10000, 1, 0x10000, 1);
	cr_expect_eq(T()->freed_bytes, 0x8000);
	cr_expect_eq(T()->unknown_frees, 0);
	/* a range with nothing tracked in it: unknown */
	free_ev(1, 0x12000, 0x1000, M);
	cr_expect_eq(T()->unknown_frees, 1);
	/* everything, with room on both sides */
	free_ev(1, 0, 0x100000, M);
	cr_expect_eq(T()->live_bytes, 0);
	cr_expect_eq(T()->live_count, 0);
	cr_expect_eq(T()->munmaps, 6);
	cr_expect_eq(T()->freed_bytes, 0x10000);

	/* A mapping over another one (MAP_FIXED) replaces the overlap */
	alloc_ev(1, 0x40000, 0x4000, 4, M);
	alloc_ev(1, 0x42000, 0x4000, 5, M);
	cr_expect_eq(T()->live_bytes, 0x6000);
	cr_expect_eq(T()->live_count, 2);
	/* (the peak is still the first mapping: nothing of these then) */
	expect_fig(4, 0x2000, 1, 0x4000, 1, 0, 0);
	expect_fig(5, 0x4000, 1, 0x4000, 1, 0, 0);
	/* munmap of length 0 (as a payload might report munmap(p, 0)):
	 * the region starting there */
	free_ev(1, 0x42000, 0, M);
	cr_expect_eq(T()->live_bytes, 0x2000);
	free_ev(1, 0x43000, 0, M);
	cr_expect_eq(T()->unknown_frees, 2);
	/* two adjacent regions, one munmap across the seam */
	alloc_ev(1, 0x50000, 0x2000, 6, M);
	alloc_ev(1, 0x52000, 0x2000, 7, M);
	free_ev(1, 0x51000, 0x2000, M);
	expect_fig(6, 0x1000, 1, 0x2000, 1, 0, 0);
	expect_fig(7, 0x1000, 1, 0x2000, 1, 0, 0);
	cr_expect_eq(T()->peak_bytes, 0x10000);
	cr_expect_eq(T()->peak_index, 0);
}

/* The peak per node is the figure at the moment of the global peak, not
 * each node's own maximum */
Test(account, peak_is_one_moment)
{
	sample_ev(1000000000);
	alloc_ev(1, 0x10, 100, 1, MA_KIND_MALLOC); /* A 100 */
	alloc_ev(1, 0x20, 50, 2, MA_KIND_MALLOC);  /* B 50: peak 150 */
	sample_ev(2000000000);
	free_ev(1, 0x10, 0, MA_KIND_MALLOC);	  /* A 0 */
	alloc_ev(1, 0x30, 70, 2, MA_KIND_MALLOC); /* B 120, live 120 */
	cr_expect_eq(T()->peak_bytes, 150);
	cr_expect_eq(T()->peak_index, 2);
	cr_expect_eq(T()->peak_after_ns, 1000000000);
	cr_expect_eq(T()->peak_before_ns, 2000000000);
	expect_fig(1, 0, 0, 100, 1, 100, 1);
	expect_fig(2, 120, 2, 120, 2, 50, 1);
	sample_ev(3000000000);
	alloc_ev(1, 0x40, 40, 1, MA_KIND_MALLOC); /* A 40: live 160 */
	cr_expect_eq(T()->peak_bytes, 160);
	cr_expect_eq(T()->peak_count, 3);
	cr_expect_eq(T()->peak_index, 7);
	cr_expect_eq(T()->peak_after_ns, 3000000000);
	cr_expect_eq(T()->peak_before_ns, 0); /* no sample after it yet */
	free_ev(1, 0x30, 0, MA_KIND_MALLOC);
	free_ev(1, 0x40, 0, MA_KIND_MALLOC);
	alloc_ev(1, 0x50, 105, 1, MA_KIND_MALLOC); /* 155: below the peak */
	cr_expect_eq(T()->peak_index, 7);
	expect_fig(1, 105, 1, 245, 3, 40, 1);
	expect_fig(2, 50, 1, 120, 2, 120, 2);
	sample_ev(4000000000);
	cr_expect_eq(T()->peak_before_ns, 4000000000);
	cr_expect_eq(T()->samples, 4);
	cr_expect_eq(T()->last_t_ns, 4000000000);
	cr_expect_eq(T()->peak_rss, 4000000);
}

static void define_program(void)
{
	code_ev(1, "load", "/srv/app/etl.py", 10, 40);
	code_ev(2, "clean_rows", "/srv/app/etl.py", 80, 40);
	code_ev(3, "clean_rows", "/srv/app/etl.py", 80, 40); /* same function,
								 another code
								 object */
	code_ev(4, "helper", "/srv/app/util.py", 5, 40);
	code_ev(5, "<module>", "/srv/app/main.py", 1, 40);
	node_ev(1, 0, 5, 6);   /* <module> main.py:4 */
	node_ev(2, 1, 1, 10);  /* load etl.py:15 */
	node_ev(3, 2, 2, 6);   /* clean_rows etl.py:83 */
	node_ev(4, 2, 3, 6);   /* clean_rows etl.py:83 (other code) */
	node_ev(5, 3, 4, 0);   /* helper util.py:5 */
	node_ev(6, 2, 2, 200); /* clean_rows etl.py:120 (table's end) */
	node_ev(7, 4, 4, -1);  /* helper, not started: firstlineno 5 */
}

Test(account, frames_innermost_first)
{
	struct ma_frame f[8];
	const char *name;
	int32_t tid;
	int depth;

	define_program();
	depth = ma_account_node_frames(acc, 5, f, 8);
	cr_assert_eq(depth, 4);
	cr_expect_str_eq(f[0].function, "helper");
	cr_expect_str_eq(f[0].file, "/srv/app/util.py");
	cr_expect_eq(f[0].line, 5);
	cr_expect_str_eq(f[1].function, "clean_rows");
	cr_expect_eq(f[1].line, 83);
	cr_expect_eq(f[1].firstlineno, 80);
	cr_expect_str_eq(f[2].function, "load");
	cr_expect_eq(f[2].line, 15);
	cr_expect_str_eq(f[3].function, "<module>");
	cr_expect_str_eq(f[3].file, "/srv/app/main.py");
	cr_expect_eq(f[3].line, 4);
	cr_expect_eq(f[3].node, 1);

	cr_expect_eq(ma_account_node_frames(acc, 5, f, 2), 4); /* depth */
	cr_expect_eq(ma_account_node_frames(acc, 0, f, 8), 0);
	cr_expect_eq(ma_account_node_frames(acc, 6, f, 8), 3);
	cr_expect_eq(f[0].line, 120);
	cr_expect_eq(ma_account_node_frames(acc, 7, f, 8), 4);
	cr_expect_eq(f[0].line, 5);

	/* A node never defined, and a node whose code is not defined */
	cr_expect_eq(ma_account_node_frames(acc, 60, f, 8), 0);
	alloc_ev(1, 0x10, 8, 60, MA_KIND_MALLOC);
	cr_expect_eq(ma_account_node_frames(acc, 60, f, 8), 1);
	cr_expect_str_eq(f[0].function, "<unknown>");
	cr_expect_eq(f[0].line, -1);
	node_ev(61, 1, 99, 4);
	cr_expect_eq(ma_account_node_frames(acc, 61, f, 8), 2);
	cr_expect_str_eq(f[0].function, "<unknown>");
	cr_expect_str_eq(f[1].function, "<module>");

	/* threads */
	{
		struct ma_event ev = { .type = MA_EV_THREAD, .thread = 3 };

		ev.thr.tid = 4245;
		strcpy(ev.thr.name, "worker");
		feed(&ev);
	}
	cr_expect_eq(ma_account_thread(acc, 3, &tid, &name), 0);
	cr_expect_eq(tid, 4245);
	cr_expect_str_eq(name, "worker");
	cr_expect_eq(ma_account_thread(acc, 2, &tid, &name), -ENOENT);
	cr_expect_eq(ma_account_thread(acc, 1000000, &tid, &name), -ENOENT);
	cr_expect_eq(T()->threads, 1);
	cr_expect_eq(T()->codes, 5);
	cr_expect_eq(T()->nodes, 8);
}

static const struct ma_account_row *find_row(const struct ma_account_row *rows,
					     size_t n, const char *function,
					     const char *file, int line)
{
	for (size_t i = 0; i < n; i++)
		if ((function ? rows[i].function &&
					strcmp(rows[i].function, function) == 0
			      : rows[i].function == NULL) &&
		    strcmp(rows[i].file, file) == 0 && rows[i].line == line)
			return &rows[i];
	return NULL;
}

Test(account, views_by_line_function_file)
{
	struct ma_account_row *rows;
	const struct ma_account_row *r;
	size_t n;

	define_program();
	alloc_ev(1, 0x100, 1000, 3, MA_KIND_PYOBJ);  /* etl.py:83 */
	alloc_ev(1, 0x200, 500, 4, MA_KIND_PYOBJ);   /* etl.py:83 too */
	alloc_ev(1, 0x300, 200, 6, MA_KIND_PYOBJ);   /* etl.py:120 */
	alloc_ev(1, 0x400, 50, 5, MA_KIND_PYOBJ);    /* util.py:5 */
	alloc_ev(1, 0x500, 7, 7, MA_KIND_PYOBJ);     /* util.py:5 (other) */
	alloc_ev(1, 0x600, 30, 0, MA_KIND_MALLOC);   /* no Python frame */
	alloc_ev(1, 0x700, 4000, 2, MA_KIND_MALLOC); /* etl.py:15 */
	free_ev(1, 0x700, 0, MA_KIND_MALLOC);
	free_ev(1, 0x100, 0, MA_KIND_PYOBJ);
	/* peak was after the 0x700 allocation: 5787 bytes */
	cr_expect_eq(T()->peak_bytes, 5787);

	cr_assert_eq(ma_account_view(acc, MA_VIEW_LINE, MA_SORT_LIVE_BYTES,
				     &rows, &n),
		     0);
	cr_assert_eq(n, 5);
	r = find_row(rows, n, "clean_rows", "/srv/app/etl.py", 83);
	cr_assert_not_null(r);
	cr_expect_eq(r->live.bytes, 500);
	cr_expect_eq(r->live.count, 1);
	cr_expect_eq(r->total.bytes, 1500);
	cr_expect_eq(r->total.count, 2);
	cr_expect_eq(r->peak.bytes, 1500);
	r = find_row(rows, n, "helper", "/srv/app/util.py", 5);
	cr_assert_not_null(r);
	cr_expect_eq(r->live.bytes, 57);
	cr_expect_eq(r->total.count, 2);
	r = find_row(rows, n, "<no Python frame>", "", -1);
	cr_assert_not_null(r);
	cr_expect_eq(r->live.bytes, 30);
	r = find_row(rows, n, "load", "/srv/app/etl.py", 15);
	cr_assert_not_null(r);
	cr_expect_eq(r->live.bytes, 0);
	cr_expect_eq(r->total.bytes, 4000);
	cr_expect_eq(r->peak.bytes, 4000);
	/* sorted by live bytes, descending */
	for (size_t i = 1; i < n; i++)
		cr_expect_geq(rows[i - 1].live.bytes, rows[i].live.bytes);
	cr_expect_eq(rows[0].live.bytes, 500);
	free(rows);

	cr_assert_eq(ma_account_view(acc, MA_VIEW_FUNCTION, MA_SORT_TOTAL_BYTES,
				     &rows, &n),
		     0);
	cr_assert_eq(n, 4);
	cr_expect_str_eq(rows[0].function, "load");
	cr_expect_eq(rows[0].total.bytes, 4000);
	r = find_row(rows, n, "clean_rows", "/srv/app/etl.py", 80);
	cr_assert_not_null(r);
	cr_expect_eq(r->total.bytes, 1700); /* both code objects, 2 lines */
	cr_expect_eq(r->live.bytes, 700);
	cr_expect_eq(r->total.count, 3);
	free(rows);

	cr_assert_eq(ma_account_view(acc, MA_VIEW_FILE, MA_SORT_PEAK_BYTES,
				     &rows, &n),
		     0);
	cr_assert_eq(n, 3);
	cr_expect_str_eq(rows[0].file, "/srv/app/etl.py");
	cr_expect_null(rows[0].function);
	cr_expect_eq(rows[0].peak.bytes, 5700);
	cr_expect_eq(rows[0].total.bytes, 5700);
	cr_expect_eq(rows[0].live.bytes, 700);
	r = find_row(rows, n, NULL, "/srv/app/util.py", 0);
	cr_assert_not_null(r);
	cr_expect_eq(r->live.bytes, 57);
	free(rows);

	cr_assert_eq(ma_account_view(acc, MA_VIEW_STACK, MA_SORT_TOTAL_COUNT,
				     &rows, &n),
		     0);
	cr_assert_eq(n, 7);
	for (size_t i = 0; i < n; i++) {
		struct ma_account_fig l, t, p;

		ma_account_node_figs(acc, rows[i].node, &l, &t, &p);
		cr_expect_eq(rows[i].live.bytes, l.bytes);
		cr_expect_eq(rows[i].total.bytes, t.bytes);
		cr_expect_eq(rows[i].peak.bytes, p.bytes);
	}
	free(rows);
}

static char *summary(int width, int top)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	cr_assert_not_null(f);
	ma_account_print_summary_width(acc, f, top, width);
	fclose(f);
	return buf;
}

static void expect_width(const char *text, int width)
{
	const char *p = text;

	while (*p) {
		const char *e = strchr(p, '\n');
		size_t l = e ? (size_t)(e - p) : strlen(p);

		cr_expect_leq(l, (size_t)width, "line wider than %d: %.*s",
			      width, (int)l, p);
		p += l + (e != NULL);
	}
}

Test(account, summary_text)
{
	struct ma_event st = { .type = MA_EV_STATS };
	char *s;

	define_program();
	code_ev(8, "a_function_with_a_rather_long_name_indeed",
		"/home/someone/projects/a/very/deep/package/tree/module_with_"
		"long_name.py",
		1, 4);
	node_ev(8, 0, 8, 2);
	sample_ev(500000000);
	for (int i = 0; i < 40; i++)
		alloc_ev(1, 0x1000 + 64 * (uint64_t)i, 3 << 20, 3,
			 MA_KIND_PYOBJ);
	alloc_ev(1, 0x9000, 1000, 8, MA_KIND_MALLOC);
	alloc_ev(1, 0xa000, 70 << 20, 5, MA_KIND_MALLOC);
	free_ev(1, 0xa000, 0, MA_KIND_MALLOC);
	free_ev(1, 0xdead, 0, MA_KIND_MALLOC);
	sample_ev(20300000000);
	st.stats.lost_records = 12;
	feed(&st);

	s = summary(100, 5);
	cr_log_info("%s", s);
	/* frees of tracked blocks: 0xdead's is the unknown one, said apart
	 * (it was counted in both, so the modes' frees differed) */
	cr_expect(strstr(s, "Allocations: 42 (190 MiB) in 20.3 s; frees: 1") !=
			  NULL,
		  "%s", s);
	cr_expect(strstr(s, "Still live: 120 MiB in 41 blocks") != NULL, "%s",
		  s);
	cr_expect(strstr(s, "Peak: 190 MiB in 42 blocks, between 0.5 s and "
			    "20.3 s (event 56)") != NULL,
		  "%s", s);
	cr_expect(strstr(s, "lost records: 12") != NULL, "%s", s);
	cr_expect(strstr(s, "before attach: 1") != NULL, "%s", s);
	cr_expect(strstr(s, "warning: 12 records lost") != NULL, "%s", s);
	cr_expect(strstr(s, "by memory still live (of 120 MiB)") != NULL, "%s",
		  s);
	/* the top live line and its share */
	cr_expect(strstr(s, "120 MiB 100.0%       40  clean_rows "
			    "(/srv/app/etl.py:83)") != NULL,
		  "%s", s);
	/* the top allocating line is util.py's helper (70 MiB) */
	cr_expect(strstr(s, "70.0 MiB  36.8%        1  helper "
			    "(/srv/app/util.py:5)") != NULL,
		  "%s", s);
	expect_width(s, 100);
	free(s);

	/* the session's end known: its time, not the last sample's */
	ma_account_note_duration(acc, 20380000000ull);
	s = summary(100, 5);
	cr_expect(strstr(s, "Allocations: 42 (190 MiB) in 20.4 s; frees: 1") !=
			  NULL,
		  "%s", s);
	free(s);
	ma_account_note_duration(acc, 0);

	/* narrow: a long file shortened from the left, then the function
	 * cut on the right; every line fits */
	s = summary(60, 5);
	cr_log_info("%s", s);
	expect_width(s, 60);
	cr_expect(strstr(s, "a_functi... (..._long_name.py:2)") != NULL, "%s",
		  s);
	cr_expect(strstr(s, "clean_rows (/srv/app/etl.py:83)") != NULL, "%s",
		  s);
	free(s);
}

/* attach --children, aggregated: the peak sums each process's own, taken
 * at their own moments; the summary gave it the largest process's moment
 * ("between 2.2 s and 2.3 s (event 1311)") while the report gives none */
Test(account, summary_summed_peak_no_moment)
{
	struct ma_event end = { .type = MA_EV_AGGEND };
	char *s;

	define_program();
	sample_ev(500000000);
	alloc_ev(1, 0x1000, 1 << 20, 3, MA_KIND_PYOBJ);
	sample_ev(900000000);
	end.aggend.peak_bytes = 3 << 20;
	end.aggend.peak_count = 3;
	end.aggend.peak_after_ns = 500000000;
	end.aggend.peak_before_ns = 900000000;
	feed(&end);

	s = summary(100, 0);
	cr_expect(strstr(s, "between 0.5 s and 0.9 s") != NULL, "%s", s);
	free(s);

	ma_account_note_peak_summed(acc);
	s = summary(100, 0);
	cr_log_info("%s", s);
	cr_expect(strstr(s, "Peak: 3.00 MiB in 3 blocks\n") != NULL, "%s", s);
	cr_expect(strstr(s, "between") == NULL && strstr(s, "(event") == NULL,
		  "%s", s);
	free(s);
}

Test(account, empty_summary)
{
	char *s = summary(80, 10);

	cr_expect(strstr(s, "Allocations: 0 (0 B); frees: 0") != NULL, "%s", s);
	cr_expect(strstr(s, "(none)") != NULL, "%s", s);
	expect_width(s, 80);
	free(s);
}

Test(account, human_units)
{
	char b[32];

	ma_fmt_bytes(0, b, sizeof(b));
	cr_expect_str_eq(b, "0 B");
	ma_fmt_bytes(1023, b, sizeof(b));
	cr_expect_str_eq(b, "1023 B");
	ma_fmt_bytes(1024, b, sizeof(b));
	cr_expect_str_eq(b, "1.00 KiB");
	ma_fmt_bytes(310ull << 20, b, sizeof(b));
	cr_expect_str_eq(b, "310 MiB");
	ma_fmt_bytes((uint64_t)(1.2 * (1ull << 30)), b, sizeof(b));
	cr_expect_str_eq(b, "1.20 GiB");
	ma_fmt_bytes(UINT64_MAX, b, sizeof(b));
	cr_expect_str_eq(b, "16.0 EiB");
	ma_fmt_count(999, b, sizeof(b));
	cr_expect_str_eq(b, "999");
	ma_fmt_count(12400000, b, sizeof(b));
	cr_expect_str_eq(b, "12.4 M");
	ma_fmt_count(2100, b, sizeof(b));
	cr_expect_str_eq(b, "2.10 k");
}

Test(account, ring_records_feed)
{
	struct ma_rec_alloc a = {
		.h = { ma_rec_make(MA_REC_ALLOC, sizeof(a)), 1 },
		.ptr = 0x1234560,
		.size = 48,
		.node = 0,
		.kind = MA_KIND_PYOBJ,
	};
	struct ma_rec_free f = {
		.h = { ma_rec_make(MA_REC_FREE, sizeof(f)), 2 },
		.ptr = 0x1234560,
		.kind = MA_KIND_PYOBJ,
	};
	struct ma_rec pad = { ma_rec_make(MA_REC_PAD, 64), 0 };

	cr_expect_eq(ma_account_feed_rec(acc, &a.h), 0);
	cr_expect_eq(ma_account_feed_rec(acc, &pad), 0);
	cr_expect_eq(T()->live_bytes, 48);
	cr_expect_eq(ma_account_feed_rec(acc, &f.h), 0);
	cr_expect_eq(T()->live_bytes, 0);
	cr_expect_eq(T()->events, 2); /* PAD is no event */
	a.h.type_len = ma_rec_make(MA_REC_ALLOC, 8);
	cr_expect_eq(ma_account_feed_rec(acc, &a.h), -EINVAL);
}

/* Many live blocks freed in a scrambled order: every free must find its
 * block (backward-shift deletion keeps every probe chain intact) */
Test(account, hash_table_under_load)
{
	const uint64_t n = 300000;
	uint64_t *order = malloc(n * sizeof(*order)), rng = 99;

	for (uint64_t i = 0; i < n; i++) {
		/* clustered pointers: runs of neighbours and big strides */
		uint64_t p = 0x7f0000000000ull + (i % 1000) * 0x100000 +
			     (i / 1000) * 16;

		order[i] = p;
		alloc_ev(1, p, 16 + i % 7, (uint32_t)(i % 13), MA_KIND_MALLOC);
	}
	cr_expect_eq(T()->live_count, n);
	for (uint64_t i = n - 1; i > 0; i--) {
		uint64_t j, t;

		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		j = rng % (i + 1);
		t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (uint64_t i = 0; i < n; i++) {
		free_ev(2, order[i], 0, MA_KIND_MALLOC);
		/* and re-use some right away */
		if (i % 3 == 0)
			alloc_ev(1, order[i], 8, 1, MA_KIND_MALLOC);
	}
	cr_expect_eq(T()->unknown_frees, 0);
	cr_expect_eq(T()->live_count, (n + 2) / 3);
	cr_expect_eq(T()->live_bytes, 8 * ((n + 2) / 3));
	free(order);
}

/* ------------------------------------------------------------------ */
/* A random stream against a naive model */

#define NNODES	  10
#define MMAP_BASE 0x600000000ull
#define PAGE	  0x1000ull

struct mblock {
	uint64_t ptr, size;
	uint32_t node;
};

struct mregion {
	uint64_t start, end;
	uint32_t node;
};

struct model {
	struct mblock *blocks;
	size_t nblocks;
	struct mregion regions[4096];
	size_t nregions;
	uint64_t live_b[NNODES], live_n[NNODES];
	uint64_t total_b[NNODES], total_n[NNODES];
	uint64_t peak_b[NNODES], peak_n[NNODES];
	uint64_t peak, peak_count, peak_index, events;
	uint64_t allocs, alloc_bytes, frees, unknown, replaced, reallocs;
	uint64_t freed_bytes;
};

static uint64_t model_live(const struct model *m, uint64_t *count)
{
	uint64_t b = 0, n = 0;

	for (int i = 0; i < NNODES; i++) {
		b += m->live_b[i];
		n += m->live_n[i];
	}
	*count = n;
	return b;
}

/* Remove [lo, hi) from every region, by brute force */
static uint64_t model_unmap(struct model *m, uint64_t lo, uint64_t hi,
			    int *touched)
{
	struct mregion out[4096];
	size_t n = 0;
	uint64_t gone = 0;

	*touched = 0;
	for (size_t i = 0; i < m->nregions; i++) {
		struct mregion g = m->regions[i];
		uint64_t s = g.start > lo ? g.start : lo;
		uint64_t e = g.end < hi ? g.end : hi;

		if (s >= e) {
			out[n++] = g;
			continue;
		}
		(*touched)++;
		gone += e - s;
		m->live_b[g.node] -= e - s;
		m->live_n[g.node]--;
		if (g.start < s) {
			out[n++] = (struct mregion){ g.start, s, g.node };
			m->live_n[g.node]++;
		}
		if (e < g.end) {
			out[n++] = (struct mregion){ e, g.end, g.node };
			m->live_n[g.node]++;
		}
	}
	cr_assert_lt(n, 4096);
	memcpy(m->regions, out, n * sizeof(out[0]));
	m->nregions = n;
	return gone;
}

static void model_feed(struct model *m, const struct ma_event *ev)
{
	uint64_t live, count;

	if (ev->type == MA_EV_ALLOC) {
		uint32_t node = ev->alloc.node;

		m->allocs++;
		m->alloc_bytes += ev->alloc.size;
		m->reallocs += ev->alloc.kind == MA_KIND_REALLOC;
		m->total_b[node] += ev->alloc.size;
		m->total_n[node]++;
		if (ev->alloc.kind == MA_KIND_MMAP) {
			int touched;

			model_unmap(m, ev->alloc.ptr,
				    ev->alloc.ptr + ev->alloc.size, &touched);
			m->regions[m->nregions++] = (struct mregion){
				ev->alloc.ptr, ev->alloc.ptr + ev->alloc.size,
				node
			};
			m->live_b[node] += ev->alloc.size;
			m->live_n[node]++;
		} else if (ev->alloc.ptr) {
			for (size_t i = 0; i < m->nblocks; i++)
				if (m->blocks[i].ptr == ev->alloc.ptr) {
					m->replaced++;
					m->live_b[m->blocks[i].node] -=
						m->blocks[i].size;
					m->live_n[m->blocks[i].node]--;
					m->blocks[i] = m->blocks[--m->nblocks];
					break;
				}
			m->blocks[m->nblocks++] =
				(struct mblock){ ev->alloc.ptr, ev->alloc.size,
						 node };
			m->live_b[node] += ev->alloc.size;
			m->live_n[node]++;
		}
	} else if (ev->type == MA_EV_FREE) {
		m->frees++;
		if (ev->free.kind == MA_KIND_MMAP) {
			int touched;

			m->freed_bytes += model_unmap(
				m, ev->free.ptr, ev->free.ptr + ev->free.size,
				&touched);
			m->unknown += !touched;
		} else {
			size_t i;

			for (i = 0; i < m->nblocks; i++)
				if (m->blocks[i].ptr == ev->free.ptr)
					break;
			if (i == m->nblocks) {
				m->unknown++;
			} else {
				m->freed_bytes += m->blocks[i].size;
				m->live_b[m->blocks[i].node] -=
					m->blocks[i].size;
				m->live_n[m->blocks[i].node]--;
				m->blocks[i] = m->blocks[--m->nblocks];
			}
		}
	}
	live = model_live(m, &count);
	if (live > m->peak) {
		m->peak = live;
		m->peak_count = count;
		m->peak_index = m->events;
		memcpy(m->peak_b, m->live_b, sizeof(m->peak_b));
		memcpy(m->peak_n, m->live_n, sizeof(m->peak_n));
	}
	m->events++;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void random_event(uint64_t *rng, const struct model *m,
			 struct ma_event *ev)
{
	uint64_t r = rnd(rng);
	unsigned pick = (unsigned)(r % 100);

	memset(ev, 0, sizeof(*ev));
	ev->thread = 1 + (uint32_t)(r >> 8) % 3;
	r = rnd(rng);
	if (pick < 45) {
		static const int kinds[] = { MA_KIND_MALLOC, MA_KIND_CALLOC,
					     MA_KIND_REALLOC, MA_KIND_PYOBJ,
					     MA_KIND_PYMEM };

		ev->type = MA_EV_ALLOC;
		/* a small address space: some pointers come back while
		 * live (a lost free) */
		ev->alloc.ptr = 0x10000 + (r % 2048) * 32;
		if (r % 97 == 0)
			ev->alloc.ptr = 0;
		ev->alloc.size = (r >> 12) % 3000;
		ev->alloc.node = (uint32_t)(r >> 24) % NNODES;
		ev->alloc.kind = (uint8_t)kinds[(r >> 32) % 5];
	} else if (pick < 85) {
		ev->type = MA_EV_FREE;
		ev->free.kind = MA_KIND_MALLOC;
		if (m->nblocks && (r & 7) != 0)
			ev->free.ptr = m->blocks[(r >> 8) % m->nblocks].ptr;
		else
			ev->free.ptr = 0x10000 + ((r >> 8) % 4096) * 32;
	} else if (pick < 93) {
		ev->type = MA_EV_ALLOC;
		ev->alloc.kind = MA_KIND_MMAP;
		ev->alloc.ptr = MMAP_BASE + (r % 256) * PAGE;
		ev->alloc.size = (1 + (r >> 10) % 16) * PAGE;
		ev->alloc.node = (uint32_t)(r >> 24) % NNODES;
	} else if (pick < 99) {
		ev->type = MA_EV_FREE;
		ev->free.kind = MA_KIND_MMAP;
		ev->free.ptr = MMAP_BASE + (r % 280) * PAGE;
		ev->free.size = (1 + (r >> 10) % 24) * PAGE;
	} else {
		ev->type = MA_EV_SAMPLE;
		ev->thread = 0;
		ev->sample.t_ns = r >> 20;
	}
}

Test(account, random_stream_against_a_naive_model, .timeout = 120)
{
	struct model *m = calloc(1, sizeof(*m));
	struct ma_account_row *rows;
	uint64_t rng = 2024, sum_live = 0, sum_total = 0, sum_peak = 0;
	const int nev = 40000;
	size_t n;

	m->blocks = calloc(nev, sizeof(*m->blocks));
	for (int i = 0; i < nev; i++) {
		struct ma_event ev;

		random_event(&rng, m, &ev);
		model_feed(m, &ev);
		feed(&ev);
		if (i % 5000 == 0 || i == nev - 1) {
			uint64_t count, live = model_live(m, &count);

			cr_assert_eq(T()->live_bytes, live, "event %d", i);
			cr_assert_eq(T()->live_count, count, "event %d", i);
			cr_assert_eq(T()->peak_bytes, m->peak, "event %d", i);
		}
	}
	cr_expect_eq(T()->events, m->events);
	cr_expect_eq(T()->allocs, m->allocs);
	cr_expect_eq(T()->alloc_bytes, m->alloc_bytes);
	cr_expect_eq(T()->frees, m->frees);
	cr_expect_eq(T()->freed_bytes, m->freed_bytes);
	cr_expect_eq(T()->unknown_frees, m->unknown);
	cr_expect_eq(T()->replaced, m->replaced);
	cr_expect_eq(T()->reallocs, m->reallocs);
	cr_expect_eq(T()->peak_bytes, m->peak);
	cr_expect_eq(T()->peak_count, m->peak_count);
	cr_expect_eq(T()->peak_index, m->peak_index);
	/* the stream must have exercised what it is meant to */
	cr_expect_gt(m->unknown, 100);
	cr_expect_gt(m->replaced, 100);
	cr_log_info("model: %zu blocks, %zu regions live; %llu unknown frees, "
		    "%llu replaced; peak %llu at %llu",
		    m->nblocks, m->nregions, (unsigned long long)m->unknown,
		    (unsigned long long)m->replaced,
		    (unsigned long long)m->peak,
		    (unsigned long long)m->peak_index);
	for (uint32_t i = 0; i < NNODES; i++)
		expect_fig(i, m->live_b[i], m->live_n[i], m->total_b[i],
			   m->total_n[i], m->peak_b[i], m->peak_n[i]);

	/* Views add up to the totals whatever the grouping */
	cr_assert_eq(ma_account_view(acc, MA_VIEW_FILE, MA_SORT_LIVE_COUNT,
				     &rows, &n),
		     0);
	for (size_t i = 0; i < n; i++) {
		sum_live += rows[i].live.bytes;
		sum_total += rows[i].total.bytes;
		sum_peak += rows[i].peak.bytes;
	}
	cr_expect_eq(sum_live, T()->live_bytes);
	cr_expect_eq(sum_total, m->alloc_bytes);
	cr_expect_eq(sum_peak, m->peak);
	free(rows);
	free(m->blocks);
	free(m);
}

/* A TEMP record's pairs fed in one call give exactly what feeding them one
 * by one gives: totals, the node's figures, the peak and its event index */
Test(account, pairs_in_one_call_as_one_by_one)
{
	struct ma_account *one;
	const struct ma_account_totals *a, *b;
	struct ma_event al = { .type = MA_EV_ALLOC, .thread = 1 };
	struct ma_event fr = { .type = MA_EV_FREE, .thread = 1 };

	cr_assert_eq(ma_account_new(&one), 0);
	/* something live first, so that the pairs ride on top of it */
	alloc_ev(1, 0x5000, 1000, 1, MA_KIND_MALLOC);
	al.alloc = (__typeof__(al.alloc)){
		.ptr = 0x5000, .size = 1000, .node = 1, .kind = MA_KIND_MALLOC
	};
	cr_assert_eq(ma_account_feed(one, &al), 0);

	al.alloc = (__typeof__(al.alloc)){ .ptr = MA_TEMP_ADDR(3),
					   .size = 48,
					   .node = 1,
					   .kind = MA_KIND_PYOBJ };
	fr.free = (__typeof__(fr.free)){ .ptr = MA_TEMP_ADDR(3),
					 .kind = MA_KIND_PYOBJ };
	cr_assert_eq(ma_account_feed_pairs(acc, &al, &fr, 1000), 0);
	for (int i = 0; i < 1000; i++) {
		cr_assert_eq(ma_account_feed(one, &al), 0);
		cr_assert_eq(ma_account_feed(one, &fr), 0);
	}
	a = ma_account_totals(acc);
	b = ma_account_totals(one);
	cr_expect_eq(a->events, b->events);
	cr_expect_eq(a->allocs, b->allocs);
	cr_expect_eq(a->alloc_bytes, b->alloc_bytes);
	cr_expect_eq(a->frees, b->frees);
	cr_expect_eq(a->freed_bytes, b->freed_bytes);
	cr_expect_eq(a->live_bytes, b->live_bytes);
	cr_expect_eq(a->live_count, b->live_count);
	cr_expect_eq(a->peak_bytes, b->peak_bytes);
	cr_expect_eq(a->peak_index, b->peak_index);
	cr_expect_eq(a->unknown_frees, 0);
	cr_expect_eq(a->allocs, 1001);
	cr_expect_eq(a->peak_bytes, 1048);
	expect_fig(1, 1000, 1, 1000 + 48 * 1000, 1001, 1048, 2);
	ma_account_free(one);
}

/*
 * Moving millions of live blocks into a larger table takes a second or more
 * (1.8 s for 12.6 M on a loaded 2-core machine), during which a tracking
 * session sends no heartbeat, and the payload ended --every-event sessions
 * of large heaps as "consumer gone".  The beat must come along the move.
 */
static unsigned beats, beats_in_feed;

static void count_beat(void *arg)
{
	(void)arg;
	beats++;
	beats_in_feed++;
}

Test(account, live_table_growth_keeps_the_beat)
{
	unsigned most = 0;
	/* the growth from 2^22 slots (at 3/4 full) moves 3 M entries */
	uint64_t n = (3ull << 20) + 1;

	ma_account_set_beat(acc, count_beat, NULL);
	for (uint64_t i = 0; i < n; i++) {
		struct ma_event ev = { .type = MA_EV_ALLOC, .thread = 1 };

		ev.alloc.ptr = 0x7f0000000000ull + i * 48;
		ev.alloc.size = 40;
		ev.alloc.kind = MA_KIND_MALLOC;
		beats_in_feed = 0;
		cr_assert_eq(ma_account_feed(acc, &ev), 0);
		if (beats_in_feed > most)
			most = beats_in_feed;
	}
	cr_assert_eq(T()->live_count, n);
	/* one beat per 2^18 slots of the old table: 16 in the last growth */
	cr_assert_geq(most, 16, "the largest growth beat %u times", most);
}
