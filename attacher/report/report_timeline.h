/* SPDX-License-Identifier: MIT */
/*
 * The HTML report's timeline (memray's temporal flame graph): for each
 * (thread, stack), the bytes and blocks allocated in one time bucket and
 * freed in a later one, or never.  From it the page computes, for any
 * range of buckets [c1, c2], what was allocated in the range and still
 * live at its end (c1 <= alloc bucket < c2 <= free bucket), and any
 * thread's live bytes at each bucket boundary.
 *
 * Buckets are the intervals between samples (every 100 ms), merged two by
 * two while there are more than MA_TIMELINE_MAX_BUCKETS, so the data stays
 * bounded whatever the capture's length.  Blocks allocated and freed in
 * the same bucket are live at no boundary and are left out: a churn costs
 * nothing.  Every-event captures are exact (a free finds its block's
 * allocation sample through the accounting's tag, ma_account_set_tag);
 * aggregated ones only have each key's sums once a second, so their frees
 * are matched to the key's latest allocations first (LIFO).
 *
 * Fed by the model's accounting thread, around ma_account_feed.
 */
#ifndef MA_REPORT_TIMELINE_H
#define MA_REPORT_TIMELINE_H

#include <stdint.h>

#include "account.h"

#define MA_TIMELINE_MAX_BUCKETS 512

struct ma_timeline;

/* One (vid, alloc bucket, free bucket) figure; fb = nbound when never
 * freed (nbound: see ma_timeline_bounds) */
struct ma_tspan {
	uint32_t vid, ab, fb;
	uint64_t bytes, count;
};

int ma_timeline_new(struct ma_timeline **out);
void ma_timeline_free(struct ma_timeline *tl);
/* ev is about to be fed to acc (ev->alloc.node is the vid); -ENOMEM */
int ma_timeline_before(struct ma_timeline *tl, struct ma_account *acc,
		       const struct ma_event *ev);
/* ev was fed to acc; -ENOMEM */
int ma_timeline_after(struct ma_timeline *tl, struct ma_account *acc,
		      const struct ma_event *ev);
/*
 * The end: the bucket boundaries' times (*bounds, malloc'ed, nbound + 1
 * entries: 0, then the sample closing each bucket, then end_ns) and the
 * figures with some bytes (*spans, malloc'ed, unsorted).  -ENOMEM.
 */
int ma_timeline_finish(struct ma_timeline *tl, uint64_t end_ns,
		       uint64_t **bounds, size_t *nbound,
		       struct ma_tspan **spans, size_t *nspans);
/* mmap regions beyond the ones the timeline follows were taken as never
 * unmapped */
bool ma_timeline_approx(const struct ma_timeline *tl);

#endif
