/* SPDX-License-Identifier: MIT */
/*
 * memattach attach PID: inject the payload, track every allocation with its
 * Python stack until Ctrl-C, --duration or the target's exit, stream the
 * ring into a capture file, then print what holds the memory.  The tracking
 * session itself is track.[ch]; here are the options, the messages, the
 * progress line, the signals that stop it and the summary.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "account.h"
#include "cli.h"
#include "textfit.h"
#include "heap.h"
#include "live.h"
#include "units.h"
#include "commands.h"
#include "discover.h"
#include "ma_sample.h"
#include "errors.h"
#include "threads.h"
#include "track.h"

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* the live view's q too (struct progress_state below) */
static int live_quit(void *arg);

static int stop_was_requested(void *arg)
{
	return stop_requested || live_quit(arg);
}

struct attach_opts {
	const char *output;
	uint64_t duration_ns; /* 0 = until Ctrl-C or exit */
	uint64_t ring_size;
	uint32_t max_frames;
	uint32_t flags;
	uint64_t sample; /* --sample: mean bytes between samples, 0 = all */
	int quiet;
	int live;	 /* --live: the full-screen view instead of the line */
	int show_stacks; /* `memattach PID`: the stacks first */
	int no_heap;	 /* ... and not the heap census after them */
	int top;
	int exit;     /* parse_opts returned 1: exit with this code */
	int children; /* --children: every Python descendant too */
	/* the PIDs named: one, or several into one capture */
	pid_t *pids;
	int npids;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: memattach attach [options] PID [PID...]\n"
		"  Track every allocation of a running CPython process with "
		"its "
		"Python stack,\n"
		"  until Ctrl-C, --duration or the process's exit; write a "
		"capture file.\n"
		"  -o, --output FILE       capture file (default "
		"memattach-PID.cap)\n"
		"  -d, --duration SECONDS  stop after this long\n"
		"      --ring-size MIB     shared ring size (default 64, a "
		"power "
		"of two)\n"
		"      --max-frames N      Python frames kept per stack "
		"(default 128, at most 256)\n"
		"      --python-only       only CPython's allocators, no "
		"malloc/mmap hooks\n"
		"      --native-only       only malloc/mmap hooks\n"
		"      --every-event       the full event stream: an ALLOC and "
		"a FREE for\n"
		"                          every block (slower, bigger "
		"capture; by default\n"
		"                          the target keeps sums per stack "
		"and only they\n"
		"                          cross)\n"
		"      --children          also every Python process PID "
		"forks, now or\n"
		"                          later (a worker pool), into the "
		"same capture;\n"
		"                          several PIDs: each of them, one "
		"capture\n"
		"      --live              a full-screen top of Python lines "
		"by "
		"live bytes,\n"
		"                          refreshed each second, with their "
		"growth (keys:\n"
		"                          q quit, s sort, t threads, p "
		"pause); stdout must\n"
		"                          be a terminal\n"
		"      --sample BYTES      only blocks sampled every BYTES "
		"on average (512K,\n"
		"                          1M: K, M, G are KiB, MiB, GiB; "
		"512K advised):\n"
		"                          every figure is then an estimate, "
		"at a fraction of\n"
		"                          the cost\n"
		"      --top N             rows in the summary (default 10)\n"
		"      --no-heap           memattach PID: no heap census "
		"before tracking\n"
		"  -q, --quiet             no progress line\n"
		"      --offsets=SOURCE    auto, dwarf, debug-offsets, "
		"table\n");
}

/*
 * The progress line: on a terminal one line rewritten in place, else one
 * line each time.  Counts in the units of the summary; the live bytes'
 * growth over the last few seconds (a leak shows as a steady rate); the
 * RSS the tracking samples; on a terminal, how to stop and, under
 * --duration, the time left.
 */
#define RATE_POINTS 8

struct progress_state {
	int tty;
	uint64_t duration_ns; /* 0: until Ctrl-C or exit */
	/* (time, live bytes) at most RATE_POINTS back, 0.5 s apart */
	uint64_t t[RATE_POINTS], live[RATE_POINTS];
	unsigned n, head;
	/* --live: the view drawn instead, from the session's accounting */
	struct ma_live *view;
	struct ma_track *tr;
	int quit;    /* q pressed in the view */
	int sampled; /* --sample: the figures are estimates, said so */
};

static int live_quit(void *arg)
{
	return ((struct progress_state *)arg)->quit;
}

static void live_tick(struct progress_state *ps,
		      const struct ma_track_status *st)
{
	const struct ma_agg_hdr *h = ma_track_injection(ps->tr)->agg;
	struct ma_live_status ls = {
		.elapsed_ns = st->elapsed_ns,
		.lost_records = st->lost_records,
		.tr = ps->tr,
		.keys_full =
			h ? __atomic_load_n(&h->keys_full, __ATOMIC_RELAXED)
			  : 0,
		.dropped =
			h ? __atomic_load_n(&h->dropped, __ATOMIC_RELAXED) : 0,
		.dropped_bytes =
			h ? __atomic_load_n(&h->dropped_bytes, __ATOMIC_RELAXED)
			  : 0,
	};

	if (ma_live_tick(ps->view, ma_track_account(ps->tr), &ls))
		ps->quit = 1;
}

static void progress(void *arg, const struct ma_track_status *st)
{
	struct progress_state *ps = arg;
	const struct ma_account_totals *tot = st->totals;
	char n[32], a[32], l[32], c[32], rate[48] = "", rss[48] = "",
					 left[48] = "";
	unsigned last = (ps->head + RATE_POINTS - 1) % RATE_POINTS;

	if (ps->view) {
		live_tick(ps, st);
		return;
	}
	if (!ps->n || st->elapsed_ns - ps->t[last] >= 500000000ull) {
		ps->t[ps->head] = st->elapsed_ns;
		ps->live[ps->head] = tot->live_bytes;
		ps->head = (ps->head + 1) % RATE_POINTS;
		if (ps->n < RATE_POINTS)
			ps->n++;
	}
	if (ps->n >= 2) {
		unsigned old = (ps->head + RATE_POINTS - ps->n) % RATE_POINTS;
		uint64_t dt = st->elapsed_ns - ps->t[old];
		int64_t dl = (int64_t)(tot->live_bytes - ps->live[old]);
		char r[32];

		if (dt >= 500000000ull) {
			ma_fmt_bytes((uint64_t)((double)(dl < 0 ? -dl : dl) *
						1e9 / (double)dt),
				     r, sizeof(r));
			snprintf(rate, sizeof(rate), " (%s%s/s)",
				 dl < 0 ? "-" : "+", r);
		}
	}
	if (tot->last_rss) {
		ma_fmt_bytes(tot->last_rss, c, sizeof(c));
		snprintf(rss, sizeof(rss), ", RSS %s", c);
	}
	if (ps->tty && ps->duration_ns)
		snprintf(left, sizeof(left), ", %.0f s left",
			 st->elapsed_ns < ps->duration_ns
				 ? (double)(ps->duration_ns - st->elapsed_ns) /
					   1e9
				 : 0.0);
	ma_fmt_count(tot->allocs, n, sizeof(n));
	ma_fmt_bytes(tot->alloc_bytes, a, sizeof(a));
	ma_fmt_bytes(tot->live_bytes, l, sizeof(l));
	ma_fmt_bytes(st->capture_bytes, c, sizeof(c));
	fprintf(stderr,
		"%s%6.1f s  %s%s allocations, %s allocated, %s still live%s%s, "
		"capture %s%s%s",
		ps->tty ? "\r\033[K" : "", st->elapsed_ns / 1e9,
		ps->sampled ? "ESTIMATES: " : "", n, a, l, rate, rss, c,
		st->lost_records ? ", records LOST: ring full" : "",
		st->target_stopped ? ", target STOPPED by a signal (state T)"
		: st->held_by	   ? ", target HELD STOPPED by a tracer"
				   : "");
	if (ps->tty)
		fprintf(stderr, "   [Ctrl-C to stop%s]", left);
	else
		fputc('\n', stderr);
	fflush(stderr);
}

/* Why the tracking ended (enum ma_track_end), in the final message */
static const char *const why_text[] = {
	[MA_TRACK_END_ERROR] = "error",
	[MA_TRACK_END_TARGET_EXITED] = "target exited",
	[MA_TRACK_END_PAYLOAD_FAILED] = "payload failed",
	[MA_TRACK_END_PAYLOAD_STOPPED] = "payload stopped",
	[MA_TRACK_END_STOP_REQUESTED] = "interrupted",
	[MA_TRACK_END_DURATION] = "duration reached",
	[MA_TRACK_END_TARGET_EXECED] = "the target exec'd another program: "
				       "tracking ended with its old one",
	[MA_TRACK_END_MEMORY] = "its memory cgroup near its limit",
};

/* BYTES with an optional binary unit: 4096, 512K, 512KiB, 1M, 1G */
static int parse_sample(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	int shift = 0;

	if (!isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	switch (toupper((unsigned char)*end)) {
	case 'K':
		shift = 10;
		break;
	case 'M':
		shift = 20;
		break;
	case 'G':
		shift = 30;
		break;
	}
	if (shift) {
		end++;
		if (end[0] == 'i' && (end[1] == 'B' || end[1] == 'b'))
			end += 2;
		else if (*end == 'B' || *end == 'b')
			end++;
	} else if (*end == 'B' || *end == 'b') {
		end++;
	}
	if (*end || v < 1 || v > (MA_SAMPLE_MAX >> shift))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_opts(int argc, char **argv, struct attach_opts *o,
		      struct ma_target_opts *topts, pid_t *pid)
{
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "duration", required_argument, NULL, 'd' },
		{ "ring-size", required_argument, NULL, 'R' },
		{ "max-frames", required_argument, NULL, 'F' },
		{ "python-only", no_argument, NULL, 'P' },
		{ "native-only", no_argument, NULL, 'N' },
		{ "every-event", no_argument, NULL, 'E' },
		{ "sample", required_argument, NULL, 'S' },
		{ "no-heap", no_argument, NULL, 'H' },
		{ "top", required_argument, NULL, 'T' },
		{ "children", no_argument, NULL, 'C' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "live", no_argument, NULL, 'L' },
		{ "offsets", required_argument, NULL, 'O' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct ma_cli_args args =
		MA_CLI_ARGS("attach", argc, argv, "o:d:qh", longopts, usage);
	unsigned long long v;
	int c, python_only = 0, native_only = 0;

	args.several = 1;
	while ((c = ma_cli_opt(&args)) > 0) {
		switch (c) {
		case 'o':
			o->output = optarg;
			break;
		case 'd':
			/* a decimal number of seconds: strtod alone ran
			 * "nan" forever, cast "inf" into uint64_t and took
			 * "0x10" for 16 */
			if (ma_cli_secs(optarg, &o->duration_ns) ||
			    !o->duration_ns)
				return ma_err(-EINVAL,
					      "bad --duration '%s': seconds, "
					      "a decimal number more than 0 "
					      "and at most 1e9",
					      optarg);
			break;
		case 'R':
			if (ma_cli_uint(optarg, 1, 4096, &v) || (v & (v - 1)))
				return ma_err(-EINVAL,
					      "bad --ring-size '%s': a power "
					      "of two from 1 to 4096 (MiB)",
					      optarg);
			o->ring_size = (uint64_t)v << 20;
			break;
		case 'F':
			/* checked before any narrowing: a cast to uint32_t
			 * took 4294967297 for 1 */
			/* the payload keeps at most MA_CONFIG_MAX_FRAMES:
			 * more was taken, and silently cut to it */
			if (ma_cli_uint(optarg, 1, MA_CONFIG_MAX_FRAMES, &v))
				return ma_err(-EINVAL,
					      "bad --max-frames '%s': a whole "
					      "number from 1 to %d",
					      optarg, MA_CONFIG_MAX_FRAMES);
			o->max_frames = (uint32_t)v;
			break;
		case 'P':
			python_only = 1;
			o->flags =
				(o->flags & MA_TRACK_EVERY) | MA_TRACK_PYTHON;
			break;
		case 'N':
			native_only = 1;
			o->flags = (o->flags & MA_TRACK_EVERY) |
				   MA_TRACK_NATIVE | MA_TRACK_MMAP;
			break;
		case 'E':
			o->flags |= MA_TRACK_EVERY;
			break;
		case 'S':
			if (parse_sample(optarg, &o->sample))
				return ma_err(-EINVAL,
					      "bad --sample '%s': bytes from 1 "
					      "to 1G, with K, M or G for KiB, "
					      "MiB, GiB (512K advised)",
					      optarg);
			break;
		case 'H':
			o->no_heap = 1;
			break;
		case 'T':
			/* report --top's bound; atoi took "2x" for 2 */
			if (ma_cli_uint(optarg, 1, MA_CLI_TOP_MAX, &v))
				return ma_err(-EINVAL,
					      "bad --top '%s': a whole number "
					      "from 1 to %u",
					      optarg, MA_CLI_TOP_MAX);
			o->top = (int)v;
			break;
		case 'q':
			o->quiet = 1;
			break;
		case 'C':
			o->children = 1;
			break;
		case 'L':
			o->live = 1;
			break;
		case 'O':
			if (ma_cli_offsets_pref(optarg, &topts->offsets))
				return -EINVAL;
			break;
		}
	}
	if (args.exit >= 0) {
		o->exit = args.exit; /* --help, or said already */
		return 1;
	}
	/* the last one won: --native-only after --python-only tracked
	 * malloc only, with no word of the first */
	if (python_only && native_only)
		return ma_err(-EINVAL,
			      "--python-only and --native-only do not go "
			      "together (without either, both CPython's "
			      "allocators and malloc/mmap are tracked)");
	if (o->sample && (o->flags & MA_TRACK_EVERY))
		return ma_err(-EINVAL,
			      "--sample and --every-event do not go together: "
			      "sampled blocks are summed with their estimates "
			      "in the target (aggregated tracking)");
	o->npids = argc - optind;
	/* the view reads one payload's keys (docs/memattach.md) */
	if (o->live && (o->children || o->npids > 1))
		return ma_err(-EINVAL, "--live shows one process: not with "
				       "--children or several PIDs");
	o->pids = calloc((size_t)o->npids, sizeof(*o->pids));
	if (!o->pids)
		return ma_err(-ENOMEM, "out of memory");
	for (int i = 0; i < o->npids; i++) {
		int err = ma_parse_pid(argv[optind + i], &o->pids[i]);

		if (err)
			return err;
		for (int k = 0; k < i; k++)
			if (o->pids[k] == o->pids[i])
				return ma_err(-EINVAL, "PID %d named twice",
					      (int)o->pids[i]);
	}
	*pid = o->pids[0];
	return 0;
}

/* Several processes: one added, skipped or ended, as it happens */
static void proc_note(void *arg, const struct ma_track_proc *p)
{
	struct progress_state *ps = arg;
	const char *nl = ps->tty ? "\r\033[K" : "";

	if (p->state == MA_PROC_SKIPPED)
		fprintf(stderr, "%smemattach: not tracking %d%s%.0d%s: %s\n",
			nl, (int)p->pid, p->ppid ? " (child of " : "",
			(int)p->ppid, p->ppid ? ")" : "", p->note);
	else if (p->state == MA_PROC_EXITED || p->state == MA_PROC_STOPPED)
		fprintf(stderr,
			"%smemattach: process %d: %s; its figures are kept\n",
			nl, (int)p->pid, p->note);
	else if (!p->note[0])
		fprintf(stderr, "%smemattach: tracking %s%d%s%.0d\n", nl,
			p->ppid ? "child " : "", (int)p->pid,
			p->ppid ? " of " : "", (int)p->ppid);
	fflush(stderr);
}

/* Several processes: a line each, its own figures */
static void print_procs(const struct ma_track *tr, FILE *f)
{
	size_t n = ma_track_nprocs(tr);
	static const char *const state[] = { [MA_PROC_TRACKED] = "tracked",
					     [MA_PROC_EXITED] = "exited",
					     [MA_PROC_SKIPPED] = "skipped",
					     [MA_PROC_STOPPED] = "stopped" };

	if (!n)
		return;
	fprintf(f, "\nProcesses (%zu), each one's own figures:\n", n);
	/* the summary's peak: the sum of theirs (an aggregated session
	 * keeps each process's peak, capture-format.md), not a moment's */
	if (n > 1 && ma_account_totals(ma_track_account(tr))->agg_peak)
		fprintf(f, "(the peak above is the sum of each process's own "
			   "peak, which need not have come at one moment)\n");
	fprintf(f, "%8s %8s %-8s %10s %10s %10s %12s\n", "PID", "PARENT",
		"STATE", "LIVE", "PEAK", "TOTAL", "ALLOCATIONS");
	for (size_t i = 0; i < n; i++) {
		const struct ma_track_proc *p = ma_track_proc_at(tr, i);
		char l[32] = "-", pk[32] = "-", t[32] = "-", a[32] = "-";

		if (p->acc) {
			const struct ma_account_totals *x =
				ma_account_totals(p->acc);

			ma_fmt_bytes(x->live_bytes, l, sizeof(l));
			ma_fmt_bytes(x->peak_bytes, pk, sizeof(pk));
			ma_fmt_bytes(x->alloc_bytes, t, sizeof(t));
			ma_fmt_count(x->allocs, a, sizeof(a));
		}
		char par[16] = "-"; /* named on the command line */

		if (p->ppid)
			snprintf(par, sizeof(par), "%d", (int)p->ppid);
		fprintf(f, "%8d %8s %-8s %10s %10s %10s %12s%s%s\n",
			(int)p->pid, par,
			p->state <= MA_PROC_STOPPED ? state[p->state] : "?", l,
			pk, t, a, p->note[0] ? "  " : "", p->note);
	}
}

/* Then what holds the memory now, briefly (memattach heap has it all):
 * the user's story is a process already full; a census that fails says so
 * and tracking goes on.  Its progress line on a terminal as heap's: on a
 * heap of gigabytes the census takes seconds, a minute on a busy host */
static int print_heap_now(struct ma_target *t, int quiet)
{
	struct ma_heap_opts ho = { .quiet = quiet };
	struct ma_hcensus_opts co = { .top = 5 };
	struct ma_heap_graph g;
	struct ma_heap_census c = { 0 };
	struct ma_heap_live *live = NULL;
	char a[32], b[32];
	int stop;

	/* Ctrl-C here ends the census's copy, then memattach (exit 130) */
	ma_heap_catch_signals(1);
	if (ma_heap_take(t, &ho, &g, &live)) {
		stop = ma_heap_interrupted();
		if (!stop)
			printf("Heap now: no census (%s)\n\n", ma_errmsg());
		ma_heap_graph_free(&g);
		ma_heap_catch_signals(0);
		return stop;
	}
	if (ma_heap_census(&g, &co, live, &c) == 0 && !ma_heap_interrupted()) {
		ma_fmt_bytes(c.bytes, a, sizeof(a));
		ma_fmt_bytes(g.rss.rss, b, sizeof(b));
		printf("\nHeap now: %llu Python objects, %s, of an RSS of %s "
		       "(target stopped %.1f ms)\n",
		       (unsigned long long)c.objects, a, b, g.frozen_ns / 1e6);
		printf("  by type:");
		for (size_t i = 0; i < c.ntypes && i < 5; i++) {
			ma_fmt_bytes(c.by_type[i].bytes, a, sizeof(a));
			printf("%s %s %s", i ? "," : "", a,
			       g.types[c.by_type[i].type].name);
		}
		printf("\n  held by:\n");
		for (size_t i = 0; i < c.nretainers; i++) {
			char path[512];

			ma_heap_path_render(&g, &c.retainers[i], 8, path,
					    sizeof(path));
			ma_fmt_bytes(c.retainers[i].retained, a, sizeof(a));
			printf("  %10s  %s\n", a, path);
		}
		if (c.garbage_bytes) {
			ma_fmt_bytes(c.garbage_bytes, a, sizeof(a));
			printf("  %10s  kept only by reference cycles "
			       "(garbage)\n",
			       a);
		}
		printf("  (memattach heap %d: the whole census)\n\n",
		       (int)t->pid);
	}
	ma_heap_live_end(live, t);
	ma_heap_census_free(&c);
	ma_heap_graph_free(&g);
	fflush(stdout);
	stop = ma_heap_interrupted();
	ma_heap_catch_signals(0);
	return stop;
}

/* The read-only look first, as in the user's story: every thread's stack.
 * A failure is said, not skipped; -EPERM (another tracer holds the
 * process, ptrace refused) is returned: nothing after it can work */
static int print_stacks_now(struct ma_target *t)
{
	struct ma_pyreader *r = NULL;
	struct ma_tsnap snap;
	int err;

	err = ma_pyreader_new(t->mem, &t->off, t->runtime_addr, &r);
	if (!err)
		err = ma_tsnap_take(t, r, 0, &snap);
	if (err == -EPERM) {
		ma_pyreader_free(r);
		return err;
	}
	if (err) {
		printf("Threads now: not read (%s)\n\n", ma_errmsg());
	} else {
		printf("Threads now:\n");
		for (size_t i = 0; i < snap.n; i++) {
			const struct ma_tview *v = &snap.th[i];

			if (!v->tid)
				continue;
			if (v->nstid != v->tid)
				printf("  %s (%d, %d in its PID namespace)%s",
				       v->name, (int)v->tid, (int)v->nstid,
				       v->py && v->py->holds_gil ? " [GIL]"
								 : "");
			else
				printf("  %s (%d)%s", v->name, (int)v->tid,
				       v->py && v->py->holds_gil ? " [GIL]"
								 : "");
			if (!v->py || !v->py->nframes) {
				printf("  (no Python frames)\n");
				continue;
			}
			for (int k = 0; k < v->py->nframes && k < 4; k++) {
				const struct ma_py_frame *fr =
					&v->py->frames[k];
				const char *b = strrchr(fr->file, '/');

				printf("%s%s (%s:%d)", k ? " <- " : "  ",
				       fr->func, b ? b + 1 : fr->file,
				       fr->line);
			}
			printf("%s\n", v->py->nframes > 4 ? " <- ..." : "");
		}
		ma_tsnap_free(&snap);
	}
	ma_pyreader_free(r);
	fflush(stdout);
	return 0;
}

int ma_cmd_attach_opts(int argc, char **argv, int show_stacks)
{
	struct attach_opts o = { .ring_size = 64ull << 20,
				 .max_frames = 128,
				 .flags = MA_TRACK_NATIVE | MA_TRACK_MMAP |
					  MA_TRACK_PYTHON,
				 .top = 10,
				 .show_stacks = show_stacks };
	struct ma_target_opts topts = { 0 };
	struct ma_target *t = NULL;
	struct ma_track *tr = NULL;
	struct ma_track_result res = { 0 };
	struct ma_target **others = NULL; /* the other PIDs named */
	char **why = NULL;		  /* ... or why not */
	char outbuf[64], sz[32];
	pid_t pid = 0;
	int err, ret = MA_EXIT_OK, tty = isatty(STDERR_FILENO);

	/* a reader of its output gone (`2>&1 | head`) must not kill memattach
	 * with its session half done: the capture is what matters, and a
	 * lost summary line is left unsaid (main.c) */
	signal(SIGPIPE, SIG_IGN);
	err = parse_opts(argc, argv, &o, &topts, &pid);
	if (err > 0) {
		free(o.pids);
		return o.exit;
	}
	if (err) {
		free(o.pids);
		ma_err_set_exit(MA_EXIT_USAGE);
		return ma_errmsg()[0] ? ma_cli_fail("attach") : MA_EXIT_USAGE;
	}
	if (!o.output) {
		snprintf(outbuf, sizeof(outbuf), "memattach-%d.cap", (int)pid);
		o.output = outbuf;
	}
	if (ma_target_open(pid, &topts, &t)) {
		free(o.pids);
		return ma_cli_fail("attach");
	}
	/* refused before anything is done in it: a stopped process would
	 * take the payload and then hold it unstarted, the attach waiting */
	if (ma_track_check_running(pid)) {
		ret = ma_cli_fail("attach");
		goto out;
	}
	if (o.show_stacks && print_stacks_now(t) == -EPERM) {
		ret = ma_cli_fail("attach");
		goto out;
	}
	if (o.show_stacks && !o.no_heap && print_heap_now(t, o.quiet)) {
		fprintf(stderr,
			"memattach: interrupted during the heap census; "
			"process %d runs on as it was, not tracked\n",
			(int)pid);
		ret = MA_EXIT_INTERRUPTED;
		goto out;
	}
	/* ... and again after the census's seconds */
	if (o.show_stacks && ma_track_check_running(pid)) {
		ret = ma_cli_fail("attach");
		goto out;
	}

	struct ma_track_opts to = {
		.output = o.output,
		.ring_size = o.ring_size,
		.max_frames = o.max_frames,
		/* aggregated unless the full stream
				     * was asked for (docs/payload.md) */
		.flags = o.flags & MA_TRACK_EVERY
				 ? o.flags
				 : o.flags | MA_TRACK_AGG |
					   (o.sample ? MA_TRACK_SAMPLE : 0),
		.sample_mean = o.sample,
		/* docs/memattach.md, "Worker pools" */
		.multi = o.children || o.npids > 1,
		.children = o.children,
		.topts = &topts
	};

	/* the other PIDs named are opened first: reading a process's
	 * offsets (DWARF) can take seconds, which the sessions started must
	 * not wait through without their heartbeat */
	others = calloc((size_t)o.npids, sizeof(*others));
	why = calloc((size_t)o.npids, sizeof(*why));
	if (!others || !why) {
		ret = ma_cli_fail("attach");
		goto out;
	}
	for (int i = 1; i < o.npids; i++)
		if (ma_target_open(o.pids[i], &topts, &others[i]))
			why[i] = strdup(ma_errmsg());
	if (ma_track_start(t, &to, &tr)) {
		/* an exec in the middle makes the failure look like anything
		 * (a fault in a remote call, a payload "of another build") */
		ma_target_execed(t);
		ret = ma_cli_fail("attach");
		goto out;
	}
	const struct ma_injection *s = ma_track_injection(tr);

	if (ma_cli_verbose)
		fprintf(stderr,
			"memattach: %d tries to find a safe thread (%.1f ms), "
			"dlopen %.1f ms, ma_start %.1f ms; GOT hooks after "
			"the thaw: %u slots in %u modules in %.1f ms%s\n",
			s->attempts, s->t_pick_ns / 1e6, s->t_dlopen_ns / 1e6,
			s->t_start_ns / 1e6, s->got_slots, s->got_modules,
			s->got_ns / 1e6,
			s->got_state == MA_GOT_DONE	 ? ""
			: s->got_state == MA_GOT_PENDING ? " (not done yet)"
							 : " (not done)");
	if (ma_cli_verbose)
		fprintf(stderr,
			"memattach: allocator domains found in CPython's data "
			"(swapped back whole at the stop):%s%s%s%s\n",
			s->py_domains & 1 ? " raw" : "",
			s->py_domains & 2 ? " mem" : "",
			s->py_domains & 4 ? " obj" : "",
			s->py_domains ? "" : " none");
	if (ma_cli_verbose && s->sample_filter_bits)
		fprintf(stderr,
			"memattach: sampled frees filtered by 2^%u counters "
			"(%u KiB, from the target's RSS at the attach)\n",
			s->sample_filter_bits,
			(1u << s->sample_filter_bits) >> 10);
	char safe_mod[4200], safe_off[4200];

	fprintf(stderr,
		"memattach: attached to %d (python %s, %s, offsets from %s) in "
		"%.1f ms, target stopped %.1f ms%s\n",
		(int)pid, t->version,
		ma_ctl_safe(t->pymod_path, safe_mod, sizeof(safe_mod)),
		ma_ctl_safe(t->off_origin, safe_off, sizeof(safe_off)),
		s->attach_ns / 1e6, s->frozen_ns / 1e6,
		s->reused ? ", payload reused" : "");

	struct sigaction sa = { .sa_handler = on_stop_signal };
	struct sigaction old_int, old_term, old_hup;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	/* the terminal closed (an ssh session gone): stop as on Ctrl-C, the
	 * capture written, unless SIGHUP is ignored (nohup) */
	sigaction(SIGHUP, NULL, &old_hup);
	if (old_hup.sa_handler != SIG_IGN)
		sigaction(SIGHUP, &sa, NULL);

	struct progress_state ps = {
		.tty = tty,
		.duration_ns = o.duration_ns,
		.tr = tr,
		.sampled = o.sample != 0,
	};
	if (o.live) {
		struct ma_live_opts lo = { .pid = pid,
					   .py_version = t->version,
					   .duration_ns = ps.duration_ns,
					   .sample_mean = o.sample };

		if (ma_live_start(&lo, &ps.view))
			fprintf(stderr, "memattach: attach: %s; %s\n",
				ma_errmsg(),
				o.quiet ? "no live view"
					: "the progress line instead");
	}
	/* the other PIDs named: into the same capture */
	for (int i = 1; i < o.npids; i++) {
		if (others[i])
			ma_track_add(tr, others[i], 0);
		else
			ma_track_skipped(tr, o.pids[i],
					 why[i] ? why[i] : "cannot be opened");
		proc_note(&ps, ma_track_proc_at(tr, ma_track_nprocs(tr) - 1));
	}
	struct ma_track_run run = {
		.duration_ns = ps.duration_ns,
		.progress = o.quiet && !ps.view ? NULL : progress,
		/* the view reads its keys at each call */
		.progress_ns = ps.view ? 50000000ull
			       : tty   ? 250000000ull
				       : 1000000000ull,
		.stop_requested = stop_was_requested,
		.proc_note = proc_note,
		.arg = &ps,
	};
	int end = ma_track_run(tr, &run);
	const char *why_stop = why_text[end];
	int was_live = ps.view != NULL;

	/* the shell's screen back before the stop (up to 3 s) */
	if (was_live) {
		ma_live_end(ps.view);
		ps.view = NULL;
		sigaction(SIGHUP, &old_hup, NULL);
		if (ps.quit)
			why_stop = "q pressed";
	}
	ma_track_stop(tr);
	/* the payload's own words when it ended the session */
	char why_buf[160], pmsg[128];

	if (end == MA_TRACK_END_PAYLOAD_STOPPED ||
	    end == MA_TRACK_END_PAYLOAD_FAILED) {
		ma_track_payload_message(tr, pmsg, sizeof(pmsg));
		if (pmsg[0]) {
			snprintf(why_buf, sizeof(why_buf), "%s: %s", why_stop,
				 pmsg);
			why_stop = why_buf;
		}
	}
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGHUP, &old_hup, NULL);

	if (!o.quiet && tty && !was_live)
		fputc('\n', stderr);
	if (ma_track_finish(tr, &res))
		ma_cli_error("attach");

	struct stat st;

	ma_fmt_bytes(stat(o.output, &st) ? 0 : (uint64_t)st.st_size, sz,
		     sizeof(sz));
	/* the target's exit is said once, with how when that is known */
	char how[224] = "";

	if (res.target_exited && end == MA_TRACK_END_TARGET_EXITED)
		snprintf(how, sizeof(how), "%s", res.exit_text);
	else if (res.target_exited && res.exit_text[0])
		snprintf(how, sizeof(how), "%s, then %s", why_stop,
			 res.exit_text);
	else
		snprintf(how, sizeof(how), "%s", why_stop);
	char state[128];

	if (res.target_exited)
		snprintf(state, sizeof(state), "tracking ended with it");
	else if (res.target_stopped)
		snprintf(state, sizeof(state),
			 "target stopped by a signal (state T)");
	else if (res.held_by)
		snprintf(state, sizeof(state),
			 "target held stopped by its tracer %d (%s)",
			 (int)res.held_by, res.tracer);
	else
		snprintf(state, sizeof(state), "target running");
	fprintf(stderr,
		"memattach: %s after %.1f s%s%s%s; %s; capture written to %s "
		"(%s)%s\n",
		res.target_exited ? "target exited" : "detached",
		res.duration_ns / 1e9, how[0] ? " (" : "", how,
		how[0] ? ")" : "", state, o.output, sz,
		res.complete ? "" : ", INCOMPLETE");
	if (ma_cli_verbose)
		fprintf(stderr,
			"memattach: %llu ring records, %llu of them TEMP "
			"holding %llu short-lived blocks\n",
			(unsigned long long)res.records,
			(unsigned long long)res.temps,
			(unsigned long long)res.temp_pairs);
	/* what holds more: a larger ring, while there is one; aggregated
	 * tracking sends a record per new stack, not one per event */
	if (res.lost_records) {
		char more[160];
		int n = snprintf(more, sizeof(more),
				 o.ring_size < (4096ull << 20)
					 ? "a larger --ring-size holds more: "
					   "this one had %llu MiB, up to 4096"
					 : "the ring was at its largest, %llu "
					   "MiB",
				 (unsigned long long)(o.ring_size >> 20));

		if (o.flags & MA_TRACK_EVERY && n > 0 &&
		    (size_t)n < sizeof(more))
			snprintf(more + n, sizeof(more) - (size_t)n,
				 "; without --every-event far fewer records "
				 "cross it");
		fprintf(stderr,
			"memattach: %llu records were dropped because the ring "
			"stayed full (%s)\n",
			(unsigned long long)res.lost_records, more);
	}
	if (o.sample) {
		ma_fmt_bytes(o.sample, sz, sizeof(sz));
		printf("ESTIMATES: blocks sampled every %s on average "
		       "(--sample); every figure below is an estimate\n",
		       sz);
	}
	ma_account_print_summary(ma_track_account(tr), stdout, o.top);
	print_procs(tr, stdout);
	if (!res.complete) {
		if (ma_errmsg()[0])
			ma_cli_error("attach");
		ret = MA_EXIT_PARTIAL;
	}
	/* the figures miss what the ring dropped, or what came after the
	 * payload's own failure: a partial result, not a success */
	if (res.lost_records || end == MA_TRACK_END_PAYLOAD_FAILED)
		ret = MA_EXIT_PARTIAL;
	/* stopped before the target's memory cgroup's limit, to spare it
	 * the OOM killer: the capture is whole up to then */
	if (end == MA_TRACK_END_MEMORY) {
		fprintf(stderr, "memattach: tracking ended early: %s\n",
			ma_track_low_room(tr));
		ret = MA_EXIT_NOMEM;
	}
	/* memattach did not run for over a second while stopped (Ctrl-Z,
	 * SIGSTOP, a debugger), or for over ten while it wanted to (a
	 * starved or thrashing host: the payload's attacher_waits): the
	 * payload, without a heartbeat, stopped tracking to spare the
	 * target, and the session's last seconds are not in the capture */
	if (end == MA_TRACK_END_PAYLOAD_STOPPED && ma_track_orphaned(tr)) {
		fprintf(stderr,
			"memattach: tracking ended early: memattach itself did "
			"not run for over a second while stopped (by Ctrl-Z or "
			"SIGSTOP, or held by a debugger), or for over ten "
			"while starved of CPU or memory, so the payload "
			"stopped tracking and removed its hooks to spare the "
			"target; what came after is not in the capture\n");
		ret = MA_EXIT_PARTIAL;
	}
out:
	ma_track_free(tr);
	ma_target_close(t);
	for (int i = 0; others && i < o.npids; i++)
		ma_target_close(others[i]);
	for (int i = 0; why && i < o.npids; i++)
		free(why[i]);
	free(others);
	free(why);
	free(o.pids);
	return ret;
}

int ma_cmd_attach(int argc, char **argv)
{
	return ma_cmd_attach_opts(argc, argv, 0);
}
