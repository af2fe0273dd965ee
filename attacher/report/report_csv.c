/* SPDX-License-Identifier: MIT */
/*
 * -f csv: one line per row of the chosen grouping, every figure of every
 * view, RFC 4180 quoting; the stack (outermost first, frames joined by
 * " > ") of the row's representative.  For spreadsheets and scripts.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "report.h"
#include "report_util.h"

static void csv_stack(const struct ma_report *r, FILE *f, uint32_t node)
{
	uint32_t st[256];
	int d = ma_report_stack(r, node, st, 256);
	size_t cap = 256, len = 0;
	char *buf = malloc(cap), name[1024];

	if (!buf)
		return;
	buf[0] = '\0';
	if (d > 256)
		d = 256;
	for (int i = d - 1; i >= 0; i--) {
		size_t l;

		ma_report_frame_name(&r->nodes[st[i]], name, sizeof(name));
		l = strlen(name);
		if (len + l + 4 >= cap) {
			char *p;

			while (len + l + 4 >= cap)
				cap *= 2;
			p = realloc(buf, cap);
			if (!p)
				break;
			buf = p;
		}
		len += (size_t)snprintf(buf + len, cap - len, "%s%s",
					i == d - 1 ? "" : " > ", name);
	}
	ma_csv_field(f, buf);
	free(buf);
}

/* ",bytes,count" of view k, or ",," when the capture cannot give it
 * (ma_report_view_known: not the 0 the empty view leaves) */
static void csv_fig(const struct ma_report *r, FILE *f, int k,
		    const struct ma_account_fig *x)
{
	if (!ma_report_view_known(r, (enum ma_rview)k))
		fputs(",,", f);
	else
		fprintf(f, ",%llu,%llu", (unsigned long long)x->bytes,
			(unsigned long long)x->count);
}

/* --threads: one line per thread */
static int csv_threads(const struct ma_report *r, FILE *f)
{
	uint32_t *ord = malloc((r->nthreads + 1) * sizeof(*ord));
	size_t n;

	if (!ord)
		return ma_err(-ENOMEM, "out of memory");
	n = ma_report_thread_order(r, ord);
	fputs("tid,name,live_bytes,live_count,peak_bytes,peak_count,"
	      "total_bytes,total_count,temporary_bytes,temporary_count\n",
	      f);
	for (size_t i = 0; i < n; i++) {
		const struct ma_rthread *t = &r->threads[ord[i]];

		fprintf(f, "%d,", t->tid);
		ma_csv_field(f, t->name);
		for (int k = 0; k < MA_RV_N; k++)
			csv_fig(r, f, k, &t->fig[k]);
		putc('\n', f);
	}
	free(ord);
	return ferror(f) ? ma_err(-EIO, "write error") : 0;
}

int ma_report_csv(const struct ma_report *r, FILE *f)
{
	enum ma_rview v = r->opts.view;
	uint64_t all = r->all[v].bytes;
	char line[16];

	if (r->opts.thread_table)
		return csv_threads(r, f);

	fputs("rank,function,file,line,bytes,count,share,live_bytes,"
	      "live_count,peak_bytes,peak_count,total_bytes,total_count,"
	      "temporary_bytes,temporary_count,stack\n",
	      f);
	for (size_t i = 0;
	     i < r->nrows && (r->opts.top <= 0 || i < (size_t)r->opts.top);
	     i++) {
		const struct ma_rrow *row = &r->rows[i];

		fprintf(f, "%zu,", i + 1);
		ma_csv_field(f, row->function ? row->function : "");
		putc(',', f);
		ma_csv_field(f, row->file);
		snprintf(line, sizeof(line), "%d", row->line);
		fprintf(f, ",%s", line);
		csv_fig(r, f, (int)v, &row->fig[v]);
		if (ma_report_view_known(r, v))
			fprintf(f, ",%.6f",
				all ? (double)row->fig[v].bytes / (double)all
				    : 0.0);
		else
			fputs(",", f);
		for (int k = 0; k < MA_RV_N; k++)
			csv_fig(r, f, k, &row->fig[k]);
		putc(',', f);
		csv_stack(r, f, row->rep);
		putc('\n', f);
	}
	return ferror(f) ? ma_err(-EIO, "write error") : 0;
}
