/* SPDX-License-Identifier: MIT */
/*
 * Accounting of a stream of events (struct ma_event, event.h: from the ring
 * through ma_event_from_rec() or from a capture file): what is live, what
 * was allocated, the peak, and where (by stack, line, function, file).  One
 * implementation behind the live progress line, the summary printed after
 * `memattach attach`, and every report, so they always agree.
 *
 * Definitions of the figures:
 *   - live: blocks allocated and not freed when the stream ends (or now);
 *   - total: everything allocated, including the new block of a realloc
 *     (a realloc is a FREE of the old block and an ALLOC of kind REALLOC);
 *   - peak: the blocks live at the moment the tracked live bytes were
 *     highest (the first such moment), exact, in one pass: per-node live
 *     counters are snapshotted lazily (see account.c), so neither the events
 *     nor a second pass over the file are needed.
 * Frees of pointers never seen allocated (memory from before the attach)
 * are counted in unknown_frees and otherwise ignored.  mmap regions are
 * tracked as ranges: munmap of part of a region keeps the rest live, and a
 * new mapping over an old one replaces the overlap.
 *
 * Times: ring records carry no timestamp; the attacher's SAMPLE events do,
 * so a moment is known as an event index and bracketed by the samples
 * around it.
 */
#ifndef MA_ACCOUNT_H
#define MA_ACCOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "event.h"

struct ma_account;

struct ma_account_totals {
	uint64_t events; /* events fed (same numbering as the capture's) */
	uint64_t allocs; /* ALLOC events, reallocs and mmaps included */
	uint64_t alloc_bytes;
	uint64_t frees; /* FREE events, munmaps and unknown ones included */
	uint64_t freed_bytes; /* bytes of tracked memory freed */
	uint64_t reallocs;    /* ALLOC of kind REALLOC */
	uint64_t mmaps, munmaps;
	uint64_t unknown_frees; /* FREE of memory not tracked (pre-attach) */
	/* of those, FREE events (counted in frees too); an aggregated
	 * capture's others come from its AGGEND, not in frees */
	uint64_t unknown_free_events;
	uint64_t replaced; /* ALLOC of a pointer already live: a FREE was lost;
			      the old block is dropped */
	uint64_t forks;

	uint64_t live_bytes, live_count;
	uint64_t peak_bytes, peak_count; /* highest live bytes, blocks then */
	uint64_t peak_index; /* event index where the peak was first reached */
	/* samples around the peak: peak_after_ns <= moment <= peak_before_ns;
	 * peak_before_ns is 0 when no sample followed it */
	uint64_t peak_after_ns, peak_before_ns;

	uint64_t samples;   /* SAMPLE events */
	uint64_t last_t_ns; /* time of the last sample */
	/* the session's tracked time, as its capture's trailer says, once
	 * it ended (ma_account_note_duration); 0 before */
	uint64_t duration_ns;
	uint64_t last_rss, peak_rss;

	/* from the payload's STATS event (0 when none was seen) */
	uint64_t lost_records, lost_bytes, stack_truncated, node_table_full;

	/* aggregated tracking (AGG events): blocks the payload could not
	 * track (its live tables could not grow) and events filed without
	 * their stack (its key table was full), from AGGEND */
	uint64_t agg_events; /* AGG events seen: the capture is aggregated */
	uint64_t dropped, dropped_bytes, keys_full;
	bool agg_peak; /* the peak came from the payload (AGGEND) */
	/* the peak sums each process's own (several processes, aggregated):
	 * it has no one moment */
	bool peak_summed;

	uint32_t threads, codes, nodes; /* definitions seen */
	uint64_t bad_refs; /* events naming ids beyond the limits (counted
			      under node 0) */
};

/* A figure: bytes and number of blocks */
struct ma_account_fig {
	uint64_t bytes, count;
};

/* One frame of a stack */
struct ma_frame {
	const char *function; /* "<unknown>" when the code is not defined */
	const char *file;
	int line; /* -1 when unknown */
	int firstlineno;
	uint32_t code; /* code id, 0 = undefined */
	uint32_t node;
};

enum ma_account_view {
	MA_VIEW_STACK,	  /* one row per node (full stack) */
	MA_VIEW_LINE,	  /* innermost (file, function, line) */
	MA_VIEW_FUNCTION, /* innermost (file, function, firstlineno) */
	MA_VIEW_FILE,	  /* innermost file */
};

enum ma_account_sort {
	MA_SORT_LIVE_BYTES,
	MA_SORT_TOTAL_BYTES,
	MA_SORT_PEAK_BYTES,
	MA_SORT_LIVE_COUNT,
	MA_SORT_TOTAL_COUNT,
	MA_SORT_PEAK_COUNT,
};

struct ma_account_row {
	/* MA_VIEW_STACK: the node; other views: the group's node with the
	 * largest sort figure, to show a representative stack */
	uint32_t node;
	const char *function; /* NULL in MA_VIEW_FILE */
	const char *file;
	/* LINE, STACK: the innermost line (-1 unknown); FUNCTION:
	 * firstlineno; FILE: 0 */
	int line;
	struct ma_account_fig live, total, peak;
};

int ma_account_new(struct ma_account **out);

/* The order of rows that tie on their figures, shared by the summary and
 * the reports so that both list them alike: file, then function (none
 * first), then line */
int ma_location_cmp(const char *file_a, const char *fn_a, int line_a,
		    const char *file_b, const char *fn_b, int line_b);
void ma_account_free(struct ma_account *acc);

/*
 * Feed one event.  Never fails on odd data (unknown frees, undefined
 * nodes, ids out of range are counted); -ENOMEM only.  Strings of CODE
 * events are copied.
 */
int ma_account_feed(struct ma_account *acc, const struct ma_event *ev);

/*
 * Feed `count` times the pair (alloc, free): an ALLOC and the FREE of the
 * same block right after it (a TEMP record of the payload).  The same
 * result as feeding them one by one, in constant time.
 */
int ma_account_feed_pairs(struct ma_account *acc, const struct ma_event *alloc,
			  const struct ma_event *free, uint64_t count);

/*
 * A hint, for readers that see events ahead (memattach report decodes a
 * block at a time): this event comes soon, so start loading what feeding
 * it will touch (the pointer's slot of the live map, an ALLOC's node).
 * With millions of live blocks the map is far larger than the caches and
 * each event would otherwise wait for memory; issued a few events ahead,
 * the loads overlap.  No effect on figures.
 */
void ma_account_prefetch(const struct ma_account *acc,
			 const struct ma_event *ev);

/*
 * Tags: a number the caller attaches to the blocks of the malloc family
 * allocated from now on (0 at first), read back with ma_account_block.
 * memattach report's HTML timeline tags each block with the number of
 * samples seen before it, so that a free tells when its block was
 * allocated.  No effect on figures.
 */
void ma_account_set_tag(struct ma_account *acc, uint32_t tag);
/* The live block of the malloc family at ptr (not mmap regions): its
 * node, tag and size; false when none is live there */
bool ma_account_block(const struct ma_account *acc, uint64_t ptr,
		      uint32_t *node, uint32_t *tag, uint64_t *size);
/* Convenience: a raw ring record (PAD ignored); -EINVAL for a bad record */
int ma_account_feed_rec(struct ma_account *acc, const struct ma_rec *rec);

/* Running totals; valid until the next feed */
const struct ma_account_totals *ma_account_totals(const struct ma_account *acc);

/*
 * beat(arg) is called every few milliseconds while the live blocks' table
 * grows (moving millions of entries takes seconds): a tracking session
 * keeps the payload's heartbeat with it
 */
void ma_account_set_beat(struct ma_account *acc, void (*beat)(void *arg),
			 void *arg);

/*
 * Records the ring dropped, as its header counts them at the end: raises
 * the totals' lost figures to these when the payload's STATS record said
 * less (it is itself dropped when the ring stays full at the stop)
 */
void ma_account_note_lost(struct ma_account *acc, uint64_t records,
			  uint64_t bytes);

/* The session's tracked time, as the capture's trailer has it: the
 * summary's "in N s" then says what `memattach report` says (the last
 * sample's time, before, came up to a sampling period short) */
void ma_account_note_duration(struct ma_account *acc, uint64_t ns);

/*
 * The peak is the sum of several processes' own peaks (attach --children,
 * aggregated): the summary gives no moment for it
 */
void ma_account_note_peak_summed(struct ma_account *acc);

/*
 * The stack of a node, innermost frame first: fills up to max frames and
 * returns the depth (which may exceed max).  Node 0 has depth 0.  Strings
 * are owned by the accounting.
 */
int ma_account_node_frames(const struct ma_account *acc, uint32_t node,
			   struct ma_frame *frames, int max);

/* 1 + the highest node id seen: the ids to ask ma_account_node_figs()
 * about (the live view of `attach --live` walks them) */
size_t ma_account_node_ids(const struct ma_account *acc);

/* Figures of one node (zero for an unknown node) */
void ma_account_node_figs(const struct ma_account *acc, uint32_t node,
			  struct ma_account_fig *live,
			  struct ma_account_fig *total,
			  struct ma_account_fig *peak);

/*
 * Aggregate by view, rows sorted by `sort` (descending, ties broken by
 * total bytes then name) and only those with a non-zero figure in live,
 * total or peak.  *rows is malloc'ed: free() it.  Row strings are owned by
 * the accounting.
 */
int ma_account_view(const struct ma_account *acc, enum ma_account_view view,
		    enum ma_account_sort sort, struct ma_account_row **rows,
		    size_t *nrows);

/* Thread index -> kernel tid and name; -ENOENT when never defined */
int ma_account_thread(const struct ma_account *acc, uint32_t index,
		      int32_t *tid, const char **name);

/* The samples seen (time, rss, live), in order */
struct ma_account_sample {
	uint64_t t_ns, rss, live, index;
};
const struct ma_account_sample *ma_account_samples(const struct ma_account *acc,
						   size_t *n);

/*
 * What the user sees when `memattach attach` ends: totals, the peak, the
 * top `top` Python lines by bytes still live and by bytes allocated, and the
 * counters (events, lost records, unknown frees).  Plain text, fitted to
 * the terminal width when f is a terminal (else $COLUMNS, else 100).
 */
void ma_account_print_summary(const struct ma_account *acc, FILE *f, int top);

/* Same, at an explicit width (tests, reports) */
void ma_account_print_summary_width(const struct ma_account *acc, FILE *f,
				    int top, int width);

#endif
