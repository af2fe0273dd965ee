/* SPDX-License-Identifier: MIT */
/*
 * -f stats: the capture's allocations as numbers rather than places, what
 * memray's `stats` and heaptrack_print give: how many came from each
 * allocator (pymalloc, PyMem, PyMem_Raw, malloc, mmap) and their bytes,
 * a histogram of their sizes split by allocator, the locations that
 * allocate most often (by count, whatever the bytes), and the largest
 * single allocations with their thread, moment and line.
 *
 * Every figure counts every allocation the capture holds (after
 * --thread); --filter and --view do not apply, --group and --top choose
 * the rows of the locations table.  The figures come from the report
 * model (ma_report.stats, collected while the capture is read).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "ma_config.h"
#include "report.h"
#include "textfit.h"
#include "units.h"

static void share(uint64_t part, uint64_t all, char *buf, size_t len)
{
	snprintf(buf, len, "%.1f%%",
		 all ? 100.0 * (double)part / (double)all : 0.0);
}

static void by_allocator(const struct ma_report *r, FILE *f)
{
	const struct ma_rstats *st = &r->stats;
	uint64_t all = 0;
	char c[32], b[32], s[16], m[32];

	for (int a = 0; a < MA_RA_N; a++)
		all += st->by_alloc[a].bytes;
	fprintf(f, "\nAllocations by allocator:\n");
	fprintf(f, "  %-10s %10s %10s %6s %10s\n", "ALLOCATOR", "COUNT",
		"BYTES", "SHARE", "MEAN");
	for (int a = 0; a < MA_RA_N; a++) {
		const struct ma_account_fig *x = &st->by_alloc[a];

		if (!x->count)
			continue;
		ma_fmt_count(x->count, c, sizeof(c));
		ma_fmt_bytes(x->bytes, b, sizeof(b));
		share(x->bytes, all, s, sizeof(s));
		ma_fmt_bytes(x->bytes / x->count, m, sizeof(m));
		fprintf(f, "  %-10s %10s %10s %6s %10s\n",
			ma_ralloc_name((enum ma_ralloc)a), c, b, s, m);
	}
	if (st->by_alloc[MA_RA_UNKNOWN].count)
		fprintf(f, "  (unknown: counted by the payload without their "
			   "stack nor allocator, its\n   key table full)\n");
}

static void histogram(const struct ma_report *r, FILE *f)
{
	const struct ma_rstats *st = &r->stats;
	int lo = MA_RSTATS_BUCKETS, hi = -1;
	bool used[MA_RA_N] = { false };
	char c[32], b[32], le[40];

	for (int a = 0; a < MA_RA_N; a++)
		for (int k = 0; k < MA_RSTATS_BUCKETS; k++)
			if (st->hist[a][k].count) {
				used[a] = true;
				lo = k < lo ? k : lo;
				hi = k > hi ? k : hi;
			}
	if (hi < 0)
		return;
	fprintf(f, "\nAllocation sizes (number of allocations; bytes of "
		   "all):\n");
	fprintf(f, "  %12s", "SIZE");
	for (int a = 0; a < MA_RA_N; a++)
		if (used[a])
			fprintf(f, " %10s", ma_ralloc_name((enum ma_ralloc)a));
	fprintf(f, " %10s\n", "BYTES");
	for (int k = lo; k <= hi; k++) {
		uint64_t bytes = 0;

		if (k == MA_RSTATS_BUCKETS - 1) {
			ma_fmt_bytes(1ull << (k - 1), b, sizeof(b));
			snprintf(le, sizeof(le), "> %s", b);
		} else {
			ma_fmt_bytes(k ? 1ull << k : 1, b, sizeof(b));
			snprintf(le, sizeof(le), "<= %s", b);
		}
		fprintf(f, "  %12s", le);
		for (int a = 0; a < MA_RA_N; a++) {
			if (!used[a])
				continue;
			ma_fmt_count(st->hist[a][k].count, c, sizeof(c));
			fprintf(f, " %10s", st->hist[a][k].count ? c : "-");
			bytes += st->hist[a][k].bytes;
		}
		ma_fmt_bytes(bytes, b, sizeof(b));
		fprintf(f, " %10s\n", b);
	}
}

static const struct ma_report *count_sort_r;

static int count_cmp(const void *pa, const void *pb)
{
	const struct ma_rrow *a = &count_sort_r->rows[*(const size_t *)pa];
	const struct ma_rrow *b = &count_sort_r->rows[*(const size_t *)pb];

	if (a->fig[MA_RV_TOTAL].count != b->fig[MA_RV_TOTAL].count)
		return a->fig[MA_RV_TOTAL].count > b->fig[MA_RV_TOTAL].count
			       ? -1
			       : 1;
	/* ties: the rows' own order (by the view, then by name) */
	return *(const size_t *)pa < *(const size_t *)pb ? -1 : 1;
}

static int by_count(const struct ma_report *r, FILE *f, int width)
{
	size_t *ord = malloc((r->nrows + 1) * sizeof(*ord));
	size_t n = 0, top = r->opts.top > 0 ? (size_t)r->opts.top : r->nrows;
	char c[32], b[32], loc[1024];
	int locw = width - 26;

	if (!ord)
		return ma_err(-ENOMEM, "out of memory");
	for (size_t i = 0; i < r->nrows; i++)
		if (r->rows[i].fig[MA_RV_TOTAL].count)
			ord[n++] = i;
	count_sort_r = r; /* one report at a time */
	if (n)
		qsort(ord, n, sizeof(*ord), count_cmp);
	if (locw > (int)sizeof(loc) - 1)
		locw = sizeof(loc) - 1;
	fprintf(f,
		"\nLocations by number of allocations (by %s; top %zu of "
		"%zu):\n",
		ma_rgroup_name(r->opts.group), n < top ? n : top, n);
	fprintf(f, "  %10s %10s  %s\n", "COUNT", "BYTES", "LOCATION");
	for (size_t i = 0; i < n && i < top; i++) {
		const struct ma_rrow *w = &r->rows[ord[i]];

		ma_fmt_count(w->fig[MA_RV_TOTAL].count, c, sizeof(c));
		ma_fmt_bytes(w->fig[MA_RV_TOTAL].bytes, b, sizeof(b));
		ma_fit_location(w->function, w->file, w->line, loc,
				locw < 24 ? 24 : locw);
		fprintf(f, "  %10s %10s  %s\n", c, b, loc);
	}
	free(ord);
	return 0;
}

static void largest(const struct ma_report *r, FILE *f, int width)
{
	const struct ma_rstats *st = &r->stats;
	char b[32], th[48], when[32], loc[1024];
	int locw = width - 62;

	if (!st->nbig)
		return;
	if (locw > (int)sizeof(loc) - 1)
		locw = sizeof(loc) - 1;
	fprintf(f, "\nLargest single allocations:\n");
	fprintf(f, "  %10s %-9s %-20s %9s  %s\n", "SIZE", "ALLOCATOR", "THREAD",
		"AFTER", "LOCATION");
	for (size_t i = 0; i < st->nbig; i++) {
		const struct ma_rbig *g = &st->big[i];
		const struct ma_rthread *t = &r->threads[g->thread];
		const struct ma_rnode *n = &r->nodes[g->node];

		ma_fmt_bytes(g->size, b, sizeof(b));
		snprintf(th, sizeof(th), "%.12s (%d)", t->name, t->tid);
		snprintf(when, sizeof(when), "%.1f s", (double)g->t_ns / 1e9);
		ma_fit_location(n->function, n->file, n->line, loc,
				locw < 24 ? 24 : locw);
		fprintf(f, "  %10s %-9s %-20s %9s  %s\n", b,
			ma_ralloc_name(g->alloc), th, when, loc);
	}
}

int ma_report_stats(const struct ma_report *r, FILE *f)
{
	const struct ma_capture_trailer *tr = r->trailer;
	const char *name = strrchr(r->path, '/');
	int width = r->opts.width ? r->opts.width : ma_term_width(f);
	char a[32], b[32], note[160];

	if (width < 60)
		width = 60;
	name = name ? name + 1 : r->path;
	ma_fmt_count(r->t.allocs, a, sizeof(a));
	ma_fmt_bytes(r->t.alloc_bytes, b, sizeof(b));
	fprintf(f, "%s: pid %d, %.1f s tracked, %s; %s allocations, %s%s\n",
		name, r->meta->pid,
		(double)(tr ? tr->duration_ns : r->t.last_t_ns) / 1e9,
		!tr	       ? "TRUNCATED"
		: tr->complete ? "complete"
			       : "incomplete",
		a, b,
		r->pid_filtered	     ? " (only the processes asked for)"
		: r->thread_filtered ? " (only the threads asked for)"
				     : "");
	/* a sampled capture's counts and bytes are estimates: said under
	 * the first line, as the text report does */
	if (ma_report_estimates(r, note, sizeof(note)))
		fprintf(f, "  %s\n", note);
	/* --from/--to apply here too: say so, as the text report does */
	if (r->ranged)
		fprintf(f, "  only the range %.1f s - %.1f s\n",
			(double)r->range_start_ns / 1e9,
			(double)(r->range_end_ns ? r->range_end_ns
						 : (tr ? tr->duration_ns
						       : r->t.last_t_ns)) /
				1e9);
	by_allocator(r, f);
	/* its mmap regions stay events, sized one by one: what the
	 * histogram and the largest allocations below hold */
	if ((r->meta->flags & MA_TRACK_AGG) && r->t.mmaps)
		fprintf(f,
			"\n(an aggregated capture, memattach's default, keeps "
			"sums per stack: the size\n histogram and the largest "
			"allocations below are of its mmap regions only;\n "
			"attach with --every-event for every allocation's)\n");
	else if (r->meta->flags & MA_TRACK_AGG)
		fprintf(f,
			"\n(an aggregated capture, memattach's default, keeps "
			"sums per stack:\n no size histogram and no largest "
			"allocations; attach with --every-event\n for "
			"those)\n");
	histogram(r, f);
	if (by_count(r, f, width) < 0)
		return -ENOMEM;
	largest(r, f, width);
	if (!tr)
		fprintf(f, "\nwarning: %s\n",
			r->warning ? r->warning : "the capture is truncated");
	return ferror(f) ? ma_err(-EIO, "write error") : 0;
}
