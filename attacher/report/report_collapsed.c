/* SPDX-License-Identifier: MIT */
/*
 * -f collapsed: the folded-stacks format of flamegraph.pl and the many
 * tools that read it: one line per distinct stack with a figure in the
 * view, frames outermost first joined by ';', a space, the bytes.  Frames
 * are "function (file:line)"; a ';' inside a name becomes ':' so lines
 * stay parseable.  --filter and --thread apply; --top does not (a flame
 * graph wants every stack).
 */
#include <errno.h>
#include <stdlib.h>

#include "errors.h"
#include "report.h"
#include "report_util.h"

int ma_report_collapsed(const struct ma_report *r, FILE *f)
{
	enum ma_rview v = r->opts.view;

	for (size_t i = 1; i < r->nnodes; i++) {
		const struct ma_rnode *n = &r->nodes[i];

		if (!n->match || !n->self[v].bytes)
			continue;
		ma_collapsed_stack(r, f, (uint32_t)i);
		fprintf(f, " %llu\n", (unsigned long long)n->self[v].bytes);
	}
	return ferror(f) ? ma_err(-EIO, "write error") : 0;
}
