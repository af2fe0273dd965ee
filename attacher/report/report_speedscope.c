/* SPDX-License-Identifier: MIT */
/*
 * -f speedscope: speedscope's file format (a JSON document with a shared
 * frame table and "sampled" profiles whose samples are stacks, outermost
 * frame first, with weights).  One profile per view (live, peak, total,
 * temporary), in bytes; the chosen view is the one speedscope opens; then
 * one profile per thread in the chosen view.  One sample per distinct
 * stack with a figure in that view.
 *
 * A frame is a function, (name, file, first line), whatever line of it
 * the stack was at: speedscope's sandwich view lists frames, and keyed by
 * line it listed one function once per call site.  The name carries the
 * file and the def line, so that two functions of one name stay apart.
 * A capture cut short says so in the file's and the profiles' names.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "report.h"
#include "report_util.h"

struct fkey {
	const char *function, *file;
	int line;
	uint32_t idx; /* index + 1 */
};

static uint64_t fhash(const struct ma_rnode *n)
{
	uint64_t h = (uint64_t)(uintptr_t)n->function * 0x9e3779b97f4a7c15ull;

	h ^= (uint64_t)(uintptr_t)n->file * 0xff51afd7ed558ccdull;
	h ^= (uint64_t)(uint32_t)n->firstlineno * 0xc4ceb9fe1a85ec53ull;
	return h ^ (h >> 31);
}

/* Frame index of every tree node, frames deduplicated by name */
static int frame_table(const struct ma_report *r, FILE *f, uint32_t *fidx)
{
	size_t cap = 64, nf = 0;
	struct fkey *h;

	while (cap < r->nnodes * 2)
		cap *= 2;
	h = calloc(cap, sizeof(*h));
	if (!h)
		return -ENOMEM;
	fputs("\"frames\":[", f);
	for (size_t i = 1; i < r->nnodes; i++) {
		const struct ma_rnode *n = &r->nodes[i];
		size_t j;

		for (j = fhash(n) & (cap - 1); h[j].idx;
		     j = (j + 1) & (cap - 1))
			if (h[j].function == n->function &&
			    h[j].file == n->file && h[j].line == n->firstlineno)
				break;
		if (!h[j].idx) {
			h[j] = (struct fkey){ n->function, n->file,
					      n->firstlineno, (uint32_t)++nf };
			fputs(nf > 1 ? ",{\"name\":\"" : "{\"name\":\"", f);
			ma_json_str(f, n->function);
			/* the function's def line, whatever line this first
			 * node of it is at (one with no line, -1, named the
			 * frame for every node of the function) */
			if (n->file[0] && n->firstlineno > 0) {
				fputs(" (", f);
				ma_json_str(f, n->file);
				fprintf(f, ":%d)", n->firstlineno);
			}
			fputs("\"", f);
			if (n->file[0]) {
				fputs(",\"file\":\"", f);
				ma_json_str(f, n->file);
				fputs("\"", f);
			}
			if (n->firstlineno > 0)
				fprintf(f, ",\"line\":%d", n->firstlineno);
			fputs("}", f);
		}
		fidx[i] = h[j].idx - 1;
	}
	fputs("]", f);
	free(h);
	return 0;
}

/* One sampled profile: the stacks with bytes in view v, of thread th
 * (every thread: th < 0) */
static void profile(const struct ma_report *r, FILE *f, enum ma_rview v,
		    long th, const uint32_t *fidx, uint32_t *st, bool comma)
{
	const char *cut = r->trailer ? "" : " (TRUNCATED)";
	const char *est = r->meta && r->meta->sample_mean ? " (ESTIMATES)" : "";
	/* a view the capture cannot give is an empty profile: said so in its
	 * name, not shown as nothing allocated (ma_report_view_known) */
	const char *unknown = NULL;
	uint64_t sum = 0;
	bool first = true;
	size_t n = th < 0 ? r->nnodes : r->nsamples;

	if (!ma_report_view_known(r, v))
		unknown = v == MA_RV_TEMP
				  ? "a sampled capture"
				  : "a --from range of an aggregated capture";
	fprintf(f, "%s{\"type\":\"sampled\",\"name\":\"", comma ? "," : "");
	if (th < 0) {
		fprintf(f, "%s bytes: %s", ma_rview_name(v), ma_rview_desc(v));
		if (unknown) {
			fputs(" (NOT KNOWN: ", f);
			ma_json_str(f, unknown);
			fputs(")", f);
		}
		fprintf(f, "%s%s", est, cut);
	} else {
		fprintf(f, "%s bytes of thread ", ma_rview_name(v));
		ma_json_str(f, r->threads[th].name);
		fprintf(f, " (%d)%s%s", r->threads[th].tid, est, cut);
	}
	fputs("\",\"unit\":\"bytes\",\"startValue\":0,\"samples\":[", f);
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n; i++) {
			uint32_t node =
				th < 0 ? (uint32_t)i : r->samples[i].node;
			const struct ma_rnode *nd = &r->nodes[node];
			uint64_t w = th < 0 ? nd->self[v].bytes
					    : r->samples[i].fig[v].bytes;
			int d;

			if (node == 0 || !nd->match || !w ||
			    (th >= 0 && r->samples[i].thread != (uint32_t)th))
				continue;
			if (pass) {
				fprintf(f, first ? "%llu" : ",%llu",
					(unsigned long long)w);
				first = false;
				sum += w;
				continue;
			}
			d = ma_report_stack(r, node, st, MA_REPORT_MAX_DEPTH);
			if (d > MA_REPORT_MAX_DEPTH)
				d = MA_REPORT_MAX_DEPTH;
			fputs(first ? "[" : ",[", f);
			first = false;
			for (int j = d - 1; j >= 0; j--)
				fprintf(f, j == d - 1 ? "%u" : ",%u",
					fidx[st[j]]);
			fputs("]", f);
		}
		if (!pass)
			fputs("],\"weights\":[", f);
		first = true;
	}
	fprintf(f, "],\"endValue\":%llu}", (unsigned long long)sum);
}

int ma_report_speedscope(const struct ma_report *r, FILE *f)
{
	static const int order[MA_RV_N] = { MA_RV_LIVE, MA_RV_PEAK, MA_RV_TOTAL,
					    MA_RV_TEMP };
	uint32_t *fidx = calloc(r->nnodes, sizeof(*fidx));
	uint32_t *st = malloc(MA_REPORT_MAX_DEPTH * sizeof(*st));
	uint32_t *ord = malloc((r->nthreads + 1) * sizeof(*ord));
	const char *name = strrchr(r->path, '/');
	size_t nth = 0;
	int ret = 0;

	name = name ? name + 1 : r->path;
	if (!fidx || !st || !ord) {
		ret = ma_err(-ENOMEM, "out of memory");
		goto out;
	}
	fputs("{\"$schema\":\"https://www.speedscope.app/"
	      "file-format-schema.json\",\"exporter\":\"memattach " MA_VERSION
	      "\",\"name\":\"",
	      f);
	ma_json_str(f, name);
	{
		char note[160];

		if (ma_report_estimates(r, note, sizeof(note))) {
			fputs(" (", f);
			ma_json_str(f, note);
			fputs(")", f);
		}
	}
	if (!r->trailer) {
		fputs(" (TRUNCATED: ", f);
		ma_json_str(f, r->warning ? r->warning
					  : "the capture was cut short");
		fputs(")", f);
	}
	fprintf(f, "\",\"activeProfileIndex\":%d,\"shared\":{",
		(int)r->opts.view);
	if (frame_table(r, f, fidx) < 0) {
		ret = ma_err(-ENOMEM, "out of memory");
		goto out;
	}
	fputs("},\"profiles\":[", f);
	for (int k = 0; k < MA_RV_N; k++)
		profile(r, f, (enum ma_rview)order[k], -1, fidx, st, k > 0);
	/* one per thread with bytes in the chosen view */
	if (r->opts.by_thread)
		nth = ma_report_thread_order(r, ord);
	for (size_t i = 0; i < nth; i++)
		if (r->threads[ord[i]].fig[r->opts.view].bytes)
			profile(r, f, r->opts.view, (long)ord[i], fidx, st,
				true);
	fputs("]}\n", f);
	if (ferror(f))
		ret = ma_err(-EIO, "write error");
out:
	free(fidx);
	free(st);
	free(ord);
	return ret;
}
