/* SPDX-License-Identifier: MIT */
/*
 * The tracking session (track.h): the consumer of the ring, from the
 * injection to the capture's trailer.
 */
#include "track.h"

#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "capture.h"
#include "ma_agg.h"
#include "discover.h"
#include "errors.h"
#include "ma_ring_io.h"
#include "ptrace.h"
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
#define WAIT_GOT_NS	3000000000ull
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

/* A key's figures as last read */
struct agg_prev {
	uint64_t allocs, alloc_bytes, frees, free_bytes;
	uint64_t temp_count[MA_AGG_TEMPW], temp_bytes[MA_AGG_TEMPW];
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
	uint64_t peak_after_ns, peak_before_ns;
};

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

static void wait_got(struct ma_track *tr);

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
		.flags = o->flags,
		.start_wall_ns = (uint64_t)wall.tv_sec * 1000000000ull +
				 (uint64_t)wall.tv_nsec,
		.py_version = t->version,
		.exe = t->exe,
		.cmdline = t->cmdline,
	};

	err = ma_capture_create(o->output, &meta, &tr->w);
	if (err)
		return err;
	err = ma_account_new(&tr->acc);
	if (err)
		return err;
	struct ma_inject_opts io = { .ring_size = o->ring_size,
				     .flags = o->flags,
				     .max_frames = o->max_frames,
				     .full_wait_us = 20000 };

	err = ma_inject_start(t, &io, &tr->s);
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
	tr->t0 = ma_now_ns(); /* ma_track_run() starts it again */
	wait_got(tr);
	return 0;
}

const struct ma_injection *ma_track_injection(const struct ma_track *tr)
{
	return &tr->s;
}

const struct ma_account *ma_track_account(const struct ma_track *tr)
{
	return tr->acc;
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
	for (uint64_t i = 0; i < count && !err; i++) {
		err = ma_capture_write_event(tr->w, &a);
		if (!err)
			err = ma_capture_write_event(tr->w, &f);
	}
	ma_account_feed_pairs(tr->acc, &a, &f, count);
	return err;
}

/* Any other record: decoded once, the same event to the capture and to the
 * accounting (PAD is no event) */
static int feed_rec(struct ma_track *tr, const struct ma_rec *rec)
{
	struct ma_event ev;
	int ret = ma_event_from_rec(rec, &ev);

	if (ret <= 0)
		return ret;
	ret = ma_capture_write_event(tr->w, &ev);
	ma_account_feed(tr->acc, &ev);
	return ret;
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
	int err = ma_capture_write_event(tr->w, ev);

	if (err && !tr->error)
		tr->error = err;
	ma_account_feed(tr->acc, ev);
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
	ma_capture_sample(tr->w, ev.sample.t_ns, ev.sample.rss, ev.sample.live);
	ma_account_feed(tr->acc, &ev);
	tr->last_sample = now;
	ma_step("track.sample");
	return !rss && target_gone(tr->pid);
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
	uint64_t t0 = ma_now_ns();

	while (!tr->error && h &&
	       __atomic_load_n(&h->got_state, __ATOMIC_ACQUIRE) ==
		       MA_GOT_PENDING &&
	       ma_ring_state(h) == MA_STATE_TRACKING &&
	       ma_now_ns() - t0 < WAIT_GOT_NS) {
		struct timespec ts = { 0, 500000 };

		ma_ring_heartbeat(h, ma_now_ns());
		if (!drain(tr, DRAIN_MAX))
			nanosleep(&ts, NULL);
	}
	if (!h)
		return;
	tr->s.got_state = __atomic_load_n(&h->got_state, __ATOMIC_ACQUIRE);
	tr->s.got_slots = h->got_slots;
	tr->s.got_modules = h->got_modules;
	tr->s.got_ns = h->got_ns;
	tr->s.attach_ns += ma_now_ns() - t0;
}

int ma_track_run(struct ma_track *tr, const struct ma_track_run *run)
{
	if (!tr->started) {
		tr->started = 1;
		tr->t0 = ma_now_ns();
		ma_step("track.started");
	}
	for (;;) {
		uint64_t now = ma_now_ns();
		size_t got = 0;

		ma_ring_heartbeat(tr->s.ring, now);
		if (ma_ring_backlog(&tr->rd) >= DRAIN_BATCH ||
		    now - tr->last_drain >= DRAIN_EVERY_NS) {
			got = drain(tr, DRAIN_MAX);
			tr->last_drain = now;
		}

		if (tr->error) {
			tr->complete = 0;
			return MA_TRACK_END_ERROR;
		}
		if (tr->s.agg && now - tr->last_agg >= AGG_EVERY_NS) {
			agg_read(tr);
			tr->last_agg = now;
		}
		if (now - tr->last_sample >= SAMPLE_EVERY_NS &&
		    sample(tr, now)) {
			tr->target_exited = 1;
			return MA_TRACK_END_TARGET_EXITED;
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

/* Tell the payload to stop, then drain until it says it has (its final
 * STATS record is the last one) */
int ma_track_stop(struct ma_track *tr)
{
	int err = 0;

	tr->stop_ns = ma_now_ns();
	if (tr->target_exited) {
		/* The target is gone: what it published is in the ring */
		drain(tr, SIZE_MAX);
		goto out;
	}
	ma_ring_request_stop(tr->s.ring);
	ma_step("stop.requested");
	uint64_t deadline = ma_now_ns() + STOP_TIMEOUT_NS;

	for (;;) {
		uint64_t now = ma_now_ns();

		ma_ring_heartbeat(tr->s.ring, now);
		size_t got = drain(tr, DRAIN_MAX);
		uint32_t st = ma_ring_state(tr->s.ring);

		ma_step("stop.drain");

		if (tr->error)
			break;
		if ((st == MA_STATE_STOPPED || st == MA_STATE_ORPHANED ||
		     st == MA_STATE_FAILED) &&
		    !got && ma_ring_backlog(&tr->rd) == 0)
			break;
		if (now > deadline) {
			if (target_gone(tr->pid)) {
				tr->target_exited = 1;
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

	agg_end(tr);

	trl.lost_records =
		__atomic_load_n(&tr->s.ring->lost_records, __ATOMIC_RELAXED);
	trl.lost_bytes =
		__atomic_load_n(&tr->s.ring->lost_bytes, __ATOMIC_RELAXED);
	trl.unknown_frees = tot->unknown_frees;
	trl.stack_truncated = tot->stack_truncated;
	clock_gettime(CLOCK_REALTIME, &wall);
	trl.end_wall_ns =
		(uint64_t)wall.tv_sec * 1000000000ull + (uint64_t)wall.tv_nsec;
	trl.duration_ns = ma_now_ns() - tr->t0;
	trl.complete = tr->complete;
	err = ma_capture_close(tr->w, &trl);
	tr->w = NULL;
	ma_step("stop.capture-closed");
	if (err)
		tr->complete = 0;
	*res = (struct ma_track_result){
		.complete = tr->complete,
		.target_exited = tr->target_exited,
		.duration_ns = trl.duration_ns,
		.lost_records = trl.lost_records,
		.records = tr->records,
		.temps = tr->temps,
		.temp_pairs = tr->temp_pairs,
	};
	return err;
}

void ma_track_free(struct ma_track *tr)
{
	struct ma_capture_trailer none = { 0 };

	if (!tr)
		return;
	if (tr->w)
		ma_capture_close(tr->w, &none);
	ma_account_free(tr->acc);
	ma_injection_close(&tr->s);
	free(tr->prev);
	free(tr->rec);
	free(tr);
}
