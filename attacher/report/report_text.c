/* SPDX-License-Identifier: MIT */
/*
 * -f text: what a person reads in a terminal.  A header (what was tracked,
 * the totals, the peak), a table of the top rows (bytes in human units,
 * count, share of the view, location), the tree of callers of the top few
 * rows, and footnotes (memory from before the attach, lost records, a
 * truncated capture).  Fitted to the width of the terminal, $COLUMNS or
 * 100 columns; colour only on a terminal, never when piped or with
 * NO_COLOR set.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errors.h"
#include "report.h"
#include "textfit.h"
#include "units.h"

#define TREE_DEPTH    12 /* caller levels shown */
#define TREE_CHILDREN 3	 /* callers shown per level */
#define TREE_LINES    24 /* lines per tree */

struct out {
	FILE *f;
	int width;
	bool color;
};

static const char *c_on(const struct out *o, const char *code)
{
	return o->color ? code : "";
}

static const char *c_off(const struct out *o)
{
	return o->color ? "\033[0m" : "";
}

#define BOLD "\033[1m"
#define DIM  "\033[2m"
#define CYAN "\033[36m"
#define YEL  "\033[33m"

static void fmt_share(uint64_t part, uint64_t all, char *buf, size_t len)
{
	double s = all ? 100.0 * (double)part / (double)all : 0.0;

	snprintf(buf, len, "%.1f%%", s);
}

static void header(const struct ma_report *r, const struct out *o)
{
	const struct ma_capture_meta *m = r->meta;
	const struct ma_capture_trailer *tr = r->trailer;
	const struct ma_account_totals *t = &r->t;
	const char *name = strrchr(r->path, '/');
	char a[32], b[32], c[32], when[64], note[160];
	uint64_t dur = tr ? tr->duration_ns : t->last_t_ns;
	struct ma_para p = { .f = o->f, .width = o->width };

	name = name ? name + 1 : r->path;
	fprintf(o->f, "%s", c_on(o, BOLD));
	ma_para_piece(&p, "", "%s", name);
	fprintf(o->f, "%s", c_off(o));
	ma_para_piece(&p, ": ", "pid %d", m->pid);
	ma_para_piece(&p, ", ", "Python %s",
		      m->py_version && m->py_version[0] ? m->py_version : "?");
	/* the header's pid, version and command are the first process's:
	 * the capture has no others' (--pid selects by the process table) */
	if (r->nprocs > 1)
		ma_para_piece(&p, " ", "(the first of %zu processes)",
			      r->nprocs);
	ma_para_piece(&p, ", ", "%.1f s tracked", (double)dur / 1e9);
	ma_para_piece(&p, ", ", "%s",
		      !tr	     ? "TRUNCATED"
		      : tr->complete ? "complete"
				     : "incomplete");
	ma_para_end(&p);
	p.indent = 2;
	if (ma_report_estimates(r, note, sizeof(note)))
		fprintf(o->f, "  %s%s%s\n", c_on(o, YEL), note, c_off(o));
	if (m->cmdline && m->cmdline[0]) {
		char *cmd = ma_escape_ctl(m->cmdline);

		fputs("  ", o->f);
		p.col = 2;
		ma_para_piece(&p, "", "command: %s", cmd ? cmd : "?");
		ma_para_end(&p);
		free(cmd);
	}
	fputs("  ", o->f);
	p.col = 2;
	ma_fmt_count(t->allocs, a, sizeof(a));
	ma_fmt_bytes(t->alloc_bytes, b, sizeof(b));
	ma_fmt_count(t->frees, c, sizeof(c));
	ma_para_piece(&p, "", "allocated %s in %s allocations", b, a);
	ma_para_piece(&p, ", ", "%s frees%s", c,
		      r->thread_filtered ? " of their blocks" : "");
	ma_fmt_bytes(t->live_bytes, a, sizeof(a));
	ma_fmt_count(t->live_count, b, sizeof(b));
	ma_para_piece(&p, "; ", "still live %s in %s blocks", a, b);
	ma_para_end(&p);
	fputs("  ", o->f);
	p.col = 2;
	ma_fmt_bytes(t->peak_bytes, a, sizeof(a));
	ma_fmt_count(t->peak_count, b, sizeof(b));
	ma_report_peak_when(r, when, sizeof(when));
	if (r->peak_unknown)
		ma_para_piece(&p, "", "peak not known");
	else
		ma_para_piece(&p, "", "peak %s in %s blocks", a, b);
	if (when[0])
		ma_para_piece(&p, " ", "%s", when);
	if (!r->peak_unknown && !r->peak_moment_unknown)
		ma_para_piece(&p, " ", "(event %llu)",
			      (unsigned long long)t->peak_index);
	/* an aggregated capture's peak is the payload's, of its blocks:
	 * mmap regions are in live and total, not in it */
	if (!r->peak_unknown && t->agg_peak && t->mmaps)
		ma_para_piece(&p, ", ", "mmap regions not included");
	ma_fmt_bytes(r->all[MA_RV_TEMP].bytes, a, sizeof(a));
	ma_fmt_count(r->all[MA_RV_TEMP].count, b, sizeof(b));
	if (!ma_report_view_known(r, MA_RV_TEMP)) {
		ma_para_piece(&p, "; ", "temporary not known (sampled)");
	} else {
		ma_para_piece(&p, "; ", "temporary %s in %s allocations", a, b);
		if (ma_report_window_counted(r) != r->opts.window)
			ma_para_piece(&p, " ",
				      "(window %u, counted as %u: an "
				      "aggregated capture's distances come in "
				      "powers of two)",
				      r->opts.window,
				      ma_report_window_counted(r));
		else
			ma_para_piece(&p, " ", "(window %u)", r->opts.window);
	}
	ma_para_end(&p);
	if (r->ranged) {
		fputs("  ", o->f);
		p.col = 2;
		ma_para_piece(
			&p, "", "only the range %.1f s - %.1f s",
			(double)r->range_start_ns / 1e9,
			(double)(r->range_end_ns ? r->range_end_ns : dur) /
				1e9);
		ma_para_piece(&p, " ", "(%s%s)",
			      r->opts.from_ns ? "allocated from its start"
					      : "from the capture's start",
			      r->opts.to_ns ? ", figures as of its end" : "");
		/* no sample at or after --to: the whole capture is counted,
		 * which the range above shows but does not say why; to the
		 * millisecond when the tenth would round it onto the range's
		 * end ("--to 3.0 s" for 2.95, past a 2.9 s sample) */
		if (r->opts.to_ns && !r->range_end_ns)
			ma_para_piece(&p, "; ",
				      "--to %.*f s is after the capture's last "
				      "sample: figures as of the capture's end",
				      r->opts.to_ns % 100000000 ? 3 : 1,
				      (double)r->opts.to_ns / 1e9);
		if (r->range_agg_late_ns)
			ma_para_piece(&p, "; ",
				      "the stacks' sums of an aggregated "
				      "capture from %.1f s",
				      (double)r->range_agg_late_ns / 1e9);
		/* its rounds of sums come once a second: what the rows
		 * and totals above are as of */
		if (r->range_agg_cut && r->range_agg_end_ns)
			ma_para_piece(&p, "; ",
				      "the stacks' sums of an aggregated "
				      "capture (once a second) as of about "
				      "%.1f s",
				      (double)r->range_agg_end_ns / 1e9);
		else if (r->range_agg_cut)
			ma_para_piece(&p, "; ",
				      "no round of the stacks' sums of an "
				      "aggregated capture (once a second) "
				      "before %.1f s",
				      (double)r->range_end_ns / 1e9);
		ma_para_end(&p);
	}
	if (r->pid_filtered) {
		fputs("  ", o->f);
		p.col = 2;
		ma_para_piece(&p, "", "only process%s %s",
			      strchr(r->pid_desc, ',') ? "es" : "",
			      r->pid_desc);
		ma_para_end(&p);
	}
	if (r->thread_filtered && !r->pid_filtered) {
		fputs("  ", o->f);
		p.col = 2;
		ma_para_piece(&p, "", "only thread%s",
			      r->threads_selected == 1 ? "" : "s");
		ma_para_piece(&p, " ", "%s",
			      r->threads_selected ? r->thread_desc
						  : "(none matched --thread)");
		ma_para_end(&p);
	}
	if (r->peak_note) {
		/* a sentence: word by word, so that it wraps, not cut */
		char sent[512], *w, *save = NULL;

		snprintf(sent, sizeof(sent), "peak: %s", r->peak_note);
		fputs("  ", o->f);
		p.col = 2;
		for (w = strtok_r(sent, " ", &save); w;
		     w = strtok_r(NULL, " ", &save))
			ma_para_piece(&p, p.col > 2 ? " " : "", "%s", w);
		ma_para_end(&p);
	}
}

/* ------------------------------------------------------------------ */
/* Caller trees */

/*
 * A node of a row's caller tree.  A run of identical frames (recursion on
 * one line) is one node, with the run's length (the lowest and highest of
 * the stacks that pass through it): a 45-deep recursion would otherwise
 * fill the TREE_DEPTH levels and hide the callers that say where it came
 * from.  A stack cut at TREE_DEPTH levels leaves its last node the number
 * of levels not shown, so that the cut is marked.
 */
struct cnode {
	uint32_t frame; /* tree node naming the frame (function, file, line) */
	uint32_t parent, first, next; /* index + 1 links */
	uint64_t bytes, count;
	uint32_t run_min, run_max; /* identical frames folded into this one */
	uint32_t hidden;	   /* most caller levels cut below it */
};

struct ctree {
	struct cnode *n;
	size_t len, cap;
};

static const struct ma_rnode *frame_of(const struct ma_report *r, uint32_t i)
{
	return &r->nodes[i];
}

static bool same_frame(const struct ma_report *r, uint32_t a, uint32_t b)
{
	const struct ma_rnode *x = frame_of(r, a), *y = frame_of(r, b);

	return x->function == y->function && x->file == y->file &&
	       x->line == y->line;
}

/* Child of c (index) for frame, created on demand; 0 on ENOMEM */
static size_t ctree_child(struct ctree *t, const struct ma_report *r, size_t c,
			  uint32_t frame)
{
	size_t k;

	for (k = t->n[c].first; k; k = t->n[k - 1].next)
		if (same_frame(r, t->n[k - 1].frame, frame))
			return k - 1;
	if (t->len == t->cap) {
		size_t cap = t->cap * 2;
		struct cnode *p = realloc(t->n, cap * sizeof(*p));

		if (!p)
			return 0;
		t->n = p;
		t->cap = cap;
	}
	t->n[t->len] = (struct cnode){ .frame = frame,
				       .parent = (uint32_t)c + 1,
				       .next = t->n[c].first,
				       .run_min = UINT32_MAX };
	t->n[c].first = (uint32_t)t->len + 1;
	return t->len++;
}

static int cnode_cmp(const void *pa, const void *pb, void *arg)
{
	const struct cnode *n = arg;
	const struct cnode *a = &n[*(const uint32_t *)pa];
	const struct cnode *b = &n[*(const uint32_t *)pb];

	if (a->bytes != b->bytes)
		return a->bytes > b->bytes ? -1 : 1;
	return a->count > b->count ? -1 : a->count < b->count;
}

static void print_cnode(const struct ma_report *r, const struct out *o,
			const struct ctree *t, size_t c, int depth,
			uint64_t all, int *lines)
{
	uint32_t kids[64];
	size_t nk = 0, shown;
	uint64_t rest_b = 0, rest_n = 0;
	int indent = 2 * depth, locw;
	char b[32], s[16], loc[512], run[48];

	for (uint32_t k = t->n[c].first; k && nk < 64; k = t->n[k - 1].next)
		kids[nk++] = k - 1;
	qsort_r(kids, nk, sizeof(kids[0]), cnode_cmp, t->n);
	shown = nk < TREE_CHILDREN ? nk : TREE_CHILDREN;
	for (size_t i = 0; i < nk; i++) {
		const struct cnode *k = &t->n[kids[i]];
		const struct ma_rnode *fr = frame_of(r, k->frame);

		if (i >= shown || *lines >= TREE_LINES) {
			rest_b += k->bytes;
			rest_n++;
			continue;
		}
		ma_fmt_bytes(k->bytes, b, sizeof(b));
		fmt_share(k->bytes, all, s, sizeof(s));
		run[0] = '\0';
		if (k->run_max > 1 && k->run_min == k->run_max)
			snprintf(run, sizeof(run), "  x%u (recursion)",
				 k->run_max);
		else if (k->run_max > 1)
			snprintf(run, sizeof(run), "  x%u-%u (recursion)",
				 k->run_min, k->run_max);
		locw = o->width - 26 - indent - (int)strlen(run);
		if (locw > (int)sizeof(loc) - 1)
			locw = sizeof(loc) - 1;
		ma_fit_location(fr->function, fr->file, fr->line, loc,
				locw < 20 ? 20 : locw);
		fprintf(o->f, "    %10s %6s  %*s<- %s%s\n", b, s, indent, "",
			loc, run);
		(*lines)++;
		if (k->hidden) {
			/* the walk stopped here (TREE_DEPTH): say so */
			fprintf(o->f,
				"    %17s  %*s   ... %u more caller "
				"frame%s\n",
				"", indent, "", k->hidden,
				k->hidden == 1 ? "" : "s");
			(*lines)++;
		}
		print_cnode(r, o, t, kids[i], depth + 1, all, lines);
	}
	if (rest_n) {
		ma_fmt_bytes(rest_b, b, sizeof(b));
		fmt_share(rest_b, all, s, sizeof(s));
		fprintf(o->f, "    %10s %6s  %*s<- %zu other caller%s\n", b, s,
			indent, "", rest_n, rest_n == 1 ? "" : "s");
		(*lines)++;
	}
}

static int callers(const struct ma_report *r, const struct out *o, size_t row)
{
	enum ma_rview v = r->opts.view;
	struct ctree t = { .cap = 64 };
	int lines = 0;
	uint64_t no_caller = 0;
	const struct ma_rrow *rw = &r->rows[row];
	char loc[512], b[32];
	int locw = o->width - 20;

	t.n = calloc(t.cap, sizeof(*t.n));
	if (!t.n)
		return -ENOMEM;
	t.len = 1;
	for (size_t i = 1; i < r->nnodes; i++) {
		const struct ma_rnode *m = &r->nodes[i];
		uint64_t bytes = m->self[v].bytes, count = m->self[v].count;
		size_t c = 0;
		uint32_t p;
		int d = 0;

		if (m->row != row + 1 || (!bytes && !count))
			continue;
		t.n[0].bytes += bytes;
		t.n[0].count += count;
		if (!m->parent)
			no_caller += bytes;
		for (p = m->parent; p && d < TREE_DEPTH; d++) {
			uint32_t run = 1;

			c = ctree_child(&t, r, c, p);
			if (!c) { /* children are never index 0 */
				free(t.n);
				return -ENOMEM;
			}
			t.n[c].bytes += bytes;
			t.n[c].count += count;
			/* fold the identical callers of a recursion */
			for (p = r->nodes[p].parent;
			     p && same_frame(r, p, t.n[c].frame);
			     p = r->nodes[p].parent)
				run++;
			if (run < t.n[c].run_min)
				t.n[c].run_min = run;
			if (run > t.n[c].run_max)
				t.n[c].run_max = run;
		}
		if (p) { /* cut at TREE_DEPTH: how many frames are left */
			uint32_t left = 0;

			for (; p; p = r->nodes[p].parent)
				left++;
			if (left > t.n[c].hidden)
				t.n[c].hidden = left;
		}
	}
	if (locw > (int)sizeof(loc) - 1)
		locw = sizeof(loc) - 1;
	ma_fit_location(rw->function, rw->file, rw->line, loc,
			locw < 20 ? 20 : locw);
	ma_fmt_bytes(rw->fig[v].bytes, b, sizeof(b));
	fprintf(o->f, "%s#%zu %s%s  %s\n", c_on(o, BOLD), row + 1, loc,
		c_off(o), b);
	if (t.n[0].first)
		print_cnode(r, o, &t, 0, 0, t.n[0].bytes, &lines);
	if (no_caller && t.n[0].first) {
		char s[16];

		ma_fmt_bytes(no_caller, b, sizeof(b));
		fmt_share(no_caller, t.n[0].bytes, s, sizeof(s));
		fprintf(o->f, "    %10s %6s  (no caller: outermost frame)\n", b,
			s);
	}
	free(t.n);
	return 0;
}

/* ------------------------------------------------------------------ */

/* Text wrapped at spaces to the width (footnotes) */
static void wrap(const struct out *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void wrap(const struct out *o, const char *fmt, ...)
{
	char buf[2048], *w, *save = NULL;
	struct ma_para p = { .f = o->f, .width = o->width };
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	for (w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save))
		ma_para_piece(&p, " ", "%s", w);
	ma_para_end(&p);
}

static void footnotes(const struct ma_report *r, const struct out *o)
{
	const struct ma_account_totals *t = &r->t;
	char a[32];
	bool any = false;

	if (r->opts.filter) {
		char b[32], c[32];

		ma_fmt_bytes(r->sum[r->opts.view].bytes, b, sizeof(b));
		ma_fmt_bytes(r->all[r->opts.view].bytes, c, sizeof(c));
		fputc('\n', o->f);
		wrap(o,
		     "Only stacks with a frame matching '%s': %s of %s in "
		     "this view.",
		     r->opts.filter, b, c);
		any = true;
	}
	if (r->unknown_frees) {
		ma_fmt_count(r->unknown_frees, a, sizeof(a));
		if (!any)
			fputc('\n', o->f);
		wrap(o,
		     "%s free%s of memory allocated before the attach (not "
		     "tracked) %s not in these figures%s.",
		     a, r->unknown_frees == 1 ? "" : "s",
		     r->unknown_frees == 1 ? "is" : "are",
		     r->unknown_from_trailer ? " (whole capture)" : "");
		any = true;
	}
	if (t->lost_records || (r->trailer && r->trailer->lost_records)) {
		uint64_t n =
			r->trailer ? r->trailer->lost_records : t->lost_records;

		if (!any)
			fputc('\n', o->f);
		wrap(o,
		     "warning: %llu records were lost (ring full): the "
		     "figures are incomplete.",
		     (unsigned long long)n);
		any = true;
	}
	if (t->stack_truncated || (r->trailer && r->trailer->stack_truncated)) {
		/*
		 * Cut at attach --max-frames, innermost frames kept: their
		 * rows by line are right, but their callers stop short and
		 * stacks that differ only in the missing frames look alike,
		 * which nothing else in the report shows.  The trailer's
		 * count is the whole capture's.
		 */
		uint64_t n = r->trailer ? r->trailer->stack_truncated
					: t->stack_truncated;

		if (!any)
			fputc('\n', o->f);
		ma_fmt_count(n, a, sizeof(a));
		/* counted per allocation recorded with its stack, not per
		 * distinct stack: said so ("596 stacks were cut" for one
		 * deep stack read as 596 stacks) */
		wrap(o,
		     "%s allocation%s stack%s cut at the frame limit "
		     "(attach --max-frames); %s outer frames are missing.",
		     a, n == 1 ? "'s" : "s'", n == 1 ? " was" : "s were",
		     n == 1 ? "its" : "their");
		any = true;
	}
	if (t->dropped || t->keys_full) {
		if (!any)
			fputc('\n', o->f);
		wrap(o,
		     "warning: %llu blocks (%llu bytes) were not tracked (the "
		     "target's live table could not grow) and %llu events were "
		     "counted without their stack (its key table was full): "
		     "the figures are incomplete.",
		     (unsigned long long)t->dropped,
		     (unsigned long long)t->dropped_bytes,
		     (unsigned long long)t->keys_full);
		any = true;
	}
	if (t->node_table_full) {
		/* the payload's code table (64 Ki code objects, filled to
		 * 3/4) or node table was full, or a definition was lost: the
		 * event took the deepest stack known, often <no Python
		 * frame> (a program that keeps making code objects:
		 * subinterpreters, exec) */
		if (!any)
			fputc('\n', o->f);
		wrap(o,
		     "warning: %llu allocations were counted with a shorter "
		     "stack, often <no Python frame> (the payload's table of "
		     "code objects or stacks was full): their innermost "
		     "frames are missing.",
		     (unsigned long long)t->node_table_full);
		any = true;
	}
	if (r->bad_ids) {
		if (!any)
			fputc('\n', o->f);
		wrap(o,
		     "warning: %llu events named stacks or code objects beyond "
		     "any a payload writes (damaged capture): their "
		     "allocations are counted under <no Python frame>.",
		     (unsigned long long)r->bad_ids);
		any = true;
	}
	if (!any && (!r->trailer || !r->trailer->complete))
		fputc('\n', o->f);
	if (!r->trailer)
		wrap(o, "warning: %s",
		     r->warning ? r->warning
				: "the capture is truncated: figures cover "
				  "what was written");
	else if (!r->trailer->complete)
		wrap(o, "note: tracking did not end normally (the target "
			"exited, records were not drained, or the payload "
			"stopped tracking by itself: memattach had not run for "
			"over a second).");
}

/*
 * Whether view k's figures are unknown: the peak when the capture cannot
 * give it (report.h, peak_unknown).  The empty peak view leaves 0 in each
 * thread's and process's figures, which would read as "held nothing at
 * the peak" under a header that says the peak is not known: "-" instead.
 */
static bool view_unknown(const struct ma_report *r, int k)
{
	return !ma_report_view_known(r, (enum ma_rview)k);
}

/* The views other than v, their bytes after the chosen one's, and the
 * line's end (the threads' and the processes' tables) */
static void other_views(const struct ma_report *r, const struct out *o,
			const struct ma_account_fig *fig, enum ma_rview v)
{
	char b[32];

	for (int k = 0; k < MA_RV_N; k++) {
		if (k == (int)v)
			continue;
		if (view_unknown(r, k))
			snprintf(b, sizeof(b), "-");
		else
			ma_fmt_bytes(fig[k].bytes, b, sizeof(b));
		fprintf(o->f, " %10s", b);
	}
	fputc('\n', o->f);
}

/* The chosen view's bytes, count and share of a thread or a process */
static void chosen_view(const struct ma_report *r,
			const struct ma_account_fig *fig, enum ma_rview v,
			char b[32], char c[32], char s[16])
{
	if (view_unknown(r, v)) {
		snprintf(b, 32, "-");
		snprintf(c, 32, "-");
		snprintf(s, 16, "-");
		return;
	}
	ma_fmt_bytes(fig[v].bytes, b, 32);
	ma_fmt_count(fig[v].count, c, 32);
	fmt_share(fig[v].bytes, r->sum[v].bytes, s, 16);
}

/* Characters (code points) in the first n bytes of UTF-8 s: the columns of
 * a name, as near as a terminal goes without a width table */
static int u8_chars(const char *s, size_t n)
{
	int k = 0;

	for (size_t i = 0; i < n && s[i]; i++)
		k += ((unsigned char)s[i] & 0xc0) != 0x80;
	return k;
}

/* Bytes of the first `chars` characters of s: a cut there never splits a
 * UTF-8 sequence */
static size_t u8_prefix(const char *s, int chars)
{
	size_t i = 0;

	for (int k = 0; s[i]; i++) {
		if (((unsigned char)s[i] & 0xc0) != 0x80 && k++ == chars)
			break;
	}
	return i;
}

/* --threads: a line per thread, every view's bytes, the chosen one first */
static int thread_table(const struct ma_report *r, const struct out *o)
{
	static const char *const head[MA_RV_N] = { "LIVE", "PEAK", "TOTAL",
						   "TEMPORARY" };
	enum ma_rview v = r->opts.view;
	uint32_t *ord = malloc((r->nthreads + 1) * sizeof(*ord));
	size_t n;
	char b[32], c[32], s[16];
	int namew = 16; /* comm's width; Python names may be longer */

	if (!ord)
		return ma_err(-ENOMEM, "out of memory");
	n = ma_report_thread_order(r, ord);
	for (size_t i = 0; i < n; i++) {
		const char *nm = r->threads[ord[i]].name;
		int l = u8_chars(nm, strlen(nm));

		if (l > namew)
			namew = l < 32 ? l : 32;
	}
	fprintf(o->f, "\n%sThreads%s by %s bytes; every view's bytes:\n",
		c_on(o, BOLD), c_off(o), ma_rview_name(v));
	fprintf(o->f, "%s%8s  %-*s %10s %8s %6s", c_on(o, DIM), "TID", namew,
		"NAME", head[v], "COUNT", "SHARE");
	for (int k = 0; k < MA_RV_N; k++)
		if (k != (int)v)
			fprintf(o->f, " %10s", head[k]);
	fprintf(o->f, "%s\n", c_off(o));
	for (size_t i = 0; i < n; i++) {
		const struct ma_rthread *t = &r->threads[ord[i]];
		/* padded and cut by characters, not bytes: 'wörker' was a
		 * column short, and a long name cut inside a character */
		size_t nb = u8_prefix(t->name, namew);

		chosen_view(r, t->fig, v, b, c, s);
		fprintf(o->f, "%8d  %.*s%*s %s%10s%s %8s %6s", t->tid, (int)nb,
			t->name, namew - u8_chars(t->name, nb), "",
			c_on(o, YEL), b, c_off(o), c, s);
		other_views(r, o, t->fig, v);
	}
	if (!n)
		fprintf(o->f, "%10s\n", "(none)");
	free(ord);
	return 0;
}

/* A capture of several processes: a line per process, every view's bytes,
 * the chosen one first (--pids: only this) */
static int proc_table(const struct ma_report *r, const struct out *o)
{
	static const char *const head[MA_RV_N] = { "LIVE", "PEAK", "TOTAL",
						   "TEMPORARY" };
	static const char *const state[] = { [MA_PROC_TRACKED] = "tracked",
					     [MA_PROC_EXITED] = "exited",
					     [MA_PROC_SKIPPED] = "skipped",
					     [MA_PROC_STOPPED] = "stopped" };
	enum ma_rview v = r->opts.view;
	uint32_t *ord = malloc((r->nprocs + 1) * sizeof(*ord));
	size_t n;
	char b[32], c[32], s[16];

	if (!ord)
		return ma_err(-ENOMEM, "out of memory");
	n = ma_report_proc_order(r, ord);
	if (!r->nprocs) {
		/* a table of nothing said only "(none)" */
		fprintf(o->f,
			"\n%sProcesses%s: one, %d (the table lists those of a "
			"capture of several: attach --children, or several "
			"PIDs)\n",
			c_on(o, BOLD), c_off(o), (int)r->meta->pid);
		free(ord);
		return 0;
	}
	fprintf(o->f, "\n%sProcesses%s by %s bytes; every view's bytes:\n",
		c_on(o, BOLD), c_off(o), ma_rview_name(v));
	fprintf(o->f, "%s%8s %8s %-8s %7s %10s %8s %6s", c_on(o, DIM), "PID",
		"PARENT", "STATE", "THREADS", head[v], "COUNT", "SHARE");
	for (int k = 0; k < MA_RV_N; k++)
		if (k != (int)v)
			fprintf(o->f, " %10s", head[k]);
	fprintf(o->f, "%s\n", c_off(o));
	for (size_t i = 0; i < n; i++) {
		const struct ma_rproc *p = &r->procs[ord[i]];

		chosen_view(r, p->fig, v, b, c, s);
		char par[16] = "-"; /* a process named, not found: no parent */

		if (p->ppid)
			snprintf(par, sizeof(par), "%d", (int)p->ppid);
		fprintf(o->f, "%8d %8s %-8s %7u %s%10s%s %8s %6s", (int)p->pid,
			par,
			p->state <= MA_PROC_STOPPED ? state[p->state] : "?",
			p->nthreads, c_on(o, YEL), b, c_off(o), c, s);
		other_views(r, o, p->fig, v);
	}
	if (!n)
		fprintf(o->f, "%10s\n", "(none)");
	free(ord);
	return 0;
}

int ma_report_text(const struct ma_report *r, FILE *f)
{
	struct out o = { .f = f, .width = r->opts.width };
	enum ma_rview v = r->opts.view;
	size_t shown = ma_report_shown(r), with_fig = 0;
	uint64_t all = r->all[v].bytes;
	char b[32], c[32], s[16], loc[1024];
	int locw;

	if (!o.width)
		o.width = ma_term_width(f);
	if (o.width < 60)
		o.width = 60;
	if (r->opts.color < 0) {
		const char *term = getenv("TERM");

		o.color = isatty(fileno(f)) && !getenv("NO_COLOR") &&
			  !(term && !strcmp(term, "dumb"));
	} else {
		o.color = r->opts.color > 0;
	}
	header(r, &o);
	if (r->opts.proc_table || (r->nprocs && !r->opts.thread_table)) {
		if (proc_table(r, &o) < 0)
			return -ENOMEM;
		if (r->opts.proc_table) {
			footnotes(r, &o);
			return ferror(f) ? ma_err(-EIO, "write error") : 0;
		}
	}
	if (r->opts.thread_table) {
		if (thread_table(r, &o) < 0)
			return -ENOMEM;
		footnotes(r, &o);
		return ferror(f) ? ma_err(-EIO, "write error") : 0;
	}
	if (view_unknown(r, v)) {
		/* not a table of zeros */
		fprintf(f, "\n%s: not known for this capture (%s)\n",
			ma_rview_name(v),
			v == MA_RV_TEMP ? "sampled: a sampled block's distance "
					  "to its free is not known"
					: "see the peak's note above");
		footnotes(r, &o);
		return ferror(f) ? ma_err(-EIO, "write error") : 0;
	}
	for (size_t i = 0; i < r->nrows; i++)
		if (r->rows[i].fig[v].bytes || r->rows[i].fig[v].count)
			with_fig++;
	ma_fmt_bytes(all, b, sizeof(b));
	ma_fmt_count(r->all[v].count, c, sizeof(c));
	{
		struct ma_para p = { .f = o.f, .width = o.width };

		fprintf(f, "\n%s", c_on(&o, BOLD));
		ma_para_piece(&p, "", "%s", ma_rview_name(v));
		fprintf(f, "%s", c_off(&o));
		ma_para_piece(&p, ": ", "%s", ma_rview_desc(v));
		ma_para_piece(&p, " ", "(%s in %s %s)", b, c,
			      v == MA_RV_LIVE || v == MA_RV_PEAK
				      ? "blocks"
				      : "allocations");
		ma_para_piece(&p, ", ", "by %s", ma_rgroup_name(r->opts.group));
		if (v == MA_RV_TEMP)
			ma_para_piece(&p, ", ", "window %u", r->opts.window);
		ma_para_piece(&p, "; ", "top %zu of %zu", shown, with_fig);
		ma_para_end(&p);
	}
	fprintf(f, "%s%10s %8s %6s  %s%s\n", c_on(&o, DIM), "BYTES", "COUNT",
		"SHARE", "LOCATION", c_off(&o));
	locw = o.width - 28;
	if (locw > (int)sizeof(loc) - 1)
		locw = sizeof(loc) - 1;
	for (size_t i = 0; i < shown; i++) {
		const struct ma_rrow *row = &r->rows[i];

		ma_fmt_bytes(row->fig[v].bytes, b, sizeof(b));
		ma_fmt_count(row->fig[v].count, c, sizeof(c));
		fmt_share(row->fig[v].bytes, all, s, sizeof(s));
		ma_fit_location(row->function, row->file, row->line, loc,
				locw < 24 ? 24 : locw);
		fprintf(f, "%s%10s%s %8s %6s  %s%s%s\n", c_on(&o, YEL), b,
			c_off(&o), c, s, i < 3 ? c_on(&o, CYAN) : "", loc,
			i < 3 ? c_off(&o) : "");
	}
	if (!shown)
		fprintf(f, "%10s\n", "(none)");
	if (shown && r->opts.callers > 0) {
		size_t n = shown < (size_t)r->opts.callers
				   ? shown
				   : (size_t)r->opts.callers;

		fprintf(f,
			"\n%sCallers of the top %zu%s (bytes in this "
			"view, share of the row):\n",
			c_on(&o, BOLD), n, c_off(&o));
		for (size_t i = 0; i < n; i++)
			if (callers(r, &o, i) < 0)
				return ma_err(-ENOMEM, "out of memory");
	}
	footnotes(r, &o);
	return ferror(f) ? ma_err(-EIO, "write error") : 0;
}
