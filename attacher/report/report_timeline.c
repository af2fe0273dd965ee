/* SPDX-License-Identifier: MIT */
/*
 * The HTML report's timeline: see report_timeline.h.
 *
 * Cost: the blocks allocated in the current bucket are summed per vid in
 * plain arrays (most blocks die in the bucket they were born in, and their
 * free only subtracts there); at each bucket's end the sums go into a hash
 * of (vid, alloc bucket, free bucket), which a free of an older block
 * updates.  So one extra live-map lookup per free (ma_account_block; the
 * accounting touches the same slot right after) and an array update per
 * event, a hash update only for blocks that outlive their bucket.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "report_timeline.h"

#define NEVER	  0xffffu    /* free bucket of a block never freed */
#define MAX_SPANS (2u << 20) /* beyond: buckets merged */
#define MAX_MMAPS 4096	     /* regions followed (beyond: never unmapped) */

struct hent {
	uint64_t key; /* vid << 32 | ab << 16 | fb; 0 = empty */
	int64_t bytes, count;
};

/* aggregated captures: a key's allocations still live, by bucket */
struct lent {
	uint32_t ab;
	int64_t bytes, count;
};
struct lstack {
	struct lent *e;
	uint32_t n, cap;
};

struct mmreg {
	uint64_t ptr, size;
	uint32_t vid, tag;
};

struct ma_timeline {
	uint32_t s;	 /* samples seen */
	uint32_t shift;	 /* bucket = s >> shift */
	uint32_t cur;	 /* current bucket */
	uint64_t *times; /* each sample's time */
	size_t times_cap;

	struct hent *h;
	size_t h_cap, h_n;

	/* the current bucket's allocations still live, per vid */
	int64_t *pb, *pc;
	uint8_t *dirty;
	uint32_t *dlist;
	size_t v_cap, nd;

	struct lstack *ls; /* per vid (aggregated captures) */
	size_t ls_cap;

	struct mmreg mm[MAX_MMAPS];
	size_t nmm;
	bool approx;
};

int ma_timeline_new(struct ma_timeline **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -ENOMEM;
}

void ma_timeline_free(struct ma_timeline *tl)
{
	if (!tl)
		return;
	for (size_t i = 0; i < tl->ls_cap; i++)
		free(tl->ls[i].e);
	free(tl->ls);
	free(tl->times);
	free(tl->h);
	free(tl->pb);
	free(tl->pc);
	free(tl->dirty);
	free(tl->dlist);
	free(tl);
}

bool ma_timeline_approx(const struct ma_timeline *tl)
{
	return tl->approx;
}

static inline size_t hslot(uint64_t key, size_t cap)
{
	/* every bit of the key counts (the vid is in the high half) */
	key ^= key >> 31;
	key *= 0x9e3779b97f4a7c15ull;
	key ^= key >> 29;
	return (size_t)key & (cap - 1);
}

static int h_rehash(struct ma_timeline *tl, size_t cap)
{
	struct hent *h = calloc(cap, sizeof(*h));

	if (!h)
		return -ENOMEM;
	for (size_t i = 0; i < tl->h_cap; i++) {
		size_t j;

		if (!tl->h[i].key)
			continue;
		for (j = hslot(tl->h[i].key, cap); h[j].key;
		     j = (j + 1) & (cap - 1))
			;
		h[j] = tl->h[i];
	}
	free(tl->h);
	tl->h = h;
	tl->h_cap = cap;
	return 0;
}

static struct hent *h_find(struct ma_timeline *tl, uint64_t key)
{
	size_t j;

	if (!tl->h_cap)
		return NULL;
	for (j = hslot(key, tl->h_cap); tl->h[j].key;
	     j = (j + 1) & (tl->h_cap - 1))
		if (tl->h[j].key == key)
			return &tl->h[j];
	return NULL;
}

static int h_add(struct ma_timeline *tl, uint32_t vid, uint32_t ab, uint32_t fb,
		 int64_t bytes, int64_t count)
{
	uint64_t key = (uint64_t)vid << 32 | (uint64_t)ab << 16 | fb;
	size_t j;

	if (!key || (!bytes && !count))
		return 0;
	if ((tl->h_n + 1) * 2 > tl->h_cap &&
	    h_rehash(tl, tl->h_cap ? tl->h_cap * 2 : 1024) < 0)
		return -ENOMEM;
	for (j = hslot(key, tl->h_cap); tl->h[j].key && tl->h[j].key != key;
	     j = (j + 1) & (tl->h_cap - 1))
		;
	if (!tl->h[j].key) {
		tl->h[j].key = key;
		tl->h_n++;
	}
	tl->h[j].bytes += bytes;
	tl->h[j].count += count;
	return 0;
}

static int grow_vids(struct ma_timeline *tl, uint32_t vid)
{
	size_t n = tl->v_cap ? tl->v_cap : 1024;

	if (vid < tl->v_cap)
		return 0;
	while (n <= vid)
		n *= 2;
	int64_t *pb = realloc(tl->pb, n * sizeof(*pb));
	if (pb)
		tl->pb = pb;
	int64_t *pc = realloc(tl->pc, n * sizeof(*pc));
	if (pc)
		tl->pc = pc;
	uint8_t *d = realloc(tl->dirty, n);
	if (d)
		tl->dirty = d;
	uint32_t *dl = realloc(tl->dlist, n * sizeof(*dl));
	if (dl)
		tl->dlist = dl;
	if (!pb || !pc || !d || !dl)
		return -ENOMEM;
	memset(pb + tl->v_cap, 0, (n - tl->v_cap) * sizeof(*pb));
	memset(pc + tl->v_cap, 0, (n - tl->v_cap) * sizeof(*pc));
	memset(d + tl->v_cap, 0, n - tl->v_cap);
	tl->v_cap = n;
	return 0;
}

static int pend(struct ma_timeline *tl, uint32_t vid, int64_t bytes,
		int64_t count)
{
	if (grow_vids(tl, vid) < 0)
		return -ENOMEM;
	tl->pb[vid] += bytes;
	tl->pc[vid] += count;
	if (!tl->dirty[vid]) {
		tl->dirty[vid] = 1;
		tl->dlist[tl->nd++] = vid;
	}
	return 0;
}

static int flush(struct ma_timeline *tl)
{
	for (size_t i = 0; i < tl->nd; i++) {
		uint32_t v = tl->dlist[i];

		if (h_add(tl, v, tl->cur, NEVER, tl->pb[v], tl->pc[v]) < 0)
			return -ENOMEM;
		tl->pb[v] = tl->pc[v] = 0;
		tl->dirty[v] = 0;
	}
	tl->nd = 0;
	return 0;
}

/* A block (or part of one) allocated at sample count tag dies now */
static int dies(struct ma_timeline *tl, uint32_t vid, uint32_t tag,
		int64_t bytes, int64_t count)
{
	uint32_t ab = tag >> tl->shift;

	if (ab >= tl->cur)
		return pend(tl, vid, -bytes, -count);
	/* (vid, ab, NEVER) loses it at the end (ma_timeline_finish) */
	return h_add(tl, vid, ab, tl->cur, bytes, count);
}

/* Buckets two by two: the hash, the stacks */
static int coarsen(struct ma_timeline *tl)
{
	struct hent *old = tl->h;
	size_t cap = tl->h_cap;

	tl->shift++;
	tl->cur = tl->s >> tl->shift;
	tl->h = NULL;
	tl->h_cap = tl->h_n = 0;
	for (size_t i = 0; i < cap; i++) {
		uint64_t k = old[i].key;
		uint32_t ab, fb;
		int64_t sign;

		if (!k)
			continue;
		ab = (uint32_t)(k >> 16 & 0xffff) >> 1;
		fb = (uint32_t)(k & 0xffff);
		sign = 1;
		if (fb != NEVER) {
			fb >>= 1;
			/* a span now within one bucket: what it would take
			 * from its (vid, ab, NEVER) at the end, now */
			if (fb == ab) {
				fb = NEVER;
				sign = -1;
			}
		}
		if (h_add(tl, (uint32_t)(k >> 32), ab, fb, sign * old[i].bytes,
			  sign * old[i].count) < 0) {
			free(old);
			return -ENOMEM;
		}
	}
	free(old);
	for (size_t v = 0; v < tl->ls_cap; v++) {
		struct lstack *st = &tl->ls[v];
		uint32_t j = 0;

		for (uint32_t i = 0; i < st->n; i++) {
			st->e[i].ab >>= 1;
			if (j && st->e[j - 1].ab == st->e[i].ab) {
				st->e[j - 1].bytes += st->e[i].bytes;
				st->e[j - 1].count += st->e[i].count;
			} else {
				st->e[j++] = st->e[i];
			}
		}
		st->n = j;
	}
	return 0;
}

static int sample(struct ma_timeline *tl, struct ma_account *acc, uint64_t t_ns)
{
	if (tl->s >= tl->times_cap) {
		size_t n = tl->times_cap ? tl->times_cap * 2 : 256;
		uint64_t *p = realloc(tl->times, n * sizeof(*p));

		if (!p)
			return -ENOMEM;
		tl->times = p;
		tl->times_cap = n;
	}
	tl->times[tl->s++] = t_ns;
	ma_account_set_tag(acc, tl->s);
	if (tl->s >> tl->shift == tl->cur)
		return 0;
	if (flush(tl) < 0)
		return -ENOMEM;
	tl->cur = tl->s >> tl->shift;
	while (tl->cur >= MA_TIMELINE_MAX_BUCKETS ||
	       (tl->h_n > MAX_SPANS && tl->shift < 15))
		if (coarsen(tl) < 0)
			return -ENOMEM;
	return 0;
}

static int agg(struct ma_timeline *tl, const struct ma_event *ev)
{
	uint32_t vid = ev->agg.node;
	struct lstack *st;
	int64_t fb = (int64_t)ev->agg.free_bytes, fc = (int64_t)ev->agg.frees;

	if (!vid || vid >= (1u << 24))
		return 0;
	if (vid >= tl->ls_cap) {
		size_t n = tl->ls_cap ? tl->ls_cap : 1024;
		struct lstack *p;

		while (n <= vid)
			n *= 2;
		p = realloc(tl->ls, n * sizeof(*p));
		if (!p)
			return -ENOMEM;
		memset(p + tl->ls_cap, 0, (n - tl->ls_cap) * sizeof(*p));
		tl->ls = p;
		tl->ls_cap = n;
	}
	st = &tl->ls[vid];
	if (ev->agg.allocs || ev->agg.alloc_bytes) {
		if (!st->n || st->e[st->n - 1].ab != tl->cur) {
			if (st->n == st->cap) {
				uint32_t n = st->cap ? st->cap * 2 : 4;
				struct lent *e = realloc(st->e, n * sizeof(*e));

				if (!e)
					return -ENOMEM;
				st->e = e;
				st->cap = n;
			}
			st->e[st->n++] = (struct lent){ .ab = tl->cur };
		}
		st->e[st->n - 1].bytes += (int64_t)ev->agg.alloc_bytes;
		st->e[st->n - 1].count += (int64_t)ev->agg.allocs;
		if (h_add(tl, vid, tl->cur, NEVER, (int64_t)ev->agg.alloc_bytes,
			  (int64_t)ev->agg.allocs) < 0)
			return -ENOMEM;
	}
	/* frees: the latest allocations first */
	while ((fb > 0 || fc > 0) && st->n) {
		struct lent *e = &st->e[st->n - 1];
		int64_t b = fb < e->bytes ? fb : e->bytes;
		int64_t c = fc < e->count ? fc : e->count;

		if (b < 0)
			b = 0;
		if (c < 0)
			c = 0;
		if (e->ab == tl->cur ? h_add(tl, vid, e->ab, NEVER, -b, -c)
				     : h_add(tl, vid, e->ab, tl->cur, b, c))
			return -ENOMEM;
		e->bytes -= b;
		e->count -= c;
		fb -= b;
		fc -= c;
		if (e->bytes <= 0 && e->count <= 0)
			st->n--;
		else
			break; /* what is left of the frees is not ours */
	}
	return 0;
}

int ma_timeline_before(struct ma_timeline *tl, struct ma_account *acc,
		       const struct ma_event *ev)
{
	uint32_t vid, tag;
	uint64_t size;

	if (ev->type != MA_EV_FREE)
		return 0;
	if (ev->free.kind == MA_KIND_MMAP) {
		for (size_t i = 0; i < tl->nmm; i++) {
			struct mmreg *m = &tl->mm[i];
			uint64_t cut = ev->free.size && ev->free.size < m->size
					       ? ev->free.size
					       : m->size;

			if (m->ptr != ev->free.ptr)
				continue;
			if (dies(tl, m->vid, m->tag, (int64_t)cut,
				 cut == m->size) < 0)
				return -ENOMEM;
			m->ptr += cut;
			m->size -= cut;
			if (!m->size)
				*m = tl->mm[--tl->nmm];
			break;
		}
		return 0;
	}
	if (!ma_account_block(acc, ev->free.ptr, &vid, &tag, &size))
		return 0;
	return dies(tl, vid, tag, (int64_t)size, 1);
}

int ma_timeline_after(struct ma_timeline *tl, struct ma_account *acc,
		      const struct ma_event *ev)
{
	switch (ev->type) {
	case MA_EV_ALLOC:
		if (!ev->alloc.node || (!ev->alloc.ptr && !ev->alloc.size))
			return 0;
		if (ev->alloc.kind == MA_KIND_MMAP) {
			if (!ev->alloc.size)
				return 0;
			if (tl->nmm < MAX_MMAPS)
				tl->mm[tl->nmm++] =
					(struct mmreg){ .ptr = ev->alloc.ptr,
							.size = ev->alloc.size,
							.vid = ev->alloc.node,
							.tag = tl->s };
			else
				tl->approx = true;
		} else if (!ev->alloc.ptr) {
			return 0; /* a failed allocation */
		}
		return pend(tl, ev->alloc.node, (int64_t)ev->alloc.size, 1);
	case MA_EV_SAMPLE:
		return sample(tl, acc, ev->sample.t_ns);
	case MA_EV_AGG:
		return agg(tl, ev);
	default:
		return 0;
	}
}

int ma_timeline_finish(struct ma_timeline *tl, uint64_t end_ns,
		       uint64_t **bounds, size_t *nbound,
		       struct ma_tspan **spans, size_t *nspans)
{
	size_t nb = (size_t)tl->cur + 1, n = 0;
	uint64_t *b;
	struct ma_tspan *sp;

	*bounds = NULL;
	*spans = NULL;
	if (flush(tl) < 0)
		return -ENOMEM;
	b = malloc((nb + 1) * sizeof(*b));
	sp = malloc((tl->h_n ? tl->h_n : 1) * sizeof(*sp));
	if (!b || !sp) {
		free(b);
		free(sp);
		return -ENOMEM;
	}
	b[0] = 0;
	for (size_t c = 1; c < nb; c++)
		b[c] = tl->times[(c << tl->shift) - 1];
	b[nb] = end_ns > b[nb - 1] ? end_ns : b[nb - 1];
	/* what was freed in a later bucket leaves (vid, ab, NEVER) */
	for (size_t i = 0; i < tl->h_cap; i++) {
		const struct hent *e = &tl->h[i];
		struct hent *nv;

		if (!e->key || (e->key & 0xffff) == NEVER)
			continue;
		nv = h_find(tl, (e->key & ~0xffffull) | NEVER);
		if (nv) {
			nv->bytes -= e->bytes;
			nv->count -= e->count;
		}
	}
	for (size_t i = 0; i < tl->h_cap; i++) {
		const struct hent *e = &tl->h[i];
		uint32_t fb;

		if (!e->key || e->bytes <= 0)
			continue;
		fb = (uint32_t)(e->key & 0xffff);
		sp[n++] = (struct ma_tspan){
			.vid = (uint32_t)(e->key >> 32),
			.ab = (uint32_t)(e->key >> 16 & 0xffff),
			.fb = fb == NEVER ? (uint32_t)nb : fb,
			.bytes = (uint64_t)e->bytes,
			.count = e->count > 0 ? (uint64_t)e->count : 0,
		};
	}
	*bounds = b;
	*nbound = nb;
	*spans = sp;
	*nspans = n;
	return 0;
}
