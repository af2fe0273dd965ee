/* SPDX-License-Identifier: MIT */
/*
 * The live view of `memattach attach --live` (live.c): a full-screen top
 * of Python lines by bytes still live, redrawn about once a second from
 * the accounting the attach keeps anyway (account.h), with each line's
 * growth over the last ~10 s.  Keys: q quits (the attach then stops as on
 * Ctrl-C), s cycles the sort (live, growth, count), t shows the lines by
 * thread (with aggregated tracking: the payload's keys name the thread), p
 * freezes the rows.
 *
 * The terminal is used directly: the alternate screen, the cursor hidden,
 * raw input through termios; all restored by ma_live_end() and, should
 * memattach die of a signal or be suspended meanwhile, by the signal
 * handlers this module installs while the view is up.  One view per
 * process.
 *
 * Bounded work per frame: every node's figures are added into its line
 * (the node -> line mapping cached, so once per new node), then the rows
 * that fit are picked by a heap of that size, never by sorting every line.
 */
#ifndef MA_LIVE_H
#define MA_LIVE_H

#include <stdint.h>
#include <sys/types.h>

#include "account.h"

struct ma_live;
struct ma_track; /* track.h */

struct ma_live_opts {
	pid_t pid;
	const char *py_version;
	uint64_t duration_ns; /* 0: until q, Ctrl-C or the target's exit */
	uint64_t sample_mean; /* --sample: every figure is an estimate */
};

/* What the attach knows now, beyond the accounting */
struct ma_live_status {
	uint64_t elapsed_ns;
	uint64_t lost_records;		 /* the ring was full */
	uint64_t dropped, dropped_bytes; /* the payload's live table full */
	uint64_t keys_full;	   /* events filed without their stack: the
			       payload's key table full */
	const struct ma_track *tr; /* the session: its keys by thread */
};

/*
 * Take the terminal (stdout must be one; keys are read from stdin, or
 * /dev/tty when stdin is not a terminal): 0, or -ENOTTY / -errno with the
 * message set, the terminal untouched.
 */
int ma_live_start(const struct ma_live_opts *o, struct ma_live **out);

/*
 * Called often (every 50 ms or so): read the keys, and redraw when a
 * second has passed, a key asked for it or the window changed size.
 * Returns 1 once q was pressed, else 0.
 */
int ma_live_tick(struct ma_live *lv, const struct ma_account *acc,
		 const struct ma_live_status *st);

/* Give the terminal back as it was (main screen, cursor, input modes) and
 * free; NULL is fine */
void ma_live_end(struct ma_live *lv);

#endif
