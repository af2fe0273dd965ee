/* SPDX-License-Identifier: MIT */
/*
 * --diff B.cap: what grew between two captures of the same program.
 * Node ids, code ids and addresses differ from one capture to the next,
 * so rows are matched by what a person sees: by line, function or file
 * their names, by full stack the frames' names joined.  Growth = figure in
 * B minus figure in A, in the chosen view; rows are ranked by growth and
 * only rows that grew are listed (the totals say how much shrank).
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

	if (x != y)
		return x > y ? -1 : 1;
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

static void text(const struct ma_report *a, const struct ma_report *b,
		 struct dent *e, size_t n, FILE *f)
{
	enum ma_rview v = a->opts.view;
	char x[32], y[32], d[32], l[1024];
	size_t grew = 0, shrank = 0, shown = 0;
	int width = a->opts.width ? a->opts.width : ma_term_width(f);
	int locw = width - 40 < 30 ? 30 : width - 40;

	ma_fmt_bytes(a->sum[v].bytes, x, sizeof(x));
	ma_fmt_bytes(b->sum[v].bytes, y, sizeof(y));
	fmt_delta((int64_t)(b->sum[v].bytes - a->sum[v].bytes), d, sizeof(d));
	fprintf(f, "Diff of %s bytes, by %s: %s -> %s\n", ma_rview_name(v),
		ma_rgroup_name(a->opts.group), a->path, b->path);
	fprintf(f, "  %s: %s -> %s (%s)\n", ma_rview_name(v), x, y, d);
	if (strcmp(a->meta->exe ? a->meta->exe : "",
		   b->meta->exe ? b->meta->exe : ""))
		fprintf(f,
			"  note: the captures come from different "
			"executables (%s, %s)\n",
			a->meta->exe, b->meta->exe);
	for (size_t i = 0; i < n; i++) {
		grew += delta(&e[i]) > 0;
		shrank += delta(&e[i]) < 0;
	}
	fprintf(f, "\n%11s %10s %10s  %s\n", "GROWTH", "BEFORE", "AFTER",
		"LOCATION");
	for (size_t i = 0; i < n && delta(&e[i]) > 0; i++) {
		if (a->opts.top > 0 && shown >= (size_t)a->opts.top)
			break;
		fmt_delta(delta(&e[i]), d, sizeof(d));
		ma_fmt_bytes(e[i].a.bytes, x, sizeof(x));
		ma_fmt_bytes(e[i].b.bytes, y, sizeof(y));
		loc(&e[i], l, sizeof(l));
		fprintf(f, "%11s %10s %10s  %.*s\n", d, x, y, locw, l);
		shown++;
	}
	if (!grew)
		fprintf(f, "%11s\n", "(nothing grew)");
	fprintf(f, "\n%zu of %zu locations grew; %zu shrank or are gone.\n",
		grew, n, shrank);
}

static void json(const struct ma_report *a, const struct ma_report *b,
		 struct dent *e, size_t n, FILE *f)
{
	enum ma_rview v = a->opts.view;
	bool first = true;
	size_t shown = 0;

	fputs("{\"a\":\"", f);
	ma_json_str(f, a->path);
	fputs("\",\"b\":\"", f);
	ma_json_str(f, b->path);
	fprintf(f,
		"\",\"view\":\"%s\",\"group\":\"%s\",\"before\":{\"bytes\":%"
		"llu,"
		"\"count\":%llu},\"after\":{\"bytes\":%llu,\"count\":%llu},"
		"\"rows\":[",
		ma_rview_name(v), ma_rgroup_name(a->opts.group),
		(unsigned long long)a->sum[v].bytes,
		(unsigned long long)a->sum[v].count,
		(unsigned long long)b->sum[v].bytes,
		(unsigned long long)b->sum[v].count);
	for (size_t i = 0; i < n && delta(&e[i]) > 0; i++) {
		const struct ma_rrow *w = e[i].row;

		if (a->opts.top > 0 && shown++ >= (size_t)a->opts.top)
			break;
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
		fputs("\"key\":\"", f);
		ma_json_str(f, e[i].key);
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
	fputs("\n]}\n", f);
}

static void csv(const struct ma_report *a, const struct ma_report *b,
		struct dent *e, size_t n, FILE *f)
{
	size_t shown = 0;

	fputs("function,file,line,before_bytes,before_count,after_bytes,"
	      "after_count,delta_bytes,delta_count,key\n",
	      f);
	for (size_t i = 0; i < n && delta(&e[i]) > 0; i++) {
		const struct ma_rrow *w = e[i].row;

		if (a->opts.top > 0 && shown++ >= (size_t)a->opts.top)
			break;
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
		ma_csv_field(f, e[i].key);
		putc('\n', f);
	}
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
