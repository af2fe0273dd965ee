/* SPDX-License-Identifier: MIT */
/*
 * memattach report FILE: turn a capture into answers.  The capture is
 * streamed once into the report model (report.h: live, peak, total and
 * temporary figures per stack, memory bounded by distinct stacks and live
 * blocks), then rendered in one format.  docs/reports.md has the details.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "capture.h"
#include "cli.h"
#include "heap.h"
#include "holder.h"
#include "outpath.h"
#include "commands.h"
#include "errors.h"
#include "report.h"
#include "textfit.h"
#include "units.h"

/* Append to the string in buf (printf-style), cut at len */
static void __attribute__((format(printf, 3, 4)))
cat(char *buf, size_t len, const char *fmt, ...)
{
	size_t n = strlen(buf);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf + n, len - n, fmt, ap);
	va_end(ap);
}

static bool file_format(const struct ma_report_format *r)
{
	return !r->terminal;
}

static bool diff_format(const struct ma_report_format *r)
{
	return r->diff != NULL;
}

static void usage(FILE *f)
{
	char fmt[256] = "", out[256] = "write to OUT (", diff[256] = "";
	size_t k = 0;

	for (const struct ma_report_format *r = ma_report_formats; r->name;
	     r++) /* the first is the default */
		cat(fmt, sizeof(fmt),
		    r == ma_report_formats ? "%s (default)" : ", %s", r->name);
	ma_report_format_names(out, sizeof(out), file_format, " and ");
	cat(out, sizeof(out), " default to");
	for (const struct ma_report_format *r = ma_report_formats; r->name; r++)
		if (!r->terminal)
			cat(out, sizeof(out), "%sFILE%s", k++ ? " / " : " ",
			    r->ext);
	cat(out, sizeof(out), " on a terminal)");
	cat(diff, sizeof(diff), "what grew from FILE to B.cap (");
	ma_report_format_names(diff, sizeof(diff), diff_format, ", ");
	cat(diff, sizeof(diff), ")");

	fprintf(f, "usage: memattach report [options] FILE\n");
	ma_cli_wrap(f, "  -f, --format FMT", 27, fmt);
	ma_cli_wrap(f, "  -o, --output OUT", 27, out);
	fprintf(f,
		"      --view VIEW          live (default), peak, total, "
		"temporary\n"
		"      --group G            line (default), stack, function, "
		"file\n"
		"      --top N              rows (default 20; 0 = all)\n"
		"      --thread TID|NAME    only allocations of this thread "
		"(repeatable)\n"
		"      --threads            list the threads with their "
		"figures "
		"(text, csv,\n"
		"                           json)\n"
		"      --pid PID            a capture of several processes "
		"(attach\n"
		"                           --children): only this process "
		"(repeatable)\n"
		"      --pids               list the processes with their "
		"figures (text)\n"
		"      --from S, --to S     only what was allocated from S "
		"seconds, figures\n"
		"                           as of S seconds (since the capture "
		"started)\n"
		"      --filter TEXT        only stacks with a frame whose "
		"function or\n"
		"                           file contains TEXT\n"
		"      --temporary-window N temporary = freed by its thread "
		"within N\n"
		"                           further allocations (default %d)\n",
		MA_REPORT_DEF_WINDOW);
	ma_cli_wrap(f, "      --diff B.cap", 27, diff);
	fprintf(f, "      --force              --diff: also files of "
		   "different programs\n"
		   "      --diff-to T2         with --to T1: what grew in FILE "
		   "from T1 to T2\n");
	fprintf(f,
		"      --callers N          text: caller trees of the top N "
		"rows (default 3)\n"
		"      --width N            text: columns (default: terminal, "
		"$COLUMNS, 100)\n"
		"      --color WHEN         text: auto (default), always, "
		"never\n"
		"      --no-color           text: the same as --color never\n"
		"  FILE may be a heap snapshot (memattach heap -o): its report "
		"takes\n"
		"  --format (text, json, html), --output, --top and --diff "
		"SNAPSHOT\n");
}

/*
 * The option a getopt value stands for, as the user may have typed it
 * ("--group"), to name it in a message: argv[optind - 1] is the value
 * when it came as a separate argument.
 */
static void opt_name(const struct option *longopts, int c, char *buf,
		     size_t len)
{
	for (const struct option *o = longopts; o->name; o++)
		if (o->val == c) {
			snprintf(buf, len, "--%s", o->name);
			return;
		}
	snprintf(buf, len, "-%c", c);
}

/* getopt values of the long options without a short one */
enum report_opt {
	OPT_VIEW = 256,
	OPT_GROUP,
	OPT_TOP,
	OPT_THREAD,
	OPT_FILTER,
	OPT_WINDOW,
	OPT_DIFF,
	OPT_CALLERS,
	OPT_WIDTH,
	OPT_COLOR,
	OPT_NOCOLOR,
	OPT_THREADS,
	OPT_PID,
	OPT_PIDS,
	OPT_FORCE,
	OPT_FROM,
	OPT_TO,
	OPT_DIFF_TO,
};

/* What an option takes, for its error message */
static const char *allowed(int c, char *buf, size_t len)
{
	switch (c) {
	case 'f':
		snprintf(buf, len, " (");
		ma_report_format_names(buf, len, NULL, " or ");
		cat(buf, len, ")");
		return buf;
	case OPT_VIEW:
		return " (live, peak, total or temporary)";
	case OPT_GROUP:
		return " (line, stack, function or file)";
	case OPT_COLOR:
		return " (auto, always or never)";
	case OPT_THREAD:
	case OPT_FILTER:
		return " (must not be empty)";
	/* ma_cli_secs' bounds, said: 1e30 was refused without its limit */
	case OPT_FROM:
		return " (seconds since the capture started, at most 1e9)";
	case OPT_TO:
	case OPT_DIFF_TO:
		return " (seconds since the capture started, more than 0 and "
		       "at most 1e9)";
	case OPT_TOP:
		snprintf(buf, len, " (a whole number from 0 to %u)",
			 MA_CLI_TOP_MAX);
		return buf;
	case OPT_WINDOW:
		snprintf(buf, len, " (a whole number from 0 to %u)",
			 MA_REPORT_MAX_WINDOW);
		return buf;
	case OPT_CALLERS:
		return " (a whole number from 0 to 1000)";
	case OPT_WIDTH:
		return " (a whole number from 0 to 10000)";
	case OPT_PID:
		snprintf(buf, len, " (a process ID; at most %d --pid)",
			 MA_REPORT_MAX_PIDS);
		return buf;
	default:
		return " (a whole number)";
	}
}

/* FILE.cap -> FILE<ext> in the current directory */
static char *default_output(const char *capture,
			    const struct ma_report_format *fmt)
{
	const char *base = strrchr(capture, '/');
	size_t len;
	char *out;

	base = base ? base + 1 : capture;
	len = strlen(base);
	if (len > 4 && !strcmp(base + len - 4, ".cap"))
		len -= 4;
	if (asprintf(&out, "%.*s%s", (int)len, base, fmt->ext) < 0)
		return NULL;
	return out;
}

/*
 * The output file, written through OUT.tmpPID and renamed at the end, so
 * that a failed report never leaves half a file under the name asked
 * for.  It is created before the capture is read: a report of a large
 * capture into a directory that does not exist fails at once.
 */
struct output {
	const char *path; /* NULL: stdout */
	char *tmp;
	FILE *f;
};

/* Whether path is the same file as one of the inputs: the report,
 * renamed over it, would replace the capture it was made from */
static bool is_input(const char *path, const char *in1, const char *in2)
{
	struct stat so, si;

	if (stat(path, &so))
		return false;
	for (int k = 0; k < 2; k++) {
		const char *in = k ? in2 : in1;

		if (in && !stat(in, &si) && si.st_dev == so.st_dev &&
		    si.st_ino == so.st_ino)
			return true;
	}
	return false;
}

static int output_open(struct output *o, const char *path, const char *in1,
		       const char *in2)
{
	const char *why;
	int err, fd;

	memset(o, 0, sizeof(*o));
	o->path = path;
	if (!path) {
		o->f = stdout;
		return 0;
	}
	err = ma_outpath_check(path, &why);
	if (!err && is_input(path, in1, in2)) {
		err = -EEXIST;
		why = "it is the file being reported; choose another path";
	}
	if (err) {
		ma_err(err, "cannot write %s: %s", path, why);
		ma_err_set_exit(MA_EXIT_CAPTURE);
		return err;
	}
	if (asprintf(&o->tmp, "%s.tmp%d", path, (int)getpid()) < 0) {
		o->tmp = NULL;
		return ma_err(-ENOMEM, "out of memory");
	}
	/* a new file: never through a link planted at that name */
	fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  0666);
	o->f = fd >= 0 ? fdopen(fd, "wb") : NULL;
	if (!o->f) {
		err = -errno;
		if (fd >= 0) {
			close(fd);
			unlink(o->tmp);
		}
		free(o->tmp);
		o->tmp = NULL;
		ma_err(err, "cannot write %s: %s", path, strerror(-err));
		ma_err_set_exit(MA_EXIT_CAPTURE);
		return err;
	}
	return 0;
}

/* Close; rename into place when ok, else remove.  Returns ret or the
 * first write error. */
static int output_close(struct output *o, int ret)
{
	if (!o->f)
		return ret;
	errno = 0;
	if (fflush(o->f) != 0 || ferror(o->f)) {
		int e = errno ? errno : EIO;

		/* a renderer's own "write error" gets the file and the
		 * cause (a full disk: ENOSPC) */
		if (ret == 0 || ret == -EIO)
			ret = ma_err(-e, "writing %s: %s",
				     o->path ? o->path : "the report",
				     strerror(e));
		/* an output that cannot be written is exit 7, standard
		 * output's too (closed: `>&-`, a full disk); said once */
		if (ma_err_exit() <= MA_EXIT_ERROR)
			ma_err_set_exit(MA_EXIT_CAPTURE);
		if (!o->path)
			clearerr(o->f);
	}
	if (o->path) {
		if (fclose(o->f) != 0 && ret == 0)
			ret = ma_err(-errno, "writing %s: %s", o->path,
				     strerror(errno));
		if (ret == 0 && rename(o->tmp, o->path) < 0)
			ret = ma_err(-errno, "cannot write %s: %s", o->path,
				     strerror(errno));
		if (ret < 0)
			unlink(o->tmp);
		if (ret < 0 && ma_err_exit() <= MA_EXIT_ERROR)
			ma_err_set_exit(MA_EXIT_CAPTURE);
	}
	free(o->tmp);
	o->f = NULL;
	o->tmp = NULL;
	return ret;
}

/*
 * Progress while a capture is read, on a terminal only: one line on
 * stderr, rewritten in place at most 10 times a second and erased when
 * the capture is read (a 100 M-event capture takes seconds).
 */
struct progress {
	const char *name;
	uint64_t last_ns;
	bool shown;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void progress(void *arg, uint64_t read, uint64_t size, uint64_t events)
{
	struct progress *p = arg;
	uint64_t now = now_ns();
	char ev[32];

	if (p->shown && now - p->last_ns < 100000000ull)
		return;
	p->last_ns = now;
	p->shown = true;
	ma_fmt_count(events, ev, sizeof(ev));
	fprintf(stderr, "\r\033[Kmemattach: reading %s: %3d%% (%s events)",
		p->name, size ? (int)(100 * read / size) : 0, ev);
	fflush(stderr);
}

static void progress_end(struct progress *p)
{
	if (p->shown) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
		p->shown = false;
	}
}

static int load(const char *path, struct ma_report_opts *o, struct progress *pr,
		struct ma_report **out)
{
	int ret;

	if (pr) {
		const char *base = strrchr(path, '/');

		pr->name = base ? base + 1 : path;
		o->progress = progress;
		o->progress_arg = pr;
	}
	ret = ma_report_load(path, o, out);
	if (pr)
		progress_end(pr);
	o->progress = NULL;
	return ret;
}

static const char *nz(const char *s)
{
	return s ? s : "";
}

/*
 * --diff compares two captures of one program: of two different ones
 * (another executable or command line) every row would "grow" from
 * nothing.  Refused unless --force.
 */
static int same_program(const struct ma_report *a, const struct ma_report *b)
{
	char wa[32], wb[32];

	if (!strcmp(nz(a->meta->exe), nz(b->meta->exe)) &&
	    !strcmp(nz(a->meta->cmdline), nz(b->meta->cmdline)))
		return 0;
	snprintf(wa, sizeof(wa), "pid %d", a->meta->pid);
	snprintf(wb, sizeof(wb), "pid %d", b->meta->pid);
	return ma_diff_programs_differ(
		&(struct ma_diff_side){
			.path = a->path, .who = wa, .cmd = a->meta->cmdline },
		&(struct ma_diff_side){
			.path = b->path, .who = wb, .cmd = b->meta->cmdline });
}

/* What FILE is, for a message about a mix-up */
static const char *file_kind(const char *path)
{
	if (ma_heap_snap_is(path))
		return "a heap snapshot (memattach heap -o)";
	if (ma_capture_is(path))
		return "a capture (memattach attach)";
	return NULL;
}

/*
 * --diff of a heap snapshot and a capture: which file is which, rather
 * than "bad magic" about the second.  Only when both files are what they
 * seem: a damaged one gets its reader's message.
 */
static int kinds_differ(const char *a, const char *b)
{
	const char *ka = file_kind(a), *kb = file_kind(b);

	if (!ka || !kb || ka == kb)
		return 0;
	fprintf(stderr,
		"memattach: report: --diff compares two captures or two heap "
		"snapshots: %s is %s, %s is %s\n",
		a, ka, b, kb);
	return 1;
}

/* The options a heap snapshot's report takes besides FILE; the others
 * are the captures' (a census has no threads, times or stacks) */
static bool snapshot_opt(int c)
{
	return c == 'f' || c == 'o' || c == OPT_TOP || c == OPT_DIFF ||
	       c == OPT_FORCE;
}

/* memattach report on a heap snapshot, or two with --diff */
static int report_snapshot(const char *path, const char *diff,
			   const struct ma_report_format *fmt, const char *out,
			   int top, bool force, int bad_opt,
			   const struct option *longopts)
{
	struct output dest = { 0 };
	char *out_alloc = NULL;
	int err;

	if (bad_opt) {
		char name[32];

		opt_name(longopts, bad_opt, name, sizeof(name));
		fprintf(stderr,
			"memattach: report: %s is a heap snapshot: %s applies "
			"to captures only (a snapshot's report takes "
			"--format, --output, --top, --diff and --force)\n",
			path, name);
		return MA_EXIT_USAGE;
	}
	/* html goes to a file on a terminal, as a capture's does */
	if (!out && !fmt->terminal && isatty(STDOUT_FILENO)) {
		out = out_alloc = default_output(path, fmt);
		if (!out)
			return MA_EXIT_ERROR;
	}
	if (out && !strcmp(out, "-"))
		out = NULL;
	err = output_open(&dest, out, path, diff);
	if (!err)
		err = output_close(&dest,
				   ma_heap_report(dest.f, path, diff, fmt->name,
						  top, force));
	if (err) {
		free(out_alloc);
		return ma_cli_fail("report");
	}
	if (out_alloc)
		fprintf(stderr, "memattach: report written to %s\n", out);
	free(out_alloc);
	return MA_EXIT_OK;
}

int ma_cmd_report(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "output", required_argument, NULL, 'o' },
		{ "view", required_argument, NULL, OPT_VIEW },
		{ "group", required_argument, NULL, OPT_GROUP },
		{ "top", required_argument, NULL, OPT_TOP },
		{ "thread", required_argument, NULL, OPT_THREAD },
		{ "filter", required_argument, NULL, OPT_FILTER },
		{ "temporary-window", required_argument, NULL, OPT_WINDOW },
		{ "diff", required_argument, NULL, OPT_DIFF },
		{ "callers", required_argument, NULL, OPT_CALLERS },
		{ "width", required_argument, NULL, OPT_WIDTH },
		{ "color", required_argument, NULL, OPT_COLOR },
		{ "no-color", no_argument, NULL, OPT_NOCOLOR },
		{ "threads", no_argument, NULL, OPT_THREADS },
		{ "pid", required_argument, NULL, OPT_PID },
		{ "pids", no_argument, NULL, OPT_PIDS },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "from", required_argument, NULL, OPT_FROM },
		{ "to", required_argument, NULL, OPT_TO },
		{ "diff-to", required_argument, NULL, OPT_DIFF_TO },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct ma_report_opts o;
	const struct ma_report_format *fmt = &ma_report_formats[0];
	const char *out = NULL, *diff = NULL;
	char *out_alloc = NULL;
	struct ma_report *a = NULL, *b = NULL;
	struct output dest = { 0 };
	struct progress pr = { 0 }, *prp = NULL;
	uint64_t t0, t1;
	int c, err, ret = MA_EXIT_OK, not_snapshot = 0;
	bool force = false;
	uint64_t diff_to = 0;
	unsigned long long v = 0; /* set before use; a Release build (-O3)
				   * cannot tell (-Wmaybe-uninitialized under
				   * -Werror) */
	struct ma_cli_args args =
		MA_CLI_ARGS("report", argc, argv, "f:o:h", longopts, usage);

	args.argname = "FILE";
	ma_report_opts_init(&o);
	while ((c = ma_cli_opt(&args)) > 0) {
		err = 0;
		if (!snapshot_opt(c) && !not_snapshot)
			not_snapshot = c;
		switch (c) {
		case 'f':
			fmt = ma_report_format_find(optarg);
			err = fmt ? 0 : -EINVAL;
			break;
		case 'o':
			out = optarg;
			break;
		case OPT_VIEW:
			err = ma_rview_parse(optarg, &o.view);
			break;
		case OPT_GROUP:
			err = ma_rgroup_parse(optarg, &o.group);
			break;
		case OPT_TOP:
			err = ma_cli_uint(optarg, 0, MA_CLI_TOP_MAX, &v);
			o.top = (int)v;
			break;
		case OPT_THREAD:
			if (o.nthreads == MA_REPORT_MAX_THREADS || !*optarg)
				err = -EINVAL;
			else
				o.threads[o.nthreads++] = optarg;
			break;
		case OPT_FILTER:
			o.filter = optarg;
			err = *optarg ? 0 : -EINVAL;
			break;
		case OPT_WINDOW:
			err = ma_cli_uint(optarg, 0, MA_REPORT_MAX_WINDOW, &v);
			o.window = (uint32_t)v;
			break;
		case OPT_DIFF:
			diff = optarg;
			break;
		case OPT_CALLERS:
			err = ma_cli_uint(optarg, 0, 1000, &v);
			o.callers = (int)v;
			break;
		case OPT_WIDTH:
			err = ma_cli_uint(optarg, 0, 10000, &v);
			o.width = (int)v;
			break;
		case OPT_COLOR:
			o.color = !strcmp(optarg, "auto")     ? -1
				  : !strcmp(optarg, "always") ? 1
				  : !strcmp(optarg, "never")  ? 0
							      : -2;
			err = o.color == -2 ? -EINVAL : 0;
			break;
		case OPT_NOCOLOR:
			o.color = 0;
			break;
		case OPT_THREADS:
			o.thread_table = true;
			break;
		case OPT_PID:
			err = ma_cli_uint(optarg, 1, INT32_MAX, &v);
			if (!err && o.npids == MA_REPORT_MAX_PIDS)
				err = -EINVAL;
			if (!err)
				o.pids[o.npids++] = (int32_t)v;
			break;
		case OPT_PIDS:
			o.proc_table = true;
			break;
		case OPT_FORCE:
			force = true;
			break;
		case OPT_FROM:
			err = ma_cli_secs(optarg, &o.from_ns);
			break;
		case OPT_TO:
			err = ma_cli_secs(optarg, &o.to_ns);
			err = err ? err : o.to_ns ? 0 : -EINVAL;
			break;
		case OPT_DIFF_TO:
			err = ma_cli_secs(optarg, &diff_to);
			err = err ? err : diff_to ? 0 : -EINVAL;
			break;
		}
		if (err) {
			char name[32], buf[256];

			opt_name(longopts, c, name, sizeof(name));
			/* one line, as every error (the whole usage after
			 * it buried it) */
			fprintf(stderr,
				"memattach: report: bad value for %s: '%s'%s\n",
				name, optarg, allowed(c, buf, sizeof(buf)));
			return MA_EXIT_USAGE;
		}
	}
	if (args.exit >= 0)
		return args.exit;
	if (diff && kinds_differ(argv[optind], diff))
		return MA_EXIT_USAGE;
	/* A heap snapshot (memattach heap -o) has renderers of its own */
	if (ma_heap_snap_is(argv[optind]))
		return report_snapshot(argv[optind], diff, fmt, out, o.top,
				       force, not_snapshot, longopts);
	if (diff_to) {
		/* two moments of one capture: FILE as of --to, and as of
		 * --diff-to */
		if (diff || !o.to_ns || o.from_ns || diff_to <= o.to_ns) {
			fprintf(stderr,
				"memattach: report: --diff-to T2 needs --to T1 "
				"(T1 < T2), and no --diff or --from\n");
			return MA_EXIT_USAGE;
		}
		diff = argv[optind];
	}
	if (diff && !fmt->diff) {
		char with[256] = "";

		ma_report_format_names(with, sizeof(with), diff_format, " or ");
		fprintf(stderr, "memattach: report: --diff writes %s\n", with);
		return MA_EXIT_USAGE;
	}
	if (o.to_ns && o.from_ns >= o.to_ns) {
		fprintf(stderr, "memattach: report: --from must be before "
				"--to\n");
		return MA_EXIT_USAGE;
	}
	if (o.proc_table && (diff || strcmp(fmt->name, "text"))) {
		fprintf(stderr, "memattach: report: --pids writes text (json "
				"has \"processes\"), and no --diff\n");
		return MA_EXIT_USAGE;
	}
	if (o.thread_table &&
	    (diff || (strcmp(fmt->name, "text") && strcmp(fmt->name, "csv") &&
		      strcmp(fmt->name, "json")))) {
		fprintf(stderr, "memattach: report: --threads writes text, csv "
				"or json, and no --diff\n");
		return MA_EXIT_USAGE;
	}
	if (!out && !fmt->terminal && isatty(STDOUT_FILENO)) {
		out = out_alloc = default_output(argv[optind], fmt);
		if (!out)
			return MA_EXIT_ERROR;
	}
	if (out && !strcmp(out, "-"))
		out = NULL;
	/* a file gets no colour unless asked for (--color always: e.g. for
	 * 'less -R' later) */
	if (out && o.color < 0)
		o.color = 0;
	if (isatty(STDERR_FILENO))
		prp = &pr;
	o.by_thread = (fmt->by_thread || o.thread_table) && !diff;
	o.timeline = fmt->timeline && !diff;

	err = output_open(&dest, out, argv[optind], diff);
	/* a capture a session is still writing reads as one cut short: say
	 * which it is before its warnings */
	for (int k = 0; k < 2 && err == 0; k++) {
		const char *p = k ? diff : argv[optind];
		struct ma_holder h;

		if (p && (k == 0 || strcmp(p, argv[optind])) &&
		    ma_file_writer(p, &h) == 0)
			fprintf(stderr,
				"memattach: report: note: %s is still being "
				"written by memattach %d (a session running): "
				"the report has what it holds so far, and it "
				"reads as cut short until the session ends\n",
				p, (int)h.pid);
	}
	if (err == 0)
		err = load(argv[optind], &o, prp, &a);
	if (err == 0 && diff) {
		struct ma_report_opts ob = o;

		if (diff_to)
			ob.to_ns = diff_to;
		err = load(diff, &ob, prp, &b);
	}
	if (err == 0 && b && !force)
		err = same_program(a, b);
	/* a format of the chosen view alone would show it all zeros, and so
	 * would a diff of it: a growth from (or to) a figure not known */
	for (int k = 0; err == 0 && (fmt->one_view || b) && k < 2; k++) {
		const struct ma_report *r = k ? b : a;
		char alone[64];

		if (b)
			snprintf(alone, sizeof(alone),
				 "--diff compares that view alone");
		else if (!strcmp(fmt->name, "speedscope"))
			/* it has every view, and opens with the chosen one,
			 * each thread's profile in it */
			snprintf(alone, sizeof(alone),
				 "-f speedscope opens with that view");
		else
			snprintf(alone, sizeof(alone),
				 "-f %s shows that view alone", fmt->name);
		if (r && !ma_report_view_known(r, o.view)) {
			err = ma_err(-EINVAL,
				     "%s: the %s view is not known (%s); %s",
				     r->path, ma_rview_name(o.view),
				     o.view == MA_RV_PEAK
					     ? "--from on an aggregated "
					       "capture: attach with "
					       "--every-event for it"
					     : "a sampled capture",
				     alone);
			ma_err_set_exit(MA_EXIT_USAGE);
		}
	}
	if (err) {
		output_close(&dest, err);
		ret = ma_cli_fail("report");
		goto done;
	}
	t0 = now_ns();
	err = b ? fmt->diff(a, b, dest.f) : fmt->render(a, dest.f);
	err = output_close(&dest, err);
	t1 = now_ns();
	if (ma_cli_verbose)
		fprintf(stderr,
			"memattach: report: %llu events read in %.2f s (CPU: "
			"reader %.2f s, accounting %.2f s, temporary %.2f s), "
			"%zu stacks in %.3f s, %s written in %.3f s\n",
			(unsigned long long)a->t.events,
			(double)a->wall_stream_ns / 1e9,
			(double)a->cpu_read_ns / 1e9,
			(double)a->cpu_account_ns / 1e9,
			(double)a->cpu_temp_ns / 1e9, a->nnodes - 1,
			(double)a->wall_model_ns / 1e9, fmt->name,
			(double)(t1 - t0) / 1e9);
	if (err) {
		ret = ma_cli_fail("report");
		goto done;
	}
	if (out_alloc)
		fprintf(stderr, "memattach: report written to %s\n", out);
	/* A report of a capture cut short is a partial result (exit 8):
	 * scripts that only look at the exit code learn it too */
	for (int k = 0; k < 2; k++) {
		const struct ma_report *r = k ? b : a;

		if (!r || r->trailer)
			continue;
		/* a capture diffed with itself: one warning */
		if (!fmt->shows_warning && !(k && !strcmp(a->path, b->path)))
			fprintf(stderr, "memattach: report: warning: %s\n",
				r->warning ? r->warning
					   : "the capture is truncated");
		ret = MA_EXIT_PARTIAL;
	}
done:
	ma_report_free(a);
	ma_report_free(b);
	free(out_alloc);
	return ret;
}
