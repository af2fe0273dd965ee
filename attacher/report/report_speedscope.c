/* SPDX-License-Identifier: MIT */
/*
 * -f speedscope: speedscope's file format (a JSON document with a shared
 * frame table and "sampled" profiles whose samples are stacks, outermost
 * frame first, with weights).  One profile per view (live, peak, total,
 * temporary), in bytes; the chosen view is the one speedscope opens.  One
 * sample per distinct stack with a figure in that view.
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
	h ^= (uint64_t)(uint32_t)n->line * 0xc4ceb9fe1a85ec53ull;
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
			    h[j].file == n->file && h[j].line == n->line)
				break;
		if (!h[j].idx) {
			h[j] = (struct fkey){ n->function, n->file, n->line,
					      (uint32_t)++nf };
			fputs(nf > 1 ? ",{\"name\":\"" : "{\"name\":\"", f);
			ma_json_str(f, n->function);
			fputs("\"", f);
			if (n->file[0]) {
				fputs(",\"file\":\"", f);
				ma_json_str(f, n->file);
				fputs("\"", f);
			}
			if (n->line >= 0)
				fprintf(f, ",\"line\":%d", n->line);
			fputs("}", f);
		}
		fidx[i] = h[j].idx - 1;
	}
	fputs("]", f);
	free(h);
	return 0;
}

int ma_report_speedscope(const struct ma_report *r, FILE *f)
{
	static const int order[MA_RV_N] = { MA_RV_LIVE, MA_RV_PEAK, MA_RV_TOTAL,
					    MA_RV_TEMP };
	uint32_t *fidx = calloc(r->nnodes, sizeof(*fidx));
	uint32_t *st = malloc(MA_REPORT_MAX_DEPTH * sizeof(*st));
	const char *name = strrchr(r->path, '/');
	int ret = 0;

	name = name ? name + 1 : r->path;
	if (!fidx || !st) {
		ret = ma_err(-ENOMEM, "out of memory");
		goto out;
	}
	fputs("{\"$schema\":\"https://www.speedscope.app/"
	      "file-format-schema.json\",\"exporter\":\"memattach " MA_VERSION
	      "\",\"name\":\"",
	      f);
	ma_json_str(f, name);
	fprintf(f, "\",\"activeProfileIndex\":%d,\"shared\":{",
		(int)r->opts.view);
	if (frame_table(r, f, fidx) < 0) {
		ret = ma_err(-ENOMEM, "out of memory");
		goto out;
	}
	fputs("},\"profiles\":[", f);
	for (int k = 0; k < MA_RV_N; k++) {
		enum ma_rview v = (enum ma_rview)order[k];
		bool first = true;

		fprintf(f,
			"%s{\"type\":\"sampled\",\"name\":\"%s bytes: %s\","
			"\"unit\":\"bytes\",\"startValue\":0,\"endValue\":%llu,"
			"\"samples\":[",
			k ? "," : "", ma_rview_name(v), ma_rview_desc(v),
			(unsigned long long)r->sum[v].bytes);
		for (size_t i = 1; i < r->nnodes; i++) {
			const struct ma_rnode *n = &r->nodes[i];
			int d;

			if (!n->match || !n->self[v].bytes)
				continue;
			d = ma_report_stack(r, (uint32_t)i, st,
					    MA_REPORT_MAX_DEPTH);
			if (d > MA_REPORT_MAX_DEPTH)
				d = MA_REPORT_MAX_DEPTH;
			fputs(first ? "[" : ",[", f);
			first = false;
			for (int j = d - 1; j >= 0; j--)
				fprintf(f, j == d - 1 ? "%u" : ",%u",
					fidx[st[j]]);
			fputs("]", f);
		}
		fputs("],\"weights\":[", f);
		first = true;
		for (size_t i = 1; i < r->nnodes; i++) {
			const struct ma_rnode *n = &r->nodes[i];

			if (!n->match || !n->self[v].bytes)
				continue;
			fprintf(f, first ? "%llu" : ",%llu",
				(unsigned long long)n->self[v].bytes);
			first = false;
		}
		fputs("]}", f);
	}
	fputs("]}\n", f);
	if (ferror(f))
		ret = ma_err(-EIO, "write error");
out:
	free(fidx);
	free(st);
	return ret;
}
