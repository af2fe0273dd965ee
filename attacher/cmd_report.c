/* SPDX-License-Identifier: MIT */
/*
 * memattach report FILE: turn a capture into answers.  The reader streams
 * the capture through the accounting (memory bounded by distinct stacks and
 * live blocks, not by events), then prints one view.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "account.h"
#include "capture.h"
#include "cli.h"
#include "commands.h"
#include "errors.h"

struct report_opts {
	const char *file;
	const char *format; /* text, json */
	enum ma_account_view group;
	int view; /* 0 live, 1 total, 2 peak */
	int top;
	int stack_depth;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: memattach report [options] FILE\n"
		"  -f, --format text|json   output format (default text)\n"
		"      --view live|total|peak  what to rank by (default live)\n"
		"      --group stack|line|function|file  (default line)\n"
		"      --top N              rows (default 20)\n");
}

static int load(const char *file, struct ma_account **acc,
		struct ma_capture_reader **rd)
{
	struct ma_event ev;
	int err, r;

	err = ma_capture_open(file, rd);
	if (err)
		return err;
	err = ma_account_new(acc);
	if (err)
		return err;
	while ((r = ma_capture_next(*rd, &ev)) > 0)
		ma_account_feed(*acc, &ev);
	return r < 0 ? r : 0;
}

static const struct ma_account_fig *pick(const struct ma_account_row *row,
					 int view)
{
	return view == 0 ? &row->live : view == 1 ? &row->total : &row->peak;
}

static json_t *stack_json(const struct ma_account *acc, uint32_t node,
			  int depth)
{
	struct ma_frame fr[128];
	json_t *a = json_array();
	int n = ma_account_node_frames(acc, node, fr,
				       depth < 128 ? depth : 128);

	for (int i = 0; i < n; i++) {
		json_t *o = json_object();

		json_object_set_new(o, "function", json_string(fr[i].function));
		json_object_set_new(o, "file", json_string(fr[i].file));
		json_object_set_new(o, "line", json_integer(fr[i].line));
		json_array_append_new(a, o);
	}
	return a;
}

static json_t *fig_json(const struct ma_account_fig *f)
{
	json_t *o = json_object();

	json_object_set_new(o, "bytes", json_integer((json_int_t)f->bytes));
	json_object_set_new(o, "count", json_integer((json_int_t)f->count));
	return o;
}

static void print_json(const struct report_opts *o,
		       const struct ma_account *acc,
		       const struct ma_capture_reader *rd,
		       const struct ma_account_row *rows, size_t n)
{
	const struct ma_capture_meta *m = ma_capture_meta(rd);
	const struct ma_capture_trailer *tr = ma_capture_trailer(rd);
	const struct ma_account_totals *t = ma_account_totals(acc);
	json_t *root = json_object(), *jt = json_object(), *jr = json_array();

	json_object_set_new(root, "pid", json_integer(m->pid));
	json_object_set_new(root, "python",
			    json_string(m->py_version ? m->py_version : ""));
	json_object_set_new(root, "complete", json_boolean(tr && tr->complete));
	json_object_set_new(root, "truncated", json_boolean(tr == NULL));
	json_object_set_new(jt, "allocations",
			    json_integer((json_int_t)t->allocs));
	json_object_set_new(jt, "allocated_bytes",
			    json_integer((json_int_t)t->alloc_bytes));
	json_object_set_new(jt, "frees", json_integer((json_int_t)t->frees));
	json_object_set_new(jt, "live_bytes",
			    json_integer((json_int_t)t->live_bytes));
	json_object_set_new(jt, "live_count",
			    json_integer((json_int_t)t->live_count));
	json_object_set_new(jt, "peak_bytes",
			    json_integer((json_int_t)t->peak_bytes));
	json_object_set_new(jt, "unknown_frees",
			    json_integer((json_int_t)t->unknown_frees));
	json_object_set_new(jt, "lost_records",
			    json_integer((json_int_t)(tr ? tr->lost_records
							 : t->lost_records)));
	json_object_set_new(jt, "threads", json_integer(t->threads));
	json_object_set_new(root, "totals", jt);
	for (size_t i = 0; i < n && (int)i < o->top; i++) {
		json_t *r = json_object();

		json_object_set_new(r, "function",
				    rows[i].function
					    ? json_string(rows[i].function)
					    : json_null());
		json_object_set_new(r, "file", json_string(rows[i].file));
		json_object_set_new(r, "line", json_integer(rows[i].line));
		json_object_set_new(r, "live", fig_json(&rows[i].live));
		json_object_set_new(r, "total", fig_json(&rows[i].total));
		json_object_set_new(r, "peak", fig_json(&rows[i].peak));
		json_object_set_new(
			r, "stack",
			stack_json(acc, rows[i].node, o->stack_depth));
		json_array_append_new(jr, r);
	}
	json_object_set_new(root, "rows", jr);
	json_dumpf(root, stdout, JSON_INDENT(1) | JSON_ENSURE_ASCII);
	putchar('\n');
	json_decref(root);
}

static void print_text(const struct report_opts *o,
		       const struct ma_account *acc,
		       const struct ma_capture_reader *rd,
		       const struct ma_account_row *rows, size_t n)
{
	static const char *const vname[] = { "still live", "allocated",
					     "live at the peak" };
	const struct ma_capture_trailer *tr = ma_capture_trailer(rd);
	const struct ma_account_totals *t = ma_account_totals(acc);
	uint64_t all = o->view == 0   ? t->live_bytes
		       : o->view == 1 ? t->alloc_bytes
				      : t->peak_bytes;
	char b[32], c[32];

	printf("Top %d locations by bytes %s (of %s):\n", o->top,
	       vname[o->view], (ma_fmt_bytes(all, b, sizeof(b)), b));
	for (size_t i = 0; i < n && (int)i < o->top; i++) {
		const struct ma_account_fig *f = pick(&rows[i], o->view);

		if (!f->bytes)
			break;
		ma_fmt_bytes(f->bytes, b, sizeof(b));
		ma_fmt_count(f->count, c, sizeof(c));
		printf("%10s %8s %5.1f%%  ", b, c,
		       all ? 100.0 * (double)f->bytes / (double)all : 0.0);
		if (o->group == MA_VIEW_FILE)
			printf("%s\n", rows[i].file);
		else
			printf("%s (%s:%d)\n", rows[i].function, rows[i].file,
			       rows[i].line);
	}
	if (!tr)
		printf("\nThe capture is truncated (memattach was killed?): "
		       "figures cover what was written.\n");
	if (t->unknown_frees)
		printf("\n%llu frees of memory allocated before the attach "
		       "were "
		       "ignored.\n",
		       (unsigned long long)t->unknown_frees);
}

int ma_cmd_report(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "view", required_argument, NULL, 'V' },
		{ "group", required_argument, NULL, 'G' },
		{ "top", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct report_opts o = { .format = "text",
				 .group = MA_VIEW_LINE,
				 .top = 20,
				 .stack_depth = 64 };
	struct ma_account *acc = NULL;
	struct ma_capture_reader *rd = NULL;
	struct ma_account_row *rows = NULL;
	size_t n = 0;
	int c, err, ret = MA_EXIT_OK;

	optind = 1;
	while ((c = getopt_long(argc, argv, "f:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			o.format = optarg;
			break;
		case 'V':
			o.view = !strcmp(optarg, "live")    ? 0
				 : !strcmp(optarg, "total") ? 1
				 : !strcmp(optarg, "peak")  ? 2
							    : -1;
			break;
		case 'G':
			o.group = !strcmp(optarg, "stack")  ? MA_VIEW_STACK
				  : !strcmp(optarg, "line") ? MA_VIEW_LINE
				  : !strcmp(optarg, "function")
					  ? MA_VIEW_FUNCTION
				  : !strcmp(optarg, "file")
					  ? MA_VIEW_FILE
					  : (enum ma_account_view) - 1;
			break;
		case 'T':
			o.top = atoi(optarg);
			break;
		case 'h':
			usage(stdout);
			return MA_EXIT_OK;
		default:
			usage(stderr);
			return MA_EXIT_USAGE;
		}
	}
	if (optind != argc - 1 || o.view < 0 || (int)o.group < 0 || o.top < 1 ||
	    (strcmp(o.format, "text") && strcmp(o.format, "json"))) {
		usage(stderr);
		return MA_EXIT_USAGE;
	}
	o.file = argv[optind];
	err = load(o.file, &acc, &rd);
	if (err) {
		ret = ma_cli_fail("report");
		goto out;
	}
	static const enum ma_account_sort sorts[] = { MA_SORT_LIVE_BYTES,
						      MA_SORT_TOTAL_BYTES,
						      MA_SORT_PEAK_BYTES };

	err = ma_account_view(acc, o.group, sorts[o.view], &rows, &n);
	if (err) {
		ret = ma_cli_fail("report");
		goto out;
	}
	if (!strcmp(o.format, "json"))
		print_json(&o, acc, rd, rows, n);
	else
		print_text(&o, acc, rd, rows, n);
out:
	free(rows);
	ma_account_free(acc);
	if (rd)
		ma_capture_reader_close(rd);
	return ret;
}
