/* SPDX-License-Identifier: MIT */
/*
 * -f json: the totals, the peak, the footnotes and the top rows with their
 * four figures and a representative stack.  The shape of the first version
 * (pid, python, complete, truncated, totals{...}, rows[{function, file,
 * line, live, total, peak, stack}]) is kept: the e2e tests and scripts read
 * it; fields were only added.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "report.h"

static json_t *jint(uint64_t v)
{
	return json_integer((json_int_t)v);
}

static json_t *fig_json(const struct ma_account_fig *f)
{
	json_t *o = json_object();

	json_object_set_new(o, "bytes", jint(f->bytes));
	json_object_set_new(o, "count", jint(f->count));
	return o;
}

/*
 * A peak figure of a thread, a process, a row or the sums: null when the
 * capture cannot give the peak (report.h, peak_unknown), as the header's,
 * not the 0 the empty peak view leaves in them.
 */
static json_t *peak_json(const struct ma_report *r,
			 const struct ma_account_fig *f)
{
	return r->peak_unknown ? json_null() : fig_json(f);
}

/* The same for a temporary figure: null for a sampled capture */
static json_t *temp_json(const struct ma_report *r,
			 const struct ma_account_fig *f)
{
	return ma_report_view_known(r, MA_RV_TEMP) ? fig_json(f) : json_null();
}

/* jansson rejects invalid UTF-8, and names from a capture are only
 * bytes: such a name is shown with '?' for its non-ASCII bytes */
static json_t *jstr(const char *s)
{
	json_t *j = json_string(s);
	char *c;

	if (j)
		return j;
	c = strdup(s);
	if (!c)
		return json_null();
	for (char *p = c; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(c);
	free(c);
	return j ? j : json_null();
}

static json_t *stack_json(const struct ma_report *r, uint32_t node)
{
	json_t *a = json_array();
	int max = r->opts.stack_depth > 0 ? r->opts.stack_depth : 64;
	uint32_t *st = malloc(sizeof(*st) * (size_t)max);
	int d = st ? ma_report_stack(r, node, st, max) : 0;

	/* the whole stack unless a depth was asked for: 64 frames at most
	 * cut deeper stacks silently (two rows of --group stack could show
	 * the same frames) */
	if (d > max && r->opts.stack_depth <= 0) {
		uint32_t *all = realloc(st, sizeof(*st) * (size_t)d);

		if (all) {
			st = all;
			max = d;
			d = ma_report_stack(r, node, st, max);
		}
	}

	for (int i = 0; i < d && i < max; i++) {
		const struct ma_rnode *n = &r->nodes[st[i]];
		json_t *o = json_object();

		json_object_set_new(o, "function", jstr(n->function));
		json_object_set_new(o, "file", jstr(n->file));
		json_object_set_new(o, "line", json_integer(n->line));
		json_array_append_new(a, o);
	}
	free(st);
	return a;
}

static json_t *totals_json(const struct ma_report *r)
{
	const struct ma_account_totals *t = &r->t;
	const struct ma_capture_trailer *tr = r->trailer;
	json_t *jt = json_object();

	json_object_set_new(jt, "allocations", jint(t->allocs));
	json_object_set_new(jt, "allocated_bytes", jint(t->alloc_bytes));
	json_object_set_new(jt, "frees", jint(t->frees));
	json_object_set_new(jt, "live_bytes", jint(t->live_bytes));
	json_object_set_new(jt, "live_count", jint(t->live_count));
	/* null: the capture cannot give it (report.h, peak_unknown) */
	json_object_set_new(jt, "peak_bytes",
			    r->peak_unknown ? json_null()
					    : jint(t->peak_bytes));
	json_object_set_new(jt, "peak_count",
			    r->peak_unknown ? json_null()
					    : jint(t->peak_count));
	json_object_set_new(jt, "temporary_bytes",
			    ma_report_view_known(r, MA_RV_TEMP)
				    ? jint(r->all[MA_RV_TEMP].bytes)
				    : json_null());
	json_object_set_new(jt, "temporary_count",
			    ma_report_view_known(r, MA_RV_TEMP)
				    ? jint(r->all[MA_RV_TEMP].count)
				    : json_null());
	json_object_set_new(jt, "unknown_frees", jint(r->unknown_frees));
	json_object_set_new(jt, "lost_records",
			    jint(tr ? tr->lost_records : t->lost_records));
	/* stacks cut at --max-frames (their outer frames are missing): the
	 * trailer's count, the whole capture's, else the payload's STATS */
	json_object_set_new(
		jt, "truncated_stacks",
		jint(tr ? tr->stack_truncated : t->stack_truncated));
	json_object_set_new(jt, "aggregated", json_boolean(t->agg_events > 0));
	json_object_set_new(jt, "untracked_blocks", jint(t->dropped));
	json_object_set_new(jt, "untracked_bytes", jint(t->dropped_bytes));
	json_object_set_new(jt, "events_without_stack", jint(t->keys_full));
	/* allocations given a shorter stack: the code or node table was
	 * full */
	json_object_set_new(jt, "shortened_stacks", jint(t->node_table_full));
	json_object_set_new(jt, "threads", json_integer(t->threads));
	json_object_set_new(jt, "events", jint(t->events));
	json_object_set_new(jt, "reallocs", jint(t->reallocs));
	json_object_set_new(jt, "mmaps", jint(t->mmaps));
	json_object_set_new(jt, "stacks", jint(r->nnodes - 1));
	json_object_set_new(jt, "damaged_ids", jint(r->bad_ids));
	json_object_set_new(jt, "duration_ns",
			    jint(tr ? tr->duration_ns : t->last_t_ns));
	return jt;
}

/* The statistics (report_stats.c): by allocator, sizes, the largest */
static json_t *stats_json(const struct ma_report *r)
{
	const struct ma_rstats *st = &r->stats;
	json_t *o = json_object(), *by = json_object(), *h = json_array();
	json_t *big = json_array();

	for (int a = 0; a < MA_RA_N; a++)
		json_object_set_new(by, ma_ralloc_name((enum ma_ralloc)a),
				    fig_json(&st->by_alloc[a]));
	for (int k = 0; k < MA_RSTATS_BUCKETS; k++) {
		json_t *b = NULL;

		for (int a = 0; a < MA_RA_N; a++) {
			if (!st->hist[a][k].count)
				continue;
			if (!b) {
				b = json_object();
				/* the bucket's largest size (none for the
				 * last: everything above) */
				json_object_set_new(
					b, "le",
					k == MA_RSTATS_BUCKETS - 1
						? json_null()
						: jint(k ? 1ull << k : 1));
			}
			json_object_set_new(b,
					    ma_ralloc_name((enum ma_ralloc)a),
					    fig_json(&st->hist[a][k]));
		}
		if (b)
			json_array_append_new(h, b);
	}
	for (size_t i = 0; i < st->nbig; i++) {
		const struct ma_rbig *g = &st->big[i];
		const struct ma_rnode *n = &r->nodes[g->node];
		json_t *e = json_object();

		json_object_set_new(e, "size", jint(g->size));
		json_object_set_new(e, "allocator",
				    json_string(ma_ralloc_name(g->alloc)));
		json_object_set_new(e, "tid",
				    json_integer(r->threads[g->thread].tid));
		json_object_set_new(e, "thread",
				    jstr(r->threads[g->thread].name));
		json_object_set_new(e, "event", jint(g->index));
		json_object_set_new(e, "after_ns", jint(g->t_ns));
		json_object_set_new(e, "function", jstr(n->function));
		json_object_set_new(e, "file", jstr(n->file));
		json_object_set_new(e, "line", json_integer(n->line));
		json_array_append_new(big, e);
	}
	json_object_set_new(o, "by_allocator", by);
	json_object_set_new(o, "histogram", h);
	json_object_set_new(o, "largest", big);
	return o;
}

/* Each thread with its figures (by_thread; else only tid and name) */
static json_t *threads_json(const struct ma_report *r)
{
	json_t *a = json_array();
	uint32_t *ord = malloc((r->nthreads + 1) * sizeof(*ord));
	size_t n = ord ? ma_report_thread_order(r, ord) : 0;

	for (size_t i = 0; i < n; i++) {
		const struct ma_rthread *t = &r->threads[ord[i]];
		json_t *o = json_object();

		json_object_set_new(o, "tid", json_integer(t->tid));
		json_object_set_new(o, "name", jstr(t->name));
		json_object_set_new(o, "comm", jstr(t->comm));
		json_object_set_new(o, "index",
				    t->index == UINT32_MAX
					    ? json_null()
					    : json_integer(t->index));
		json_object_set_new(o, "selected", json_boolean(t->selected));
		if (r->nprocs)
			json_object_set_new(o, "pid", json_integer(t->pid));
		if (r->opts.by_thread) {
			json_object_set_new(o, "live",
					    fig_json(&t->fig[MA_RV_LIVE]));
			json_object_set_new(o, "peak",
					    peak_json(r, &t->fig[MA_RV_PEAK]));
			json_object_set_new(o, "total",
					    fig_json(&t->fig[MA_RV_TOTAL]));
			json_object_set_new(o, "temporary",
					    temp_json(r, &t->fig[MA_RV_TEMP]));
		}
		json_array_append_new(a, o);
	}
	free(ord);
	return a;
}

/* A capture of several processes: each process with its figures */
static json_t *procs_json(const struct ma_report *r)
{
	static const char *const state[] = { [MA_PROC_TRACKED] = "tracked",
					     [MA_PROC_EXITED] = "exited",
					     [MA_PROC_SKIPPED] = "skipped",
					     [MA_PROC_STOPPED] = "stopped" };
	json_t *a = json_array();
	uint32_t *ord = malloc((r->nprocs + 1) * sizeof(*ord));
	size_t n = ord ? ma_report_proc_order(r, ord) : 0;

	for (size_t i = 0; i < n; i++) {
		const struct ma_rproc *p = &r->procs[ord[i]];
		json_t *o = json_object();

		json_object_set_new(o, "pid", json_integer(p->pid));
		json_object_set_new(o, "parent", json_integer(p->ppid));
		json_object_set_new(o, "state",
				    json_string(p->state <= MA_PROC_STOPPED
							? state[p->state]
							: "?"));
		json_object_set_new(o, "threads", json_integer(p->nthreads));
		json_object_set_new(o, "live", fig_json(&p->fig[MA_RV_LIVE]));
		json_object_set_new(o, "peak",
				    peak_json(r, &p->fig[MA_RV_PEAK]));
		json_object_set_new(o, "total", fig_json(&p->fig[MA_RV_TOTAL]));
		json_object_set_new(o, "temporary",
				    temp_json(r, &p->fig[MA_RV_TEMP]));
		json_array_append_new(a, o);
	}
	free(ord);
	return a;
}

int ma_report_json(const struct ma_report *r, FILE *f)
{
	const struct ma_capture_meta *m = r->meta;
	const struct ma_capture_trailer *tr = r->trailer;
	const struct ma_account_totals *t = &r->t;
	json_t *root = json_object(), *jr = json_array(), *p, *flt;
	int ret = 0;

	json_object_set_new(root, "pid", json_integer(m->pid));
	json_object_set_new(root, "python",
			    jstr(m->py_version ? m->py_version : ""));
	json_object_set_new(root, "exe", jstr(m->exe ? m->exe : ""));
	json_object_set_new(root, "cmdline",
			    jstr(m->cmdline ? m->cmdline : ""));
	json_object_set_new(root, "complete", json_boolean(tr && tr->complete));
	json_object_set_new(root, "truncated", json_boolean(tr == NULL));
	/* null for a complete capture: the key is always there */
	json_object_set_new(root, "warning",
			    r->warning ? jstr(r->warning) : json_null());
	{
		char note[160];
		uint64_t mean = ma_report_estimates(r, note, sizeof(note));
		json_t *sm = mean ? json_object() : json_null();

		/* every figure of a sampled capture is an estimate */
		if (mean) {
			json_object_set_new(sm, "mean_bytes", jint(mean));
			json_object_set_new(sm, "estimates", json_true());
			json_object_set_new(sm, "note", jstr(note));
		}
		json_object_set_new(root, "sampled", sm);
	}
	json_object_set_new(root, "view",
			    json_string(ma_rview_name(r->opts.view)));
	json_object_set_new(root, "group",
			    json_string(ma_rgroup_name(r->opts.group)));
	json_object_set_new(root, "temporary_window",
			    json_integer(r->opts.window));
	/* what the figures are of (ma_report_window_counted) */
	json_object_set_new(root, "temporary_window_counted",
			    json_integer(ma_report_window_counted(r)));
	json_object_set_new(root, "totals", totals_json(r));

	p = json_object();
	{
		bool no_when = r->peak_unknown || r->peak_moment_unknown;

		json_object_set_new(p, "bytes",
				    r->peak_unknown ? json_null()
						    : jint(t->peak_bytes));
		json_object_set_new(p, "count",
				    r->peak_unknown ? json_null()
						    : jint(t->peak_count));
		json_object_set_new(p, "event",
				    no_when ? json_null()
					    : jint(t->peak_index));
		json_object_set_new(p, "after_ns",
				    no_when ? json_null()
					    : jint(t->peak_after_ns));
		json_object_set_new(p, "before_ns",
				    !no_when && t->peak_before_ns
					    ? jint(t->peak_before_ns)
					    : json_null());
		json_object_set_new(p, "note",
				    r->peak_note ? jstr(r->peak_note)
						 : json_null());
	}
	json_object_set_new(root, "peak", p);

	flt = json_object();
	json_object_set_new(flt, "thread",
			    r->thread_filtered ? jstr(r->thread_desc)
					       : json_null());
	json_object_set_new(flt, "threads_matched",
			    json_integer(r->threads_selected));
	json_object_set_new(flt, "pid",
			    r->pid_filtered ? jstr(r->pid_desc) : json_null());
	json_object_set_new(flt, "filter",
			    r->opts.filter ? jstr(r->opts.filter)
					   : json_null());
	json_object_set_new(root, "filters", flt);
	p = json_object();
	for (int v = 0; v < MA_RV_N; v++)
		json_object_set_new(p, ma_rview_name((enum ma_rview)v),
				    v == MA_RV_PEAK   ? peak_json(r, &r->sum[v])
				    : v == MA_RV_TEMP ? temp_json(r, &r->sum[v])
						      : fig_json(&r->sum[v]));
	json_object_set_new(root, "sums", p);
	json_object_set_new(root, "unknown_frees_whole_capture",
			    json_boolean(r->unknown_from_trailer));
	if (r->ranged) {
		p = json_object();
		json_object_set_new(p, "from_ns", jint(r->opts.from_ns));
		json_object_set_new(p, "to_ns",
				    r->opts.to_ns ? jint(r->opts.to_ns)
						  : json_null());
		json_object_set_new(p, "start_ns", jint(r->range_start_ns));
		json_object_set_new(p, "end_ns",
				    r->range_end_ns ? jint(r->range_end_ns)
						    : json_null());
		json_object_set_new(p, "aggregated_sums_from_ns",
				    r->range_agg_late_ns
					    ? jint(r->range_agg_late_ns)
					    : json_null());
		/* --to: the rows' and totals' moment (0: no round before
		 * the cut), null when every figure is as of end_ns */
		json_object_set_new(p, "aggregated_sums_to_ns",
				    r->range_agg_cut ? jint(r->range_agg_end_ns)
						     : json_null());
		json_object_set_new(root, "range", p);
	} else {
		json_object_set_new(root, "range", json_null());
	}
	json_object_set_new(root, "threads", threads_json(r));
	json_object_set_new(root, "processes", procs_json(r));
	json_object_set_new(root, "stats", stats_json(r));

	for (size_t i = 0;
	     i < r->nrows && (r->opts.top <= 0 || i < (size_t)r->opts.top);
	     i++) {
		const struct ma_rrow *row = &r->rows[i];
		json_t *o = json_object();
		uint64_t all = r->all[r->opts.view].bytes;

		json_object_set_new(o, "function",
				    row->function ? jstr(row->function)
						  : json_null());
		json_object_set_new(o, "file", jstr(row->file));
		json_object_set_new(o, "line", json_integer(row->line));
		json_object_set_new(o, "live", fig_json(&row->fig[MA_RV_LIVE]));
		json_object_set_new(o, "total",
				    fig_json(&row->fig[MA_RV_TOTAL]));
		json_object_set_new(o, "peak",
				    peak_json(r, &row->fig[MA_RV_PEAK]));
		json_object_set_new(o, "temporary",
				    temp_json(r, &row->fig[MA_RV_TEMP]));
		json_object_set_new(
			o, "share",
			json_real(all ? (double)row->fig[r->opts.view].bytes /
						  (double)all
				      : 0.0));
		json_object_set_new(o, "stack", stack_json(r, row->rep));
		json_array_append_new(jr, o);
	}
	json_object_set_new(root, "rows", jr);
	if (json_dumpf(root, f, JSON_INDENT(1) | JSON_ENSURE_ASCII) < 0)
		ret = ma_err(-EIO, "writing JSON failed");
	else
		fputc('\n', f);
	json_decref(root);
	return ret;
}
