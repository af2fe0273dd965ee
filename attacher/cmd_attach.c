/* SPDX-License-Identifier: MIT */
/*
 * memattach attach PID: inject the payload, track every allocation with its
 * Python stack until Ctrl-C, --duration or the target's exit, stream the
 * ring into a capture file, then print what holds the memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "account.h"
#include "capture.h"
#include "cli.h"
#include "commands.h"
#include "discover.h"
#include "errors.h"
#include "inject.h"
#include "ma_ring_io.h"
#include "ptrace.h"
#include "teststep.h"
#include "threads.h"

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

struct attach_opts {
	const char *output;
	double duration; /* seconds, 0 = until Ctrl-C or exit */
	uint64_t ring_size;
	uint32_t max_frames;
	uint32_t flags;
	int quiet;
	int show_stacks; /* `memattach PID`: the stacks first */
	int top;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: memattach attach [options] PID\n"
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
		"(default 128)\n"
		"      --python-only       only CPython's allocators, no "
		"malloc/mmap hooks\n"
		"      --native-only       only malloc/mmap hooks\n"
		"      --every-event       an ALLOC and a FREE for every small "
		"Python block,\n"
		"                          short-lived ones too (slower; "
		"exact peak)\n"
		"      --top N             rows in the summary (default 10)\n"
		"  -q, --quiet             no progress line\n"
		"      --offsets=SOURCE    auto, dwarf, debug-offsets, "
		"table\n");
}

/* The target has exited: gone, or a zombie nobody reaped yet */
static int target_gone(pid_t pid)
{
	char path[64], buf[512];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 1;
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');

	return !p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X';
}

/* RSS from /proc/PID/statm (pages), cheap enough to sample every 100 ms */
static uint64_t read_rss(pid_t pid)
{
	char path[64], buf[128];
	unsigned long size, resident;
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	if (sscanf(buf, "%lu %lu", &size, &resident) != 2)
		return 0;
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

struct consumer {
	struct ma_injection *s;
	struct ma_ring_reader rd;
	struct ma_capture_writer *w;
	struct ma_account *acc;
	uint64_t records;
	uint64_t temps, temp_pairs; /* TEMP records and the pairs they held */
	int error; /* negative errno: capture write failed, ring corrupt */
};

/* A TEMP record (short-lived small blocks the payload counted instead of
 * recording, see ma_record.h) becomes that many ALLOC + FREE pairs in the
 * capture and the accounting, at an address no allocator returns and that
 * tells the report how many allocations of the thread each one lived */
static int replay_temp(struct consumer *c, const struct ma_rec *rec)
{
	const struct ma_rec_temp *t = (const void *)rec;
	struct ma_event a = { .type = MA_EV_ALLOC, .thread = rec->thread };
	struct ma_event f = { .type = MA_EV_FREE, .thread = rec->thread };
	int err = 0;

	if (ma_rec_len(rec->type_len) < sizeof(*t) || t->count > 1ull << 40 ||
	    t->dist > MA_TEMP_DMAX)
		return ma_err(-EPROTO,
			      "attach: corrupt TEMP record in the ring");
	a.alloc.ptr = MA_TEMP_ADDR(t->dist);
	a.alloc.size = t->size;
	a.alloc.node = t->node;
	a.alloc.kind = t->kind;
	f.free.ptr = MA_TEMP_ADDR(t->dist);
	f.free.kind = t->kind;
	c->temps++;
	c->temp_pairs += t->count;
	for (uint64_t i = 0; i < t->count && !err; i++) {
		err = ma_capture_write_event(c->w, &a);
		if (!err)
			err = ma_capture_write_event(c->w, &f);
	}
	ma_account_feed_pairs(c->acc, &a, &f, t->count);
	return err;
}

/* Any other record: decoded once, the same event to the capture and to the
 * accounting (PAD is no event) */
static int feed_rec(struct consumer *c, const struct ma_rec *rec)
{
	struct ma_event ev;
	int ret = ma_event_from_rec(rec, &ev);

	if (ret <= 0)
		return ret;
	ret = ma_capture_write_event(c->w, &ev);
	ma_account_feed(c->acc, &ev);
	return ret;
}

/* Take every published record out of the ring, in order: write it to the
 * capture and account for it, then hand the space back (ma_ring_release
 * zeroes it).  The reader looks at the producers' head only for the
 * backlog: reading it for every record would pull the producers' line into
 * this core's cache at each event and make their next reservation a
 * cross-core miss. */
static size_t drain(struct consumer *c, size_t max)
{
	const struct ma_rec *rec;
	size_t n = 0;
	int rc = 0;

	if (!c->rd.hdr)
		return 0;
	/* up to the head seen now, not after the producers: see DRAIN_* */
	uint64_t end = c->rd.tail + ma_ring_backlog(&c->rd);

	while (n < max && c->rd.tail < end &&
	       (rc = ma_ring_next(&c->rd, &rec)) > 0) {
		int err = ma_rec_type(rec->type_len) == MA_REC_TEMP
				  ? replay_temp(c, rec)
				  : feed_rec(c, rec);

		if (err && !c->error)
			c->error = err;
		c->records++;
		n++;
	}
	if (rc < 0 && !c->error)
		c->error = ma_err(-EPROTO,
				  "attach: corrupt record in the ring at %#lx",
				  (unsigned long)c->rd.tail);
	ma_ring_release(&c->rd);
	return n;
}

/*
 * The consumer lets records pile up a little (DRAIN_BATCH bytes, or
 * DRAIN_EVERY_NS) before reading them: right behind the producers it would
 * read lines they are still filling, and each such line would then travel
 * between the two cores several times (a one-producer loop measured 15 ns
 * per record when the consumer chased it, 2.5 when it read in batches; on
 * bench/attach_bench.py the difference is within the noise).
 */
#define DRAIN_BATCH    (256u << 10)
#define DRAIN_EVERY_NS 10000000ull

static void progress(FILE *f, int tty, double secs,
		     const struct ma_account_totals *tot, uint64_t cap_bytes,
		     uint64_t lost)
{
	char a[32], l[32], c[32];

	ma_human_bytes((double)tot->alloc_bytes, a, sizeof(a));
	ma_human_bytes((double)tot->live_bytes, l, sizeof(l));
	ma_human_bytes((double)cap_bytes, c, sizeof(c));
	fprintf(f,
		"%s%6.1f s  %llu allocations, %s allocated, %s still live, "
		"capture %s%s%s",
		tty ? "\r\033[K" : "", secs, (unsigned long long)tot->allocs, a,
		l, c, lost ? ", records LOST: ring full" : "",
		tty ? "   [Ctrl-C to stop]" : "\n");
	fflush(f);
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
		{ "top", required_argument, NULL, 'T' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "offsets", required_argument, NULL, 'O' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	char *end;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "o:d:qh", longopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			o->output = optarg;
			break;
		case 'd':
			o->duration = strtod(optarg, &end);
			if (*end || o->duration <= 0)
				return ma_err(-EINVAL, "bad --duration '%s'",
					      optarg);
			break;
		case 'R': {
			unsigned long mib = strtoul(optarg, &end, 10);

			if (*end || mib < 1 || mib > 4096 || (mib & (mib - 1)))
				return ma_err(
					-EINVAL,
					"--ring-size takes a power of two "
					"from 1 to 4096 (MiB)");
			o->ring_size = (uint64_t)mib << 20;
			break;
		}
		case 'F':
			o->max_frames = (uint32_t)strtoul(optarg, &end, 10);
			if (*end || o->max_frames < 1 || o->max_frames > 4096)
				return ma_err(-EINVAL,
					      "--max-frames takes 1 to 4096");
			break;
		case 'P':
			o->flags =
				(o->flags & MA_TRACK_EVERY) | MA_TRACK_PYTHON;
			break;
		case 'N':
			o->flags = (o->flags & MA_TRACK_EVERY) |
				   MA_TRACK_NATIVE | MA_TRACK_MMAP;
			break;
		case 'E':
			o->flags |= MA_TRACK_EVERY;
			break;
		case 'T':
			o->top = atoi(optarg);
			if (o->top < 1)
				return ma_err(-EINVAL, "bad --top '%s'",
					      optarg);
			break;
		case 'q':
			o->quiet = 1;
			break;
		case 'O':
			if (ma_cli_offsets_pref(optarg, &topts->offsets))
				return -EINVAL;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return -EINVAL;
	}
	return ma_parse_pid(argv[optind], pid);
}

/* The read-only look first, as in the user's story: every thread's stack */
static void print_stacks_now(struct ma_target *t)
{
	struct ma_pyreader *r;
	struct ma_tsnap snap;

	if (ma_pyreader_new(t->mem, &t->off, t->runtime_addr, &r))
		return;
	if (ma_tsnap_take(t, r, 0, &snap) == 0) {
		printf("Threads now:\n");
		for (size_t i = 0; i < snap.n; i++) {
			const struct ma_tview *v = &snap.th[i];

			if (!v->tid)
				continue;
			printf("  %s (%d)%s", v->comm, (int)v->tid,
			       v->py && v->py->holds_gil ? " [GIL]" : "");
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
	struct ma_injection s = { .ring_fd = -1 };
	struct consumer c = { 0 };
	struct ma_capture_meta meta = { 0 };
	struct ma_capture_trailer tr = { 0 };
	char outbuf[64], sz[32];
	pid_t pid;
	int err, ret = MA_EXIT_OK, tty = isatty(STDERR_FILENO), complete = 1;
	int target_exited = 0;
	const char *why_stop = "stopped";

	err = parse_opts(argc, argv, &o, &topts, &pid);
	if (err > 0)
		return MA_EXIT_OK;
	if (err) {
		ma_err_set_exit(MA_EXIT_USAGE);
		return ma_errmsg()[0] ? ma_cli_fail("attach") : MA_EXIT_USAGE;
	}
	if (!o.output) {
		snprintf(outbuf, sizeof(outbuf), "memattach-%d.cap", (int)pid);
		o.output = outbuf;
	}
	if (ma_target_open(pid, &topts, &t))
		return ma_cli_fail("attach");
	if (o.show_stacks)
		print_stacks_now(t);

	/* The capture file first: failing to create it must not cost the
	 * target anything */
	struct timespec wall;

	clock_gettime(CLOCK_REALTIME, &wall);
	meta = (struct ma_capture_meta){
		.pid = pid,
		.py_version_hex = t->version_hex,
		.flags = o.flags,
		.start_wall_ns = (uint64_t)wall.tv_sec * 1000000000ull +
				 (uint64_t)wall.tv_nsec,
		.py_version = t->version,
		.exe = t->exe,
		.cmdline = t->cmdline,
	};
	err = ma_capture_create(o.output, &meta, &c.w);
	if (err) {
		ret = ma_cli_fail("attach");
		goto out;
	}
	err = ma_account_new(&c.acc);
	if (err) {
		ret = ma_cli_fail("attach");
		goto out;
	}
	struct ma_inject_opts io = { .ring_size = o.ring_size,
				     .flags = o.flags,
				     .max_frames = o.max_frames,
				     .full_wait_us = 20000 };

	err = ma_inject_start(t, &io, &s);
	if (err) {
		ret = ma_cli_fail("attach");
		goto out;
	}
	c.s = &s;
	/* cannot fail after ma_inject_start's checks; if it did, the loop
	 * below stops the payload at once */
	if (ma_ring_reader_init(&c.rd, s.ring, s.map_len) < 0)
		c.error = ma_err(-EPROTO,
				 "attach: the ring of process %d has a bad "
				 "header",
				 (int)pid);
	if (ma_cli_verbose)
		fprintf(stderr,
			"memattach: %d tries to find a safe thread (%.1f ms), "
			"dlopen %.1f ms, ma_start %.1f ms\n",
			s.attempts, s.t_pick_ns / 1e6, s.t_dlopen_ns / 1e6,
			s.t_start_ns / 1e6);
	fprintf(stderr,
		"memattach: attached to %d (python %s, %s, offsets from %s) in "
		"%.1f ms, target stopped %.1f ms%s\n",
		(int)pid, t->version, t->pymod_path, t->off_origin,
		s.attach_ns / 1e6, s.frozen_ns / 1e6,
		s.reused ? ", payload reused" : "");

	struct sigaction sa = { .sa_handler = on_stop_signal };
	struct sigaction old_int, old_term;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);

	uint64_t t0 = ma_now_ns(), last_sample = 0, last_progress = 0;
	uint64_t limit = o.duration > 0 ? (uint64_t)(o.duration * 1e9) : 0;

	uint64_t last_drain = 0;

	ma_step("track.started");
	for (;;) {
		uint64_t now = ma_now_ns();
		size_t got = 0;

		__atomic_store_n(&s.ring->heartbeat_ns, now, __ATOMIC_RELEASE);
		if (ma_ring_backlog(&c.rd) >= DRAIN_BATCH ||
		    now - last_drain >= DRAIN_EVERY_NS) {
			got = drain(&c, 65536);
			last_drain = now;
		}

		if (c.error) {
			why_stop = "error";
			complete = 0;
			break;
		}
		if (now - last_sample >= 100000000ull) {
			uint64_t rss = read_rss(pid);
			/* The same event to both, so that the summary knows
			 * when the peak was and event numbers agree */
			struct ma_event ev = {
				.type = MA_EV_SAMPLE,
				.sample = { .t_ns = now - t0,
					    .rss = rss,
					    .live = ma_account_totals(c.acc)
							    ->live_bytes },
			};

			ma_capture_write_event(c.w, &ev);
			ma_account_feed(c.acc, &ev);
			last_sample = now;
			ma_step("track.sample");
			if (!rss && target_gone(pid)) {
				target_exited = 1;
				why_stop = "target exited";
				break;
			}
		}
		if (!o.quiet && now - last_progress >=
					(tty ? 250000000ull : 1000000000ull)) {
			progress(stderr, tty, (now - t0) / 1e9,
				 ma_account_totals(c.acc),
				 ma_capture_bytes(c.w),
				 __atomic_load_n(&s.ring->lost_records,
						 __ATOMIC_RELAXED));
			last_progress = now;
		}
		uint32_t st = __atomic_load_n(&s.ring->state, __ATOMIC_ACQUIRE);

		if (st == MA_STATE_FAILED || st == MA_STATE_ORPHANED ||
		    st == MA_STATE_STOPPED) {
			why_stop = st == MA_STATE_FAILED ? "payload failed"
							 : "payload stopped";
			break;
		}
		if (stop_requested) {
			why_stop = "interrupted";
			break;
		}
		if (limit && now - t0 >= limit) {
			why_stop = "duration reached";
			break;
		}
		if (!got) {
			/* 2 ms: the backlog grows by at most a few MiB of
			 * the ring meanwhile, and a busier consumer costs
			 * the target's threads a core when they hand the
			 * GIL over (4 churn threads: ~+0.015 tracked/untracked
			 * against 0.5 ms) */
			struct timespec ts = { 0, 2000000 };

			nanosleep(&ts, NULL);
		}
	}

	/* Tell the payload to stop, then drain until it says it has (its
	 * final STATS record is the last one) */
	if (!target_exited) {
		__atomic_store_n(&s.ring->command, MA_CMD_STOP,
				 __ATOMIC_RELEASE);
		ma_step("stop.requested");
		uint64_t deadline = ma_now_ns() + 3000000000ull;

		for (;;) {
			uint64_t now = ma_now_ns();

			__atomic_store_n(&s.ring->heartbeat_ns, now,
					 __ATOMIC_RELEASE);
			size_t got = drain(&c, 65536);
			uint32_t st = __atomic_load_n(&s.ring->state,
						      __ATOMIC_ACQUIRE);

			ma_step("stop.drain");

			if (c.error)
				break;
			if ((st == MA_STATE_STOPPED ||
			     st == MA_STATE_ORPHANED ||
			     st == MA_STATE_FAILED) &&
			    !got && ma_ring_backlog(&c.rd) == 0)
				break;
			if (now > deadline) {
				if (target_gone(pid)) {
					target_exited = 1;
					break;
				}
				complete = 0;
				ma_err(-ETIMEDOUT,
				       "the payload did not confirm its stop "
				       "within 3 s");
				break;
			}
			if (!got) {
				struct timespec ts = { 0, 1000000 };

				nanosleep(&ts, NULL);
			}
		}
	} else {
		/* The target is gone: what it published is in the ring */
		drain(&c, SIZE_MAX);
	}
	ma_step("stop.confirmed");
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	if (c.error)
		complete = 0;

	const struct ma_account_totals *tot = ma_account_totals(c.acc);
	double secs = (ma_now_ns() - t0) / 1e9;

	if (!o.quiet && tty)
		fputc('\n', stderr);
	tr.lost_records =
		__atomic_load_n(&s.ring->lost_records, __ATOMIC_RELAXED);
	tr.lost_bytes = __atomic_load_n(&s.ring->lost_bytes, __ATOMIC_RELAXED);
	tr.unknown_frees = tot->unknown_frees;
	tr.stack_truncated = tot->stack_truncated;
	clock_gettime(CLOCK_REALTIME, &wall);
	tr.end_wall_ns =
		(uint64_t)wall.tv_sec * 1000000000ull + (uint64_t)wall.tv_nsec;
	tr.duration_ns = ma_now_ns() - t0;
	tr.complete = complete;
	err = ma_capture_close(c.w, &tr);
	c.w = NULL;
	ma_step("stop.capture-closed");
	if (err) {
		complete = 0;
		fprintf(stderr, "memattach: attach: %s\n", ma_errmsg());
	}
	struct stat st;

	ma_human_bytes(stat(o.output, &st) ? 0 : (double)st.st_size, sz,
		       sizeof(sz));
	fprintf(stderr,
		"memattach: %s after %.1f s (%s); %s; capture written to %s "
		"(%s)%s\n",
		target_exited ? "target exited" : "detached", secs, why_stop,
		target_exited ? "tracking ended with it" : "target running",
		o.output, sz, complete ? "" : ", INCOMPLETE");
	if (ma_cli_verbose)
		fprintf(stderr,
			"memattach: %llu ring records, %llu of them TEMP "
			"holding %llu short-lived blocks\n",
			(unsigned long long)c.records,
			(unsigned long long)c.temps,
			(unsigned long long)c.temp_pairs);
	if (tr.lost_records)
		fprintf(stderr,
			"memattach: %llu records were dropped because the ring "
			"stayed full (try --ring-size)\n",
			(unsigned long long)tr.lost_records);
	ma_account_print_summary(c.acc, stdout, o.top);
	if (!complete) {
		if (ma_errmsg()[0])
			fprintf(stderr, "memattach: attach: %s\n", ma_errmsg());
		ret = MA_EXIT_PARTIAL;
	}
out:
	if (c.w)
		ma_capture_close(c.w, &tr);
	ma_account_free(c.acc);
	ma_injection_close(&s);
	ma_target_close(t);
	return ret;
}

int ma_cmd_attach(int argc, char **argv)
{
	return ma_cmd_attach_opts(argc, argv, 0);
}
