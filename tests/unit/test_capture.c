/* SPDX-License-Identifier: MIT */
/*
 * Capture file: exact round trips (events of every kind, odd values, many
 * blocks), files cut at every byte of their last blocks, single-byte damage
 * anywhere, deeper damage behind valid checksums (blocks rebuilt with
 * mutated contents, following docs/capture-format.md), bad headers, and
 * the size per allocation of a churn of 1 M allocations.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zstd.h>

#include "capture.h"
#include "ma_config.h"
#include "errors.h"

static char tmpdir[64];

static void mk_tmpdir(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ma-capture-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void rm_tmpdir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
}

TestSuite(capture, .init = mk_tmpdir, .fini = rm_tmpdir);

static void tmp_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", tmpdir, name);
}

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *b;
	int fd = open(path, O_RDONLY);

	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);
	b = malloc((size_t)st.st_size + 1);
	cr_assert_not_null(b);
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

/* ------------------------------------------------------------------ */
/* A churn workload: a few sizes at a few stacks, from a simulated
 * allocator with LIFO free lists per size class (as glibc's tcache and
 * pymalloc's pools behave).  70% of frees release the newest live block,
 * 30% a random one: harsher than real temporaries. */

#define CHURN_MAX_LIVE 60000

struct churn {
	uint64_t rng;
	uint64_t bump;
	uint64_t freel[8][4096];
	int nfree[8];
	struct {
		uint64_t ptr;
		int cls;
	} live[CHURN_MAX_LIVE];
	int nlive;
	uint32_t thread;
};

static const uint64_t churn_size[8] = { 32, 48, 64, 1024, 56, 4096, 8192, 200 };
static const uint32_t churn_node[8] = { 1, 1, 2, 3, 2, 4, 4, 5 };

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void churn_init(struct churn *c, uint64_t seed)
{
	memset(c, 0, sizeof(*c));
	c->rng = seed | 1;
	c->bump = 0x7f3a12000000ull;
	c->thread = 1;
}

static void churn_next(struct churn *c, struct ma_event *ev)
{
	uint64_t r = xorshift(&c->rng);
	int grow = c->nlive < 500 ? 60 : 50;

	memset(ev, 0, sizeof(*ev));
	if ((r & 0xff) == 0)
		c->thread = c->thread == 1 ? 2 : 1;
	ev->thread = c->thread;
	if (c->nlive == 0 ||
	    (c->nlive < CHURN_MAX_LIVE && (int)((r >> 8) % 100) < grow)) {
		int cls = (int)((r >> 16) % 8);
		uint64_t p;

		if (c->nfree[cls]) {
			p = c->freel[cls][--c->nfree[cls]];
		} else {
			p = c->bump;
			c->bump += (churn_size[cls] + 31) & ~15ull;
		}
		c->live[c->nlive].ptr = p;
		c->live[c->nlive].cls = cls;
		c->nlive++;
		ev->type = MA_EV_ALLOC;
		ev->alloc.ptr = p;
		ev->alloc.size = churn_size[cls];
		ev->alloc.node = churn_node[cls];
		ev->alloc.kind = MA_KIND_PYOBJ;
	} else {
		int i = (r >> 24) % 100 < 70
				? c->nlive - 1
				: (int)((r >> 32) % (uint64_t)c->nlive);
		uint64_t p = c->live[i].ptr;
		int cls = c->live[i].cls;

		c->live[i] = c->live[--c->nlive];
		if (c->nfree[cls] < 4096)
			c->freel[cls][c->nfree[cls]++] = p;
		ev->type = MA_EV_FREE;
		ev->free.ptr = p;
		ev->free.kind = MA_KIND_PYOBJ;
	}
}

/* ------------------------------------------------------------------ */
/* A generator of every kind of event, with odd values, replayable from its
 * seed: the reader's output is compared to a second run of it */

struct gen {
	uint64_t rng;
	struct churn churn;
	uint64_t t_ns;
	uint32_t next_code, next_node;
	char name[80], file[200];
	uint8_t lt[64];
};

static void gen_init(struct gen *g, uint64_t seed)
{
	memset(g, 0, sizeof(*g));
	g->rng = seed | 1;
	churn_init(&g->churn, seed * 7 + 1);
	g->next_code = g->next_node = 1;
}

static void gen_next(struct gen *g, struct ma_event *ev)
{
	uint64_t r = xorshift(&g->rng);
	unsigned pick = (unsigned)(r % 1000);

	if (pick < 900) {
		churn_next(&g->churn, ev);
		return;
	}
	memset(ev, 0, sizeof(*ev));
	ev->thread = (uint32_t)(r >> 40) % 5;
	r = xorshift(&g->rng);
	switch (pick % 10) {
	case 0:
		ev->type = MA_EV_THREAD;
		ev->thread = (r & 1) ? UINT32_MAX - (uint32_t)(r % 3)
				     : (uint32_t)(r >> 8) % 100;
		ev->thr.tid = (int32_t)(r >> 16);
		ev->thr.pthread = r * 31;
		snprintf(ev->thr.name, sizeof(ev->thr.name), "%.*s",
			 (int)(r % 17), "worker-thread-0123456789");
		if ((r >> 60) >= 12) {
			/* a Python thread name, up to the longest */
			static char tname[MA_EV_TNAME_MAX];

			memset(tname, 'n', sizeof(tname));
			memcpy(tname, "pool #2 (db) \xc3\xa9", 15);
			ev->type = MA_EV_TNAME;
			ev->tname.name = tname;
			ev->tname.len =
				(uint32_t)(r >> 24) % (MA_EV_TNAME_MAX + 1);
		}
		break;
	case 1: {
		size_t lt_len = (size_t)(r >> 20) % sizeof(g->lt);

		ev->type = MA_EV_CODE;
		ev->code.id = g->next_code++;
		ev->code.firstlineno = (int32_t)(r % 5000) - 10;
		ev->code.version_hex = 0x030b02f0;
		snprintf(g->name, sizeof(g->name), "func_%llu",
			 (unsigned long long)(r % 977));
		snprintf(g->file, sizeof(g->file), "/srv/app/module_%llu.py",
			 (unsigned long long)(r % 31));
		for (size_t i = 0; i < lt_len; i++)
			g->lt[i] = (uint8_t)xorshift(&g->rng);
		ev->code.name = g->name;
		ev->code.name_len = (uint32_t)strlen(g->name);
		ev->code.file = (r & 0x100) ? g->file : "";
		ev->code.file_len = (uint32_t)strlen(ev->code.file);
		ev->code.linetable = g->lt;
		ev->code.linetable_len = (uint32_t)lt_len;
		break;
	}
	case 2:
		ev->type = MA_EV_NODE;
		ev->node.id = g->next_node++;
		ev->node.parent = (uint32_t)(r % g->next_node);
		ev->node.code = (uint32_t)(r >> 12) % g->next_code;
		ev->node.addr = (r & 0x40) ? -1 : (int32_t)(r >> 24) % 4000;
		if ((r & 0xff) == 7)
			ev->node.addr = INT32_MIN;
		break;
	case 3:
		ev->type = MA_EV_FORK;
		ev->fork.child_pid = (int32_t)(r >> 33);
		break;
	case 4:
		ev->type = MA_EV_SAMPLE;
		ev->thread = 0;
		g->t_ns += r % 200000000;
		ev->sample.t_ns = g->t_ns;
		ev->sample.rss = r >> 20;
		ev->sample.live = r >> 30;
		break;
	case 5:
		ev->type = MA_EV_STATS;
		ev->stats.allocs = r;
		ev->stats.frees = r >> 1;
		ev->stats.lost_records = r >> 50;
		ev->stats.lost_bytes = UINT64_MAX;
		ev->stats.stack_truncated = 3;
		ev->stats.node_table_full = 0;
		break;
	case 6: /* odd allocations: every kind, escapes, extremes */
		ev->type = MA_EV_ALLOC;
		ev->alloc.kind = (uint8_t)(r >> 8);
		ev->alloc.ptr = (r & 1) ? 0 : r * 0x1000;
		ev->alloc.size = (r & 2) ? UINT64_MAX - (r >> 60) : r >> 40;
		ev->alloc.node = (r & 4) ? UINT32_MAX : (uint32_t)(r >> 50);
		break;
	case 7: /* munmap with a length, and other sized frees */
		ev->type = MA_EV_FREE;
		ev->free.kind = (r & 1) ? MA_KIND_MMAP : (uint8_t)(r >> 8);
		ev->free.ptr = (r >> 4) & ~0xfffull;
		ev->free.size = (r & 2) ? UINT64_MAX : (r >> 30) & ~0xfffull;
		break;
	case 8: /* an allocation repeated at the same node: size prediction */
	case 9:
		ev->type = MA_EV_ALLOC;
		ev->alloc.kind = MA_KIND_MALLOC;
		ev->alloc.ptr = 0x10000 + (r & 0xff0);
		ev->alloc.size = (r & 0x1000) ? 24 : 40;
		ev->alloc.node = 9;
		break;
	}
}

static void expect_event_eq(const struct ma_event *a, const struct ma_event *b,
			    uint64_t i)
{
	cr_assert_eq(a->type, b->type, "event %llu: type %u, expected %u",
		     (unsigned long long)i, a->type, b->type);
	cr_assert_eq(a->thread, b->thread, "event %llu: thread",
		     (unsigned long long)i);
	cr_assert_eq(a->index, i);
	switch (b->type) {
	case MA_EV_ALLOC:
		cr_assert_eq(a->alloc.ptr, b->alloc.ptr, "event %llu: ptr",
			     (unsigned long long)i);
		cr_assert_eq(a->alloc.size, b->alloc.size, "event %llu: size",
			     (unsigned long long)i);
		cr_assert_eq(a->alloc.node, b->alloc.node);
		cr_assert_eq(a->alloc.kind, b->alloc.kind);
		break;
	case MA_EV_FREE:
		cr_assert_eq(a->free.ptr, b->free.ptr, "event %llu: ptr",
			     (unsigned long long)i);
		cr_assert_eq(a->free.size, b->free.size);
		cr_assert_eq(a->free.kind, b->free.kind);
		break;
	case MA_EV_THREAD:
		cr_assert_eq(a->thr.tid, b->thr.tid);
		cr_assert_eq(a->thr.pthread, b->thr.pthread);
		cr_assert_str_eq(a->thr.name, b->thr.name);
		break;
	case MA_EV_TNAME:
		cr_assert_eq(a->tname.len, b->tname.len);
		cr_assert_eq(memcmp(a->tname.name, b->tname.name, b->tname.len),
			     0);
		break;
	case MA_EV_CODE:
		cr_assert_eq(a->code.id, b->code.id);
		cr_assert_eq(a->code.firstlineno, b->code.firstlineno);
		cr_assert_eq(a->code.version_hex, b->code.version_hex);
		cr_assert_eq(a->code.name_len, b->code.name_len);
		cr_assert_eq(a->code.file_len, b->code.file_len);
		cr_assert_eq(a->code.linetable_len, b->code.linetable_len);
		cr_assert_eq(
			memcmp(a->code.name, b->code.name, b->code.name_len),
			0);
		cr_assert_eq(
			memcmp(a->code.file, b->code.file, b->code.file_len),
			0);
		cr_assert_eq(memcmp(a->code.linetable, b->code.linetable,
				    b->code.linetable_len),
			     0);
		break;
	case MA_EV_NODE:
		cr_assert_eq(a->node.id, b->node.id);
		cr_assert_eq(a->node.parent, b->node.parent);
		cr_assert_eq(a->node.code, b->node.code);
		cr_assert_eq(a->node.addr, b->node.addr);
		break;
	case MA_EV_FORK:
		cr_assert_eq(a->fork.child_pid, b->fork.child_pid);
		break;
	case MA_EV_SAMPLE:
		cr_assert_eq(a->sample.t_ns, b->sample.t_ns);
		cr_assert_eq(a->sample.rss, b->sample.rss);
		cr_assert_eq(a->sample.live, b->sample.live);
		break;
	case MA_EV_STATS:
		cr_assert_eq(memcmp(&a->stats, &b->stats, sizeof(a->stats)), 0);
		break;
	default:
		cr_assert_fail("unexpected type %u", b->type);
	}
}

static const struct ma_capture_meta test_meta = {
	.pid = 4242,
	.py_version_hex = 0x030b02f0,
	.flags = 7,
	.start_wall_ns = 1732550000123456789ull,
	.py_version = "3.11.2",
	.exe = "/usr/bin/python3.11",
	.cmdline = "python3 etl.py --rows 1000000",
};

/* Read a whole file back: returns the last ma_capture_next() result and the
 * number of events */
static int read_all(const char *path, uint64_t *nev,
		    struct ma_capture_reader **keep)
{
	struct ma_capture_reader *r;
	struct ma_event ev;
	int ret;

	*nev = 0;
	if (keep)
		*keep = NULL;
	ret = ma_capture_open(path, &r);
	if (ret < 0)
		return ret;
	while ((ret = ma_capture_next(r, &ev)) == 1)
		(*nev)++;
	if (keep)
		*keep = r;
	else
		ma_capture_reader_close(r);
	return ret;
}

Test(capture, round_trip_every_kind_of_event)
{
	static struct gen g;
	struct ma_capture_writer *w;
	struct ma_capture_reader *r;
	struct ma_capture_trailer tr = { .lost_records = 5,
					 .lost_bytes = 160,
					 .unknown_frees = 77,
					 .stack_truncated = 2,
					 .end_wall_ns = 1732550020000000000ull,
					 .duration_ns = 20000000000ull,
					 .complete = 1,
					 .events = 999 /* ignored */ };
	const struct ma_capture_trailer *t;
	const struct ma_capture_meta *m;
	const uint64_t n = 600000;
	uint64_t allocs = 0, frees = 0, samples = 0;
	struct ma_event ev, got;
	char path[128];
	struct stat st;

	tmp_path(path, sizeof(path), "rt.cap");
	cr_assert_eq(ma_capture_create(path, &test_meta, &w), 0, "%s",
		     ma_errmsg());
	gen_init(&g, 12345);
	for (uint64_t i = 0; i < n; i++) {
		gen_next(&g, &ev);
		allocs += ev.type == MA_EV_ALLOC;
		frees += ev.type == MA_EV_FREE;
		samples += ev.type == MA_EV_SAMPLE;
		cr_assert_eq(ma_capture_write_event(w, &ev), 0, "%s",
			     ma_errmsg());
		if (i % 150000 == 0) /* a forced short block now and then */
			cr_assert_eq(ma_capture_flush(w), 0);
	}
	cr_assert_eq(ma_capture_events(w), n);
	cr_assert_eq(ma_capture_close(w, &tr), 0, "%s", ma_errmsg());
	cr_assert_eq(stat(path, &st), 0);
	cr_expect_eq(st.st_mode & 0777, 0600);

	cr_assert_eq(ma_capture_open(path, &r), 0, "%s", ma_errmsg());
	m = ma_capture_meta(r);
	cr_expect_eq(m->version, MA_CAPTURE_VERSION);
	cr_expect_eq(m->pid, 4242);
	cr_expect_eq(m->py_version_hex, 0x030b02f0);
	cr_expect_eq(m->flags, 7);
	cr_expect_eq(m->start_wall_ns, test_meta.start_wall_ns);
	cr_expect_str_eq(m->py_version, "3.11.2");
	cr_expect_str_eq(m->exe, "/usr/bin/python3.11");
	cr_expect_str_eq(m->cmdline, test_meta.cmdline);
	cr_expect_null(ma_capture_trailer(r)); /* not before the end */

	gen_init(&g, 12345);
	for (uint64_t i = 0; i < n; i++) {
		int ret = ma_capture_next(r, &got);

		cr_assert_eq(ret, 1, "event %llu: %d %s", (unsigned long long)i,
			     ret, ma_errmsg());
		gen_next(&g, &ev);
		expect_event_eq(&got, &ev, i);
	}
	cr_assert_eq(ma_capture_next(r, &got), 0);
	cr_assert_eq(ma_capture_next(r, &got), 0); /* and stays there */
	t = ma_capture_trailer(r);
	cr_assert_not_null(t);
	cr_expect_null(ma_capture_warning(r));
	cr_expect_eq(t->events, n);
	cr_expect_eq(t->allocations, allocs);
	cr_expect_eq(t->frees, frees);
	cr_expect_eq(t->samples, samples);
	cr_expect_eq(t->lost_records, 5);
	cr_expect_eq(t->lost_bytes, 160);
	cr_expect_eq(t->unknown_frees, 77);
	cr_expect_eq(t->stack_truncated, 2);
	cr_expect_eq(t->end_wall_ns, tr.end_wall_ns);
	cr_expect_eq(t->duration_ns, tr.duration_ns);
	cr_expect_eq(t->complete, 1);
	cr_expect_eq(ma_capture_events_read(r), n);
	ma_capture_reader_close(r);
}

/* Ring records, as the payload lays them out, through ma_capture_write() */
Test(capture, ring_records_in_events_out)
{
	uint64_t buf[64];
	struct ma_rec_alloc a = {
		.h = { ma_rec_make(MA_REC_ALLOC, sizeof(a)), 3 },
		.ptr = 0x55550000a0ull,
		.size = 4096,
		.node = 17,
		.kind = MA_KIND_CALLOC,
	};
	struct ma_rec_free f = {
		.h = { ma_rec_make(MA_REC_FREE, sizeof(f)), 4 },
		.ptr = 0x55550000a0ull,
		.kind = MA_KIND_MALLOC,
	};
	struct ma_rec_thread th = {
		.h = { ma_rec_make(MA_REC_THREAD, sizeof(th)), 3 },
		.tid = 4243,
		.pthread = 0x7f0011223344ull,
		.name = "0123456789abcdef", /* 16 bytes, no NUL */
	};
	struct ma_rec_node nd = {
		.h = { ma_rec_make(MA_REC_NODE, sizeof(nd)), 3 },
		.id = 17,
		.parent = 16,
		.code = 2,
		.addr = 42,
	};
	struct ma_rec_stats sr = {
		.h = { ma_rec_make(MA_REC_STATS, sizeof(sr)), 0 },
		.allocs = 10,
		.frees = 9,
		.lost_records = 1,
		.lost_bytes = 32,
		.stack_truncated = 4,
		.node_table_full = 5,
	};
	struct ma_rec_fork fk = {
		.h = { ma_rec_make(MA_REC_FORK, sizeof(fk)), 3 },
		.child_pid = 999,
	};
	struct ma_rec pad = { ma_rec_make(MA_REC_PAD, 64), 0 };
	struct ma_rec_code *c = (struct ma_rec_code *)buf;
	struct ma_capture_writer *w;
	struct ma_capture_reader *r;
	struct ma_event ev;
	char path[128];

	memset(buf, 0, sizeof(buf));
	c->id = 2;
	c->firstlineno = 88;
	c->name_len = 10;
	c->file_len = 6;
	c->linetable_len = 4;
	c->version_hex = 0x030800f0;
	memcpy(c + 1, "clean_rowsetl.py\x02\x01\x04\x02", 20);
	c->h = (struct ma_rec){
		ma_rec_make(MA_REC_CODE, (sizeof(*c) + 20 + 7) & ~7u), 3
	};

	tmp_path(path, sizeof(path), "rec.cap");
	cr_assert_eq(ma_capture_create(path, &test_meta, &w), 0);
	cr_assert_eq(ma_capture_write(w, &th.h), 0);
	cr_assert_eq(ma_capture_write(w, &c->h), 0);
	cr_assert_eq(ma_capture_write(w, &nd.h), 0);
	cr_assert_eq(ma_capture_write(w, &pad), 0); /* not an event */
	cr_assert_eq(ma_capture_write(w, &a.h), 0);
	cr_assert_eq(ma_capture_write(w, &f.h), 0);
	cr_assert_eq(ma_capture_write(w, &fk.h), 0);
	cr_assert_eq(ma_capture_write(w, &sr.h), 0);
	cr_assert_eq(ma_capture_events(w), 7);

	/* A CODE record whose strings overrun it is refused, and is not
	 * sticky (the record is bad, not the file) */
	c->file_len = 200;
	cr_expect_eq(ma_capture_write(w, &c->h), -EINVAL);
	cr_expect(strstr(ma_errmsg(), "overrun") != NULL, "%s", ma_errmsg());
	c->file_len = 6;
	a.h.type_len = ma_rec_make(MA_REC_ALLOC, 16);
	cr_expect_eq(ma_capture_write(w, &a.h), -EINVAL);
	a.h.type_len = ma_rec_make(99, 32);
	cr_expect_eq(ma_capture_write(w, &a.h), -ENOTSUP);
	cr_assert_eq(ma_capture_close(w, NULL), 0);

	cr_assert_eq(ma_capture_open(path, &r), 0);
	cr_assert_eq(ma_capture_next(r, &ev), 1);
	cr_expect_eq(ev.type, MA_EV_THREAD);
	cr_expect_eq(ev.thread, 3);
	cr_expect_eq(ev.thr.tid, 4243);
	cr_expect_eq(ev.thr.pthread, 0x7f0011223344ull);
	cr_expect_str_eq(ev.thr.name, "0123456789abcdef");
	cr_assert_eq(ma_capture_next(r, &ev), 1);
	cr_expect_eq(ev.type, MA_EV_CODE);
	cr_expect_eq(ev.code.id, 2);
	cr_expect_eq(ev.code.firstlineno, 88);
	cr_expect_eq(ev.code.version_hex, 0x030800f0);
	cr_assert_eq(ev.code.name_len, 10);
	cr_expect_eq(memcmp(ev.code.name, "clean_rows", 10), 0);
	cr_assert_eq(ev.code.file_len, 6);
	cr_expect_eq(memcmp(ev.code.file, "etl.py", 6), 0);
	cr_assert_eq(ev.code.linetable_len, 4);
	cr_expect_eq(memcmp(ev.code.linetable, "\x02\x01\x04\x02", 4), 0);
	cr_assert_eq(ma_capture_next(r, &ev), 1);
	cr_expect_eq(ev.type, MA_EV_NODE);
	cr_expect_eq(ev.node.id, 17);
	cr_expect_eq(ev.node.parent, 16);
	cr_expect_eq(ev.node.code, 2);
	cr_expect_eq(ev.node.addr, 42);
	cr_assert_eq(ma_capture_next(r, &ev), 1);
	cr_expect_eq(ev.type, MA_EV_ALLOC);
	cr_expect_eq(ev.index, 3);
	cr_expect_eq(ev.alloc.ptr, 0x55550000a0ull);
	cr_expect_eq(ev.alloc.size, 4096);
	cr_expect_eq(ev.alloc.node, 17);
	cr_expect_eq(ev.alloc.kind, MA_KIND_CALLOC);
	cr_assert_eq(ma_capture_next(r, &ev), 1);
	cr_expect_eq(ev.type, MA_EV_FREE);
	cr_expect_eq(ev.thread, 4); /* freed by another thread */
	cr_expect_eq(ev.free.ptr, 0x55550000a0ull);
	cr_assert_eq(ma_capture_next(r, &ev), 1);
	cr_expect_eq(ev.type, MA_EV_FORK);
	cr_expect_eq(ev.fork.child_pid, 999);
	cr_assert_eq(ma_capture_next(r, &ev), 1);
	cr_expect_eq(ev.type, MA_EV_STATS);
	cr_expect_eq(ev.stats.allocs, 10);
	cr_expect_eq(ev.stats.frees, 9);
	cr_expect_eq(ev.stats.lost_records, 1);
	cr_expect_eq(ev.stats.lost_bytes, 32);
	cr_expect_eq(ev.stats.stack_truncated, 4);
	cr_expect_eq(ev.stats.node_table_full, 5);
	cr_assert_eq(ma_capture_next(r, &ev), 0);
	cr_assert_not_null(ma_capture_trailer(r));
	cr_expect_eq(ma_capture_trailer(r)->complete, 0); /* NULL trailer */
	cr_expect_eq(ma_capture_trailer(r)->allocations, 1);
	ma_capture_reader_close(r);
}

/* A file with blocks of known extents: small blocks forced by flushes */
struct layout {
	uint64_t ends[16];   /* file offset after each events block */
	uint64_t events[16]; /* events up to the end of that block */
	int nblocks;
	uint64_t header_end;
};

static void write_small_blocks(const char *path, struct layout *lay)
{
	struct ma_capture_writer *w;
	struct gen g;
	struct ma_event ev;

	memset(lay, 0, sizeof(*lay));
	cr_assert_eq(ma_capture_create(path, &test_meta, &w), 0);
	lay->header_end = ma_capture_bytes(w);
	gen_init(&g, 99);
	for (int b = 0; b < 6; b++) {
		for (int i = 0; i < 60 + b * 7; i++) {
			gen_next(&g, &ev);
			cr_assert_eq(ma_capture_write_event(w, &ev), 0);
		}
		cr_assert_eq(ma_capture_flush(w), 0);
		lay->ends[b] = ma_capture_bytes(w);
		lay->events[b] = ma_capture_events(w);
		cr_assert_gt(lay->ends[b], b ? lay->ends[b - 1] : 0);
	}
	lay->nblocks = 6;
	cr_assert_eq(ma_capture_close(
			     w, &(struct ma_capture_trailer){ .complete = 1 }),
		     0);
}

Test(capture, cut_at_every_byte_of_the_last_blocks)
{
	struct layout lay;
	char path[128], cut[128];
	uint8_t *file;
	size_t len;
	int checked = 0;

	tmp_path(path, sizeof(path), "full.cap");
	tmp_path(cut, sizeof(cut), "cut.cap");
	write_small_blocks(path, &lay);
	file = slurp(path, &len);

	/* From the start of the last three events blocks to one byte short
	 * of the whole file (the trailer block included) */
	for (size_t at = lay.ends[lay.nblocks - 4]; at < len; at++) {
		struct ma_capture_reader *r = NULL;
		uint64_t nev, expect = 0;
		int ret;

		for (int b = 0; b < lay.nblocks; b++)
			if (lay.ends[b] <= at)
				expect = lay.events[b];
		spit(cut, file, at);
		ret = read_all(cut, &nev, &r);
		cr_assert_eq(ret, 0, "cut at %zu: %d %s", at, ret, ma_errmsg());
		cr_assert_eq(nev, expect,
			     "cut at %zu: %llu events, expected "
			     "%llu",
			     at, (unsigned long long)nev,
			     (unsigned long long)expect);
		cr_assert_null(ma_capture_trailer(r), "cut at %zu", at);
		cr_assert_not_null(ma_capture_warning(r), "cut at %zu", at);
		cr_assert(strstr(ma_capture_warning(r), "truncated") != NULL);
		ma_capture_reader_close(r);
		checked++;
	}
	cr_log_info("checked %d cut positions", checked);

	/* The whole file: complete */
	{
		struct ma_capture_reader *r = NULL;
		uint64_t nev;

		cr_assert_eq(read_all(path, &nev, &r), 0);
		cr_expect_eq(nev, lay.events[lay.nblocks - 1]);
		cr_expect_not_null(ma_capture_trailer(r));
		cr_expect_null(ma_capture_warning(r));
		ma_capture_reader_close(r);
	}

	/* Cut inside the header: an error, never a crash */
	for (size_t at = 0; at < lay.header_end; at++) {
		uint64_t nev;
		int ret;

		spit(cut, file, at);
		ret = read_all(cut, &nev, NULL);
		cr_assert_eq(ret, at == 0 ? -ENODATA : -EBADMSG,
			     "header cut at %zu: %d %s", at, ret, ma_errmsg());
		cr_assert_eq(ma_err_exit(), MA_EXIT_CAPTURE);
	}
	free(file);
}

Test(capture, any_damaged_byte_is_a_clear_error)
{
	struct layout lay;
	char path[128], bad[128];
	uint8_t *file;
	size_t len;
	int n = 0;

	tmp_path(path, sizeof(path), "ok.cap");
	tmp_path(bad, sizeof(bad), "bad.cap");
	write_small_blocks(path, &lay);
	file = slurp(path, &len);
	/* Every byte is under a checksum or a magic, so every single-byte
	 * change must be caught */
	for (size_t at = 0; at < len; at++) {
		static const uint8_t flips[] = { 0x01, 0x80, 0xff };

		for (size_t k = 0; k < sizeof(flips); k++) {
			uint64_t nev;
			int ret;

			file[at] ^= flips[k];
			spit(bad, file, len);
			file[at] ^= flips[k];
			ma_err_clear();
			ret = read_all(bad, &nev, NULL);
			cr_assert_lt(ret, 0, "byte %zu ^ %#x went unnoticed",
				     at, flips[k]);
			cr_assert(strstr(ma_errmsg(), bad) != NULL,
				  "message names the file: %s", ma_errmsg());
			/* a damaged block is named by its offset */
			if (at >= lay.header_end)
				cr_assert(strstr(ma_errmsg(), "offset") != NULL,
					  "byte %zu: %s", at, ma_errmsg());
			n++;
		}
	}
	cr_log_info("%d damaged files rejected", n);

	/* Garbage after the trailer */
	{
		uint8_t *more = malloc(len + 3);
		uint64_t nev;

		memcpy(more, file, len);
		memcpy(more + len, "xyz", 3);
		spit(bad, more, len + 3);
		cr_expect_eq(read_all(bad, &nev, NULL), -EBADMSG);
		cr_expect(strstr(ma_errmsg(), "after the trailer") != NULL,
			  "%s", ma_errmsg());
		free(more);
	}

	/* A block missing from the middle */
	{
		uint8_t *less = malloc(len);
		size_t b1 = lay.ends[1], b2 = lay.ends[2];
		uint64_t nev;

		memcpy(less, file, b1);
		memcpy(less + b1, file + b2, len - b2);
		spit(bad, less, len - (b2 - b1));
		cr_expect_eq(read_all(bad, &nev, NULL), -EBADMSG);
		cr_expect(strstr(ma_errmsg(), "missing") != NULL, "%s",
			  ma_errmsg());
		cr_expect_eq(nev, lay.events[1]);
		free(less);
	}
	free(file);
}

/* ------------------------------------------------------------------ */
/* Damage behind valid checksums: rebuild blocks with mutated contents,
 * following the documented layout, so the stream decoder itself sees bad
 * data.  Every outcome must be a clean end or a clean error. */

static uint32_t crc32_ieee(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xedb88320u & -(c & 1));
	}
	return ~c;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

Test(capture, mutated_block_contents_never_crash)
{
	struct layout lay;
	char path[128], bad[128];
	uint8_t *file, *out;
	size_t len;
	uint64_t rng = 777;
	int errors = 0, clean = 0;

	tmp_path(path, sizeof(path), "ok.cap");
	tmp_path(bad, sizeof(bad), "mut.cap");
	write_small_blocks(path, &lay);
	file = slurp(path, &len);
	out = malloc(len + 65536);
	cr_assert_not_null(out);

	for (int iter = 0; iter < 3000; iter++) {
		int victim = (int)(xorshift(&rng) % (uint64_t)lay.nblocks);
		uint64_t off = victim ? lay.ends[victim - 1] : lay.header_end;
		uint32_t comp = le32(file + off + 8),
			 raw = le32(file + off + 12);
		uint8_t rawbuf[65536], zbuf[70000];
		size_t z, o = 0, nev;
		int nmut = 1 + (int)(xorshift(&rng) % 4);

		cr_assert_leq(raw, sizeof(rawbuf));
		cr_assert_eq(
			ZSTD_decompress(rawbuf, raw, file + off + 36, comp),
			raw);
		for (int k = 0; k < nmut; k++) {
			uint64_t x = xorshift(&rng);

			rawbuf[x % raw] = (x >> 32) & 1 ? (uint8_t)(x >> 40)
							: rawbuf[x % raw] ^ 1;
		}
		z = ZSTD_compress(zbuf, sizeof(zbuf), rawbuf, raw, 3);
		cr_assert(!ZSTD_isError(z));
		/* header, blocks before, rebuilt block, blocks after */
		memcpy(out, file, off);
		o = off;
		memcpy(out + o, file + off, 36);
		put32(out + o + 8, (uint32_t)z);
		put32(out + o + 28, crc32_ieee(zbuf, z));
		put32(out + o + 32, crc32_ieee(out + o, 32));
		o += 36;
		memcpy(out + o, zbuf, z);
		o += z;
		memcpy(out + o, file + off + 36 + comp, len - off - 36 - comp);
		o += len - off - 36 - comp;
		spit(bad, out, o);
		{
			uint64_t n;
			int ret = read_all(bad, &n, NULL);

			nev = n;
			if (ret < 0) {
				errors++;
				cr_assert(strstr(ma_errmsg(), "offset") != NULL,
					  "%s", ma_errmsg());
			} else {
				clean++;
			}
		}
		(void)nev;
	}
	cr_log_info("mutated blocks: %d errors, %d decoded as other events",
		    errors, clean);
	cr_expect_gt(errors, 1000);
	free(out);
	free(file);
}

Test(capture, bad_files_are_clear_errors)
{
	char path[128];
	struct ma_capture_reader *r;
	struct ma_capture_writer *w;
	uint8_t *file;
	size_t len;
	int ret;

	tmp_path(path, sizeof(path), "none.cap");
	ret = ma_capture_open(path, &r);
	cr_expect_eq(ret, -ENOENT);
	cr_expect(strstr(ma_errmsg(), "none.cap") != NULL);
	cr_expect_eq(ma_err_exit(), MA_EXIT_CAPTURE);

	tmp_path(path, sizeof(path), "empty.cap");
	spit(path, (const uint8_t *)"", 0);
	cr_expect_eq(ma_capture_open(path, &r), -ENODATA);
	cr_expect(strstr(ma_errmsg(), "empty") != NULL, "%s", ma_errmsg());

	tmp_path(path, sizeof(path), "text.cap");
	spit(path, (const uint8_t *)"hello, this is not a capture at all\n",
	     36);
	cr_expect_eq(ma_capture_open(path, &r), -EPROTO);
	cr_expect(strstr(ma_errmsg(), "not a memattach capture") != NULL, "%s",
		  ma_errmsg());

	cr_expect_eq(ma_capture_open("/tmp", &r), -EINVAL);

	/* A newer format version: said so, whatever follows */
	tmp_path(path, sizeof(path), "v2.cap");
	cr_assert_eq(ma_capture_create(path, &test_meta, &w), 0);
	cr_assert_eq(ma_capture_close(w, NULL), 0);
	file = slurp(path, &len);
	put32(file + 8, MA_CAPTURE_VERSION + 1);
	spit(path, file, len);
	cr_expect_eq(ma_capture_open(path, &r), -EPROTONOSUPPORT);
	cr_expect(strstr(ma_errmsg(), "newer") != NULL, "%s", ma_errmsg());
	free(file);

	/* Writer: a directory that does not exist */
	tmp_path(path, sizeof(path), "no/such/dir.cap");
	cr_expect_eq(ma_capture_create(path, &test_meta, &w), -ENOENT);
	cr_expect(strstr(ma_errmsg(), "dir.cap") != NULL, "%s", ma_errmsg());
	cr_expect_eq(ma_err_exit(), MA_EXIT_CAPTURE);
}

Test(capture, empty_capture_and_long_strings)
{
	struct ma_capture_meta m = test_meta;
	struct ma_capture_writer *w;
	struct ma_capture_reader *r;
	struct ma_event ev;
	char *cmd = malloc(MA_CAPTURE_MAX_CMDLINE + 100);
	char path[128];

	memset(cmd, 'x', MA_CAPTURE_MAX_CMDLINE + 99);
	cmd[MA_CAPTURE_MAX_CMDLINE + 99] = '\0';
	m.cmdline = cmd;
	m.exe = NULL;
	m.py_version = NULL;
	tmp_path(path, sizeof(path), "e.cap");
	cr_assert_eq(ma_capture_create(path, &m, &w), 0);
	cr_assert_eq(ma_capture_close(w, NULL), 0);
	cr_assert_eq(ma_capture_open(path, &r), 0, "%s", ma_errmsg());
	cr_expect_eq(strlen(ma_capture_meta(r)->cmdline),
		     MA_CAPTURE_MAX_CMDLINE);
	cr_expect_str_eq(ma_capture_meta(r)->exe, "");
	cr_expect_str_eq(ma_capture_meta(r)->py_version, "");
	cr_expect_eq(ma_capture_next(r, &ev), 0);
	cr_expect_not_null(ma_capture_trailer(r));
	cr_expect_eq(ma_capture_trailer(r)->events, 0);
	ma_capture_reader_close(r);
	free(cmd);
}

/* Samples end a block once it has been open a second (of sample time), so
 * a SIGKILL loses at most about a second of events */
Test(capture, samples_bound_the_open_block)
{
	struct ma_capture_writer *w;
	struct ma_event ev;
	struct churn *c = malloc(sizeof(*c));
	char path[128];
	uint64_t before;

	tmp_path(path, sizeof(path), "s.cap");
	churn_init(c, 5);
	cr_assert_eq(ma_capture_create(path, &test_meta, &w), 0);
	cr_assert_eq(ma_capture_sample(w, 1000, 0, 0), 0);
	for (int i = 0; i < 1000; i++) {
		churn_next(c, &ev);
		cr_assert_eq(ma_capture_write_event(w, &ev), 0);
	}
	before = ma_capture_bytes(w);
	cr_assert_eq(ma_capture_sample(w, 500000000, 0, 0), 0);
	cr_expect_eq(ma_capture_bytes(w), before, "flushed too early");
	cr_assert_eq(ma_capture_sample(w, 1000001000, 0, 0), 0);
	cr_expect_gt(ma_capture_bytes(w), before, "not flushed after 1 s");
	ma_capture_abort(w);
	free(c);
	{
		uint64_t nev;
		struct ma_capture_reader *r = NULL;

		/* aborted: readable, truncated, nothing lost but the open
		 * block (empty here) */
		cr_assert_eq(read_all(path, &nev, &r), 0);
		cr_expect_eq(nev, 1003);
		cr_expect_null(ma_capture_trailer(r));
		ma_capture_reader_close(r);
	}
}

Test(capture, churn_of_1M_allocations_size_and_speed, .timeout = 240)
{
	struct churn *c = malloc(sizeof(*c)), *c2 = malloc(sizeof(*c2));
	struct ma_capture_writer *w;
	struct ma_capture_reader *r;
	struct ma_event ev, got;
	uint64_t allocs = 0, nev = 0;
	double t0, t1, t2, per_alloc;
	char path[128];
	struct stat st;

	tmp_path(path, sizeof(path), "churn.cap");
	churn_init(c, 42);
	cr_assert_eq(ma_capture_create(path, &test_meta, &w), 0);
	t0 = now_s();
	while (allocs < 1000000) {
		churn_next(c, &ev);
		allocs += ev.type == MA_EV_ALLOC;
		cr_assert_eq(ma_capture_write_event(w, &ev), 0);
		nev++;
	}
	cr_assert_eq(ma_capture_close(w, NULL), 0);
	t1 = now_s();

	cr_assert_eq(ma_capture_open(path, &r), 0);
	churn_init(c2, 42);
	for (uint64_t i = 0; i < nev; i++) {
		cr_assert_eq(ma_capture_next(r, &got), 1);
		churn_next(c2, &ev);
		if (got.type != ev.type || got.alloc.ptr != ev.alloc.ptr ||
		    got.thread != ev.thread ||
		    (ev.type == MA_EV_ALLOC &&
		     (got.alloc.size != ev.alloc.size ||
		      got.alloc.node != ev.alloc.node)))
			expect_event_eq(&got, &ev, i);
	}
	cr_assert_eq(ma_capture_next(r, &got), 0);
	t2 = now_s();
	ma_capture_reader_close(r);

	cr_assert_eq(stat(path, &st), 0);
	per_alloc = (double)st.st_size / (double)allocs;
	fprintf(stderr,
		"churn: %llu allocations, %llu events, %lld bytes: %.3f bytes "
		"per allocation; encode %.2f M events/s, decode+compare %.2f "
		"M events/s\n",
		(unsigned long long)allocs, (unsigned long long)nev,
		(long long)st.st_size, per_alloc, (double)nev / (t1 - t0) / 1e6,
		(double)nev / (t2 - t1) / 1e6);
	cr_expect_leq(per_alloc, 3.0, "%.3f bytes per allocation", per_alloc);
	free(c);
	free(c2);
}

/* ------------------------------------------------------------------ */
/*
 * A synthetic capture that looks like a small program (tools/gen-capture
 * runs this test with MA_GEN_CAPTURE=path, and MA_GEN_ALLOCS=n, to leave
 * the file for report development): three threads, code objects with line
 * tables, a frame trie, samples every 10000 events, realloc, mmap and
 * partial munmap, frees of memory from before the attach.  Read back, the
 * accounting must agree with the trailer's counters.
 */
#include "account.h"

struct prog {
	uint64_t rng;
	struct churn churn;
	uint64_t t_ns, events, unknown;
	uint64_t mmap_next;
	uint64_t big, big_size;
	uint64_t maps[64];
	int nmaps;
};

static void emit(struct ma_capture_writer *w, struct prog *p,
		 const struct ma_event *ev)
{
	cr_assert_eq(ma_capture_write_event(w, ev), 0, "%s", ma_errmsg());
	p->events++;
	if (p->events % 10000 == 0) {
		p->t_ns += 1000000 + xorshift(&p->rng) % 20000000;
		cr_assert_eq(ma_capture_sample(w, p->t_ns, 50ull << 20, 0), 0);
		p->events++;
	}
}

static void prog_defs(struct ma_capture_writer *w, struct prog *p)
{
	static const struct {
		const char *name, *file;
		int first;
	} codes[] = {
		{ "<module>", "/srv/app/main.py", 1 },
		{ "run", "/srv/app/main.py", 20 },
		{ "load_rows", "/srv/app/etl.py", 10 },
		{ "clean_rows", "/srv/app/etl.py", 80 },
		{ "parse", "/usr/lib/python3.11/json/decoder.py", 332 },
		{ "helper", "/srv/app/util.py", 5 },
	};
	/* (parent, code, addr): a trie of 12 stacks */
	static const int nodes[][3] = {
		{ 0, 1, 4 },  { 1, 2, 10 }, { 2, 3, 6 },  { 2, 4, 12 },
		{ 3, 5, 30 }, { 4, 6, 2 },  { 4, 6, 8 },  { 3, 6, 0 },
		{ 2, 4, 40 }, { 9, 5, 14 }, { 1, 3, 20 }, { 11, 6, 4 },
	};
	static uint8_t lt[80];
	struct ma_event ev;

	/* 3.8 co_lnotab: one line per 2 bytes of bytecode */
	for (int i = 0; i < 40; i++) {
		lt[2 * i] = 2;
		lt[2 * i + 1] = 1;
	}
	for (uint32_t t = 1; t <= 3; t++) {
		memset(&ev, 0, sizeof(ev));
		ev.type = MA_EV_THREAD;
		ev.thread = t;
		ev.thr.tid = 4242 + (int32_t)t - 1;
		ev.thr.pthread = 0x7f0000001000ull * t;
		snprintf(ev.thr.name, sizeof(ev.thr.name), "%s",
			 t == 1	  ? "python3"
			 : t == 2 ? "worker-1"
				  : "worker-2");
		emit(w, p, &ev);
	}
	for (uint32_t i = 0; i < 6; i++) {
		memset(&ev, 0, sizeof(ev));
		ev.type = MA_EV_CODE;
		ev.thread = 1;
		ev.code.id = i + 1;
		ev.code.firstlineno = codes[i].first;
		ev.code.version_hex = 0x030800f0;
		ev.code.name = codes[i].name;
		ev.code.name_len = (uint32_t)strlen(codes[i].name);
		ev.code.file = codes[i].file;
		ev.code.file_len = (uint32_t)strlen(codes[i].file);
		ev.code.linetable = lt;
		ev.code.linetable_len = sizeof(lt);
		emit(w, p, &ev);
	}
	for (uint32_t i = 0; i < 12; i++) {
		memset(&ev, 0, sizeof(ev));
		ev.type = MA_EV_NODE;
		ev.thread = 1;
		ev.node.id = i + 1;
		ev.node.parent = (uint32_t)nodes[i][0];
		ev.node.code = (uint32_t)nodes[i][1];
		ev.node.addr = nodes[i][2];
		emit(w, p, &ev);
	}
}

static void prog_step(struct ma_capture_writer *w, struct prog *p)
{
	uint64_t r = xorshift(&p->rng);
	struct ma_event ev;

	churn_next(&p->churn, &ev);
	ev.thread = 1 + (uint32_t)(r % 3);
	if (ev.type == MA_EV_ALLOC) {
		/* spread the churn's five stacks over the trie's twelve */
		ev.alloc.node =
			(ev.alloc.node * 7 + (uint32_t)(r >> 8) % 3) % 12 + 1;
		if ((r >> 16) % 50 == 0) {
			/* a buffer that keeps growing: realloc = FREE of the
			 * old block + ALLOC(REALLOC) of the new one */
			struct ma_event g = { .thread = 1 };

			emit(w, p, &ev);
			if (p->big) {
				g.type = MA_EV_FREE;
				g.free.ptr = p->big;
				g.free.kind = MA_KIND_MALLOC;
				emit(w, p, &g);
			}
			memset(&g, 0, sizeof(g));
			g.thread = 1;
			g.type = MA_EV_ALLOC;
			g.alloc.kind =
				p->big ? MA_KIND_REALLOC : MA_KIND_MALLOC;
			p->big_size = p->big_size % (1 << 20) + 4096;
			p->big = 0x5500000000ull + (p->big_size << 8);
			g.alloc.ptr = p->big;
			g.alloc.size = p->big_size;
			g.alloc.node = 4;
			ev = g;
		}
	}
	emit(w, p, &ev);
	if ((r >> 24) % 1000 == 0) { /* memory from before the attach */
		memset(&ev, 0, sizeof(ev));
		ev.type = MA_EV_FREE;
		ev.thread = 1;
		ev.free.ptr = 0x4000000000ull + (r >> 32) * 16;
		ev.free.kind = MA_KIND_PYOBJ;
		emit(w, p, &ev);
		p->unknown++;
	}
	if ((r >> 34) % 5000 == 0 && p->nmaps < 64) { /* an mmap */
		memset(&ev, 0, sizeof(ev));
		ev.type = MA_EV_ALLOC;
		ev.thread = 2;
		ev.alloc.kind = MA_KIND_MMAP;
		ev.alloc.ptr = 0x7e0000000000ull + p->mmap_next;
		ev.alloc.size = 1 << 20;
		ev.alloc.node = 9;
		p->mmap_next += 2 << 20;
		p->maps[p->nmaps++] = ev.alloc.ptr;
		emit(w, p, &ev);
	} else if ((r >> 34) % 5000 == 1 && p->nmaps) { /* a partial munmap */
		memset(&ev, 0, sizeof(ev));
		ev.type = MA_EV_FREE;
		ev.thread = 3;
		ev.free.kind = MA_KIND_MMAP;
		ev.free.ptr = p->maps[--p->nmaps] + (256 << 10);
		ev.free.size = 512 << 10;
		emit(w, p, &ev);
	}
}

Test(capture, generate_synthetic_capture, .timeout = 300)
{
	const char *out = getenv("MA_GEN_CAPTURE");
	const char *n_env = getenv("MA_GEN_ALLOCS");
	uint64_t target = n_env ? strtoull(n_env, NULL, 0) : 200000;
	struct prog *p = calloc(1, sizeof(*p));
	const struct ma_capture_trailer *t;
	const struct ma_account_totals *tot;
	struct ma_capture_writer *w;
	struct ma_capture_reader *r;
	struct ma_account *acc;
	struct ma_event ev;
	char path[256];
	int ret;

	if (out)
		snprintf(path, sizeof(path), "%s", out);
	else
		tmp_path(path, sizeof(path), "synthetic.cap");
	p->rng = 31337;
	churn_init(&p->churn, 4242);
	cr_assert_eq(ma_capture_create(path, &test_meta, &w), 0, "%s",
		     ma_errmsg());
	prog_defs(w, p);
	while (ma_capture_events(w) < 2 * target)
		prog_step(w, p);
	/* what the consumer does at the end: the payload's STATS, then the
	 * trailer with the accounting's unknown frees */
	memset(&ev, 0, sizeof(ev));
	ev.type = MA_EV_STATS;
	ev.stats.allocs = target;
	emit(w, p, &ev);
	cr_assert_eq(ma_capture_close(
			     w,
			     &(struct ma_capture_trailer){
				     .unknown_frees = p->unknown,
				     .duration_ns = p->t_ns,
				     .end_wall_ns =
					     test_meta.start_wall_ns + p->t_ns,
				     .complete = 1 }),
		     0);

	cr_assert_eq(ma_account_new(&acc), 0);
	cr_assert_eq(ma_capture_open(path, &r), 0, "%s", ma_errmsg());
	while ((ret = ma_capture_next(r, &ev)) == 1)
		cr_assert_eq(ma_account_feed(acc, &ev), 0);
	cr_assert_eq(ret, 0, "%s", ma_errmsg());
	t = ma_capture_trailer(r);
	cr_assert_not_null(t);
	tot = ma_account_totals(acc);
	cr_expect_eq(tot->events, t->events);
	cr_expect_eq(tot->allocs, t->allocations);
	cr_expect_eq(tot->frees, t->frees);
	cr_expect_eq(tot->samples, t->samples);
	cr_expect_eq(tot->unknown_frees, t->unknown_frees);
	cr_expect_eq(tot->unknown_frees, p->unknown);
	cr_expect_eq(tot->threads, 3);
	cr_expect_eq(tot->codes, 6);
	cr_expect_eq(tot->nodes, 12);
	cr_expect_gt(tot->reallocs, 0);
	cr_expect_gt(tot->mmaps, 0);
	if (out) {
		fprintf(stderr, "wrote %s: %llu events\n", path,
			(unsigned long long)t->events);
		ma_account_print_summary(acc, stderr, 10);
	}
	ma_capture_reader_close(r);
	ma_account_free(acc);
	free(p);
}

/* Only the file we made, nothing else, is in the test's directory */
static int dir_entries(void)
{
	char cmd[160];
	FILE *p;
	int n = -1;

	snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", tmpdir);
	p = popen(cmd, "r");
	if (p && fscanf(p, "%d", &n) != 1)
		n = -1;
	if (p)
		pclose(p);
	return n;
}

/* A capture is created mode 0600 whatever the umask, owned by us, and
 * never through a symlink (root writing into /tmp, where another user may
 * have planted one): the link and what it points to stay as they were */
Test(capture, created_private_never_through_a_symlink)
{
	struct ma_capture_writer *w;
	char path[128], victim[128], link[128], got[128];
	struct stat st;
	mode_t old = umask(0);

	tmp_path(path, sizeof(path), "new.cap");
	cr_assert_eq(ma_capture_create(path, &test_meta, &w), 0, "%s",
		     ma_errmsg());
	ma_capture_abort(w);
	umask(old);
	cr_assert_eq(lstat(path, &st), 0);
	cr_assert(S_ISREG(st.st_mode));
	cr_assert_eq(st.st_mode & 07777, 0600, "mode %o", st.st_mode & 07777);
	cr_assert_eq(st.st_uid, geteuid());
	cr_assert_eq(dir_entries(), 1, "no temporary file left");

	/* a planted link to a file of someone else: refused, both intact */
	tmp_path(victim, sizeof(victim), "victim");
	tmp_path(link, sizeof(link), "link.cap");
	FILE *f = fopen(victim, "w");

	cr_assert_not_null(f);
	fputs("precious\n", f);
	fclose(f);
	cr_assert_eq(symlink(victim, link), 0);
	cr_assert_lt(ma_capture_create(link, &test_meta, &w), 0);
	cr_assert_null(w);
	cr_assert_eq(ma_err_exit(), MA_EXIT_CAPTURE);
	cr_assert(strstr(ma_errmsg(), "symbolic link"), "%s", ma_errmsg());
	cr_assert_eq(lstat(link, &st), 0);
	cr_assert(S_ISLNK(st.st_mode), "the link is still a link");
	ssize_t n = readlink(link, got, sizeof(got) - 1);

	cr_assert_gt(n, 0);
	got[n] = '\0';
	cr_assert_str_eq(got, victim);
	cr_assert_eq(stat(victim, &st), 0);
	cr_assert_eq(st.st_size, 9, "the victim was not written");

	/* a dangling link (to a file not there yet) is not created either */
	tmp_path(link, sizeof(link), "dangling.cap");
	tmp_path(victim, sizeof(victim), "would-be-created");
	cr_assert_eq(symlink(victim, link), 0);
	cr_assert_lt(ma_capture_create(link, &test_meta, &w), 0);
	cr_assert_neq(access(victim, F_OK), 0, "nothing created at the target");
	cr_assert_eq(dir_entries(), 4,
		     "new.cap, victim, two links: no "
		     "temporary file left");
}

/* An old capture of another user at the path is replaced by a new file of
 * ours, mode 0600: its owner and mode do not carry over (with O_TRUNC they
 * did: a file another user could read) */
Test(capture, an_existing_file_is_replaced_by_ours)
{
	struct ma_capture_writer *w;
	char path[128];
	struct stat st;

	if (geteuid() != 0)
		cr_skip_test("needs root to make a file of another user");
	tmp_path(path, sizeof(path), "old.cap");
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f);
	fputs("old\n", f);
	fclose(f);
	cr_assert_eq(chown(path, 65534, 65534), 0);
	cr_assert_eq(chmod(path, 0644), 0);
	cr_assert_eq(ma_capture_create(path, &test_meta, &w), 0, "%s",
		     ma_errmsg());
	ma_capture_abort(w);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_uid, 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	cr_assert_gt(st.st_size, 4, "the header is in");
}

/* Rewrite the format version in the header of the file at path (and the
 * header's CRC), as an older memattach would have written it */
static void set_version(const char *path, uint32_t version)
{
	size_t len;
	uint8_t *file = slurp(path, &len);
	uint32_t h = le32(file + 12);

	cr_assert(h >= 48 && h <= len);
	put32(file + 8, version);
	put32(file + h - 4, crc32_ieee(file, h - 4));
	spit(path, file, len);
	free(file);
}

/* Format 3 (a capture of several processes): PROC events come back as
 * written; the header says 3 only when asked; a PROC event in a file that
 * says 2 is damage, not a new meaning */
Test(capture, proc_events_need_format_3)
{
	struct ma_capture_meta m3 = test_meta;
	struct ma_capture_writer *w;
	struct ma_capture_reader *r;
	struct ma_capture_trailer tr = { .complete = 1 };
	const struct ma_event procs[] = {
		{ .type = MA_EV_PROC, .proc = { .pid = 4242 } },
		{ .type = MA_EV_THREAD, .thread = 1, .thr = { .tid = 4242 } },
		{ .type = MA_EV_PROC,
		  .thread = 1,
		  .proc = { .pid = 4242, .state = MA_PROC_TRACKED } },
		{ .type = MA_EV_PROC,
		  .proc = { .pid = 4243,
			    .ppid = 4242,
			    .state = MA_PROC_EXITED } },
		{ .type = MA_EV_PROC,
		  .proc = { .pid = -7, .ppid = 1, .state = MA_PROC_SKIPPED } },
		{ .type = MA_EV_PROC,
		  .proc = { .pid = 4244,
			    .ppid = 4242,
			    .state = MA_PROC_STOPPED } },
	};
	const size_t n = sizeof(procs) / sizeof(procs[0]);
	struct ma_event ev;
	char path[128];
	uint64_t nev;
	size_t i = 0;
	int ret;

	tmp_path(path, sizeof(path), "procs.cap");
	m3.version = MA_CAPTURE_VERSION;
	cr_assert_eq(ma_capture_create(path, &m3, &w), 0, "%s", ma_errmsg());
	for (size_t k = 0; k < n; k++)
		cr_assert_eq(ma_capture_write_event(w, &procs[k]), 0);
	cr_assert_eq(ma_capture_close(w, &tr), 0, "%s", ma_errmsg());
	cr_assert_eq(ma_capture_open(path, &r), 0, "%s", ma_errmsg());
	cr_expect_eq(ma_capture_meta(r)->version, 3);
	while ((ret = ma_capture_next(r, &ev)) == 1) {
		cr_assert_lt(i, n);
		cr_expect_eq(ev.type, procs[i].type);
		cr_expect_eq(ev.thread, procs[i].thread);
		if (ev.type == MA_EV_PROC) {
			cr_expect_eq(ev.proc.pid, procs[i].proc.pid);
			cr_expect_eq(ev.proc.ppid, procs[i].proc.ppid);
			cr_expect_eq(ev.proc.state, procs[i].proc.state);
		}
		i++;
	}
	cr_expect_eq(ret, 0, "%s", ma_errmsg());
	cr_expect_eq(i, n);
	ma_capture_reader_close(r);

	/* the same events under a version-2 header */
	cr_assert_eq(ma_capture_create(path, &test_meta, &w), 0);
	for (size_t k = 0; k < n; k++)
		cr_assert_eq(ma_capture_write_event(w, &procs[k]), 0);
	cr_assert_eq(ma_capture_close(w, &tr), 0);
	set_version(path, 2);
	ret = read_all(path, &nev, NULL);
	cr_expect_eq(ret, -EBADMSG, "PROC in a version-2 file: %d", ret);
	cr_expect(strstr(ma_errmsg(), "unknown event subtype"), "%s",
		  ma_errmsg());
}

/* A file of an older format version (2: no TNAME; 1: no aggregated
 * events) holding only what that version had still reads, event for
 * event; a THREAD without a TNAME keeps its comm */
Test(capture, older_versions_still_read)
{
	struct ma_event th = { .type = MA_EV_THREAD, .thread = 3 };
	struct ma_event al = { .type = MA_EV_ALLOC, .thread = 3 };
	struct ma_capture_writer *w;
	struct ma_capture_reader *r;
	struct ma_event ev;
	char path[512];

	th.thr.tid = 4243;
	th.thr.pthread = 0x7f0011223344ull;
	strcpy(th.thr.name, "python3");
	al.alloc.ptr = 0x5000;
	al.alloc.size = 24;
	al.alloc.node = 0;
	al.alloc.kind = MA_KIND_MALLOC;
	for (uint32_t version = 1; version < MA_CAPTURE_VERSION; version++) {
		tmp_path(path, sizeof(path), "old.cap");
		cr_assert_eq(ma_capture_create(path, &test_meta, &w), 0);
		cr_assert_eq(ma_capture_write_event(w, &th), 0);
		cr_assert_eq(ma_capture_write_event(w, &al), 0);
		cr_assert_eq(ma_capture_close(w, NULL), 0);
		set_version(path, version);
		cr_assert_eq(ma_capture_open(path, &r), 0, "version %u: %s",
			     version, ma_errmsg());
		cr_expect_eq(ma_capture_meta(r)->version, version);
		cr_assert_eq(ma_capture_next(r, &ev), 1);
		cr_expect_eq(ev.type, MA_EV_THREAD);
		cr_expect_eq(ev.thr.tid, 4243);
		cr_expect_str_eq(ev.thr.name, "python3");
		cr_assert_eq(ma_capture_next(r, &ev), 1);
		cr_expect_eq(ev.type, MA_EV_ALLOC);
		cr_expect_eq(ev.alloc.ptr, 0x5000);
		cr_expect_eq(ma_capture_next(r, &ev), 0);
		ma_capture_reader_close(r);
	}
}

/* A header that says sampled with no mean: never written by memattach (its
 * estimates need the mean); a clear error, where it was read with exit 0 */
Test(capture, sampled_header_without_mean_is_damaged)
{
	struct ma_capture_writer *w;
	struct ma_capture_reader *r;
	char path[512];
	size_t len;
	uint8_t *file;
	uint32_t h;

	tmp_path(path, sizeof(path), "nomean.cap");
	cr_assert_eq(ma_capture_create(path, &test_meta, &w), 0);
	cr_assert_eq(ma_capture_close(w, NULL), 0);
	file = slurp(path, &len);
	h = le32(file + 12);
	put32(file + 24, le32(file + 24) | MA_TRACK_SAMPLE | MA_TRACK_AGG);
	put32(file + 28, 0);
	put32(file + h - 4, crc32_ieee(file, h - 4));
	spit(path, file, len);
	free(file);
	cr_assert_neq(ma_capture_open(path, &r), 0, "opened");
	cr_expect(strstr(ma_errmsg(), "sampled, with no mean") != NULL, "%s",
		  ma_errmsg());
}
