/* SPDX-License-Identifier: MIT */
/*
 * A tracking session: the consumer side of an attach.  It injects the
 * payload (inject.h), drains the shared ring (common/ma_ring.h) in order,
 * decodes each record once into a struct ma_event (event.h) and feeds that
 * event to the capture writer (capture.h) and to the accounting
 * (account.h); a TEMP record is replayed as that many ALLOC + FREE pairs.
 * While it runs it writes the heartbeat the payload's watchdog checks and
 * an RSS sample every 100 ms; to end, it tells the payload to stop and
 * drains until the payload confirms, then closes the capture with its
 * trailer.  docs/architecture.md, "Tracking: the consumer".
 *
 * What a command does around it (options, messages, the progress line, the
 * summary, signals) stays in the command: `memattach attach`
 * (cmd_attach.c) is
 *
 *	ma_track_start(target, &opts, &tr);  // then print "attached"
 *	ma_track_run(tr, &run);              // until Ctrl-C, duration, exit
 *	ma_track_stop(tr);                   // the stop handshake
 *	ma_track_finish(tr, &result);        // trailer, capture closed
 *	... ma_account_print_summary(ma_track_account(tr), ...);
 *	ma_track_free(tr);
 *
 * Single-threaded; errors are negative errno with the message set
 * (errors.h).
 */
#ifndef MA_TRACK_H
#define MA_TRACK_H

#include <stddef.h>
#include <stdint.h>

#include "account.h"
#include "inject.h"

struct ma_target;      /* discover.h */
struct ma_target_opts; /* discover.h */
struct ma_track;

struct ma_track_opts {
	const char *output;   /* capture file, created (truncated) */
	uint64_t ring_size;   /* bytes of the shared ring, a power of two */
	uint32_t max_frames;  /* Python frames kept per stack */
	uint32_t flags;	      /* enum ma_config_flags */
	uint64_t sample_mean; /* MA_TRACK_SAMPLE: mean bytes between samples */
	/*
	 * Several processes in one capture (format 3, PROC events): set
	 * for `attach --children` and `attach PID1 PID2 ...`.  One session
	 * per process (its own ring, heartbeat and stop), every id made
	 * unique in the capture, each process's figures kept apart
	 * (ma_track_procs).  children: the run also tracks every Python
	 * descendant, found every 100 ms in /proc/PID/task/TID/children.
	 */
	int multi, children;
	const struct ma_target_opts *topts; /* for the processes added */
};

/*
 * Create the capture file (its header says who is tracked), the accounting,
 * inject the payload and map its ring.  The capture file comes first:
 * failing to create it costs the target nothing.  Returns 0 or -errno with
 * the message set.  *out is set even when the start failed (unless nothing
 * could be allocated: then NULL): report the error first, then
 * ma_track_free() it, which closes the capture file it created as an
 * incomplete one.
 */
int ma_track_start(struct ma_target *t, const struct ma_track_opts *o,
		   struct ma_track **out);

/*
 * Tracking needs the target to run: its payload starts the session and
 * confirms its stop from inside it.  A process stopped by a signal
 * (SIGSTOP, Ctrl-Z: state T) is refused: -EAGAIN, with the message (how to
 * resume it) and MA_EXIT_PERM set.  0 when it is not stopped.
 */
int ma_track_check_running(pid_t pid);

/* What the injection did (timings, reused payload), for messages */
const struct ma_injection *ma_track_injection(const struct ma_track *tr);

/* The accounting of every event so far: the progress line, the summary */
/* Why the payload stopped by itself (its ring's message: "consumer gone
 * (no heartbeat for 1200 ms) ...") into buf, "" when it did not say;
 * returns buf */
const char *ma_track_payload_message(const struct ma_track *tr, char *buf,
				     size_t len);
/* 1 when the payload ended the session for want of its consumer (no
 * heartbeat: memattach stopped or starved for over a second, or gone) */
int ma_track_orphaned(const struct ma_track *tr);
const struct ma_account *ma_track_account(const struct ma_track *tr);

/*
 * A capture of several processes (opts.multi): track process t too, into
 * the same capture (ppid: its parent, 0 = named by the user).  t stays the
 * caller's.  Returns 0, or -errno with the message set: the process is
 * then listed as skipped with that note.
 */
int ma_track_add(struct ma_track *tr, struct ma_target *t, pid_t ppid);

/* A capture of several processes: process pid, which could not be
 * opened, listed as skipped with why */
void ma_track_skipped(struct ma_track *tr, pid_t pid, const char *why);

/* A process of a capture of several processes */
struct ma_track_proc {
	int32_t pid, ppid;
	uint32_t state; /* enum ma_proc_state (event.h) */
	char note[320]; /* why skipped or ended (a whole message); "" */
	/* its own figures (NULL when skipped); valid until ma_track_free */
	const struct ma_account *acc;
};

/* The processes so far, in the order they were added (the first is the
 * one ma_track_start was given): how many (0 for a session of one
 * process), and the i-th */
size_t ma_track_nprocs(const struct ma_track *tr);
const struct ma_track_proc *ma_track_proc_at(const struct ma_track *tr,
					     size_t i);

/*
 * Aggregated tracking: each (thread, stack) key's live bytes and blocks as
 * last read, the figures the accounting has (which keeps them by stack
 * only), for a view by thread (`attach --live`, key t); fn is called once
 * per key that has allocated.  Bounded by the payload's key table
 * (MA_AGG_KEYS).  -ENOTSUP without aggregated tracking (--every-event).
 */
int ma_track_each_key(const struct ma_track *tr,
		      void (*fn)(void *arg, uint32_t thread, uint32_t node,
				 uint64_t live_bytes, uint64_t live_count),
		      void *arg);

/* Why ma_track_run() returned */
enum ma_track_end {
	MA_TRACK_END_ERROR = 1,	      /* capture write failed, ring corrupt */
	MA_TRACK_END_TARGET_EXITED,   /* gone, or a zombie */
	MA_TRACK_END_PAYLOAD_FAILED,  /* the payload's state: FAILED */
	MA_TRACK_END_PAYLOAD_STOPPED, /* STOPPED or ORPHANED by itself */
	MA_TRACK_END_STOP_REQUESTED,  /* run->stop_requested() said so */
	MA_TRACK_END_DURATION,	      /* run->duration_ns reached */
	MA_TRACK_END_TARGET_EXECED,   /* it exec'd: the payload went with it */
	/* the room below the target's memory cgroup's limit ran low:
	 * ma_track_low_room() says how */
	MA_TRACK_END_MEMORY,
};

/* Why the session ended for the target's memory cgroup, a whole
 * message; "" when it did not */
const char *ma_track_low_room(const struct ma_track *tr);

/* Where a session is, for a progress line */
struct ma_track_status {
	uint64_t elapsed_ns; /* since tracking started */
	const struct ma_account_totals *totals;
	uint64_t capture_bytes; /* written to the capture file so far */
	uint64_t lost_records;	/* dropped by the payload: the ring was full */
	int target_stopped;	/* stopped by a signal at the last sample */
	pid_t held_by;		/* held by a tracer (gdb) at the last sample */
	const char *tracer;	/* its name */
};

struct ma_track_run {
	uint64_t duration_ns; /* stop after this long; 0 = no limit */
	/* progress() every progress_ns (first at once); NULL = never */
	void (*progress)(void *arg, const struct ma_track_status *st);
	uint64_t progress_ns;
	/* asked once per turn (about every 2 ms); nonzero ends the run.  A
	 * command that stops on a signal reads its handler's flag here.
	 * NULL = never. */
	int (*stop_requested)(void *arg);
	/* several processes: called when one is added, skipped or ends;
	 * NULL = never */
	void (*proc_note)(void *arg, const struct ma_track_proc *p);
	void *arg;
};

/*
 * Track until something ends the session; returns an enum ma_track_end.
 * Several processes: until every one has ended (TARGET_EXITED), or the
 * caller's stop or duration.
 * Every turn writes the heartbeat, drains the ring when 256 KiB are waiting
 * or 10 ms have passed, samples RSS every 100 ms (a SAMPLE event to the
 * capture and the accounting), and sleeps 2 ms when it found nothing.  The
 * first call starts the session's clock.
 */
int ma_track_run(struct ma_track *tr, const struct ma_track_run *run);

/*
 * The stop handshake: unless the target exited, set MA_CMD_STOP and drain
 * until the payload reports it stopped and the ring is empty (3 s at most:
 * then -ETIMEDOUT, with the message set, and the capture is incomplete);
 * a target that exited meanwhile ends it with what it published.  A target
 * stopped by a signal cannot confirm: once all its threads are, the ring is
 * read to its end and the stop returns -EAGAIN at once (message set,
 * capture incomplete), the request left for the payload to see when the
 * target runs again.  Returns 0 or a negative errno.
 */
int ma_track_stop(struct ma_track *tr);

struct ma_track_result {
	int complete;	      /* ended normally, ring drained, capture closed */
	int target_exited;    /* tracking ended with the target */
	uint64_t duration_ns; /* tracked time, as in the capture's trailer */
	uint64_t lost_records; /* dropped by the payload: the ring was full */
	uint64_t records;      /* ring records read */
	uint64_t temps, temp_pairs; /* TEMP records, short-lived blocks held */
	/* stopped by a signal (state T) at the end: the payload could not
	 * confirm its stop, and stops by itself once the target runs */
	int target_stopped;
	/* held in a tracer's stop (gdb) at the end, the same way */
	pid_t held_by;
	char tracer[64];
	/* target_exited: how, when memattach saw it before its parent
	 * reaped it ("exit status 1", "killed by SIGKILL"); else "" */
	char exit_text[64];
};

/*
 * Write the capture's trailer and close it; fill *res.  Returns 0 or the
 * capture's error (message set; res->complete is then 0).
 */
int ma_track_finish(struct ma_track *tr, struct ma_track_result *res);

/* Close what is still open (the capture, as incomplete; the ring) and
 * free; NULL is fine.  The payload, unless told to stop, stops by itself
 * once the heartbeat ends. */
void ma_track_free(struct ma_track *tr);

#endif
