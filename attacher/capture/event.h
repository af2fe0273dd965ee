/* SPDX-License-Identifier: MIT */
/*
 * One event of a tracking session, decoded: a ring record of the payload
 * (common/ma_record.h) or a sample of the attacher.  The tracking session
 * (track.h) decodes each record once and feeds the same event to the
 * capture writer (capture.h) and to the accounting (account.h); the capture
 * reader gives the same events back.
 */
#ifndef MA_EVENT_H
#define MA_EVENT_H

#include <stdint.h>

#include "ma_record.h"

enum ma_event_type {
	MA_EV_ALLOC = 1,
	MA_EV_FREE = 2,
	MA_EV_THREAD = 3,
	MA_EV_CODE = 4,
	MA_EV_NODE = 5,
	MA_EV_FORK = 6,
	MA_EV_SAMPLE = 7, /* written by the attacher: ma_capture_sample() */
	MA_EV_STATS = 8,  /* the payload's final counters (MA_REC_STATS) */
	/* aggregated tracking (docs/payload.md), written by the attacher
	 * from the aggregate area (common/ma_agg.h): */
	MA_EV_AGG = 9,	    /* a key's figures moved by these deltas */
	MA_EV_AGGTEMP = 10, /* a key's blocks freed at distance dist */
	MA_EV_PEAK = 11,    /* a key's figures at the peak (at the end) */
	MA_EV_AGGEND = 12,  /* the global peak and what was dropped */
	/* a capture of several processes (attach --children, format 3):
	 * a process, and with a thread index, that thread is its */
	MA_EV_PROC = 13,
	/* written by the attacher: the threading.Thread name of the thread
	 * (ev->thread), read from the target's memory (format version 3) */
	MA_EV_TNAME = 14,
};

/* enum of ma_event.proc.state */
enum ma_proc_state {
	MA_PROC_TRACKED = 0, /* tracked from now on */
	MA_PROC_EXITED = 1,  /* exited (or exec'd): its figures end here */
	MA_PROC_SKIPPED = 2, /* a child not tracked: not Python, busy, ... */
	/* its payload stopped before the session's end (memattach detach
	 * PID, or an error of its own): the process runs on, untracked */
	MA_PROC_STOPPED = 3,
};

/* Bytes of a thread's Python name in a TNAME event, at most */
#define MA_EV_TNAME_MAX 255

/*
 * One event, decoded.  Strings of a CODE or TNAME event point into the producer's
 * buffer (the ring record, or the reader's block) and stay valid until the
 * next call on the same reader; copy what you keep.
 */
struct ma_event {
	uint32_t type;	 /* enum ma_event_type */
	uint32_t thread; /* the record's thread index (THREAD: the one defined);
			    0 for SAMPLE */
	uint64_t index;	 /* position in the capture, from 0 (reader only) */
	union {
		struct {
			uint64_t ptr, size;
			uint32_t node; /* innermost frame node, 0 = none */
			uint8_t kind;  /* enum ma_alloc_kind */
		} alloc;
		struct {
			uint64_t ptr;
			uint64_t
				size; /* munmap length for MA_KIND_MMAP, else 0 */
			uint8_t kind;
		} free;
		struct {
			int32_t tid;
			uint64_t pthread;
			char name[17]; /* NUL-terminated */
		} thr;
		struct {
			uint32_t len;
			const char *name; /* not NUL-terminated, as CODE's */
		} tname;
		struct {
			uint32_t id;
			int32_t firstlineno;
			uint32_t version_hex; /* line table format */
			uint32_t name_len, file_len, linetable_len;
			const char *name; /* not NUL-terminated */
			const char *file; /* not NUL-terminated */
			const uint8_t *linetable;
		} code;
		struct {
			uint32_t id, parent, code;
			int32_t addr; /* byte offset of the instruction, -1 */
		} node;
		struct {
			int32_t child_pid;
		} fork;
		struct {
			uint64_t
				t_ns; /* since the capture started (monotonic) */
			uint64_t rss;  /* bytes, 0 when unknown */
			uint64_t live; /* tracked live bytes at that moment */
		} sample;
		struct {
			uint64_t allocs, frees, lost_records, lost_bytes;
			uint64_t stack_truncated, node_table_full;
		} stats;
		/* AGG, AGGTEMP, PEAK: the key is (thread, node, kind) */
		struct {
			uint32_t node;
			uint8_t kind;
			uint64_t allocs, alloc_bytes, frees, free_bytes;
		} agg;
		struct {
			uint32_t node;
			uint8_t kind;
			uint8_t dist; /* bucket, < MA_AGG_TEMPW
					 (ma_agg_temp_upper: its widest
					 distance) */
			uint64_t count, bytes;
		} aggtemp;
		struct {
			uint32_t node;
			uint8_t kind;
			uint64_t bytes, count;
		} peak;
		struct {
			int32_t pid, ppid; /* ppid 0: a process named */
			uint32_t state;	   /* enum ma_proc_state */
		} proc;
		struct {
			uint64_t peak_bytes, peak_count;
			/* samples around the peak (since the capture's
			 * start): after <= moment <= before; before 0 when
			 * no sample followed it */
			uint64_t peak_after_ns, peak_before_ns;
			uint64_t dropped, dropped_bytes, keys_full;
			uint64_t unknown_frees;
		} aggend;
	};
};

/*
 * Decode one ring record.  Returns 1 with *ev filled, 0 for a record that is
 * no event (PAD), -EINVAL (message set) for a record whose length does not
 * match its type or whose strings overrun it, -ENOTSUP for an unknown type.
 * CODE strings point into *rec.
 */
int ma_event_from_rec(const struct ma_rec *rec, struct ma_event *ev);

#endif
