/* SPDX-License-Identifier: MIT */
/*
 * memattach heap PID [--top N] [--depth N] [-f text|json] [-o FILE]: a census
 * of the Python objects alive now (docs/heap.md).  The target stops only
 * while a copy of it is made (a clone); the walk runs in the copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>

#include "cli.h"
#include "clock.h"
#include "commands.h"
#include "discover.h"
#include "errors.h"
#include "heap.h"
#include "outpath.h"
#include "ptrace.h"
#include "textfit.h"

static const char *dirname_of(const char *path, char *buf, size_t len)
{
	const char *slash = strrchr(path, '/');

	snprintf(buf, len, "%.*s", slash == path ? 1 : (int)(slash - path),
		 path);
	return buf;
}

/* A count option: a whole number from 1 to 2^30 (report --top's bound),
 * else a message and nonzero.  atoi took "2x" for 2, and 99999999999
 * ran the whole census before its tables could not be allocated. */
static int positive(const char *opt, const char *arg, int *out)
{
	unsigned long long v;

	if (ma_cli_uint(arg, 1, MA_CLI_TOP_MAX, &v) == 0) {
		*out = (int)v;
		return 0;
	}
	fprintf(stderr,
		"memattach: heap: bad %s '%s': a whole number from 1 to %u\n",
		opt, arg, MA_CLI_TOP_MAX);
	return -1;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: memattach heap [options] PID\n"
		   "  What holds the memory of a running CPython process now: "
		   "where its RSS goes,\n"
		   "  every object by type, the largest objects and the top "
		   "retainers, each with\n"
		   "  the path that keeps it alive.  The process is stopped "
		   "only while it is\n"
		   "  copied (copy-on-write); the walk reads the copy.\n");
	ma_cli_wrap(f, "  -n, --top N", 24, "rows per table (default 20)");
	ma_cli_wrap(f, "  -d, --depth N", 24,
		    "steps shown per path (default 12; the middle is elided)");
	ma_cli_wrap(f, "  -f, --format FMT", 24,
		    "text (default), json, or html (a treemap of the top "
		    "retainers; to a file on a terminal)");
	ma_cli_wrap(f, "  -o, --output SNAPSHOT", 24,
		    "also keep the census in a snapshot file: 'memattach "
		    "report SNAPSHOT' renders it again, 'memattach report A "
		    "--diff B' shows what grew from A to B");
	ma_cli_wrap(f, "  -q, --quiet", 24, "no progress line on stderr");
	ma_cli_wrap(f, "      --offsets=SOURCE", 24,
		    "auto (default), dwarf, debug-offsets, table");
	ma_cli_wrap(f, "  -h, --help", 24, "this help");
}

int ma_cmd_heap(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "top", required_argument, NULL, 'n' },
		{ "depth", required_argument, NULL, 'd' },
		{ "format", required_argument, NULL, 'f' },
		{ "output", required_argument, NULL, 'o' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "offsets", required_argument, NULL, 'O' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct ma_target_opts topts = { 0 };
	struct ma_target *t = NULL;
	struct ma_heap_opts ho = { 0 };
	struct ma_hcensus_opts co = { 0 };
	struct ma_heap_graph g;
	struct ma_heap_census c = { 0 };
	struct ma_heap_live *live = NULL;
	char dir[4096], cut[384];
	int cut_short = 0;
	const char *format = "text", *output = NULL;
	char html_path[64] = "", safe[512];
	const char *why = "";
	FILE *out = stdout;
	/* the verbose line's total: the whole command, the census and the
	 * report included (g.total_ns is the snapshot's taking alone) */
	uint64_t t0 = ma_now_ns();
	json_t *doc = NULL;
	int ch, err, ret = MA_EXIT_OK;
	pid_t pid;
	struct ma_cli_args args =
		MA_CLI_ARGS("heap", argc, argv, "n:d:f:o:qh", longopts, usage);

	memset(&g, 0, sizeof(g));
	args.offsets = &topts.offsets;
	args.pid = &pid;
	while ((ch = ma_cli_opt(&args)) > 0) {
		switch (ch) {
		case 'n':
		case 'd':
			if (positive(ch == 'n' ? "--top" : "--depth", optarg,
				     ch == 'n' ? &co.top : &co.depth))
				return MA_EXIT_USAGE;
			break;
		case 'f':
			format = optarg;
			if (strcmp(format, "text") && strcmp(format, "json") &&
			    strcmp(format, "html")) {
				fprintf(stderr,
					"memattach: heap: --format: '%s' is "
					"not text, json or html\n",
					optarg);
				return MA_EXIT_USAGE;
			}
			break;
		case 'o':
			output = optarg;
			break;
		case 'q':
			ho.quiet = 1;
			break;
		}
	}
	if (args.exit >= 0)
		return args.exit;
	/* Where the snapshot goes must be writable before the census, and
	 * hold nothing it must not replace (ma_outpath_check) */
	if (output && ma_outpath_check(output, &why)) {
		fprintf(stderr, "memattach: heap: -o %s: %s\n",
			ma_ctl_safe(output, safe, sizeof(safe)), why);
		return MA_EXIT_CAPTURE;
	}
	if (output && access(*output && strrchr(output, '/')
				     ? dirname_of(output, dir, sizeof(dir))
				     : ".",
			     W_OK)) {
		fprintf(stderr, "memattach: heap: -o %s: %s\n",
			ma_ctl_safe(output, safe, sizeof(safe)),
			strerror(errno));
		return MA_EXIT_CAPTURE;
	}
	if (!strcmp(format, "html") && isatty(STDOUT_FILENO)) {
		int fd = -1;

		snprintf(html_path, sizeof(html_path), "memattach-heap-%d.html",
			 (int)pid);
		/* never through a symbolic link left in the directory */
		if (!ma_outpath_check(html_path, &why))
			fd = open(html_path,
				  O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
					  O_CLOEXEC,
				  0666);
		out = fd >= 0 ? fdopen(fd, "w") : NULL;
		if (!out) {
			fprintf(stderr, "memattach: heap: %s: %s\n", html_path,
				*why ? why : strerror(errno));
			if (fd >= 0)
				close(fd);
			return MA_EXIT_ERROR;
		}
	}
	err = ma_target_open(pid, &topts, &t);
	if (err) {
		ret = ma_cli_fail("heap");
		goto done;
	}
	/* Ctrl-C ends the census's copy before memattach leaves */
	ma_heap_catch_signals(1);
	err = ma_heap_take(t, &ho, &g, &live);
	if (err && ma_heap_interrupted()) {
		ma_err_set_exit(MA_EXIT_INTERRUPTED);
		ret = ma_cli_fail("heap");
		goto done;
	}
	if (err) {
		/* the real cause, when it is one */
		if (!ma_target_execed(t))
			ma_target_ended(t);
		ret = ma_cli_fail("heap");
		goto done;
	}
	err = ma_heap_census(&g, &co, live, &c);
	/* its cgroup short of room, the copy was ended before the census
	 * was done with it: dict keys and labels it would have read are
	 * missing; said, exit 10 */
	if (ma_heap_live_cut(live, cut, sizeof(cut)))
		cut_short = 1;
	ma_heap_live_end(live, t);
	live = NULL;
	if (ma_heap_interrupted()) {
		fprintf(stderr,
			"memattach: heap: interrupted; the census's copy "
			"ended, process %d runs on as it was\n",
			(int)pid);
		ret = MA_EXIT_INTERRUPTED;
		goto done;
	}
	if (err) {
		ma_err(err, "heap: the analysis failed: %s", strerror(-err));
		ret = ma_cli_fail("heap");
		goto done;
	}
	doc = ma_heap_doc(&g, &c);
	if (!doc) {
		ret = MA_EXIT_ERROR;
		goto done;
	}
	/* a snapshot that cannot be written (a full disk) loses only
	 * itself: the census is still shown, exit 7 says the file failed */
	if (output && ma_heap_snap_write(output, doc)) {
		ma_err_set_exit(MA_EXIT_CAPTURE);
		ret = ma_cli_fail("heap");
		output = NULL;
	}
	ma_heap_render(out, doc, format,
		       co.top > 0 ? co.top : MA_HEAP_TOP_DEFAULT, co.depth);
	if (html_path[0])
		fprintf(stderr, "memattach: heap: report written to %s\n",
			html_path);
	if (output && !ho.quiet)
		fprintf(stderr, "memattach: heap: snapshot written to %s\n",
			output);
	if (ma_cli_verbose)
		fprintf(stderr,
			"memattach: heap: every thread stopped %.3f ms, the "
			"cloning one %.3f ms (clone %.3f ms), walk "
			"%.3f s, graph %.3f s, dominators %.3f s (%llu of "
			"%llu steps), paths %.3f s, "
			"stream %llu MiB, copy private %llu MiB, taken in %.3f "
			"s, total %.3f s\n",
			g.all_stopped_ns / 1e6, g.frozen_ns / 1e6,
			g.clone_ns / 1e6, g.walk_ns / 1e9, g.read_ns / 1e9,
			c.dom_ns / 1e9, (unsigned long long)c.dom_steps,
			(unsigned long long)c.dom_budget, c.paths_ns / 1e9,
			(unsigned long long)(g.stream_bytes >> 20),
			(unsigned long long)(g.copy_peak_kb >> 10),
			g.total_ns / 1e9, (ma_now_ns() - t0) / 1e9);
	if (g.partial) {
		fprintf(stderr, "memattach: heap: partial census: %s\n",
			g.partial_why);
		if (ret == MA_EXIT_OK)
			ret = g.partial_oom ? MA_EXIT_NOMEM : MA_EXIT_PARTIAL;
	}
	if (cut_short) {
		fprintf(stderr,
			"memattach: heap: %s; the census was taken, but what "
			"it would still have read there (dict keys in the "
			"paths) may be missing\n",
			cut);
		if (ret == MA_EXIT_OK)
			ret = MA_EXIT_NOMEM;
	}
done:
	json_decref(doc);
	if (live)
		ma_heap_live_end(live, t);
	ma_heap_catch_signals(0);
	ma_heap_census_free(&c);
	ma_heap_graph_free(&g);
	if (t)
		ma_target_close(t);
	if (out != stdout && fclose(out) && ret == MA_EXIT_OK) {
		fprintf(stderr, "memattach: heap: writing %s: %s\n", html_path,
			strerror(errno));
		ret = MA_EXIT_CAPTURE;
	}
	return ret;
}
