/* SPDX-License-Identifier: MIT */
/*
 * Temporary allocations: a block is temporary when the thread that
 * allocated it frees it after at most N further allocations of that
 * thread (N = the window; 0 = freed before the thread allocated anything
 * else).  This is wasted work: memory churned through the allocator and
 * straight back.
 *
 * Computed while streaming, apart from the accounting so that account.c
 * keeps its API: each thread keeps a ring of its last N + 1 allocations
 * (sequence number and pointer), and one small hash table maps the
 * pointers in all rings to (thread, sequence, node, size).  A FREE looks
 * its pointer up there: present, same thread and within the window means
 * temporary.  The table holds at most threads * (N + 1) entries, so it
 * stays in cache and costs a lookup per event, not a second live map.
 * mmap regions are never temporary (they are few and rarely short-lived;
 * munmaps are ranges), but count as allocations of their thread, as the
 * payload counts them.  An aggregated capture (docs/payload.md) brings
 * the counts by distance (AGGTEMP events: distances 0 to 15, then buckets
 * by power of two, common/ma_agg.h): windows up to 15 and of 2^k - 1 are
 * exact there, others count the buckets that lie wholly within them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "ma_agg.h"
#include "report.h"

#define MAX_NODE_ID   (1u << 26) /* as the accounting: beyond = node 0 */
#define MAX_THREAD_ID (1u << 20)

struct tent {
	uint64_t ptr; /* 0 = empty */
	uint64_t seq, size;
	uint32_t thread, node;
	uint32_t slot; /* its place in the thread's ring */
};

struct tslot {
	uint64_t ptr, seq;
};

struct tthread {
	uint64_t seq;	    /* allocations of the thread so far */
	uint32_t pos;	    /* ring slot of the next allocation */
	struct tslot *ring; /* window + 1 entries */
};

struct ma_temporary {
	uint32_t window;
	struct tthread *th;
	size_t th_cap;
	struct tent *h;
	size_t h_cap, h_n; /* power of two */
	int h_bits;
	struct ma_account_fig *figs;
	size_t figs_cap;
	struct ma_account_fig sum;
};

int ma_temporary_new(uint32_t window, struct ma_temporary **out)
{
	struct ma_temporary *t = calloc(1, sizeof(*t));

	*out = NULL;
	if (!t)
		return -ENOMEM;
	t->window =
		window > MA_REPORT_MAX_WINDOW ? MA_REPORT_MAX_WINDOW : window;
	*out = t;
	return 0;
}

void ma_temporary_free(struct ma_temporary *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->th_cap; i++)
		free(t->th[i].ring);
	free(t->th);
	free(t->h);
	free(t->figs);
	free(t);
}

static inline size_t hslot(const struct ma_temporary *t, uint64_t ptr)
{
	return (size_t)((ptr * 0x9e3779b97f4a7c15ull) >> (64 - t->h_bits));
}

static struct tent *hfind(struct ma_temporary *t, uint64_t ptr)
{
	if (!t->h_n)
		return NULL;
	for (size_t i = hslot(t, ptr);; i = (i + 1) & (t->h_cap - 1)) {
		if (t->h[i].ptr == ptr)
			return &t->h[i];
		if (!t->h[i].ptr)
			return NULL;
	}
}

static int hresize(struct ma_temporary *t, int bits)
{
	size_t cap = (size_t)1 << bits;
	struct tent *h = calloc(cap, sizeof(*h)), *old = t->h;
	size_t oldcap = t->h_cap;

	if (!h)
		return -ENOMEM;
	t->h = h;
	t->h_cap = cap;
	t->h_bits = bits;
	for (size_t i = 0; i < oldcap; i++) {
		size_t j;

		if (!old[i].ptr)
			continue;
		for (j = hslot(t, old[i].ptr); h[j].ptr;
		     j = (j + 1) & (cap - 1))
			;
		h[j] = old[i];
	}
	free(old);
	return 0;
}

/* Backward-shift deletion: no tombstones, lookups stay short */
static void hremove(struct ma_temporary *t, struct tent *e)
{
	size_t hole = (size_t)(e - t->h), i = hole, mask = t->h_cap - 1;

	for (;;) {
		size_t home;

		i = (i + 1) & mask;
		if (!t->h[i].ptr)
			break;
		home = hslot(t, t->h[i].ptr);
		if (((i - home) & mask) >= ((i - hole) & mask)) {
			t->h[hole] = t->h[i];
			hole = i;
		}
	}
	t->h[hole].ptr = 0;
	t->h_n--;
}

static int hput(struct ma_temporary *t, const struct tent *e)
{
	size_t i;

	/* at most a quarter full: a miss (most frees) ends at once */
	if ((t->h_n + 1) * 4 > t->h_cap &&
	    hresize(t, t->h_bits ? t->h_bits + 1 : 10) < 0)
		return -ENOMEM;
	for (i = hslot(t, e->ptr); t->h[i].ptr; i = (i + 1) & (t->h_cap - 1))
		if (t->h[i].ptr == e->ptr) {
			/* handed out again: its FREE was lost */
			t->h[i] = *e;
			return 0;
		}
	t->h[i] = *e;
	t->h_n++;
	return 0;
}

static struct tthread *thread_get(struct ma_temporary *t, uint32_t id)
{
	if (id >= MAX_THREAD_ID)
		id = 0;
	if (id < t->th_cap && t->th[id].ring)
		return &t->th[id];
	if (id >= t->th_cap) {
		size_t n = t->th_cap ? t->th_cap : 16;
		struct tthread *p;

		while (n <= id)
			n *= 2;
		p = realloc(t->th, n * sizeof(*p));
		if (!p)
			return NULL;
		memset(p + t->th_cap, 0, (n - t->th_cap) * sizeof(*p));
		t->th = p;
		t->th_cap = n;
	}
	if (!t->th[id].ring) {
		t->th[id].ring =
			calloc((size_t)t->window + 1, sizeof(*t->th[id].ring));
		if (!t->th[id].ring)
			return NULL;
	}
	return &t->th[id];
}

static struct ma_account_fig *fig_get(struct ma_temporary *t, uint32_t node)
{
	if (node >= t->figs_cap) {
		size_t n = t->figs_cap ? t->figs_cap : 64;
		struct ma_account_fig *p;

		while (n <= node)
			n *= 2;
		p = realloc(t->figs, n * sizeof(*p));
		if (!p)
			return NULL;
		memset(p + t->figs_cap, 0, (n - t->figs_cap) * sizeof(*p));
		t->figs = p;
		t->figs_cap = n;
	}
	return &t->figs[node];
}

int ma_temporary_feed(struct ma_temporary *t, const struct ma_event *ev)
{
	struct tthread *th;
	struct tent *e;

	if (ev->type == MA_EV_ALLOC) {
		struct tslot *s;
		uint32_t slot;

		if (!ev->alloc.ptr)
			return 0;
		th = thread_get(t, ev->thread);
		if (!th)
			return -ENOMEM;
		th->seq++;
		/* an mmap region is never temporary, but it is one of the
		 * thread's allocations: the payload counts it in the
		 * distances of aggregated captures and short-lived pairs,
		 * and so must this count */
		if (ev->alloc.kind == MA_KIND_MMAP)
			return 0;
		/* A pair the payload counted (a TEMP record): its FREE comes
		 * next, and its address says after how many allocations of
		 * its thread */
		if (MA_IS_TEMP_ADDR(ev->alloc.ptr)) {
			struct ma_account_fig *f;

			if (MA_TEMP_DIST_OF(ev->alloc.ptr) > t->window)
				return 0;
			f = fig_get(t, ev->alloc.node < MAX_NODE_ID
					       ? ev->alloc.node
					       : 0);
			if (!f)
				return -ENOMEM;
			f->bytes += ev->alloc.size;
			f->count++;
			t->sum.bytes += ev->alloc.size;
			t->sum.count++;
			return 0;
		}
		/* published by the payload once too old to be temporary */
		if (ev->alloc.kind & MA_KIND_LATE)
			return 0;
		slot = th->pos;
		s = &th->ring[slot];
		th->pos = th->pos == t->window ? 0 : th->pos + 1;
		/* The allocation leaving the window can no longer be
		 * temporary: forget it unless it was freed (a free clears
		 * its slot, which saves this lookup for most blocks) or its
		 * pointer reused since */
		if (s->ptr) {
			e = hfind(t, s->ptr);
			if (e && e->seq == s->seq &&
			    e->thread == (uint32_t)(th - t->th))
				hremove(t, e);
		}
		s->ptr = ev->alloc.ptr;
		s->seq = th->seq;
		return hput(t, &(struct tent){
				       .ptr = ev->alloc.ptr,
				       .seq = th->seq,
				       .size = ev->alloc.size,
				       .thread = (uint32_t)(th - t->th),
				       .node = ev->alloc.node < MAX_NODE_ID
						       ? ev->alloc.node
						       : 0,
				       .slot = slot,
			       });
	}
	/* aggregated tracking: the payload counted them by distance */
	if (ev->type == MA_EV_AGGTEMP) {
		struct ma_account_fig *f;

		/* a bucket counts when all of it lies in the window */
		if (ma_agg_temp_upper(ev->aggtemp.dist) > t->window)
			return 0;
		f = fig_get(t, ev->aggtemp.node < MAX_NODE_ID ? ev->aggtemp.node
							      : 0);
		if (!f)
			return -ENOMEM;
		f->bytes += ev->aggtemp.bytes;
		f->count += ev->aggtemp.count;
		t->sum.bytes += ev->aggtemp.bytes;
		t->sum.count += ev->aggtemp.count;
		return 0;
	}
	if (ev->type != MA_EV_FREE || ev->free.kind == MA_KIND_MMAP ||
	    !ev->free.ptr || MA_IS_TEMP_ADDR(ev->free.ptr))
		return 0;
	e = hfind(t, ev->free.ptr);
	if (!e)
		return 0;
	if (e->thread == (ev->thread < MAX_THREAD_ID ? ev->thread : 0) &&
	    e->thread < t->th_cap &&
	    t->th[e->thread].seq - e->seq <= t->window) {
		struct ma_account_fig *f = fig_get(t, e->node);

		if (!f)
			return -ENOMEM;
		f->bytes += e->size;
		f->count++;
		t->sum.bytes += e->size;
		t->sum.count++;
	}
	if (e->thread < t->th_cap && t->th[e->thread].ring &&
	    t->th[e->thread].ring[e->slot].seq == e->seq)
		t->th[e->thread].ring[e->slot].ptr = 0;
	hremove(t, e);
	return 0;
}

void ma_temporary_node(const struct ma_temporary *t, uint32_t node,
		       struct ma_account_fig *fig)
{
	if (node < t->figs_cap)
		*fig = t->figs[node];
	else
		*fig = (struct ma_account_fig){ 0, 0 };
}

void ma_temporary_total(const struct ma_temporary *t,
			struct ma_account_fig *fig)
{
	*fig = t->sum;
}
