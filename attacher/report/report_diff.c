/* SPDX-License-Identifier: MIT */
/*
 * --diff B.cap: what grew between two captures of the same program.
 * Node ids, code ids and addresses differ from one capture to the next,
 * so rows are matched by what a person sees: by line, function or file
 * their names, by full stack the frames' names joined.  Growth = figure in
 * B minus figure in A, in the chosen view; rows that grew are ranked by
 * growth, then those that shrank by how much (text, json, csv; collapsed
 * only has growth: a flame graph has no negative widths).
 *
 * Each capture counts only what was allocated while it tracked: two
 * windows of a process that leaks steadily each leave the same bytes live
 * and show no growth.  The output says so, with each window's length and
 * its rate, every time.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "report.h"
#include "report_util.h"
#include "textfit.h"
#include "units.h"

struct dent {
	char *key;
	const struct ma_report *r; /* the report naming the row */
	const struct ma_rrow *row; /* NULL for collapsed stacks */
	uint32_t node;		   /* collapsed: the tree node */
	struct ma_account_fig a, b;
};

struct dmap {
	struct dent *e;
	size_t n, cap;
	uint32_t *h; /* index + 1 */
	size_t hcap;
};

static uint64_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return h;
}

static int dmap_grow(struct dmap *m)
{
	size_t cap = m->hcap ? m->hcap * 2 : 1024;
	uint32_t *h = calloc(cap, sizeof(*h));

	if (!h)
		return -ENOMEM;
	for (size_t i = 0; i < m->n; i++) {
		size_t j = str_hash(m->e[i].key) & (cap - 1);

		while (h[j])
			j = (j + 1) & (cap - 1);
		h[j] = (uint32_t)i + 1;
	}
	free(m->h);
	m->h = h;
	m->hcap = cap;
	return 0;
}

/* The entry for key (taken over: freed by the map), created on demand */
static struct dent *dmap_get(struct dmap *m, char *key)
{
	size_t j;

	if ((m->n + 1) * 2 > m->hcap && dmap_grow(m) < 0)
		goto nomem;
	for (j = str_hash(key) & (m->hcap - 1); m->h[j];
	     j = (j + 1) & (m->hcap - 1))
		if (!strcmp(m->e[m->h[j] - 1].key, key)) {
			free(key);
			return &m->e[m->h[j] - 1];
		}
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 256;
		struct dent *p = realloc(m->e, cap * sizeof(*p));

		if (!p)
			goto nomem;
		m->e = p;
		m->cap = cap;
	}
	memset(&m->e[m->n], 0, sizeof(m->e[0]));
	m->e[m->n].key = key;
	m->h[j] = (uint32_t)m->n + 1;
	return &m->e[m->n++];
nomem:
	free(key);
	return NULL;
}

static void dmap_free(struct dmap *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->e[i].key);
	free(m->e);
	free(m->h);
}

static char *stack_key(const struct ma_report *r, uint32_t node)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	ma_collapsed_stack(r, f, node);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static char *row_key(const struct ma_report *r, const struct ma_rrow *row)
{
	char *k;

	if (r->opts.group == MA_VIEW_STACK)
		return stack_key(r, row->rep);
	if (asprintf(&k, "%s\037%s\037%d", row->function ? row->function : "",
		     row->file, row->line) < 0)
		return NULL;
	return k;
}

/* The key as a person reads it: "function (file:line)", "file", or the
 * collapsed stack */
static void key_text(const struct dent *e, char *buf, size_t len);

static int add(struct dmap *m, const struct ma_report *r, bool after,
	       const struct ma_rrow *row, uint32_t node,
	       const struct ma_account_fig *fig)
{
	char *key = row ? row_key(r, row) : stack_key(r, node);
	struct dent *e;

	if (!key)
		return -ENOMEM;
	e = dmap_get(m, key);
	if (!e)
		return -ENOMEM;
	if (!e->r || after) { /* name rows after B, where they exist */
		e->r = r;
		e->row = row;
		e->node = node;
	}
	if (after) {
		e->b.bytes += fig->bytes;
		e->b.count += fig->count;
	} else {
		e->a.bytes += fig->bytes;
		e->a.count += fig->count;
	}
	return 0;
}

static int64_t delta(const struct dent *e)
{
	return (int64_t)(e->b.bytes - e->a.bytes);
}

static int dent_cmp(const void *pa, const void *pb)
{
	const struct dent *a = pa, *b = pb;
	int64_t x = delta(a), y = delta(b);
	int sx = (x > 0) - (x < 0), sy = (y > 0) - (y < 0);

	/* grew (most first), unchanged, shrank (most first) */
	if (sx != sy)
		return sx > sy ? -1 : 1;
	if (x != y)
		return (x > y) == (sx > 0) ? -1 : 1;
	return strcmp(a->key, b->key);
}

static void fmt_delta(int64_t d, char *buf, size_t len)
{
	char b[32];

	ma_fmt_bytes((uint64_t)(d < 0 ? -d : d), b, sizeof(b));
	snprintf(buf, len, "%s%s", d < 0 ? "-" : "+", b);
}

static void loc(const struct dent *e, char *buf, size_t len)
{
	if (e->row && e->r->opts.group != MA_VIEW_STACK) {
		const struct ma_rrow *w = e->row;

		if (!w->function)
			snprintf(buf, len, "%s", w->file);
		else if (w->file[0] && w->line >= 0)
			snprintf(buf, len, "%s (%s:%d)", w->function, w->file,
				 w->line);
		else
			snprintf(buf, len, "%s", w->function);
	} else {
		ma_report_frame_name(
			&e->r->nodes[e->row ? e->row->rep : e->node], buf, len);
	}
}

/* loc() in at most w columns, cut as the other text reports cut it: a
 * long file on the left, so that its name and line stay */
static void loc_fit(const struct dent *e, char *buf, size_t len, int w)
{
	const struct ma_rrow *r = e->row;

	if (!r || e->r->opts.group == MA_VIEW_STACK) {
		loc(e, buf, len);
		return;
	}
	if (w > (int)len - 1)
		w = (int)len - 1;
	/* by file (no function): the file; a row with no file or line:
	 * the function alone, as loc() gives them */
	ma_fit_location(r->function,
			!r->function || (r->file[0] && r->line >= 0) ? r->file
								     : "",
			r->line, buf, w);
}

/* The moment a capture's figures are as of, ns from its start (--to:
 * the end of the range, or an aggregated capture's last round of sums
 * before it) */
static uint64_t end_of(const struct ma_report *r)
{
	if (r->range_agg_cut)
		return r->range_agg_end_ns;
	if (r->range_end_ns)
		return r->range_end_ns;
	return r->trailer ? r->trailer->duration_ns : r->t.last_t_ns;
}

/* Tracked time of a capture's figures, ns: from --from's start */
static uint64_t dur(const struct ma_report *r)
{
	uint64_t end = end_of(r),
		 start = r->opts.from_ns ? r->range_start_ns : 0;

	return end > start ? end - start : 0;
}

/* --to T1 --diff-to T2: one capture from its start to two moments */
static bool moments(const struct ma_report *a, const struct ma_report *b)
{
	return !strcmp(a->path, b->path) && !a->opts.from_ns &&
	       !b->opts.from_ns && a->opts.to_ns && b->opts.to_ns;
}

/* Bytes per second of a window, as text ("1.20 MiB/s", "?" for no time) */
static void fmt_rate(uint64_t bytes, uint64_t ns, char *buf, size_t len)
{
	char b[32];

	if (ns < 1000000) {
		snprintf(buf, len, "?");
		return;
	}
	ma_fmt_bytes((uint64_t)((double)bytes * 1e9 / (double)ns), b,
		     sizeof(b));
	snprintf(buf, len, "%s/s", b);
}

/* Rows that grew come first (by growth), then those that shrank (most
 * first); n_grew, n_shrank say how many */
static void count(const struct dent *e, size_t n, size_t *grew, size_t *shrank)
{
	*grew = *shrank = 0;
	for (size_t i = 0; i < n; i++) {
		*grew += delta(&e[i]) > 0;
		*shrank += delta(&e[i]) < 0;
	}
}

static void text_rows(const struct ma_report *a, const struct dent *e,
		      size_t from, size_t n, int locw, FILE *f)
{
	char x[32], y[32], d[32], l[1024];

	for (size_t i = 0; i < n; i++) {
		const struct dent *k = &e[from + i];

		fmt_delta(delta(k), d, sizeof(d));
		ma_fmt_bytes(k->a.bytes, x, sizeof(x));
		ma_fmt_bytes(k->b.bytes, y, sizeof(y));
		loc_fit(k, l, sizeof(l), locw);
		fprintf(f, "%11s %10s %10s  %.*s\n", d, x, y, locw, l);
	}
	(void)a;
}

static void key_text(const struct dent *e, char *buf, size_t len)
{
	if (e->row && e->r->opts.group != MA_VIEW_STACK)
		loc(e, buf, len);
	else
		snprintf(buf, len, "%s", e->key);
}

/* A diff with a sampled side says its figures are estimates, as every
 * format of one capture does (it did not: a sampled count compared with
 * an exact one read as growth) */
static void estimates_note(const struct ma_report *a, const struct ma_report *b,
			   FILE *f)
{
	int sa = a->meta && a->meta->sample_mean,
	    sb = b->meta && b->meta->sample_mean;
	char m[32];

	if (!sa && !sb)
		return;
	ma_fmt_bytes(sa ? a->meta->sample_mean : b->meta->sample_mean, m,
		     sizeof(m));
	if (sa && sb && a->meta->sample_mean == b->meta->sample_mean)
		fprintf(f,
			"  ESTIMATES: both sides sampled (--sample, every %s "
			"on average): every figure is an estimate\n",
			m);
	else if (sa && sb)
		fprintf(f,
			"  ESTIMATES: both sides sampled, at different means "
			"(--sample): every figure is an estimate\n");
	else
		fprintf(f,
			"  ESTIMATES: the %s side is sampled (--sample, every "
			"%s on average), the other exact: its figures are "
			"estimates, and counts of small blocks compare "
			"poorly\n",
			sa ? "before" : "after", m);
}

/* What the report of one side footnotes (report_text.c): records the ring
 * lost, blocks the payload could not track, events filed without their
 * stack; a diff of such a side is as incomplete as its report */
static uint64_t lost_of(const struct ma_report *r)
{
	return r->trailer && r->trailer->lost_records ? r->trailer->lost_records
						      : r->t.lost_records;
}

static void incomplete_warning(const struct ma_report *r, FILE *f)
{
	uint64_t lost = lost_of(r);

	if (lost)
		fprintf(f,
			"  warning: %s: %llu records were lost (ring full): "
			"its figures are incomplete\n",
			r->path, (unsigned long long)lost);
	if (r->t.dropped)
		fprintf(f,
			"  warning: %s: %llu blocks were not tracked (the "
			"target's live table\n  could not grow): its figures "
			"are incomplete\n",
			r->path, (unsigned long long)r->t.dropped);
	if (r->t.keys_full)
		fprintf(f,
			"  warning: %s: %llu events were counted without their "
			"stack\n  (its key table was full): its figures are "
			"incomplete\n",
			r->path, (unsigned long long)r->t.keys_full);
}

static void text(const struct ma_report *a, const struct ma_report *b,
		 struct dent *e, size_t n, FILE *f)
{
	enum ma_rview v = a->opts.view;
	char x[32], y[32], d[32], ra[32], rb[32];
	size_t grew, shrank, top = a->opts.top > 0 ? (size_t)a->opts.top : n;
	int width = a->opts.width ? a->opts.width : ma_term_width(f);
	int locw = width - 40 < 30 ? 30 : width - 40;

	ma_fmt_bytes(a->sum[v].bytes, x, sizeof(x));
	ma_fmt_bytes(b->sum[v].bytes, y, sizeof(y));
	fmt_delta((int64_t)(b->sum[v].bytes - a->sum[v].bytes), d, sizeof(d));
	fmt_rate(a->sum[v].bytes, dur(a), ra, sizeof(ra));
	fmt_rate(b->sum[v].bytes, dur(b), rb, sizeof(rb));
	fprintf(f, "Diff of %s bytes, by %s: %s -> %s\n", ma_rview_name(v),
		ma_rgroup_name(a->opts.group), a->path, b->path);
	fprintf(f, "  %s: %s -> %s (%s)\n", ma_rview_name(v), x, y, d);
	estimates_note(a, b, f);
	fprintf(f,
		"  before: %.1f s tracked, %s (%s); after: %.1f s tracked, %s "
		"(%s)\n",
		(double)dur(a) / 1e9, x, ra, (double)dur(b) / 1e9, y, rb);
	if (moments(a, b) && a->range_agg_cut && end_of(a) == end_of(b))
		fprintf(f,
			"  note: two moments of one aggregated capture whose "
			"stacks' sums come once a\n"
			"  second: both fall in the round of %.1f s, so "
			"nothing between them can be\n"
			"  told (attach with --every-event for exact "
			"moments).\n",
			(double)end_of(a) / 1e9);
	else if (moments(a, b))
		fprintf(f,
			"  note: two moments of one capture (%s at "
			"%.1f s and %.1f s): what was\n"
			"  tracked and still live at each, so the growth "
			"between them.\n",
			a->range_agg_cut ? "its rounds of sums" : "its samples",
			(double)end_of(a) / 1e9, (double)end_of(b) / 1e9);
	else
		fprintf(f,
			"  note: each capture counts only what was allocated "
			"while it tracked, so\n"
			"  this compares the two windows, not the process's "
			"memory: a steady leak\n"
			"  leaves as much in each window and shows no growth "
			"here; compare the rates.\n");
	if (strcmp(a->meta->exe ? a->meta->exe : "",
		   b->meta->exe ? b->meta->exe : "") ||
	    strcmp(a->meta->cmdline ? a->meta->cmdline : "",
		   b->meta->cmdline ? b->meta->cmdline : "")) {
		char *ca = ma_escape_ctl(a->meta->cmdline ? a->meta->cmdline
							  : ""),
		     *cb = ma_escape_ctl(b->meta->cmdline ? b->meta->cmdline
							  : "");

		fprintf(f,
			"  note: the captures come from different programs "
			"(%s; %s)\n",
			ca ? ca : "?", cb ? cb : "?");
		free(ca);
		free(cb);
	}
	/* a capture diffed with itself: one warning */
	for (int k = 0; k < 2 - !strcmp(a->path, b->path); k++) {
		const struct ma_report *r = k ? b : a;

		if (!r->trailer)
			fprintf(f, "  warning: TRUNCATED: %s\n",
				r->warning ? r->warning : r->path);
		incomplete_warning(r, f);
	}
	count(e, n, &grew, &shrank);
	fprintf(f, "\n%11s %10s %10s  %s\n", "GROWTH", "BEFORE", "AFTER",
		"LOCATION");
	text_rows(a, e, 0, grew < top ? grew : top, locw, f);
	if (!grew)
		fprintf(f, "%11s\n", "(nothing grew)");
	if (shrank) {
		fprintf(f, "\n%11s %10s %10s  %s\n", "SHRANK", "BEFORE",
			"AFTER", "LOCATION");
		text_rows(a, e, n - shrank, shrank < top ? shrank : top, locw,
			  f);
	}
	fprintf(f, "\n%zu of %zu locations grew; %zu shrank or are gone.\n",
		grew, n, shrank);
}

static void json_rows(const struct ma_report *a, struct dent *e, size_t from,
		      size_t n, FILE *f)
{
	bool first = true;
	char key[4096];

	for (size_t i = from; i < from + n; i++) {
		const struct ma_rrow *w = e[i].row;

		fputs(first ? "\n {" : ",\n {", f);
		first = false;
		if (w && w->function) {
			fputs("\"function\":\"", f);
			ma_json_str(f, w->function);
			fputs("\",", f);
		} else if (w) {
			fputs("\"function\":null,", f);
		}
		if (w) {
			fputs("\"file\":\"", f);
			ma_json_str(f, w->file);
			fprintf(f, "\",\"line\":%d,", w->line);
		}
		key_text(&e[i], key, sizeof(key));
		fputs("\"key\":\"", f);
		ma_json_str(f, key);
		fprintf(f,
			"\",\"before\":{\"bytes\":%llu,\"count\":%llu},"
			"\"after\":{\"bytes\":%llu,\"count\":%llu},"
			"\"delta\":{\"bytes\":%lld,\"count\":%lld}}",
			(unsigned long long)e[i].a.bytes,
			(unsigned long long)e[i].a.count,
			(unsigned long long)e[i].b.bytes,
			(unsigned long long)e[i].b.count,
			(long long)delta(&e[i]),
			(long long)(e[i].b.count - e[i].a.count));
	}
	(void)a;
}

static void json_side(const struct ma_report *r, FILE *f)
{
	enum ma_rview v = r->opts.view;

	fputs("{\"path\":\"", f);
	ma_json_str(f, r->path);
	fprintf(f,
		"\",\"bytes\":%llu,\"count\":%llu,\"duration_ns\":%llu,"
		"\"complete\":%s,\"truncated\":%s,\"lost_records\":%llu,"
		"\"untracked_blocks\":%llu,\"events_without_stack\":%llu,"
		"\"sampled_mean_bytes\":",
		(unsigned long long)r->sum[v].bytes,
		(unsigned long long)r->sum[v].count, (unsigned long long)dur(r),
		r->trailer && r->trailer->complete ? "true" : "false",
		r->trailer ? "false" : "true", (unsigned long long)lost_of(r),
		(unsigned long long)r->t.dropped,
		(unsigned long long)r->t.keys_full);
	/* a sampled side's figures are estimates (null: exact) */
	if (r->meta && r->meta->sample_mean)
		fprintf(f, "%llu}", (unsigned long long)r->meta->sample_mean);
	else
		fputs("null}", f);
}

static void json(const struct ma_report *a, const struct ma_report *b,
		 struct dent *e, size_t n, FILE *f)
{
	enum ma_rview v = a->opts.view;
	size_t grew, shrank, top = a->opts.top > 0 ? (size_t)a->opts.top : n;

	count(e, n, &grew, &shrank);
	fputs("{\"a\":\"", f);
	ma_json_str(f, a->path);
	fputs("\",\"b\":\"", f);
	ma_json_str(f, b->path);
	fprintf(f,
		"\",\"view\":\"%s\",\"group\":\"%s\",\"compares\":"
		"\"%s\",\"before\":",
		ma_rview_name(v), ma_rgroup_name(a->opts.group),
		moments(a, b) ? "moments" : "windows");
	json_side(a, f);
	fputs(",\"after\":", f);
	json_side(b, f);
	fprintf(f, ",\"grew\":%zu,\"shrank\":%zu,\"rows\":[", grew, shrank);
	json_rows(a, e, 0, grew < top ? grew : top, f);
	fputs("\n],\"shrank_rows\":[", f);
	json_rows(a, e, n - shrank, shrank < top ? shrank : top, f);
	fputs("\n]}\n", f);
}

static void csv(const struct ma_report *a, const struct ma_report *b,
		struct dent *e, size_t n, FILE *f)
{
	size_t grew, shrank, top = a->opts.top > 0 ? (size_t)a->opts.top : n;
	char key[4096];

	count(e, n, &grew, &shrank);
	fputs("function,file,line,before_bytes,before_count,after_bytes,"
	      "after_count,delta_bytes,delta_count,key\n",
	      f);
	for (size_t i = 0; i < n; i++) {
		const struct ma_rrow *w = e[i].row;

		/* the top that grew, then the top that shrank */
		if (!delta(&e[i]) || (i < grew && i >= top) ||
		    (i >= n - shrank && i - (n - shrank) >= top))
			continue;
		ma_csv_field(f, w && w->function ? w->function : "");
		putc(',', f);
		ma_csv_field(f, w ? w->file : "");
		fprintf(f, ",%d,%llu,%llu,%llu,%llu,%lld,%lld,",
			w ? w->line : 0, (unsigned long long)e[i].a.bytes,
			(unsigned long long)e[i].a.count,
			(unsigned long long)e[i].b.bytes,
			(unsigned long long)e[i].b.count,
			(long long)delta(&e[i]),
			(long long)(e[i].b.count - e[i].a.count));
		key_text(&e[i], key, sizeof(key));
		ma_csv_field(f, key);
		putc('\n', f);
	}
	(void)b;
}

/* The collapsed stacks that grew, with the bytes they grew */
static void collapsed(const struct ma_report *a, const struct ma_report *b,
		      struct dent *e, size_t n, FILE *f)
{
	for (size_t i = 0; i < n && delta(&e[i]) > 0; i++)
		fprintf(f, "%s %lld\n", e[i].key, (long long)delta(&e[i]));
}

typedef void emit_fn(const struct ma_report *a, const struct ma_report *b,
		     struct dent *e, size_t n, FILE *f);

/* Match a's and b's rows (by_stack: every stack, whatever the grouping),
 * rank them by growth and write them with emit */
static int diff(const struct ma_report *a, const struct ma_report *b,
		bool by_stack, emit_fn *emit, FILE *f)
{
	enum ma_rview v = a->opts.view;
	struct dmap m = { 0 };
	int ret = 0;

	if (by_stack) {
		/* per stack, whatever the grouping: a flame graph of growth */
		for (int side = 0; side < 2 && ret == 0; side++) {
			const struct ma_report *r = side ? b : a;

			for (size_t i = 1; i < r->nnodes && ret == 0; i++)
				if (r->nodes[i].match &&
				    r->nodes[i].self[v].bytes)
					ret = add(&m, r, side, NULL,
						  (uint32_t)i,
						  &r->nodes[i].self[v]);
		}
	} else {
		for (size_t i = 0; i < a->nrows && ret == 0; i++)
			ret = add(&m, a, false, &a->rows[i], 0,
				  &a->rows[i].fig[v]);
		for (size_t i = 0; i < b->nrows && ret == 0; i++)
			ret = add(&m, b, true, &b->rows[i], 0,
				  &b->rows[i].fig[v]);
	}
	if (ret < 0) {
		dmap_free(&m);
		return ma_err(-ENOMEM, "out of memory");
	}
	if (m.n)
		qsort(m.e, m.n, sizeof(*m.e), dent_cmp);
	emit(a, b, m.e, m.n, f);
	dmap_free(&m);
	if (ferror(f))
		return ma_err(-EIO, "write error");
	return 0;
}

int ma_report_diff_text(const struct ma_report *a, const struct ma_report *b,
			FILE *f)
{
	return diff(a, b, false, text, f);
}

int ma_report_diff_json(const struct ma_report *a, const struct ma_report *b,
			FILE *f)
{
	return diff(a, b, false, json, f);
}

int ma_report_diff_csv(const struct ma_report *a, const struct ma_report *b,
		       FILE *f)
{
	return diff(a, b, false, csv, f);
}

int ma_report_diff_collapsed(const struct ma_report *a,
			     const struct ma_report *b, FILE *f)
{
	return diff(a, b, true, collapsed, f);
}
