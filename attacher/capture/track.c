/* SPDX-License-Identifier: MIT */
/*
 * The tracking session (track.h): the consumer of the ring, from the
 * injection to the capture's trailer.
 */
#include "track.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/kcmp.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "capture.h"
#include "ma_agg.h"
#include "discover.h"
#include "errors.h"
#include "ma_ring_io.h"
#include "procfs.h"
#include "ptrace.h"
#include "pyread.h"
#include "teststep.h"

/*
 * The consumer lets records pile up a little (DRAIN_BATCH bytes, or
 * DRAIN_EVERY_NS) before reading them: right behind the producers it would
 * read lines they are still filling, and each such line would then travel
 * between the two cores several times (a one-producer loop measured 15 ns
 * per record when the consumer chased it, 2.5 when it read in batches; on
 * bench/attach_bench.py the difference is within the noise).
 */
#define DRAIN_BATCH	(256u << 10)
#define DRAIN_EVERY_NS	10000000ull
#define DRAIN_MAX	65536 /* records per drain */
#define SAMPLE_EVERY_NS 100000000ull
#define STOP_TIMEOUT_NS 3000000000ull
/* A target stopped by a signal (state T) is looked for this often while
 * the attach waits for its payload (the stop, the GOT hooks) */
#define STOPPED_EVERY_NS 10000000ull
#define WAIT_GOT_NS	 3000000000ull
/* aggregated tracking: the keys' deltas go to the accounting and the
 * capture this often (the capture grows with the keys that moved per
 * second, not with events); samples still come every 100 ms */
#define AGG_EVERY_NS 1000000000ull
/*
 * A TEMP record is replayed as count ALLOC + FREE pairs (replay_temp), so
 * its cost is the target's to choose: a hostile target (issue 13) wrote
 * counts up to the old bound of 2^40, days of work for one record.  The
 * payload publishes a count at least at every 100 ms flush, and one thread
 * of CPython allocates well under 10^8 blocks a second, so a real record
 * holds a few million pairs at most: 2^24 leaves a wide margin (a watchdog
 * held off for a second), and a record beyond it is corrupt.  And a drain
 * that replayed TEMP_DRAIN_PAIRS pairs returns to the tracking loop (its
 * heartbeat, the stop and the duration), the next drain goes on.
 */
#ifndef MA_TEMP_MAX_COUNT /* tests/fuzz/fuzz_ring.c sets smaller bounds */
#define MA_TEMP_MAX_COUNT (1ull << 24)
#define TEMP_DRAIN_PAIRS  (1ull << 22)
#endif
/*
 * And over the session: no more than TEMP_PAIRS_PER_S pairs a second of
 * tracking (clocked until the stop, so that the replay's own time does not
 * raise the bound), several times what an allocating CPython process
 * manages with every thread; a ring full of records at the bound would
 * otherwise be years of work after the target exits.
 */
#ifndef TEMP_PAIRS_PER_S
#define TEMP_PAIRS_PER_S (1ull << 28)
#endif

/* Python thread names are read this often (and at the start and the
 * stop): a thread started meanwhile is named up to this late */
#define NAMES_EVERY_NS	1000000000ull
#define NAMES_MAX_INDEX (1u << 20) /* thread indices we keep names for */

/* A thread index of the capture: who it is, the name last written */
struct tslot {
	int32_t tid;
	int defined;
	uint64_t pthread;
	const char *named; /* interned by the reader: compared by pointer */
};

/* A key's figures as last read */
struct agg_prev {
	uint64_t allocs, alloc_bytes, frees, free_bytes;
	uint64_t temp_count[MA_AGG_TEMPW], temp_bytes[MA_AGG_TEMPW];
};

/* a child whose Python is starting: when it was first looked at, in
 * which image (a PID that comes again in another image starts anew) */
struct pending_child {
	pid_t pid;
	uint64_t sig, first_ns;
};

struct ma_track {
	pid_t pid;
	struct ma_injection s;
	struct ma_ring_reader rd;
	struct ma_capture_writer *w;
	struct ma_account *acc;
	uint64_t records;
	uint64_t temps, temp_pairs; /* TEMP records and the pairs they held */
	int error; /* negative errno: capture write failed, ring corrupt */
	int complete;
	int target_exited;
	/* it exec'd another program: the payload went with its memory, the
	 * process runs on */
	int target_execed;
	int target_stopped; /* by a signal (state T), at the last look */
	/* a process skipped (not Python, say a shell): its image when it was
	 * (an exec into Python is looked at again) and whether it has ended
	 * (no more looks: its PID may be another's by then) */
	uint64_t skip_sig;
	int skip_ended, skip_replaced;
	pid_t held_by;	    /* a tracer's (gdb) stop, at the last look */
	char tracer[64];    /* its name */
	char exit_text[64]; /* how it exited, when seen as a zombie; "" */
	/* why the session ended for the target's memory cgroup (a whole
	 * message: room_check()); "" */
	char low_room[384];
	/* the last look at that room: when, the tables' bytes then */
	uint64_t room_at, room_tabs;
	int started; /* t0 set, track.started passed */
	uint64_t t0;
	uint64_t last_sample, last_progress, last_drain;
	uint64_t stop_ns; /* when the stop began (or the target exited) */
	/* aggregated tracking (s.agg set): figures last read per key
	 * (MA_AGG_KEYS entries, touched as keys appear), when, the epoch of
	 * the peak at the last sample and the samples around its moment */
	struct agg_prev *prev;
	/* the record being decoded, copied out of the ring (drain) */
	uint8_t *rec;
	size_t rec_cap;
	uint64_t last_agg, agg_epoch, last_sample_t;
	uint64_t ring_maps_ns; /* ring_gone: when the maps were last read */
	uint64_t peak_after_ns, peak_before_ns;

	/* several processes in one capture (opts.multi): every process has
	 * its own struct; the root (the first) holds the others, the capture
	 * and the accounting of them all (sacc); tr->acc is the process's
	 * own.  Ids of the payloads (threads, nodes, code objects) are
	 * mapped to ids unique in the capture (0 stays 0). */
	struct ma_track *root;	 /* the root: itself */
	struct ma_track **procs; /* root: every process, itself first */
	size_t nprocs, procs_cap;
	struct ma_account *sacc;   /* root: what the capture holds */
	struct ma_track_opts opts; /* root: for the processes added */
	struct ma_target_opts topts;
	uint32_t next_id[3]; /* root: last id given, per kind */
	uint32_t *map[3];    /* payload id -> capture id, per kind */
	size_t map_cap[3];
	uint32_t pidx; /* its index in root->procs: the pointer tag */
	struct ma_track_proc info;
	int active;		      /* tracked and not ended */
	uint64_t t_off;		      /* its t0 - the root's t0 */
	uint64_t last_rss, last_live; /* its last sample */
	uint64_t last_children;	      /* root: last look for children */
	/* root: children found while their Python was still starting (not
	 * initialized, or libpython not mapped yet): looked at again at each
	 * look for children, up to START_WAIT_NS from the first look */
	struct pending_child *pending;
	size_t npending, pending_cap;
	uint64_t lost_records, lost_bytes; /* read before its ring closes */
	struct ma_event aggend_sum;	   /* root: the processes' AGGENDs */
	uint64_t aggend_best;		   /* root: the largest peak so far */
	/* root: a thread that keeps every process's heartbeat while the
	 * loop attaches another process (a freeze that waits for a safe
	 * point can take a second), until hb_until only: a stuck loop
	 * still loses its heartbeat.  hb_mu guards procs and active. */
	pthread_t hb;
	int hb_started;
	int hb_mu_init; /* a session of one process: its own */
	pthread_mutex_t hb_mu;
	uint64_t hb_until; /* atomic */
	int hb_stop;	   /* atomic */
	/* Python thread names (TNAME events): the reader, the last names
	 * read, the capture's threads by index */
	struct ma_pyreader *pr;
	struct ma_py_tname *names;
	size_t nnames;
	struct tslot *slots;
	size_t nslots;
	uint64_t last_names;
};

#define HB_BUSY_NS (5000000000ull)

static void *hb_main(void *arg)
{
	struct ma_track *g = arg;
	sigset_t all;

	/* Signals go to the loop's thread: a Ctrl-Z it defers during a
	 * freeze (ma_freeze) must not stop memattach through this one */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);

	while (!__atomic_load_n(&g->hb_stop, __ATOMIC_ACQUIRE)) {
		struct timespec ts = { 0, 100000000 };
		uint64_t now = ma_now_ns();

		if (now < __atomic_load_n(&g->hb_until, __ATOMIC_ACQUIRE)) {
			pthread_mutex_lock(&g->hb_mu);
			if (g->root != g && g->active && g->s.ring)
				ma_ring_heartbeat(g->s.ring, now);
			for (size_t i = 0; i < g->nprocs; i++)
				if (g->procs[i]->active && g->procs[i]->s.ring)
					ma_ring_heartbeat(g->procs[i]->s.ring,
							  now);
			pthread_mutex_unlock(&g->hb_mu);
		}
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* From the accounting while its live table grows (ma_account_set_beat),
 * on the loop's thread: the heartbeat of every process tracked */
static void acc_beat(void *arg)
{
	struct ma_track *g = arg;
	uint64_t now = ma_now_ns();

	if (g->root != g) {
		if (g->s.ring)
			ma_ring_heartbeat(g->s.ring, now);
		return;
	}
	for (size_t i = 0; i < g->nprocs; i++)
		if (g->procs[i]->active && g->procs[i]->s.ring)
			ma_ring_heartbeat(g->procs[i]->s.ring, now);
}

/*
 * The loop ran now: the heartbeat thread keeps beating for HB_BUSY_NS
 * more.  A loop held up by a slow write of the capture (a disk throttled
 * under writeback) or briefly starved no longer loses its session to the
 * payload's 1-s limit; a loop stuck for longer still does, and a
 * memattach stopped (Ctrl-Z) stops both threads, so the payload still
 * ends that session within a second.
 */
static void hb_lease(struct ma_track *g, uint64_t now)
{
	__atomic_store_n(&g->hb_until, now + HB_BUSY_NS, __ATOMIC_RELEASE);
}

/* The loop is about to attach a process (on) or is done (off) */
static void hb_busy(struct ma_track *g, int on)
{
	__atomic_store_n(&g->hb_until, on ? ma_now_ns() + HB_BUSY_NS : 0,
			 __ATOMIC_RELEASE);
}

static void set_active(struct ma_track *p, int on)
{
	struct ma_track *g = p->root;

	pthread_mutex_lock(&g->hb_mu);
	p->active = on;
	pthread_mutex_unlock(&g->hb_mu);
}

enum { MAP_THREAD, MAP_NODE, MAP_CODE };

/* The capture id of payload id `id` of kind k in process tr (0 stays 0);
 * 0 when out of memory or beyond what a capture holds */
static uint32_t map_id(struct ma_track *tr, int k, uint32_t id)
{
	static const uint32_t max[3] = { 1u << 20, 1u << 26, 1u << 24 };
	struct ma_track *g = tr->root;

	if (!id || id >= max[k])
		return 0;
	if (id >= tr->map_cap[k]) {
		size_t n = tr->map_cap[k] ? tr->map_cap[k] : 1024;
		uint32_t *p;

		while (n <= id)
			n *= 2;
		p = realloc(tr->map[k], n * sizeof(*p));
		if (!p)
			return 0;
		memset(p + tr->map_cap[k], 0,
		       (n - tr->map_cap[k]) * sizeof(*p));
		tr->map[k] = p;
		tr->map_cap[k] = n;
	}
	if (!tr->map[k][id]) {
		if (g->next_id[k] + 1 >= max[k])
			return 0;
		tr->map[k][id] = ++g->next_id[k];
	}
	return tr->map[k][id];
}

/* A pointer of process tr in the capture: processes forked from one
 * another share addresses, so each one's above 2^48 (x86-64 user space
 * ends at 2^47) carry its index; the temporary pairs' addresses stay */
static uint64_t map_ptr(const struct ma_track *tr, uint64_t ptr)
{
	return MA_IS_TEMP_ADDR(ptr) ? ptr : ptr ^ ((uint64_t)tr->pidx << 48);
}

/* Write one event of process tr to the capture (and its accounting); in a
 * capture of several processes, after its own accounting took it with
 * the payload's ids, with the capture's ids */
static int put_event(struct ma_track *tr, struct ma_event *ev)
{
	struct ma_track *g = tr->root;
	int err;

	if (!g) {
		err = ma_capture_write_event(tr->w, ev);
		ma_account_feed(tr->acc, ev);
		return err;
	}
	ma_account_feed(tr->acc, ev);
	ev->thread = map_id(tr, MAP_THREAD, ev->thread);
	switch (ev->type) {
	case MA_EV_ALLOC:
		ev->alloc.node = map_id(tr, MAP_NODE, ev->alloc.node);
		ev->alloc.ptr = map_ptr(tr, ev->alloc.ptr);
		break;
	case MA_EV_FREE:
		ev->free.ptr = map_ptr(tr, ev->free.ptr);
		break;
	case MA_EV_CODE:
		ev->code.id = map_id(tr, MAP_CODE, ev->code.id);
		break;
	case MA_EV_NODE:
		ev->node.id = map_id(tr, MAP_NODE, ev->node.id);
		ev->node.parent = map_id(tr, MAP_NODE, ev->node.parent);
		ev->node.code = map_id(tr, MAP_CODE, ev->node.code);
		break;
	case MA_EV_AGG:
		ev->agg.node = map_id(tr, MAP_NODE, ev->agg.node);
		break;
	case MA_EV_AGGTEMP:
		ev->aggtemp.node = map_id(tr, MAP_NODE, ev->aggtemp.node);
		break;
	case MA_EV_PEAK:
		ev->peak.node = map_id(tr, MAP_NODE, ev->peak.node);
		break;
	default:
		break;
	}
	err = ma_capture_write_event(g->w, ev);
	ma_account_feed(g->sacc, ev);
	if (ev->type == MA_EV_THREAD && ev->thread) {
		/* the thread's process, right after its definition */
		struct ma_event pe = { .type = MA_EV_PROC,
				       .thread = ev->thread,
				       .proc = { .pid = tr->info.pid,
						 .ppid = tr->info.ppid } };
		int e2 = ma_capture_write_event(g->w, &pe);

		ma_account_feed(g->sacc, &pe);
		if (!err)
			err = e2;
	}
	return err;
}

/* A process's PROC event (no thread): added, skipped, ended */
static void put_proc(struct ma_track *g, const struct ma_track_proc *p)
{
	struct ma_event pe = {
		.type = MA_EV_PROC,
		.proc = { .pid = p->pid, .ppid = p->ppid, .state = p->state }
	};
	int err = ma_capture_write_event(g->w, &pe);

	if (err && !g->error)
		g->error = err;
	ma_account_feed(g->sacc, &pe);
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

/*
 * The target has exited (target_gone): how, into p->exit_text, while it
 * is a zombie its parent has not reaped yet.  memattach is not its
 * parent and cannot wait for it: once reaped, that is lost, and nothing
 * is said.
 */
static void note_exit(struct ma_track *p)
{
	int st, err;

	if (p->exit_text[0])
		return;
	/* the main thread is seen a zombie before the others have gone
	 * (a kill, an exit from another thread): a few ms, more on a loaded
	 * host.  Up to a second when it was the only process tracked (the
	 * session ends with it), else 100 ms: the loop that waits here
	 * keeps the other payloads' heartbeats (its main thread alone
	 * ended: the process goes on) */
	int tries = p->root && p->root->nprocs > 1 ? 50 : 500;

	for (int i = 0;
	     (err = ma_proc_exit_status(p->pid, &st)) == -EAGAIN && i < tries;
	     i++) {
		struct timespec ts = { 0, 2000000 };

		nanosleep(&ts, NULL);
	}
	if (err)
		return;
	if (WIFEXITED(st))
		snprintf(p->exit_text, sizeof(p->exit_text), "exit status %d",
			 WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(p->exit_text, sizeof(p->exit_text),
			 "killed by SIG%s%s",
			 sigabbrev_np(WTERMSIG(st)) ? sigabbrev_np(WTERMSIG(st))
						    : "?",
			 WCOREDUMP(st) ? ", core dumped" : "");
}

/* target_gone, and how it exited when that can be known */
static int target_ended(struct ma_track *p)
{
	if (!target_gone(p->pid))
		return 0;
	note_exit(p);
	return 1;
}

int ma_track_check_running(pid_t pid)
{
	if (!ma_proc_job_stopped(pid, 0))
		return 0;
	ma_err_set_exit(MA_EXIT_PERM);
	return ma_err(-EAGAIN,
		      "process %d is stopped by a signal (state T: SIGSTOP, "
		      "SIGTSTP or Ctrl-Z): tracking runs in the process and "
		      "cannot start until it is resumed ('kill -CONT %d', or "
		      "'fg' in the shell that stopped it); 'memattach stacks "
		      "%d' and 'memattach heap %d' work on it stopped",
		      (int)pid, (int)pid, (int)pid, (int)pid);
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

static void wait_got(struct ma_track *tr);
static void names_poll(struct ma_track *tr);

static int procs_push(struct ma_track *g, struct ma_track *p)
{
	int ret = 0;

	pthread_mutex_lock(&g->hb_mu);
	if (g->nprocs == g->procs_cap) {
		size_t n = g->procs_cap ? g->procs_cap * 2 : 8;
		struct ma_track **q = realloc(g->procs, n * sizeof(*q));

		if (!q) {
			ret = ma_err(-ENOMEM, "out of memory");
			goto out;
		}
		g->procs = q;
		g->procs_cap = n;
	}
	p->pidx = (uint32_t)g->nprocs;
	g->procs[g->nprocs++] = p;
out:
	pthread_mutex_unlock(&g->hb_mu);
	return ret;
}

/* The root of a capture of several processes: itself its first process */
static int multi_init(struct ma_track *tr, struct ma_target *t,
		      const struct ma_track_opts *o)
{
	int err = ma_account_new(&tr->sacc);

	if (err)
		return err;
	pthread_mutex_init(&tr->hb_mu, NULL);
	tr->root = tr;
	tr->opts = *o;
	tr->opts.output = NULL;
	if (o->topts)
		tr->topts = *o->topts;
	tr->info = (struct ma_track_proc){ .pid = t->pid,
					   .state = MA_PROC_TRACKED,
					   .acc = tr->acc };
	err = procs_push(tr, tr);
	if (err)
		return err;
	put_proc(tr, &tr->info);
	return 0;
}

/* What the payload of every process of a session is started with: the
 * first one's and those added (--children, several PIDs) alike */
static struct ma_inject_opts inject_opts(const struct ma_track_opts *o)
{
	return (struct ma_inject_opts){ .ring_size = o->ring_size,
					.flags = o->flags,
					.max_frames = o->max_frames,
					.full_wait_us = 20000,
					.sample_mean = o->sample_mean };
}

int ma_track_start(struct ma_target *t, const struct ma_track_opts *o,
		   struct ma_track **out)
{
	struct ma_track *tr = calloc(1, sizeof(*tr));
	struct timespec wall;
	int err;

	*out = tr;
	if (!tr)
		return ma_err(-ENOMEM, "out of memory");
	tr->pid = t->pid;
	tr->s.ring_fd = -1;
	tr->complete = 1;

	/* Another memattach tracking the target now is refused before
	 * anything is created: its capture may be the same file */
	struct ma_payload_info pi;

	if (!ma_payload_probe(t, &pi) && ma_payload_in(&pi, MA_PAYLOAD_BUSY)) {
		err = ma_err_busy(t->pid, &pi);
		if (err)
			return err;
	}
	/* The capture file first: failing to create it must not cost the
	 * target anything */
	clock_gettime(CLOCK_REALTIME, &wall);
	struct ma_capture_meta meta = {
		.pid = t->pid,
		.py_version_hex = t->version_hex,
		.flags = o->flags | (o->multi ? MA_CAPTURE_PROCS : 0),
		.sample_mean = o->sample_mean,
		.start_wall_ns = (uint64_t)wall.tv_sec * 1000000000ull +
				 (uint64_t)wall.tv_nsec,
		.py_version = t->version,
		.exe = t->exe,
		.cmdline = t->cmdline,
	};

	/* under a temporary name until the session runs: a refused or
	 * failed attach leaves the last capture at that path as it was */
	err = ma_capture_begin(o->output, &meta, &tr->w);
	if (err)
		return err;
	err = ma_account_new(&tr->acc);
	if (err)
		return err;
	ma_account_set_beat(tr->acc, acc_beat, tr);
	if (o->multi) {
		err = multi_init(tr, t, o);
		if (err)
			return err;
		ma_account_set_beat(tr->sacc, acc_beat, tr);
	}
	/* the names of the threads running now, before their THREAD records
	 * come; without a reader the capture has comms only */
	if (ma_pyreader_new(t->mem, &t->off, t->runtime_addr, &tr->pr) == 0)
		names_poll(tr);
	else
		tr->pr = NULL;
	struct ma_inject_opts io = inject_opts(o);

	err = ma_inject_start(t, &io, &tr->s);
	if (err)
		return err;
	err = ma_capture_publish(tr->w);
	if (err)
		return err;
	if (tr->s.agg) {
		/* untouched pages cost nothing: this grows with the keys */
		tr->prev = calloc(MA_AGG_KEYS, sizeof(*tr->prev));
		if (!tr->prev)
			return ma_err(-ENOMEM, "out of memory");
	}
	/* cannot fail after ma_inject_start's checks; if it did, the run
	 * stops the payload at once */
	if (ma_ring_reader_init(&tr->rd, tr->s.ring, tr->s.map_len) < 0)
		tr->error = ma_err(-EPROTO,
				   "the ring of process %d has a bad "
				   "header",
				   (int)t->pid);
	else
		ma_ring_give_back(&tr->rd, tr->s.ring_fd,
				  MA_RING_GIVE_BACK_RATE);
	tr->t0 = ma_now_ns(); /* ma_track_run() starts it again */
	if (tr->root) {
		set_active(tr, 1);
		tr->hb_started = !pthread_create(&tr->hb, NULL, hb_main, tr);
		if (!tr->hb_started)
			return ma_err(-EAGAIN, "cannot start a thread");
	} else {
		/* the heartbeat thread of a session of one process (none:
		 * the loop beats alone, as it always did) */
		pthread_mutex_init(&tr->hb_mu, NULL);
		tr->hb_mu_init = 1;
		tr->active = 1;
		tr->hb_started = !pthread_create(&tr->hb, NULL, hb_main, tr);
	}
	wait_got(tr);
	return 0;
}

/* Why a process could not be tracked: the error, unless it has ended or
 * is ending (a child of a fork storm that exits at once fails at any
 * step, and each step's error would blame something else) */
static const char *skip_why(pid_t pid)
{
	return ma_proc_exiting(pid) ? "exited before it could be tracked"
				    : ma_errmsg();
}

/* A process that will not be tracked: listed, with why */
static void proc_skipped(struct ma_track *g, pid_t pid, pid_t ppid,
			 const char *why, const struct ma_track_run *run)
{
	struct ma_track *p = calloc(1, sizeof(*p));

	if (!p || procs_push(g, p)) {
		free(p);
		return;
	}
	p->root = g;
	p->s.ring_fd = -1;
	p->info = (struct ma_track_proc){ .pid = pid,
					  .ppid = ppid,
					  .state = MA_PROC_SKIPPED };
	p->skip_sig = ma_proc_exec_sig(pid);
	snprintf(p->info.note, sizeof(p->info.note), "%s", why);
	put_proc(g, &p->info);
	if (run && run->proc_note)
		run->proc_note(run->arg, &p->info);
}

static int track_add(struct ma_track *g, struct ma_target *t, pid_t ppid);

void ma_track_skipped(struct ma_track *g, pid_t pid, const char *why)
{
	if (g->root)
		proc_skipped(g, pid, 0, why, NULL);
}

int ma_track_add(struct ma_track *g, struct ma_target *t, pid_t ppid)
{
	int err;

	if (!g->root)
		return ma_err(-EINVAL, "not a capture of several processes");
	hb_busy(g, 1);
	err = track_add(g, t, ppid);
	hb_busy(g, 0);
	return err;
}

static int track_add(struct ma_track *g, struct ma_target *t, pid_t ppid)
{
	struct ma_track *p;
	struct ma_payload_info pi;
	int err;

	p = calloc(1, sizeof(*p));
	if (!p)
		return ma_err(-ENOMEM, "out of memory");
	p->pid = t->pid;
	p->s.ring_fd = -1;
	p->complete = 1;
	p->root = g;
	p->info = (struct ma_track_proc){ .pid = t->pid, .ppid = ppid };
	err = procs_push(g, p);
	if (err) {
		free(p);
		return err;
	}
	if (!ma_payload_probe(t, &pi) && ma_payload_in(&pi, MA_PAYLOAD_BUSY)) {
		/* a child found in the microseconds between its fork and its
		 * payload's atfork handler still shows its parent's session
		 * (our own): that handler ends it at once */
		if (ppid)
			ma_payload_wait(t, &pi, MA_PAYLOAD_BUSY, 5);
		if (ma_payload_in(&pi, MA_PAYLOAD_BUSY))
			err = ma_err_busy(t->pid, &pi);
	}
	/* a PID named or a child found stopped by a signal: listed as
	 * skipped with why, as the first one is refused */
	if (!err)
		err = ma_track_check_running(t->pid);
	if (!err)
		err = ma_account_new(&p->acc);
	if (!err) {
		struct ma_inject_opts io = inject_opts(&g->opts);

		ma_account_set_beat(p->acc, acc_beat, g);
		err = ma_inject_start(t, &io, &p->s);
	}
	if (!err && p->s.agg &&
	    !(p->prev = calloc(MA_AGG_KEYS, sizeof(*p->prev))))
		err = ma_err(-ENOMEM, "out of memory");
	if (!err && ma_ring_reader_init(&p->rd, p->s.ring, p->s.map_len) < 0)
		err = ma_err(-EPROTO, "the ring of process %d has a bad header",
			     (int)t->pid);
	if (!err)
		ma_ring_give_back(&p->rd, p->s.ring_fd, MA_RING_GIVE_BACK_RATE);
	if (err) {
		/* the session, if it started, stops by itself without a
		 * heartbeat; nothing of it is in the capture */
		p->info.state = MA_PROC_SKIPPED;
		snprintf(p->info.note, sizeof(p->info.note), "%s",
			 skip_why(t->pid));
		ma_injection_close(&p->s);
		ma_account_free(p->acc);
		p->acc = NULL;
		put_proc(g, &p->info);
		return err;
	}
	p->info.state = MA_PROC_TRACKED;
	p->info.acc = p->acc;
	p->t0 = ma_now_ns();
	p->t_off = g->started ? p->t0 - g->t0 : 0;
	p->started = 1;
	set_active(p, 1);
	put_proc(g, &p->info);
	return 0;
}

const struct ma_injection *ma_track_injection(const struct ma_track *tr)
{
	return &tr->s;
}

int ma_track_orphaned(const struct ma_track *tr)
{
	return tr->s.ring && ma_ring_state(tr->s.ring) == MA_STATE_ORPHANED;
}

const char *ma_track_low_room(const struct ma_track *tr)
{
	return tr->low_room;
}

const char *ma_track_payload_message(const struct ma_track *tr, char *buf,
				     size_t len)
{
	const struct ma_ring_hdr *h = tr->s.ring;
	size_t i = 0;

	/* the target's memory: bounded, printable characters only */
	if (h && len)
		for (; i + 1 < len && i < sizeof(h->message); i++) {
			char c = __atomic_load_n(&h->message[i],
						 __ATOMIC_RELAXED);

			if (!c)
				break;
			buf[i] = c >= 0x20 && c < 0x7f ? c : '?';
		}
	if (len)
		buf[i] = '\0';
	return buf;
}

const struct ma_account *ma_track_account(const struct ma_track *tr)
{
	return tr->sacc ? tr->sacc : tr->acc;
}

size_t ma_track_nprocs(const struct ma_track *tr)
{
	return tr->root ? tr->nprocs : 0;
}

const struct ma_track_proc *ma_track_proc_at(const struct ma_track *tr,
					     size_t i)
{
	return i < tr->nprocs ? &tr->procs[i]->info : NULL;
}

/* A TEMP record (short-lived small blocks the payload counted instead of
 * recording, see ma_record.h) becomes that many ALLOC + FREE pairs in the
 * capture and the accounting, at an address no allocator returns and that
 * tells the report how many allocations of the thread each one lived */
static int replay_temp(struct ma_track *tr, const struct ma_rec *rec)
{
	const struct ma_rec_temp *t = (const void *)rec;
	struct ma_event a = { .type = MA_EV_ALLOC, .thread = rec->thread };
	struct ma_event f = { .type = MA_EV_FREE, .thread = rec->thread };
	int err = 0;

	/* a private copy of the record (drain): checked fields stay so */
	uint64_t count = t->count;
	uint8_t dist = t->dist;

	/* in aggregated mode the payload counts short-lived blocks in its
	 * keys and writes no TEMP record; each one costs count pairs of
	 * capture events, see MA_TEMP_MAX_COUNT */
	uint64_t now = tr->stop_ns ? tr->stop_ns : ma_now_ns();
	uint64_t secs = (now - tr->t0) / 1000000000ull + 1;

	if (ma_rec_len(rec->type_len) < sizeof(*t) ||
	    count > MA_TEMP_MAX_COUNT || dist > MA_TEMP_DMAX || tr->s.agg ||
	    tr->temp_pairs + count > secs * TEMP_PAIRS_PER_S)
		return ma_err(-EPROTO, "corrupt TEMP record in the ring");
	a.alloc.ptr = MA_TEMP_ADDR(dist);
	a.alloc.size = t->size;
	a.alloc.node = t->node;
	a.alloc.kind = t->kind;
	f.free.ptr = MA_TEMP_ADDR(dist);
	f.free.kind = t->kind;
	tr->temps++;
	tr->temp_pairs += count;
	ma_account_feed_pairs(tr->acc, &a, &f, count);
	if (tr->root) {
		struct ma_track *g = tr->root;

		a.thread = f.thread = map_id(tr, MAP_THREAD, rec->thread);
		a.alloc.node = map_id(tr, MAP_NODE, t->node);
		ma_account_feed_pairs(g->sacc, &a, &f, count);
	}
	for (uint64_t i = 0; i < count && !err; i++) {
		err = ma_capture_write_event(tr->root ? tr->root->w : tr->w,
					     &a);
		if (!err)
			err = ma_capture_write_event(
				tr->root ? tr->root->w : tr->w, &f);
	}
	return err;
}

static void emit(struct ma_track *tr, const struct ma_event *ev);

/* Write the Python name of thread index idx when it has one that was not
 * written yet for it */
static void name_slot(struct ma_track *tr, uint32_t idx)
{
	struct tslot *s = &tr->slots[idx];

	if (!s->defined)
		return;
	for (size_t i = 0; i < tr->nnames; i++) {
		const char *name = tr->names[i].name;

		/* a pthread_t is reused at once, a tid far less often */
		if (tr->names[i].ident != s->pthread ||
		    (tr->names[i].native_id &&
		     tr->names[i].native_id != (uint64_t)(uint32_t)s->tid) ||
		    name == s->named)
			continue;
		size_t len = strlen(name);
		struct ma_event ev = {
			.type = MA_EV_TNAME,
			.thread = idx,
			.tname = { .len = len < MA_EV_TNAME_MAX
						  ? (uint32_t)len
						  : MA_EV_TNAME_MAX,
				   .name = name },
		};

		emit(tr, &ev);
		s->named = name;
		return;
	}
}

/* A THREAD event: its index now stands for this thread */
static void thread_defined(struct ma_track *tr, const struct ma_event *ev)
{
	if (!tr->pr || ev->thread >= NAMES_MAX_INDEX)
		return;
	if (ev->thread >= tr->nslots) {
		size_t n = tr->nslots ? tr->nslots : 64;
		struct tslot *p;

		while (n <= ev->thread)
			n *= 2;
		p = realloc(tr->slots, n * sizeof(*p));
		if (!p)
			return; /* no names: comm stays */
		memset(p + tr->nslots, 0, (n - tr->nslots) * sizeof(*p));
		tr->slots = p;
		tr->nslots = n;
	}
	tr->slots[ev->thread] = (struct tslot){ .tid = ev->thr.tid,
						.defined = 1,
						.pthread = ev->thr.pthread };
	name_slot(tr, ev->thread);
}

/* Read the names of the Python threads, with the target running: each
 * read is checked, a torn one gives fewer names (docs/capture-format.md,
 * "Thread names") */
static void names_poll(struct ma_track *tr)
{
	struct ma_py_tname *v;
	size_t n;

	if (!tr->pr || ma_pyreader_thread_names(tr->pr, &v, &n) < 0)
		return;
	free(tr->names);
	tr->names = v;
	tr->nnames = n;
	for (size_t i = 0; i < tr->nslots; i++)
		name_slot(tr, (uint32_t)i);
}

/* Any other record: decoded once, the same event to the capture and to the
 * accounting (PAD is no event) */
static int feed_rec(struct ma_track *tr, const struct ma_rec *rec)
{
	struct ma_event ev;
	int ret = ma_event_from_rec(rec, &ev);

	if (ret <= 0)
		return ret;
	/* a THREAD event's index is the payload's: put_event maps it */
	if (ev.type == MA_EV_THREAD) {
		struct ma_event d = ev;

		ret = put_event(tr, &ev);
		thread_defined(tr, &d);
		return ret;
	}
	return put_event(tr, &ev);
}

/* Take every published record out of the ring, in order: write it to the
 * capture and account for it, then hand the space back (ma_ring_release
 * zeroes it).  The reader looks at the producers' head only for the
 * backlog: reading it for every record would pull the producers' line into
 * this core's cache at each event and make their next reservation a
 * cross-core miss. */
static size_t drain(struct ma_track *tr, size_t max)
{
	const struct ma_rec *rec;
	size_t n = 0;
	int rc = 0;

	if (!tr->rd.hdr)
		return 0;
	/* up to the head seen now, not after the producers: see DRAIN_* */
	uint64_t end = tr->rd.tail + ma_ring_backlog(&tr->rd);

	uint64_t pairs0 = tr->temp_pairs;

	while (n < max && tr->rd.tail < end &&
	       (max == SIZE_MAX ||
		tr->temp_pairs - pairs0 < TEMP_DRAIN_PAIRS) &&
	       (rc = ma_ring_next(&tr->rd, &rec)) > 0) {
		/* Decoded from a copy: the ring is the target's memory, and
		 * a hostile target (issue 13) could rewrite a length between
		 * its check and its use.  The copy's first word is the one
		 * ma_ring_next checked (its length within the data). */
		uint32_t len = ma_rec_len(tr->rd.word);
		int err;

		if (len > tr->rec_cap) {
			size_t cap = len < 4096 ? 4096 : len;
			uint8_t *b = realloc(tr->rec, cap);

			if (!b) {
				if (!tr->error)
					tr->error = ma_err(-ENOMEM,
							   "out of memory");
				break;
			}
			tr->rec = b;
			tr->rec_cap = cap;
		}
		memcpy(tr->rec, rec, len);
		memcpy(tr->rec, &tr->rd.word, sizeof(tr->rd.word));
		rec = (const struct ma_rec *)tr->rec;
		err = ma_rec_type(rec->type_len) == MA_REC_TEMP
			      ? replay_temp(tr, rec)
			      : feed_rec(tr, rec);

		if (err && !tr->error)
			tr->error = err;
		tr->records++;
		n++;
	}
	if (rc < 0 && !tr->error)
		tr->error =
			ma_err(-EPROTO, "corrupt record in the ring at %#lx",
			       (unsigned long)tr->rd.tail);
	ma_ring_release(&tr->rd);
	return n;
}

/* One event to the capture and to the accounting */
static void emit(struct ma_track *tr, const struct ma_event *ev)
{
	struct ma_event e = *ev;
	int err;

	if (tr->root && e.type == MA_EV_AGGEND) {
		/* one AGGEND for the capture, at the end: the processes'
		 * peaks summed (each at its own moment), their drops */
		struct ma_track *g = tr->root;
		struct ma_event *sum = &g->aggend_sum;

		ma_account_feed(tr->acc, &e);
		sum->type = MA_EV_AGGEND;
		sum->aggend.peak_bytes += e.aggend.peak_bytes;
		sum->aggend.peak_count += e.aggend.peak_count;
		if (e.aggend.peak_bytes >= g->aggend_best) {
			g->aggend_best = e.aggend.peak_bytes;
			sum->aggend.peak_after_ns =
				e.aggend.peak_after_ns + tr->t_off;
			sum->aggend.peak_before_ns =
				e.aggend.peak_before_ns
					? e.aggend.peak_before_ns + tr->t_off
					: 0;
		}
		sum->aggend.dropped += e.aggend.dropped;
		sum->aggend.dropped_bytes += e.aggend.dropped_bytes;
		sum->aggend.keys_full += e.aggend.keys_full;
		sum->aggend.unknown_frees += e.aggend.unknown_frees;
		return;
	}
	err = put_event(tr, &e);
	if (err && !tr->error)
		tr->error = err;
}

/*
 * Aggregated tracking: the deltas of every key that moved since the last
 * read, as AGG and AGGTEMP events.  A key's frees are read before its
 * allocations: the payload counts a block's allocation before anyone can
 * free it, so the figures read never have more frees than allocations.
 * The keys are listed, then the ring drained, then their figures read: a
 * key is published after the THREAD and NODE records it names, so those
 * are in the capture before its first event.
 */
static void agg_read(struct ma_track *tr)
{
	struct ma_agg_hdr *h = tr->s.agg;
	struct ma_agg_key *keys;
	uint32_t n;

	if (!h || !tr->prev)
		return;
	keys = ma_agg_keys(h);
	n = __atomic_load_n(&h->nkeys, __ATOMIC_ACQUIRE);
	if (n > MA_AGG_KEYS)
		n = MA_AGG_KEYS;
	drain(tr, SIZE_MAX);
	for (uint32_t i = 0; i < n; i++) {
		struct ma_agg_key *k = &keys[i];
		struct agg_prev *p = &tr->prev[i];
		struct ma_event ev = { .type = MA_EV_AGG };
		uint64_t fc, fb, ac, ab;

		if (!__atomic_load_n(&k->ready, __ATOMIC_ACQUIRE))
			continue;
		fc = __atomic_load_n(&k->frees, __ATOMIC_ACQUIRE);
		fb = __atomic_load_n(&k->free_bytes, __ATOMIC_ACQUIRE);
		ac = __atomic_load_n(&k->allocs, __ATOMIC_ACQUIRE);
		ab = __atomic_load_n(&k->alloc_bytes, __ATOMIC_ACQUIRE);
		ev.thread = k->thread;
		if (ac != p->allocs || ab != p->alloc_bytes || fc != p->frees ||
		    fb != p->free_bytes) {
			ev.agg.node = k->node;
			ev.agg.kind = k->kind;
			ev.agg.allocs = ac - p->allocs;
			ev.agg.alloc_bytes = ab - p->alloc_bytes;
			ev.agg.frees = fc - p->frees;
			ev.agg.free_bytes = fb - p->free_bytes;
			emit(tr, &ev);
			p->allocs = ac;
			p->alloc_bytes = ab;
			p->frees = fc;
			p->free_bytes = fb;
		}
		for (unsigned d = 0; d < MA_AGG_TEMPW; d++) {
			uint64_t tc = __atomic_load_n(&k->temp[d].count,
						      __ATOMIC_ACQUIRE);
			uint64_t tb = __atomic_load_n(&k->temp[d].bytes,
						      __ATOMIC_ACQUIRE);

			if (tc == p->temp_count[d] && tb == p->temp_bytes[d])
				continue;
			ev.type = MA_EV_AGGTEMP;
			ev.aggtemp.node = k->node;
			ev.aggtemp.kind = k->kind;
			ev.aggtemp.dist = (uint8_t)d;
			ev.aggtemp.count = tc - p->temp_count[d];
			ev.aggtemp.bytes = tb - p->temp_bytes[d];
			emit(tr, &ev);
			p->temp_count[d] = tc;
			p->temp_bytes[d] = tb;
		}
	}
}

int ma_track_each_key(const struct ma_track *tr,
		      void (*fn)(void *arg, uint32_t thread, uint32_t node,
				 uint64_t live_bytes, uint64_t live_count),
		      void *arg)
{
	struct ma_agg_hdr *h = tr->s.agg;
	struct ma_agg_key *keys;
	uint32_t n;

	if (!h || !tr->prev)
		return -ENOTSUP;
	keys = ma_agg_keys(h);
	n = __atomic_load_n(&h->nkeys, __ATOMIC_ACQUIRE);
	if (n > MA_AGG_KEYS)
		n = MA_AGG_KEYS;
	for (uint32_t i = 0; i < n; i++) {
		const struct agg_prev *p = &tr->prev[i];

		/* the figures as last read: what the accounting has */
		if (!p->allocs)
			continue;
		fn(arg, keys[i].thread, keys[i].node,
		   p->alloc_bytes - p->free_bytes, p->allocs - p->frees);
	}
	return 0;
}

/* The last read, then each key's figures at the peak and the global ones
 * (docs/payload.md: a key's saved figures if its epoch is the last one,
 * else its live figures) */
static void agg_end(struct ma_track *tr)
{
	struct ma_agg_hdr *h = tr->s.agg;
	struct ma_agg_key *keys;
	uint64_t epoch;
	uint32_t n;

	if (!h || !tr->prev)
		return;
	agg_read(tr);
	keys = ma_agg_keys(h);
	epoch = __atomic_load_n(&h->epoch, __ATOMIC_ACQUIRE);
	n = __atomic_load_n(&h->nkeys, __ATOMIC_ACQUIRE);
	if (n > MA_AGG_KEYS)
		n = MA_AGG_KEYS;
	for (uint32_t i = 0; i < n; i++) {
		const struct ma_agg_key *k = &keys[i];
		struct ma_event ev = { .type = MA_EV_PEAK,
				       .thread = k->thread };

		if (!__atomic_load_n(&k->ready, __ATOMIC_ACQUIRE))
			continue;
		if (k->epoch == epoch) {
			ev.peak.bytes = k->peak_bytes;
			ev.peak.count = k->peak_count;
		} else {
			ev.peak.bytes = k->alloc_bytes - k->free_bytes;
			ev.peak.count = k->allocs - k->frees;
		}
		if (!ev.peak.bytes && !ev.peak.count)
			continue;
		ev.peak.node = k->node;
		ev.peak.kind = k->kind;
		emit(tr, &ev);
	}
	/* a peak reached after the last sample: no sample follows it */
	if (epoch != tr->agg_epoch) {
		tr->peak_after_ns = tr->last_sample_t;
		tr->peak_before_ns = 0;
	}
	struct ma_event end = {
		.type = MA_EV_AGGEND,
		.aggend = { .peak_bytes = h->peak_bytes,
			    .peak_count = h->peak_count,
			    .peak_after_ns = tr->peak_after_ns,
			    .peak_before_ns = tr->peak_before_ns,
			    .dropped = h->dropped,
			    .dropped_bytes = h->dropped_bytes,
			    .keys_full = h->keys_full,
			    .unknown_frees = h->unknown_frees },
	};

	emit(tr, &end);
}

/*
 * The room below the target's memory cgroup's limit, and the machine's
 * (MemAvailable), every 100 ms (with the RSS): the live tables of an
 * aggregated session grow with the blocks it tracks (19-43 bytes each,
 * charged to that cgroup), and a target near its limit would be the OOM
 * killer's choice for them.  The payload may let its tables grow only as
 * far as the room less ROOM_LOW (the budget: a table doubles in one step,
 * faster than a look every 100 ms); the session ends, its tables
 * unmapped, once the room is under ROOM_LOW (whoever took it) or a table
 * stayed as it was for the budget.  1 then, with tr->low_room the
 * message.  No limit known: no budget.  A look reads a few files (about
 * 100 us): with many processes (--children), each is looked at when its
 * tables have changed, or every `every` ns, and the room is shared: each
 * of the `share` processes tracked may take its part (they are in one
 * cgroup, mostly); `all_tabs`: the bytes of every process's tables, for
 * the message.
 */
#define ROOM_LOW	   (16ull << 20)
#define ROOM_EVERY_MANY_NS 1000000000ull

static int room_check(struct ma_track *tr, uint64_t now, uint64_t every,
		      unsigned share, uint64_t all_tabs)
{
	struct ma_agg_hdr *h = tr->s.agg;
	uint64_t room, avail, tabs;
	char cg[256], where[320];
	int hit, machine;

	if (!h)
		return 0;
	tabs = __atomic_load_n(&h->tab_bytes, __ATOMIC_RELAXED);
	hit = (int)__atomic_load_n(&h->budget_hit, __ATOMIC_RELAXED);
	if (!hit && tabs == tr->room_tabs && now - tr->room_at < every)
		return 0;
	tr->room_at = now;
	tr->room_tabs = tabs;
	if (ma_proc_memcg_room(tr->pid, &room, cg, sizeof(cg)))
		room = UINT64_MAX;
	snprintf(where, sizeof(where), "process %d's memory cgroup %s had",
		 (int)tr->pid, cg);
	avail = ma_proc_mem_available();
	machine = avail && avail < room;
	if (machine) {
		room = avail;
		snprintf(where, sizeof(where), "the machine had");
	}
	if (room == UINT64_MAX) {
		__atomic_store_n(&h->tab_budget, 0, __ATOMIC_RELAXED);
		return 0;
	}
	if (room >= ROOM_LOW && !hit) {
		__atomic_store_n(&h->tab_budget,
				 tabs + (room - ROOM_LOW) / (share ? share : 1),
				 __ATOMIC_RELAXED);
		return 0;
	}
	snprintf(tr->low_room, sizeof(tr->low_room),
		 "%s %llu MiB left%s%s; the session's live tables (%llu MiB, "
		 "19-43 bytes per block tracked) are charged there, and are "
		 "given back now, lest the OOM killer take the process "
		 "(--sample keeps far smaller tables)",
		 where, (unsigned long long)(room >> 20),
		 machine ? " (MemAvailable)" : " below its limit",
		 hit ? ", too little for its live tables to grow" : "",
		 (unsigned long long)((all_tabs > tabs ? all_tabs : tabs) >>
				      20));
	return 1;
}

/* An RSS sample; 1 when it found the target gone */
static int sample(struct ma_track *tr, uint64_t now)
{
	uint64_t rss = read_rss(tr->pid);
	struct ma_agg_hdr *h = tr->s.agg;
	/* The same event to both, so that the summary knows when the peak
	 * was and event numbers agree */
	struct ma_event ev = {
		.type = MA_EV_SAMPLE,
		.sample = { .t_ns = now - tr->t0,
			    .rss = rss,
			    .live = ma_account_totals(tr->acc)->live_bytes },
	};

	if (h) {
		/* the payload's own figure: the accounting's moves only
		 * every AGG_EVERY_NS */
		uint64_t epoch = __atomic_load_n(&h->epoch, __ATOMIC_ACQUIRE);

		ev.sample.live =
			__atomic_load_n(&h->live_gil, __ATOMIC_RELAXED) +
			__atomic_load_n(&h->live_nat, __ATOMIC_RELAXED);
		if (epoch != tr->agg_epoch) {
			/* the last peak so far came since the last sample */
			tr->peak_after_ns = tr->last_sample_t;
			tr->peak_before_ns = ev.sample.t_ns;
			tr->agg_epoch = epoch;
		}
		tr->last_sample_t = ev.sample.t_ns;
	}
	/* through ma_capture_sample: it ends the block a second after the
	 * block's first sample, so that a memattach killed loses about a
	 * second; with aggregated tracking a block's raw megabyte takes
	 * hours to fill (writing the sample as any event lost everything
	 * since the start) */
	if (!tr->root)
		ma_capture_sample(tr->w, ev.sample.t_ns, ev.sample.rss,
				  ev.sample.live);
	tr->last_rss = rss;
	tr->last_live = ev.sample.live;
	ma_account_feed(tr->acc, &ev);
	tr->last_sample = now;
	ma_step("track.sample");
	/* the progress line says so: nothing is tracked while it lasts.  A
	 * job-control stop (T, no tracer: ma_proc_job_stopped) or a tracer's
	 * (t: ma_proc_held_by_tracer), from one read of the status */
	struct ma_status st;

	tr->target_stopped = 0;
	tr->held_by = 0;
	if (rss && !ma_status_read(tr->pid, &st)) {
		tr->target_stopped = st.state == 'T' && !st.tracer;
		if (st.state == 't' && st.tracer && st.tracer != getpid())
			tr->held_by = ma_proc_held_by_tracer(
				tr->pid, tr->tracer, sizeof(tr->tracer));
	}
	return !rss && target_ended(tr);
}

/*
 * The payload's watchdog patches the GOT slots after the thaw, threads
 * running (docs/payload.md, "GOT patching"); the process is attached once
 * it has.  Meanwhile the ring is drained as during the run (the Python
 * domains record from the thaw on) and the heartbeat kept.  Bounded: a
 * watchdog waiting for a long dlopen of another thread patches later, and
 * the run does not need to wait for it.
 */
static void wait_got(struct ma_track *tr)
{
	struct ma_ring_hdr *h = tr->s.ring;
	uint64_t t0 = ma_now_ns(), looked = t0;

	while (!tr->error && h &&
	       __atomic_load_n(&h->got_state, __ATOMIC_ACQUIRE) ==
		       MA_GOT_PENDING &&
	       ma_ring_state(h) == MA_STATE_TRACKING &&
	       ma_now_ns() - t0 < WAIT_GOT_NS) {
		struct timespec ts = { 0, 500000 };
		uint64_t now = ma_now_ns();

		/* stopped by a signal since the check before the attach:
		 * the watchdog patches once the target runs again */
		if (now - looked >= STOPPED_EVERY_NS) {
			looked = now;
			if (ma_proc_job_stopped(tr->pid, 0))
				break;
		}
		ma_ring_heartbeat(h, now);
		if (!drain(tr, DRAIN_MAX))
			nanosleep(&ts, NULL);
	}
	if (!h)
		return;
	tr->s.got_state = __atomic_load_n(&h->got_state, __ATOMIC_ACQUIRE);
	tr->s.got_slots = h->got_slots;
	tr->s.got_modules = h->got_modules;
	tr->s.py_domains = h->py_domains;
	tr->s.got_ns = h->got_ns;
	tr->s.attach_ns += ma_now_ns() - t0;
}

/* The drain, aggregate read and state of one process of several, every
 * turn; ends it (its data kept, marked exited) when it is gone */
static void multi_end(struct ma_track *p, uint32_t state, const char *why,
		      const struct ma_track_run *run)
{
	struct ma_track *g = p->root;

	drain(p, SIZE_MAX);
	agg_end(p);
	if (p->s.ring) {
		p->lost_records = __atomic_load_n(&p->s.ring->lost_records,
						  __ATOMIC_RELAXED);
		p->lost_bytes = __atomic_load_n(&p->s.ring->lost_bytes,
						__ATOMIC_RELAXED);
	}
	set_active(p, 0);
	p->info.state = state;
	snprintf(p->info.note, sizeof(p->info.note), "%s", why);
	put_proc(g, &p->info);
	if (p != g) {
		/* its ring and aggregate area are not needed any more */
		ma_injection_close(&p->s);
		free(p->prev);
		p->prev = NULL;
	}
	if (run && run->proc_note)
		run->proc_note(run->arg, &p->info);
}

/* The ring's memfd still mapped in the process: the payload maps it for
 * the whole session, and an exec unmaps everything (1 when the maps cannot
 * be read: the exit is noticed elsewhere) */
static int ring_mapped(pid_t pid, const struct stat *ring)
{
	struct ma_maps m = { 0 };
	int found = 0;

	if (ma_maps_read(pid, &m) < 0)
		return 1;
	for (size_t i = 0; i < m.n && !found; i++)
		found = m.v[i].inode == (unsigned long)ring->st_ino &&
			strstr(m.v[i].path, "/memfd:" MA_RING_MEMFD_NAME);
	ma_maps_free(&m);
	return found;
}

/*
 * The process exec'd, whatever program it runs now, the same one too.
 * First the cheap check: it still holds the ring's memfd (close-on-exec)
 * at the number the payload gave.  A program may also have closed that
 * descriptor itself, or put another file at its number (a closerange()
 * in a daemon): then the ring's mapping decides, read from its maps at
 * most every RING_MAPS_EVERY_NS (a large process's maps take milliseconds).
 */
#define RING_MAPS_EVERY_NS 2000000000ull
static int ring_gone(struct ma_track *p, uint64_t now)
{
	struct stat a, b;
	char path[64];

	if (p->s.ring_fd < 0 || p->s.target_ring_fd < 0 ||
	    fstat(p->s.ring_fd, &a))
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)p->pid,
		 p->s.target_ring_fd);
	if (stat(path, &b) == 0) {
		if (a.st_ino == b.st_ino && a.st_dev == b.st_dev)
			return 0;
	} else if (errno != ENOENT) {
		return 0;
	}
	if (p->ring_maps_ns && now - p->ring_maps_ns < RING_MAPS_EVERY_NS)
		return 0;
	p->ring_maps_ns = now;
	/* a process being killed loses its descriptors and its memory
	 * before it is a zombie: not an exec (its main thread's PF_EXITING
	 * is set before either goes); the exit is noticed at the next
	 * sample.  Once seen as "exec'd another program" (e2e/test_hazards) */
	return !ring_mapped(p->pid, &a) && !ma_proc_exiting(p->pid);
}

/*
 * A child whose Python may still be starting: `python3` just exec'd, the
 * dynamic loader has not mapped libpython yet (a Python-named program
 * without _PyRuntime: -EPROTONOSUPPORT from discover) or Py_Initialize has
 * not made the interpreter yet (-ENODATA).  1 while it is to be looked at
 * again (for START_WAIT_NS from the first look), 0 once it is to be
 * listed as skipped; the entry goes then.
 */
#define START_WAIT_NS 10000000000ull

static int pending_wait(struct ma_track *g, pid_t pid, int err)
{
	uint64_t now = ma_now_ns(), sig = ma_proc_exec_sig(pid);
	size_t i;

	for (i = 0; i < g->npending && g->pending[i].pid != pid; i++)
		;
	if ((err == -ENODATA || err == -EPROTONOSUPPORT) &&
	    !ma_proc_exiting(pid)) {
		if (i < g->npending && g->pending[i].sig != sig)
			g->pending[i] = (struct pending_child){
				.pid = pid, .sig = sig, .first_ns = now
			};
		if (i < g->npending)
			return now - g->pending[i].first_ns < START_WAIT_NS;
		if (g->npending == g->pending_cap) {
			size_t cap = g->pending_cap ? 2 * g->pending_cap : 8;
			void *v =
				realloc(g->pending, cap * sizeof(*g->pending));

			if (!v)
				return 0;
			g->pending = v;
			g->pending_cap = cap;
		}
		g->pending[g->npending++] = (struct pending_child){
			.pid = pid, .sig = sig, .first_ns = now
		};
		return 1;
	}
	return 0;
}

static void pending_done(struct ma_track *g, pid_t pid)
{
	for (size_t i = 0; i < g->npending; i++)
		if (g->pending[i].pid == pid) {
			g->pending[i] = g->pending[--g->npending];
			return;
		}
}

/* A child found: tracked if it runs Python, else listed as skipped.  1
 * when it is to be looked at again (its Python still starting), else 0 */
static int add_child(struct ma_track *g, pid_t pid, pid_t ppid,
		     const struct ma_track_run *run)
{
	struct ma_target *t = NULL;
	int err;

	hb_busy(g, 1);
	err = ma_target_open(pid, &g->topts, &t);
	hb_busy(g, 0);
	if (err && pending_wait(g, pid, err))
		return 1;
	pending_done(g, pid);
	if (err) {
		proc_skipped(g, pid, ppid, skip_why(pid), run);
		return 0;
	}
	ma_track_add(g, t, ppid);
	ma_target_close(t);
	if (run && run->proc_note)
		run->proc_note(run->arg, &g->procs[g->nprocs - 1]->info);
	return 0;
}

/* A line of /proc/PID/FILE (or /proc/PID/task/TID/FILE) into buf; 0 or -1 */
static int proc_read(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return 0;
}

/* A thread of pid in fork, vfork or clone now: its child may still share
 * its memory */
static int in_clone(pid_t pid)
{
	char path[64], buf[64];
	DIR *d;
	struct dirent *de;
	int found = 0;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return 1;
	while (!found && (de = readdir(d))) {
		char sp[320];

		if (de->d_name[0] == '.')
			continue;
		snprintf(sp, sizeof(sp), "/proc/%d/task/%s/syscall", (int)pid,
			 de->d_name);
		if (proc_read(sp, buf, sizeof(buf)))
			continue;
		/* x86-64: clone 56, fork 57, vfork 58, clone3 435 */
		long nr = strtol(buf, NULL, 10);

		found = nr == 56 || nr == 57 || nr == 58 || nr == 435;
	}
	closedir(d);
	return found;
}

/*
 * A child to track now?  Not yet (0) when it is a zombie, memattach's own
 * heap census copy (docs/heap.md), or a vfork child that still shares its
 * parent's memory (subprocess's posix_spawn before the exec: anything
 * done in it would be done in the parent); kcmp(KCMP_VM) tells, else a
 * parent thread still inside clone/vfork says it may.
 */
static int child_ready(pid_t parent, pid_t c)
{
	char path[64], buf[512];
	const char *p;
	long r;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)c);
	if (proc_read(path, buf, sizeof(buf)))
		return 0;
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X')
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)c);
	if (!proc_read(path, buf, sizeof(buf)) &&
	    !strncmp(buf, "memattach-heap", 14))
		return 0;
	r = syscall(SYS_kcmp, parent, c, KCMP_VM, 0, 0);
	if (r == 0)
		return 0;
	if (r < 0 && in_clone(parent))
		return 0;
	return 1;
}

/*
 * A process skipped that still runs (not Python: a shell, say) is watched
 * too: its children are found as a tracked one's are (the Python that
 * `subprocess.Popen("... python3 ...", shell=True)` starts is the shell's
 * child), and an exec of it into another image (`sh -c "...; exec
 * python3 ..."`: the same PID) is looked at again, as a child found now.
 * 1 when p is to be walked for children.
 */
static int skipped_watch(struct ma_track *g, struct ma_track *p,
			 const struct ma_track_run *run)
{
	uint64_t sig;

	if (p->active || p->info.state != MA_PROC_SKIPPED || p->skip_ended ||
	    p->skip_replaced || p == g)
		return p->active;
	if (ma_proc_ended(p->info.pid)) {
		p->skip_ended = 1;
		return 0;
	}
	sig = ma_proc_exec_sig(p->info.pid);
	if (sig && p->skip_sig && sig != p->skip_sig) {
		/* its new image: tracked if it is a Python now, else skipped
		 * again with the new reason; this entry says what it was */
		if (add_child(g, p->info.pid, p->info.ppid, run))
			return 0; /* its Python is starting: next look */
		p->skip_replaced = 1;
		snprintf(p->info.note + strlen(p->info.note),
			 sizeof(p->info.note) - strlen(p->info.note),
			 "; then it exec'd another program, looked at again");
		return 0;
	}
	return 1;
}

/* Every child (of every thread) of the tracked processes, and of the
 * skipped ones that run on, not seen yet: tracked if it runs Python, else
 * listed as skipped */
static void find_children(struct ma_track *g, const struct ma_track_run *run)
{
	/* entries added on the way are looked at in the next round */
	size_t nprocs = g->nprocs;

	/* a child that ended while its Python was starting */
	for (size_t i = 0; i < g->npending;)
		if (ma_proc_ended(g->pending[i].pid))
			g->pending[i] = g->pending[--g->npending];
		else
			i++;

	for (size_t i = 0; i < nprocs; i++) {
		struct ma_track *p = g->procs[i];
		pid_t *kids;
		size_t n;

		if (!skipped_watch(g, p, run) ||
		    ma_proc_children(p->info.pid, &kids, &n))
			continue;
		for (size_t j = 0; j < n; j++) {
			int seen = 0;

			for (size_t k = 0; k < g->nprocs && !seen; k++)
				seen = g->procs[k]->info.pid == kids[j];
			if (!seen && child_ready(p->info.pid, kids[j]))
				add_child(g, kids[j], p->info.pid, run);
		}
		free(kids);
	}
}

/* The payload has stopped, by itself or asked to (its ring says so) */
static int ring_final(const struct ma_track *p)
{
	uint32_t st = ma_ring_state(p->s.ring);

	return st == MA_STATE_FAILED || st == MA_STATE_ORPHANED ||
	       st == MA_STATE_STOPPED;
}

/* A process of several that exited: its note, with how when known */
static const char *exited_note(const struct ma_track *p, char *buf, size_t len)
{
	snprintf(buf, len, "exited%s%s%s", p->exit_text[0] ? " (" : "",
		 p->exit_text, p->exit_text[0] ? ")" : "");
	return buf;
}

static int run_multi(struct ma_track *g, const struct ma_track_run *run)
{
	for (;;) {
		uint64_t now = ma_now_ns();
		size_t got = 0, active = 0;

		hb_lease(g, now);
		for (size_t i = 0; i < g->nprocs; i++) {
			struct ma_track *p = g->procs[i];

			if (!p->active)
				continue;
			ma_ring_heartbeat(p->s.ring, now);
			if (ma_ring_backlog(&p->rd) >= DRAIN_BATCH ||
			    now - p->last_drain >= DRAIN_EVERY_NS) {
				got += drain(p, DRAIN_MAX);
				p->last_drain = now;
			}
			if (p->error) {
				g->complete = 0;
				if (!g->error)
					g->error = p->error;
				return MA_TRACK_END_ERROR;
			}
			if (p->s.agg && now - p->last_agg >= AGG_EVERY_NS) {
				agg_read(p);
				p->last_agg = now;
			}
		}
		/* names of the first process's threads only: the others'
		 * targets are not kept open (docs/limits.md) */
		if (now - g->last_names >= NAMES_EVERY_NS) {
			names_poll(g);
			g->last_names = now;
		}
		if (now - g->last_children >= SAMPLE_EVERY_NS) {
			struct ma_event ev = { .type = MA_EV_SAMPLE };
			char note[96];
			int any = 0;

			g->last_children = now;
			g->target_stopped = 0;
			g->held_by = 0;
			/* the room's shares, and the tables all hold */
			unsigned share = 0;
			uint64_t all_tabs = 0;

			for (size_t i = 0; i < g->nprocs; i++) {
				struct ma_agg_hdr *h = g->procs[i]->s.agg;

				if (!g->procs[i]->active || !h)
					continue;
				share++;
				all_tabs += __atomic_load_n(&h->tab_bytes,
							    __ATOMIC_RELAXED);
			}
			for (size_t i = 0; i < g->nprocs; i++) {
				struct ma_track *p = g->procs[i];

				if (!p->active)
					continue;
				if (sample(p, now)) {
					multi_end(p, MA_PROC_EXITED,
						  exited_note(p, note,
							      sizeof(note)),
						  run);
					continue;
				}
				/* the processes share a cgroup, mostly: the
				 * whole session ends */
				if (room_check(p, now, ROOM_EVERY_MANY_NS,
					       share, all_tabs)) {
					if (p != g)
						memcpy(g->low_room, p->low_room,
						       sizeof(g->low_room));
					return MA_TRACK_END_MEMORY;
				}
				/* a payload stopped (memattach detach) unmaps
				 * the ring too: the state loop below says so */
				if (!ring_final(p) && ring_gone(p, now)) {
					p->target_execed = 1;
					multi_end(p, MA_PROC_EXITED,
						  "exec'd another program",
						  run);
					continue;
				}
				ev.sample.rss += p->last_rss;
				ev.sample.live += p->last_live;
				g->target_stopped |= p->target_stopped;
				if (p->held_by && !g->held_by) {
					g->held_by = p->held_by;
					memcpy(g->tracer, p->tracer,
					       sizeof(g->tracer));
				}
				any = 1;
			}
			if (any) {
				ev.sample.t_ns = now - g->t0;
				ma_capture_sample(g->w, ev.sample.t_ns,
						  ev.sample.rss,
						  ev.sample.live);
				ma_account_feed(g->sacc, &ev);
			}
			if (g->opts.children)
				find_children(g, run);
		}
		if (run->progress &&
		    now - g->last_progress >= run->progress_ns) {
			struct ma_track_status st = {
				.elapsed_ns = now - g->t0,
				.totals = ma_account_totals(g->sacc),
				.capture_bytes = ma_capture_bytes(g->w),
				.target_stopped = g->target_stopped,
				.held_by = g->held_by,
				.tracer = g->tracer,
			};

			for (size_t i = 0; i < g->nprocs; i++)
				if (g->procs[i]->active)
					st.lost_records += __atomic_load_n(
						&g->procs[i]
							 ->s.ring->lost_records,
						__ATOMIC_RELAXED);
			run->progress(run->arg, &st);
			g->last_progress = now;
		}
		for (size_t i = 0; i < g->nprocs; i++) {
			struct ma_track *p = g->procs[i];
			uint32_t st;

			if (!p->active)
				continue;
			st = ma_ring_state(p->s.ring);
			if (ring_final(p)) {
				/* the process lives on: in the payload's
				 * words, why it stopped */
				char msg[128], note[160];

				ma_track_payload_message(p, msg, sizeof(msg));
				snprintf(note, sizeof(note), "payload %s%s%s",
					 st == MA_STATE_FAILED ? "failed"
							       : "stopped",
					 msg[0] ? ": " : "", msg);
				multi_end(p, MA_PROC_STOPPED, note, run);
			} else {
				active++;
			}
		}
		if (!active) {
			/* the session ends as the first process did: its
			 * payload stopped (memattach detach) is not an exit */
			if (g->info.state == MA_PROC_STOPPED)
				return ma_ring_state(g->s.ring) ==
						       MA_STATE_FAILED
					       ? MA_TRACK_END_PAYLOAD_FAILED
					       : MA_TRACK_END_PAYLOAD_STOPPED;
			if (g->target_execed)
				return MA_TRACK_END_TARGET_EXECED;
			g->target_exited = 1;
			return MA_TRACK_END_TARGET_EXITED;
		}
		if (run->stop_requested && run->stop_requested(run->arg))
			return MA_TRACK_END_STOP_REQUESTED;
		if (run->duration_ns && now - g->t0 >= run->duration_ns)
			return MA_TRACK_END_DURATION;
		if (!got) {
			struct timespec ts = { 0, 2000000 };

			nanosleep(&ts, NULL);
		}
	}
}

int ma_track_run(struct ma_track *tr, const struct ma_track_run *run)
{
	if (!tr->started) {
		tr->started = 1;
		tr->t0 = ma_now_ns();
		ma_step("track.started");
		for (size_t i = 1; i < tr->nprocs; i++)
			tr->procs[i]->t_off =
				tr->procs[i]->t0 > tr->t0
					? tr->procs[i]->t0 - tr->t0
					: 0;
	}
	if (tr->root)
		return run_multi(tr, run);
	for (;;) {
		uint64_t now = ma_now_ns();
		size_t got = 0;

		ma_ring_heartbeat(tr->s.ring, now);
		hb_lease(tr, now);
		if (ma_ring_backlog(&tr->rd) >= DRAIN_BATCH ||
		    now - tr->last_drain >= DRAIN_EVERY_NS) {
			got = drain(tr, DRAIN_MAX);
			tr->last_drain = now;
		}

		if (tr->error) {
			tr->complete = 0;
			return MA_TRACK_END_ERROR;
		}
		if (now - tr->last_names >= NAMES_EVERY_NS) {
			names_poll(tr);
			tr->last_names = now;
		}
		if (tr->s.agg && now - tr->last_agg >= AGG_EVERY_NS) {
			agg_read(tr);
			tr->last_agg = now;
		}
		if (now - tr->last_sample >= SAMPLE_EVERY_NS) {
			if (sample(tr, now)) {
				tr->target_exited = 1;
				return MA_TRACK_END_TARGET_EXITED;
			}
			if (room_check(tr, now, SAMPLE_EVERY_NS, 1, 0))
				return MA_TRACK_END_MEMORY;
			/* an exec takes the payload and its ring with the
			 * old program's memory: nothing more can come */
			if (!ring_final(tr) && ring_gone(tr, now)) {
				drain(tr, SIZE_MAX);
				tr->target_execed = 1;
				return MA_TRACK_END_TARGET_EXECED;
			}
		}
		if (run->progress &&
		    now - tr->last_progress >= run->progress_ns) {
			struct ma_track_status st = {
				.elapsed_ns = now - tr->t0,
				.totals = ma_account_totals(tr->acc),
				.capture_bytes = ma_capture_bytes(tr->w),
				.lost_records = __atomic_load_n(
					&tr->s.ring->lost_records,
					__ATOMIC_RELAXED),
				.target_stopped = tr->target_stopped,
				.held_by = tr->held_by,
				.tracer = tr->tracer,
			};

			run->progress(run->arg, &st);
			tr->last_progress = now;
		}
		uint32_t st = ma_ring_state(tr->s.ring);

		if (st == MA_STATE_FAILED)
			return MA_TRACK_END_PAYLOAD_FAILED;
		if (st == MA_STATE_ORPHANED || st == MA_STATE_STOPPED)
			return MA_TRACK_END_PAYLOAD_STOPPED;
		if (run->stop_requested && run->stop_requested(run->arg))
			return MA_TRACK_END_STOP_REQUESTED;
		if (run->duration_ns && now - tr->t0 >= run->duration_ns)
			return MA_TRACK_END_DURATION;
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
}

/* The stop's message for a process stopped by a signal */
static int stopped_err(pid_t pid)
{
	return ma_err(-EAGAIN,
		      "process %d is stopped by a signal (state T), so its "
		      "payload cannot confirm the end of tracking: the "
		      "capture holds what it had published; the payload "
		      "stops tracking by itself once the process runs again "
		      "('kill -CONT %d')",
		      (int)pid, (int)pid);
}

/* Tell the payload to stop, then drain until it says it has (its final
 * STATS record is the last one) */
/* Several processes: every one told to stop at once, then all drained
 * (each heartbeat kept) until each confirmed or 3 s passed */
static int stop_multi(struct ma_track *g)
{
	uint64_t deadline = ma_now_ns() + STOP_TIMEOUT_NS, looked = 0;
	size_t stopped = 0;
	pid_t one = 0;
	int err = 0;

	for (size_t i = 0; i < g->nprocs; i++)
		if (g->procs[i]->active)
			ma_ring_request_stop(g->procs[i]->s.ring);
	ma_step("stop.requested");
	for (;;) {
		uint64_t now = ma_now_ns();
		size_t got = 0, waiting = 0;
		int look = now - looked >= STOPPED_EVERY_NS;

		if (look)
			looked = now;
		for (size_t i = 0; i < g->nprocs; i++) {
			struct ma_track *p = g->procs[i];
			uint32_t st;
			size_t n;

			if (!p->active)
				continue;
			ma_ring_heartbeat(p->s.ring, now);
			n = drain(p, DRAIN_MAX);
			got += n;
			st = ma_ring_state(p->s.ring);
			if (p->error && !g->error)
				g->error = p->error;
			if ((st == MA_STATE_STOPPED ||
			     st == MA_STATE_ORPHANED ||
			     st == MA_STATE_FAILED) &&
			    !n && ma_ring_backlog(&p->rd) == 0) {
				multi_end(p, MA_PROC_TRACKED, "", NULL);
			} else if (target_ended(p)) {
				char note[96];

				multi_end(p, MA_PROC_EXITED,
					  exited_note(p, note, sizeof(note)),
					  NULL);
			} else if (look && ma_proc_job_stopped(p->pid, 1)) {
				/* cannot confirm until it runs: as in
				 * ma_track_stop */
				multi_end(p, MA_PROC_TRACKED,
					  "stopped by a signal (state T): its "
					  "stop not confirmed, its payload "
					  "stops by itself once it runs",
					  NULL);
				g->complete = 0;
				stopped++;
				one = p->pid;
			} else {
				waiting++;
			}
		}
		ma_step("stop.drain");
		if (!waiting || g->error)
			break;
		if (now > deadline) {
			g->complete = 0;
			err = ma_err(-ETIMEDOUT,
				     "%zu process%s did not confirm %s stop "
				     "within 3 s",
				     waiting, waiting > 1 ? "es" : "",
				     waiting > 1 ? "their" : "its");
			for (size_t i = 0; i < g->nprocs; i++)
				if (g->procs[i]->active)
					multi_end(g->procs[i], MA_PROC_TRACKED,
						  "stop not confirmed", NULL);
			break;
		}
		if (!got) {
			struct timespec ts = { 0, 1000000 };

			nanosleep(&ts, NULL);
		}
	}
	ma_step("stop.confirmed");
	if (stopped && !err) {
		g->target_stopped = 1;
		if (stopped == 1)
			err = stopped_err(one);
		else
			err = ma_err(-EAGAIN,
				     "%zu processes are stopped by a signal "
				     "(state T), so their payloads cannot "
				     "confirm the end of tracking (listed "
				     "below)",
				     stopped);
	}
	if (g->error) {
		g->complete = 0;
		if (!err)
			err = g->error;
	}
	return err;
}

/* The stop found the target held in a tracer's stop (gdb): the payload
 * cannot confirm either, and stops by itself once the tracer lets the
 * process run (ma_track_stop) */
static int held_at_stop(struct ma_track *tr, pid_t by)
{
	tr->held_by = by;
	tr->complete = 0;
	return ma_err(-EAGAIN,
		      "process %d is held stopped by its tracer %d (%s), so "
		      "its payload cannot confirm the end of tracking: the "
		      "capture holds what it had published; the payload stops "
		      "tracking by itself once %s lets the process run",
		      (int)tr->pid, (int)by, tr->tracer, tr->tracer);
}

/* The stop found the target stopped by a signal (ma_track_stop) */
static int stopped_at_stop(struct ma_track *tr)
{
	tr->target_stopped = 1;
	tr->complete = 0;
	return stopped_err(tr->pid);
}

int ma_track_stop(struct ma_track *tr)
{
	int err = 0;

	tr->stop_ns = ma_now_ns();
	/* the samples' look: the stop's own decides */
	tr->target_stopped = 0;
	tr->held_by = 0;
	if (tr->root)
		return stop_multi(tr);

	if (tr->target_exited || tr->target_execed) {
		/* The target is gone, or its memory with an exec: what it
		 * published is in the ring */
		drain(tr, SIZE_MAX);
		goto out;
	}
	/* names of threads started since the last read, the target alive */
	names_poll(tr);
	ma_ring_request_stop(tr->s.ring);
	ma_step("stop.requested");
	uint64_t deadline = ma_now_ns() + STOP_TIMEOUT_NS, looked = 0;

	for (;;) {
		uint64_t now = ma_now_ns();

		ma_ring_heartbeat(tr->s.ring, now);
		size_t got = drain(tr, DRAIN_MAX);
		uint32_t st = ma_ring_state(tr->s.ring);

		ma_step("stop.drain");

		if (tr->error)
			break;
		int final = st == MA_STATE_STOPPED || st == MA_STATE_ORPHANED ||
			    st == MA_STATE_FAILED;

		if (final && !got && ma_ring_backlog(&tr->rd) == 0)
			break;
		/*
		 * Stopped by a signal (state T): the payload cannot run to
		 * confirm, however long this waits.  Once every thread is
		 * stopped nothing more comes into the ring: it is read to its
		 * end and the request left in it, which the watchdog sees
		 * first when the target runs again (or memattach gone), and
		 * stops the session itself, as after a memattach killed.
		 * Resuming the target is its owner's call, never ours.
		 */
		if (!final && now - looked >= STOPPED_EVERY_NS) {
			looked = now;
			if (ma_proc_job_stopped(tr->pid, 1)) {
				drain(tr, SIZE_MAX);
				err = stopped_at_stop(tr);
				break;
			}
		}
		/* the payload has stopped: what is left is ours to read, and
		 * the ring is finite (a full 64 MiB ring read by a starved
		 * memattach takes more than 3 s) */
		if (now > deadline && !(final && got)) {
			if (target_ended(tr)) {
				tr->target_exited = 1;
				break;
			}
			/* a thread of a stopped target that never stopped
			 * (asleep in the kernel, state D) kept the look
			 * above from ending it sooner */
			if (ma_proc_job_stopped(tr->pid, 0)) {
				err = stopped_at_stop(tr);
				break;
			}
			pid_t by = ma_proc_held_by_tracer(tr->pid, tr->tracer,
							  sizeof(tr->tracer));

			if (by) {
				err = held_at_stop(tr, by);
				break;
			}
			tr->complete = 0;
			err = ma_err(-ETIMEDOUT,
				     "the payload did not confirm its stop "
				     "within 3 s");
			break;
		}
		if (!got) {
			struct timespec ts = { 0, 1000000 };

			nanosleep(&ts, NULL);
		}
	}
out:
	ma_step("stop.confirmed");
	if (tr->error) {
		tr->complete = 0;
		if (!err)
			err = tr->error;
	}
	return err;
}

int ma_track_finish(struct ma_track *tr, struct ma_track_result *res)
{
	const struct ma_account_totals *tot = ma_account_totals(tr->acc);
	struct ma_capture_trailer trl = { 0 };
	struct timespec wall;
	int err;

	if (tr->root) {
		/* every process ended by the stop or before it */
		for (size_t i = 0; i < tr->nprocs; i++) {
			struct ma_track *p = tr->procs[i];

			if (p->active)
				multi_end(p, MA_PROC_TRACKED, "", NULL);
			trl.lost_records += p->lost_records;
			trl.lost_bytes += p->lost_bytes;
		}
		if (tr->aggend_sum.type) {
			int e = ma_capture_write_event(tr->w, &tr->aggend_sum);

			if (e && !tr->error)
				tr->error = e;
			ma_account_feed(tr->sacc, &tr->aggend_sum);
			if (tr->nprocs > 1)
				ma_account_note_peak_summed(tr->sacc);
		}
		/* a process's STATS record may have been dropped (the
		 * ring full at its stop): the summary says what the rings
		 * counted, as the trailer does */
		ma_account_note_lost(tr->sacc, trl.lost_records,
				     trl.lost_bytes);
		tot = ma_account_totals(tr->sacc);
		if (tr->error)
			tr->complete = 0;
	} else {
		agg_end(tr);
		trl.lost_records = __atomic_load_n(&tr->s.ring->lost_records,
						   __ATOMIC_RELAXED);
		trl.lost_bytes = __atomic_load_n(&tr->s.ring->lost_bytes,
						 __ATOMIC_RELAXED);
		ma_account_note_lost(tr->acc, trl.lost_records, trl.lost_bytes);
	}
	trl.unknown_frees = tot->unknown_frees;
	trl.stack_truncated = tot->stack_truncated;
	clock_gettime(CLOCK_REALTIME, &wall);
	trl.end_wall_ns =
		(uint64_t)wall.tv_sec * 1000000000ull + (uint64_t)wall.tv_nsec;
	trl.duration_ns = ma_now_ns() - tr->t0;
	if (tr->acc)
		ma_account_note_duration(tr->acc, trl.duration_ns);
	if (tr->sacc)
		ma_account_note_duration(tr->sacc, trl.duration_ns);
	/* the payload ended the session by itself, memattach having missed
	 * its heartbeat: the attach exits 8 (partial), and the capture must
	 * not read as complete either */
	if (!tr->root && ma_track_orphaned(tr))
		tr->complete = 0;
	trl.complete = tr->complete;
	err = ma_capture_close(tr->w, &trl);
	tr->w = NULL;
	ma_step("stop.capture-closed");
	if (err)
		tr->complete = 0;
	*res = (struct ma_track_result){
		.complete = tr->complete,
		.target_exited = tr->target_exited,
		.target_stopped = tr->target_stopped,
		.held_by = tr->held_by,
		.duration_ns = trl.duration_ns,
		.lost_records = trl.lost_records,
		.records = tr->records,
		.temps = tr->temps,
		.temp_pairs = tr->temp_pairs,
	};
	memcpy(res->tracer, tr->tracer, sizeof(res->tracer));
	/* several processes: each one's own note says how it ended */
	if (!tr->root)
		snprintf(res->exit_text, sizeof(res->exit_text), "%s",
			 tr->exit_text);
	return err;
}

void ma_track_free(struct ma_track *tr)
{
	struct ma_capture_trailer none = { 0 };

	if (!tr)
		return;
	if (tr->hb_started) {
		__atomic_store_n(&tr->hb_stop, 1, __ATOMIC_RELEASE);
		pthread_join(tr->hb, NULL);
	}
	if (tr->root == tr || tr->hb_mu_init)
		pthread_mutex_destroy(&tr->hb_mu);
	if (tr->w)
		ma_capture_close(tr->w, &none);
	for (size_t i = 1; tr->root == tr && i < tr->nprocs; i++) {
		struct ma_track *p = tr->procs[i];

		ma_account_free(p->acc);
		ma_injection_close(&p->s);
		free(p->prev);
		for (int k = 0; k < 3; k++)
			free(p->map[k]);
		free(p);
	}
	for (int k = 0; k < 3; k++)
		free(tr->map[k]);
	free(tr->procs);
	free(tr->pending);
	ma_account_free(tr->sacc);
	ma_account_free(tr->acc);
	ma_injection_close(&tr->s);
	ma_pyreader_free(tr->pr);
	free(tr->names);
	free(tr->slots);
	free(tr->prev);
	free(tr->rec);
	free(tr);
}
