/* SPDX-License-Identifier: MIT */
/*
 * -f html: one self-contained file, nothing fetched when it is opened.
 * The page (attacher/report/assets/report.{html,css,js}, embedded in the
 * binary at build time) shows an interactive flame graph (zoom, search,
 * hover details), a switch between the live, peak, total and temporary
 * views, the top locations and a memory-over-time plot (RSS and tracked
 * live bytes from the samples).
 *
 * The data is one JSON document inside a <script type="application/json">
 * element, with '<', '>' and '&' escaped (ma_json_str), so no text of the
 * capture can end the element or inject markup.  The frame tree is written
 * in columns (parent, function, file, line, then eight figures per node:
 * bytes and count for each view), strings once in a table: compact, and
 * quick to parse.  --filter keeps the matching stacks and their callers;
 * every view is in the file, whatever --view says (it is the one shown
 * first).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "report.h"
#include "report_util.h"

extern const char ma_asset_html_start[], ma_asset_html_end[];
extern const char ma_asset_css_start[], ma_asset_css_end[];
extern const char ma_asset_js_start[], ma_asset_js_end[];

static void jkey_str(FILE *f, const char *key, const char *val, bool comma)
{
	fprintf(f, "%s\"%s\":", comma ? "," : "", key);
	if (!val) {
		fputs("null", f);
		return;
	}
	putc('"', f);
	ma_json_str(f, val);
	putc('"', f);
}

static void jkey_u64(FILE *f, const char *key, uint64_t v, bool comma)
{
	fprintf(f, "%s\"%s\":%llu", comma ? "," : "", key,
		(unsigned long long)v);
}

static void series(const struct ma_report *r, FILE *f, bool *time_x)
{
	const struct ma_rseries *s =
		r->by_time.n >= 2 ? &r->by_time : &r->by_index;
	static const char *const cols[] = { "x", "rss", "live", "max" };

	*time_x = s == &r->by_time;
	fprintf(f, ",\"series\":{\"unit\":\"%s\"", *time_x ? "time" : "event");
	for (int c = 0; c < 4; c++) {
		fprintf(f, ",\"%s\":[", cols[c]);
		for (size_t i = 0; i < s->n; i++) {
			const struct ma_rpoint *p = &s->p[i];
			uint64_t v = c == 0   ? (*time_x ? p->t_ns : p->index)
				     : c == 1 ? p->rss
				     : c == 2 ? p->live
					      : p->live_max;

			fprintf(f, i ? ",%llu" : "%llu", (unsigned long long)v);
		}
		putc(']', f);
	}
	putc('}', f);
}

/* The threads, by ma_report.threads index: [tid, name] */
static void threads(const struct ma_report *r, FILE *f)
{
	fputs(",\"threads\":[", f);
	for (size_t i = 0; i < r->nthreads; i++) {
		fprintf(f, "%s[%d,\"", i ? "," : "", r->threads[i].tid);
		ma_json_str(f, r->threads[i].name ? r->threads[i].name : "?");
		fputs("\"]", f);
	}
	putc(']', f);
}

/*
 * The figures of each (tree node, thread) of a matching stack: node (as a
 * difference from the previous one: they are sorted), thread, then bytes
 * and count for each view.  The page sums them per node, for all threads
 * or the one chosen.
 */
static void samples(const struct ma_report *r, const uint32_t *map, FILE *f)
{
	uint32_t prev = 0;
	bool first = true;

	fputs(",\"samples\":{\"n\":[", f);
	for (size_t i = 0; i < r->nsamples; i++) {
		const struct ma_rsample *s = &r->samples[i];
		uint32_t k;

		if (!r->nodes[s->node].match || !map[s->node])
			continue;
		k = map[s->node] - 1;
		fprintf(f, first ? "%u" : ",%u", k - prev);
		prev = k;
		first = false;
	}
	fputs("],\"t\":[", f);
	first = true;
	for (size_t i = 0; i < r->nsamples; i++) {
		const struct ma_rsample *s = &r->samples[i];

		if (!r->nodes[s->node].match || !map[s->node])
			continue;
		fprintf(f, first ? "%u" : ",%u", s->thread);
		first = false;
	}
	fputs("],\"v\":[", f);
	first = true;
	for (size_t i = 0; i < r->nsamples; i++) {
		const struct ma_rsample *s = &r->samples[i];

		if (!r->nodes[s->node].match || !map[s->node])
			continue;
		for (int v = 0; v < MA_RV_N; v++) {
			fprintf(f, first ? "%llu,%llu" : ",%llu,%llu",
				(unsigned long long)s->fig[v].bytes,
				(unsigned long long)s->fig[v].count);
			first = false;
		}
	}
	fputs("]}", f);
}

/* The timeline (report_timeline.h): bucket bounds, then per span its node
 * (difference from the previous), thread, buckets, bytes and count */
static void timeline(const struct ma_report *r, const uint32_t *map, FILE *f)
{
	static const char *const cols[] = { "n", "t", "a", "f", "y", "c" };
	uint32_t prev = 0;

	fputs(",\"timeline\":{\"b\":[", f);
	for (size_t i = 0; r->tl_bounds && i <= r->tl_nbound; i++)
		fprintf(f, i ? ",%llu" : "%llu",
			(unsigned long long)r->tl_bounds[i]);
	fprintf(f, "],\"approx\":%s", r->tl_approx ? "true" : "false");
	fprintf(f, ",\"bythread\":%s", r->tl_bythread ? "true" : "false");
	for (int c = 0; c < 6; c++) {
		bool first = true;

		fprintf(f, ",\"%s\":[", cols[c]);
		prev = 0;
		for (size_t i = 0; i < r->nspans; i++) {
			const struct ma_rspan *s = &r->spans[i];
			unsigned long long v;

			if (!map[s->node])
				continue;
			switch (c) {
			case 0:
				v = map[s->node] - 1 - prev;
				prev = map[s->node] - 1;
				break;
			case 1: /* -1: all threads (!tl_bythread) */
				fprintf(f, first ? "%d" : ",%d",
					s->thread == UINT32_MAX
						? -1
						: (int)s->thread);
				first = false;
				continue;
			case 2:
				v = s->ab;
				break;
			case 3:
				v = s->fb;
				break;
			case 4:
				v = s->bytes;
				break;
			default:
				v = s->count;
				break;
			}
			fprintf(f, first ? "%llu" : ",%llu", v);
			first = false;
		}
		putc(']', f);
	}
	putc('}', f);
}

static int data(const struct ma_report *r, FILE *f)
{
	const struct ma_capture_meta *m = r->meta;
	const struct ma_capture_trailer *tr = r->trailer;
	const struct ma_account_totals *t = &r->t;
	uint32_t *map = calloc(r->nnodes, sizeof(*map)); /* new index + 1 */
	uint32_t *keep = malloc(r->nnodes * sizeof(*keep));
	struct ma_strtab st = { 0 };
	size_t nk = 0;
	char when[64];
	bool time_x;
	int ret = 0;

	if (!map || !keep) {
		ret = -ENOMEM;
		goto out;
	}
	/* Stacks with a figure (and matching --filter), and their callers:
	 * parents come before children, so one backward pass marks callers
	 * and a forward pass numbers the nodes in order */
	for (size_t i = r->nnodes; i-- > 1;) {
		const struct ma_rnode *n = &r->nodes[i];
		bool fig = false;

		for (int v = 0; v < MA_RV_N; v++)
			fig |= n->self[v].bytes || n->self[v].count;
		if ((n->match && fig) || map[i])
			map[n->parent] = 1;
		if (n->match && fig)
			map[i] = 1;
	}
	map[0] = 1;
	for (size_t i = 0; i < r->nnodes; i++)
		if (map[i]) {
			keep[nk] = (uint32_t)i;
			map[i] = (uint32_t)++nk;
		}

	fputs("{\"version\":\"" MA_VERSION "\"", f);
	jkey_str(f, "view", ma_rview_name(r->opts.view), true);
	fprintf(f, ",\"window\":%u", r->opts.window);
	jkey_str(f, "filter", r->opts.filter, true);
	jkey_str(f, "thread",
		 r->thread_filtered ? (r->threads_selected ? r->thread_desc
							   : "(none matched)")
				    : NULL,
		 true);
	fputs(",\"meta\":{", f);
	jkey_str(f, "file", r->path, false);
	fprintf(f, ",\"pid\":%d", m->pid);
	jkey_str(f, "python", m->py_version ? m->py_version : "", true);
	jkey_str(f, "exe", m->exe ? m->exe : "", true);
	jkey_str(f, "cmdline", m->cmdline ? m->cmdline : "", true);
	jkey_u64(f, "start_ns", m->start_wall_ns, true);
	jkey_u64(f, "duration_ns", tr ? tr->duration_ns : t->last_t_ns, true);
	fprintf(f, ",\"complete\":%s,\"truncated\":%s",
		tr && tr->complete ? "true" : "false", tr ? "false" : "true");
	jkey_str(f, "warning", r->warning, true);
	{
		char note[160];

		ma_report_estimates(r, note, sizeof(note));
		jkey_str(f, "estimates", note[0] ? note : NULL, true);
	}
	fputs("},\"totals\":{", f);
	jkey_u64(f, "allocations", t->allocs, false);
	jkey_u64(f, "allocated_bytes", t->alloc_bytes, true);
	jkey_u64(f, "frees", t->frees, true);
	jkey_u64(f, "live_bytes", t->live_bytes, true);
	jkey_u64(f, "live_count", t->live_count, true);
	jkey_u64(f, "temporary_bytes", r->all[MA_RV_TEMP].bytes, true);
	jkey_u64(f, "temporary_count", r->all[MA_RV_TEMP].count, true);
	jkey_u64(f, "events", t->events, true);
	jkey_u64(f, "lost_records", tr ? tr->lost_records : t->lost_records,
		 true);
	fputs("}", f);
	jkey_u64(f, "unknown_frees", r->unknown_frees, true);
	fprintf(f, ",\"unknown_whole\":%s",
		r->unknown_from_trailer ? "true" : "false");
	fprintf(f, ",\"aggregated\":%s", t->agg_events ? "true" : "false");

	/* strings, then the tree */
	for (size_t k = 0; k < nk; k++) {
		const struct ma_rnode *n = &r->nodes[keep[k]];

		if (ma_strtab_idx(&st, n->function) < 0 ||
		    ma_strtab_idx(&st, n->file) < 0) {
			ret = -ENOMEM;
			goto out;
		}
	}
	fputs(",\"strings\":[", f);
	for (size_t i = 0; i < st.n; i++) {
		fputs(i ? ",\"" : "\"", f);
		ma_json_str(f, st.s[i]);
		putc('"', f);
	}
	fputs("],\"nodes\":{\"p\":[", f);
	for (size_t k = 0; k < nk; k++)
		fprintf(f, k ? ",%u" : "%u",
			k ? map[r->nodes[keep[k]].parent] - 1 : 0);
	fputs("],\"f\":[", f);
	for (size_t k = 0; k < nk; k++)
		fprintf(f, k ? ",%lld" : "%lld",
			(long long)ma_strtab_idx(&st,
						 r->nodes[keep[k]].function));
	fputs("],\"s\":[", f);
	for (size_t k = 0; k < nk; k++)
		fprintf(f, k ? ",%lld" : "%lld",
			(long long)ma_strtab_idx(&st, r->nodes[keep[k]].file));
	fputs("],\"l\":[", f);
	for (size_t k = 0; k < nk; k++)
		fprintf(f, k ? ",%d" : "%d", r->nodes[keep[k]].line);
	fputs("]}", f);
	threads(r, f);
	samples(r, map, f);
	timeline(r, map, f);

	series(r, f, &time_x);
	ma_report_peak_when(r, when, sizeof(when));
	fputs(",\"peak\":{", f);
	jkey_u64(f, "bytes", t->peak_bytes, false);
	jkey_u64(f, "count", t->peak_count, true);
	jkey_u64(f, "event", t->peak_index, true);
	jkey_str(f, "when", when, true);
	if (!t->peak_bytes || (time_x && !t->samples) || r->peak_unknown ||
	    r->peak_moment_unknown)
		fputs(",\"x\":null", f);
	else if (time_x)
		jkey_u64(f, "x",
			 t->peak_before_ns
				 ? (t->peak_after_ns + t->peak_before_ns) / 2
				 : t->peak_after_ns,
			 true);
	else
		jkey_u64(f, "x", t->peak_index, true);
	/* the views the capture cannot give (ma_report_view_known): said,
	 * not shown as 0 */
	fprintf(f, "},\"unknown\":{\"peak\":%s,\"temporary\":%s}}",
		ma_report_view_known(r, MA_RV_PEAK) ? "false" : "true",
		ma_report_view_known(r, MA_RV_TEMP) ? "false" : "true");
out:
	free(map);
	free(keep);
	ma_strtab_free(&st);
	return ret < 0 ? ma_err(ret, "out of memory") : 0;
}

/* Copy the template, replacing @@CSS@@, @@DATA@@ and @@JS@@ */
int ma_report_html(const struct ma_report *r, FILE *f)
{
	const char *p = ma_asset_html_start, *end = ma_asset_html_end;
	int ret = 0;

	while (p < end && ret == 0) {
		const char *at = memmem(p, (size_t)(end - p), "@@", 2);
		const char *close;
		size_t name;

		if (!at) {
			fwrite(p, 1, (size_t)(end - p), f);
			break;
		}
		fwrite(p, 1, (size_t)(at - p), f);
		close = memmem(at + 2, (size_t)(end - at - 2), "@@", 2);
		if (!close) {
			fwrite(at, 1, (size_t)(end - at), f);
			break;
		}
		name = (size_t)(close - at - 2);
		if (name == 3 && !memcmp(at + 2, "CSS", 3))
			fwrite(ma_asset_css_start, 1,
			       (size_t)(ma_asset_css_end - ma_asset_css_start),
			       f);
		else if (name == 2 && !memcmp(at + 2, "JS", 2))
			fwrite(ma_asset_js_start, 1,
			       (size_t)(ma_asset_js_end - ma_asset_js_start),
			       f);
		else if (name == 4 && !memcmp(at + 2, "DATA", 4))
			ret = data(r, f);
		else
			fwrite(at, 1, (size_t)(close + 2 - at), f);
		p = close + 2;
	}
	if (ret == 0 && ferror(f))
		ret = ma_err(-EIO, "write error");
	return ret;
}
