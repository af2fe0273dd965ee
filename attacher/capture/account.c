/* SPDX-License-Identifier: MIT */
/*
 * Accounting: the live map, running totals, per-node figures and the views
 * built from them.
 *
 * Live blocks of the malloc family are kept in an open-addressing hash
 * table keyed by pointer (linear probing, backward-shift deletion so there
 * are no tombstones to slow lookups down after millions of frees).  mmap
 * regions need range operations (munmap of part of a region, a mapping
 * placed over another), so they are kept apart in a treap ordered by start
 * address: they are few, and each operation is O(log n).
 *
 * Peak per node, exactly and in one pass: every new global peak starts a
 * new "epoch".  Each node remembers the epoch of its last change and a
 * saved copy of its live figures.  Before a node changes, if a peak was
 * reached since its previous change (its epoch is older than the current
 * one), its live figures have not moved since that peak, so they are its
 * figures at the latest peak: save them.  At the end, a node whose epoch is
 * current has its peak figures saved; any other node has not changed since
 * the latest peak, so its live figures are its peak figures.  O(1) per
 * event, O(nodes) memory, and no second pass over the capture.
 */
#include "account.h"
#include "textfit.h"
#include "units.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "linetable.h"

/*
 * Ids beyond these are treated as corrupt (counted in bad_refs).  The
 * tables are arrays indexed by id, so the bounds are what a hostile target
 * (or a damaged capture) can make memattach allocate: 2^26 nodes were
 * 6 GiB (fuzz/ring, issue 13).  The payload never numbers beyond its own
 * tables (injector/pystack.c: NODE_CAP 2^20 nodes, CODE_CAP 2^16 code
 * objects, since the first capture format): twice that is room enough,
 * about 200 MiB of nodes and 5 MiB of code objects at worst.
 */
#define MAX_NODE_ID   (1u << 21)
#define MAX_CODE_ID   (1u << 17)
#define MAX_THREAD_ID (1u << 20)

#define STR_UNKNOWN 0 /* "<unknown>" */
#define STR_NOPY    1 /* "<no Python frame>" */
#define STR_EMPTY   2 /* "" */

/* ------------------------------------------------------------------ */
/* Growable arrays */

static int grow_array(void **p, size_t *cap, size_t need, size_t elem)
{
	size_t n;
	void *q;

	if (need <= *cap)
		return 0;
	n = *cap ? *cap : 64;
	while (n < need)
		n *= 2;
	q = realloc(*p, n * elem);
	if (!q)
		return -ENOMEM;
	memset((char *)q + *cap * elem, 0, (n - *cap) * elem);
	*p = q;
	*cap = n;
	return 0;
}

/* ------------------------------------------------------------------ */
/* String interning: function names and file names become small ids */

struct strtab {
	char **s;
	size_t n, cap;
	uint32_t *slots; /* index + 1, 0 = empty */
	size_t nslots;
};

static uint64_t str_hash(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
	return h;
}

static int strtab_rehash(struct strtab *t, size_t nslots)
{
	uint32_t *slots = calloc(nslots, sizeof(*slots));

	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++) {
		size_t j = str_hash(t->s[i], strlen(t->s[i])) & (nslots - 1);

		while (slots[j])
			j = (j + 1) & (nslots - 1);
		slots[j] = (uint32_t)i + 1;
	}
	free(t->slots);
	t->slots = slots;
	t->nslots = nslots;
	return 0;
}

/* The id of s[0..len), interned; <0 on ENOMEM */
static int64_t strtab_intern(struct strtab *t, const char *s, size_t len)
{
	size_t j;
	char *c;

	/* Stored as C strings: a NUL inside (a corrupt or hostile capture)
	 * ends the name.  Without this, strncmp() below stops at that NUL and
	 * o[len] reads past a shorter stored string (found by fuzz/capture). */
	len = strnlen(s, len);
	if ((t->n + 1) * 2 > t->nslots &&
	    strtab_rehash(t, t->nslots ? t->nslots * 2 : 256) < 0)
		return -ENOMEM;
	j = str_hash(s, len) & (t->nslots - 1);
	while (t->slots[j]) {
		const char *o = t->s[t->slots[j] - 1];

		if (strncmp(o, s, len) == 0 && o[len] == '\0')
			return t->slots[j] - 1;
		j = (j + 1) & (t->nslots - 1);
	}
	if (grow_array((void **)&t->s, &t->cap, t->n + 1, sizeof(*t->s)) < 0)
		return -ENOMEM;
	c = malloc(len + 1);
	if (!c)
		return -ENOMEM;
	memcpy(c, s, len);
	c[len] = '\0';
	t->s[t->n] = c;
	t->slots[j] = (uint32_t)t->n + 1;
	return (int64_t)t->n++;
}

/* A name from the target (the ring's bytes, read only) interned made safe
 * to print (ma_ctl_sanitize): the summary's lines and every report */
static int64_t intern_safe(struct strtab *t, const char *s, size_t len)
{
	char local[512], *copy = len <= sizeof(local) ? local : malloc(len);
	int64_t r;

	if (!copy)
		return -ENOMEM;
	memcpy(copy, s, len);
	ma_ctl_sanitize(copy, len);
	r = strtab_intern(t, copy, len);
	if (copy != local)
		free(copy);
	return r;
}

static void strtab_free(struct strtab *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->s[i]);
	free(t->s);
	free(t->slots);
}

/* ------------------------------------------------------------------ */
/* Live blocks of the malloc family */

struct live_ent {
	uint64_t ptr; /* 0 = empty slot */
	uint64_t size;
	uint32_t node;
	uint32_t tag; /* the caller's (ma_account_set_tag) when allocated */
};

struct live_map {
	struct live_ent *t;
	size_t cap; /* power of two */
	size_t n;
	int bits;
	/* called while a resize moves the entries (ma_account_set_beat) */
	void (*beat)(void *arg);
	void *beat_arg;
};

/* Entries a resize moves between two beats: a few milliseconds' work */
#define LIVE_BEAT_EVERY (1u << 18)

static inline size_t live_slot(const struct live_map *m, uint64_t ptr)
{
	return (size_t)((ptr * 0x9e3779b97f4a7c15ull) >> (64 - m->bits));
}

static struct live_ent *live_find(struct live_map *m, uint64_t ptr)
{
	size_t i;

	if (!m->n)
		return NULL;
	for (i = live_slot(m, ptr);; i = (i + 1) & (m->cap - 1)) {
		if (m->t[i].ptr == ptr)
			return &m->t[i];
		if (!m->t[i].ptr)
			return NULL;
	}
}

static int live_resize(struct live_map *m, int bits)
{
	struct live_map n = { 0 };

	n.bits = bits;
	n.cap = (size_t)1 << bits;
	n.beat = m->beat;
	n.beat_arg = m->beat_arg;
	n.t = calloc(n.cap, sizeof(*n.t));
	if (!n.t)
		return -ENOMEM;
	for (size_t i = 0; i < m->cap; i++) {
		size_t j;

		/* moving millions of entries takes seconds: the tracking
		 * session's heartbeat must not stop meanwhile */
		if (n.beat && (i & (LIVE_BEAT_EVERY - 1)) == 0)
			n.beat(n.beat_arg);
		if (!m->t[i].ptr)
			continue;
		for (j = live_slot(&n, m->t[i].ptr); n.t[j].ptr;
		     j = (j + 1) & (n.cap - 1))
			;
		n.t[j] = m->t[i];
		n.n++;
	}
	free(m->t);
	*m = n;
	return 0;
}

/* Insert a pointer known to be absent */
static int live_insert(struct live_map *m, const struct live_ent *e)
{
	size_t i;

	if ((m->n + 1) * 4 > m->cap * 3 &&
	    live_resize(m, m->bits ? m->bits + 1 : 12) < 0)
		return -ENOMEM;
	for (i = live_slot(m, e->ptr); m->t[i].ptr; i = (i + 1) & (m->cap - 1))
		;
	m->t[i] = *e;
	m->n++;
	return 0;
}

/* Remove the entry at e, shifting later entries of its run back so that
 * every entry stays reachable from its home slot */
static void live_remove(struct live_map *m, struct live_ent *e)
{
	size_t hole = (size_t)(e - m->t), i = hole;

	for (;;) {
		size_t home;

		i = (i + 1) & (m->cap - 1);
		if (!m->t[i].ptr)
			break;
		home = live_slot(m, m->t[i].ptr);
		/* Move i into the hole unless its home lies cyclically in
		 * (hole, i] */
		if (((i - home) & (m->cap - 1)) >=
		    ((i - hole) & (m->cap - 1))) {
			m->t[hole] = m->t[i];
			hole = i;
		}
	}
	m->t[hole].ptr = 0;
	m->n--;
}

/* ------------------------------------------------------------------ */
/* mmap regions: a treap keyed by start address */

struct region {
	uint64_t start, end;
	uint32_t node, thread;
	uint32_t prio;
	struct region *l, *r;
};

/* Split t into regions starting below key (*a) and at or above it (*b) */
static void treap_split(struct region *t, uint64_t key, struct region **a,
			struct region **b)
{
	if (!t) {
		*a = *b = NULL;
	} else if (t->start < key) {
		treap_split(t->r, key, &t->r, b);
		*a = t;
	} else {
		treap_split(t->l, key, a, &t->l);
		*b = t;
	}
}

/* Every key of a below every key of b */
static struct region *treap_merge(struct region *a, struct region *b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	if (a->prio > b->prio) {
		a->r = treap_merge(a->r, b);
		return a;
	}
	b->l = treap_merge(a, b->l);
	return b;
}

static void treap_free(struct region *t)
{
	if (!t)
		return;
	treap_free(t->l);
	treap_free(t->r);
	free(t);
}

/* ------------------------------------------------------------------ */

struct node_ent {
	uint32_t parent, code;
	int32_t addr;
	int32_t line; /* resolved at definition; INT32_MIN = not yet */
	bool defined;
	uint64_t epoch; /* peak epoch of the last change */
	uint64_t live_bytes, live_count;
	uint64_t total_bytes, total_count;
	uint64_t peak_bytes, peak_count;   /* saved: valid if epoch current */
	uint64_t fpeak_bytes, fpeak_count; /* from PEAK events */
};

struct code_ent {
	bool defined;
	uint32_t name, file; /* string ids */
	int32_t firstlineno;
	uint32_t version_hex;
	uint8_t *linetable;
	uint32_t linetable_len;
};

struct thread_ent {
	bool defined;
	int32_t tid;
	char name[17];
};

struct ma_account {
	struct ma_account_totals t;
	uint64_t epoch;	   /* number of times a new peak was reached */
	bool peak_pending; /* waiting for the sample after the peak */

	struct live_map live;
	struct region *regions;
	uint64_t rng;

	struct node_ent *nodes;
	size_t nodes_cap, nodes_n; /* nodes_n: 1 + highest id seen */
	struct code_ent *codes;
	size_t codes_cap;
	struct thread_ent *threads;
	size_t threads_cap;
	struct strtab str;

	struct ma_account_sample *samples;
	size_t samples_n, samples_cap;
	uint32_t tag; /* given to the blocks allocated from now on */
};

int ma_account_new(struct ma_account **out)
{
	struct ma_account *acc = calloc(1, sizeof(*acc));

	*out = NULL;
	if (!acc)
		return -ENOMEM;
	acc->rng = 0x853c49e6748fea9bull;
	if (strtab_intern(&acc->str, "<unknown>", 9) != STR_UNKNOWN ||
	    strtab_intern(&acc->str, "<no Python frame>", 17) != STR_NOPY ||
	    strtab_intern(&acc->str, "", 0) != STR_EMPTY ||
	    grow_array((void **)&acc->nodes, &acc->nodes_cap, 1,
		       sizeof(*acc->nodes)) < 0) {
		ma_account_free(acc);
		return -ENOMEM;
	}
	acc->nodes_n = 1;
	*out = acc;
	return 0;
}

void ma_account_free(struct ma_account *acc)
{
	if (!acc)
		return;
	free(acc->live.t);
	treap_free(acc->regions);
	for (size_t i = 0; i < acc->codes_cap; i++)
		free(acc->codes[i].linetable);
	free(acc->codes);
	free(acc->nodes);
	free(acc->threads);
	strtab_free(&acc->str);
	free(acc->samples);
	free(acc);
}

const struct ma_account_totals *ma_account_totals(const struct ma_account *acc)
{
	return &acc->t;
}

void ma_account_set_beat(struct ma_account *acc, void (*beat)(void *arg),
			 void *arg)
{
	acc->live.beat = beat;
	acc->live.beat_arg = arg;
}

void ma_account_note_lost(struct ma_account *acc, uint64_t records,
			  uint64_t bytes)
{
	if (acc->t.lost_records < records)
		acc->t.lost_records = records;
	if (acc->t.lost_bytes < bytes)
		acc->t.lost_bytes = bytes;
}

void ma_account_note_duration(struct ma_account *acc, uint64_t ns)
{
	acc->t.duration_ns = ns;
}

void ma_account_note_peak_summed(struct ma_account *acc)
{
	acc->t.peak_summed = true;
}

/* The entry for node id, grown on demand; out-of-range ids go to node 0 */
static struct node_ent *node_get(struct ma_account *acc, uint32_t id)
{
	if (id >= MAX_NODE_ID) {
		acc->t.bad_refs++;
		id = 0;
	}
	if (id >= acc->nodes_cap &&
	    grow_array((void **)&acc->nodes, &acc->nodes_cap, (size_t)id + 1,
		       sizeof(*acc->nodes)) < 0)
		return NULL;
	if (id >= acc->nodes_n)
		acc->nodes_n = (size_t)id + 1;
	return &acc->nodes[id];
}

/* Before changing a node's live figures: save them if a peak was reached
 * since its last change (see the comment at the top) */
static inline void node_touch(struct ma_account *acc, struct node_ent *n)
{
	if (n->epoch != acc->epoch) {
		n->peak_bytes = n->live_bytes;
		n->peak_count = n->live_count;
		n->epoch = acc->epoch;
	}
}

static void node_add_live(struct ma_account *acc, struct node_ent *n,
			  uint64_t bytes, uint64_t count)
{
	node_touch(acc, n);
	n->live_bytes += bytes;
	n->live_count += count;
	acc->t.live_bytes += bytes;
	acc->t.live_count += count;
}

/* Node ids of live entries were checked when they were added */
static void node_sub_live(struct ma_account *acc, uint32_t id, uint64_t bytes,
			  uint64_t count)
{
	struct node_ent *n = &acc->nodes[id];

	node_touch(acc, n);
	n->live_bytes -= bytes;
	n->live_count -= count;
	acc->t.live_bytes -= bytes;
	acc->t.live_count -= count;
}

static void check_peak(struct ma_account *acc)
{
	if (acc->t.live_bytes <= acc->t.peak_bytes)
		return;
	acc->epoch++;
	acc->t.peak_bytes = acc->t.live_bytes;
	acc->t.peak_count = acc->t.live_count;
	acc->t.peak_index = acc->t.events;
	acc->t.peak_after_ns = acc->t.last_t_ns;
	acc->t.peak_before_ns = 0;
	acc->peak_pending = true;
}

static uint32_t next_prio(struct ma_account *acc)
{
	/* xorshift64: priorities only need to look random */
	acc->rng ^= acc->rng << 13;
	acc->rng ^= acc->rng >> 7;
	acc->rng ^= acc->rng << 17;
	return (uint32_t)(acc->rng >> 32);
}

static int region_insert(struct ma_account *acc, uint64_t start, uint64_t end,
			 uint32_t node, uint32_t thread)
{
	struct region *g = calloc(1, sizeof(*g)), *a, *b;

	if (!g)
		return -ENOMEM;
	g->start = start;
	g->end = end;
	g->node = node;
	g->thread = thread;
	g->prio = next_prio(acc);
	treap_split(acc->regions, start, &a, &b);
	acc->regions = treap_merge(treap_merge(a, g), b);
	return 0;
}

/* Detach the region with the highest start from *t */
static struct region *treap_pop_max(struct region **t)
{
	struct region **p = t, *g;

	if (!*t)
		return NULL;
	while ((*p)->r)
		p = &(*p)->r;
	g = *p;
	*p = g->l;
	g->l = NULL;
	return g;
}

struct cut {
	uint64_t bytes; /* tracked bytes unmapped */
	int regions;	/* regions touched */
};

/* Account for a region losing [lo, hi) ∩ [g->start, g->end): g is
 * detached; what remains of it is re-inserted */
static int region_cut(struct ma_account *acc, struct region *g, uint64_t lo,
		      uint64_t hi, struct cut *c)
{
	uint64_t s = g->start > lo ? g->start : lo;
	uint64_t e = g->end < hi ? g->end : hi;
	bool head = g->start<s, tail = g->end> e;
	int ret = 0;

	if (e <= s) { /* no overlap: put it back */
		ret = region_insert(acc, g->start, g->end, g->node, g->thread);
		free(g);
		return ret;
	}
	c->bytes += e - s;
	c->regions++;
	/* One block becomes 0, 1 or 2 blocks */
	node_sub_live(acc, g->node, e - s, 1);
	if (head) {
		node_add_live(acc, &acc->nodes[g->node], 0, 1);
		ret = region_insert(acc, g->start, s, g->node, g->thread);
	}
	if (tail && ret == 0) {
		node_add_live(acc, &acc->nodes[g->node], 0, 1);
		ret = region_insert(acc, e, g->end, g->node, g->thread);
	}
	free(g);
	return ret;
}

/* Unmap [lo, hi) from the tracked regions */
static int region_unmap(struct ma_account *acc, uint64_t lo, uint64_t hi,
			struct cut *c)
{
	struct region *a, *m, *b, *g;
	int ret = 0;

	treap_split(acc->regions, lo, &a, &m);
	treap_split(m, hi, &m, &b);
	/* Only the last region starting below lo can reach into [lo, hi) */
	g = treap_pop_max(&a);
	acc->regions = treap_merge(a, b);
	if (g)
		ret = region_cut(acc, g, lo, hi, c);
	/* Every region of m starts inside [lo, hi) */
	while (ret == 0 && (g = treap_pop_max(&m)))
		ret = region_cut(acc, g, lo, hi, c);
	treap_free(m);
	return ret;
}

/* munmap of length 0 (not valid for the kernel, but a payload might report
 * one): the region starting at ptr, whole */
static int region_unmap_at(struct ma_account *acc, uint64_t ptr, struct cut *c)
{
	struct region *g = acc->regions;

	while (g && g->start != ptr)
		g = ptr < g->start ? g->l : g->r;
	if (!g)
		return 0;
	return region_unmap(acc, g->start, g->end, c);
}

static int feed_alloc(struct ma_account *acc, const struct ma_event *ev)
{
	uint64_t ptr = ev->alloc.ptr, size = ev->alloc.size;
	struct node_ent *n = node_get(acc, ev->alloc.node);
	uint32_t node = ev->alloc.node < MAX_NODE_ID ? ev->alloc.node : 0;
	struct live_ent *e;
	int ret;

	if (!n)
		return -ENOMEM;
	acc->t.allocs++;
	acc->t.alloc_bytes += size;
	if (ev->alloc.kind == MA_KIND_REALLOC)
		acc->t.reallocs++;
	node_touch(acc, n);
	n->total_bytes += size;
	n->total_count++;

	if (ev->alloc.kind == MA_KIND_MMAP) {
		uint64_t end = ptr + size < ptr ? UINT64_MAX : ptr + size;
		struct cut c = { 0 };

		acc->t.mmaps++;
		if (!size)
			return 0;
		/* A mapping placed over tracked ones (MAP_FIXED) replaces
		 * them */
		ret = region_unmap(acc, ptr, end, &c);
		if (ret == 0)
			ret = region_insert(acc, ptr, end, node, ev->thread);
		if (ret < 0)
			return ret;
		node_add_live(acc, n, end - ptr, 1); /* size, unless it wraps */
		check_peak(acc);
		return 0;
	}

	if (!ptr) /* a failed allocation */
		return 0;
	e = live_find(&acc->live, ptr);
	if (e) {
		/* Its FREE was lost (ring overflow): drop the old block */
		acc->t.replaced++;
		node_sub_live(acc, e->node, e->size, 1);
		live_remove(&acc->live, e);
	}
	ret = live_insert(&acc->live, &(struct live_ent){ .ptr = ptr,
							  .size = size,
							  .node = node,
							  .tag = acc->tag });
	if (ret < 0)
		return ret;
	node_add_live(acc, n, size, 1);
	check_peak(acc);
	return 0;
}

static int feed_free(struct ma_account *acc, const struct ma_event *ev)
{
	uint64_t ptr = ev->free.ptr;
	struct live_ent *e;

	acc->t.frees++;
	if (ev->free.kind == MA_KIND_MMAP) {
		struct cut c = { 0 };
		uint64_t end = ptr + ev->free.size;
		int ret;

		acc->t.munmaps++;
		if (end < ptr)
			end = UINT64_MAX;
		ret = ev->free.size ? region_unmap(acc, ptr, end, &c)
				    : region_unmap_at(acc, ptr, &c);
		if (ret < 0)
			return ret;
		if (!c.regions) {
			acc->t.unknown_frees++;
			acc->t.unknown_free_events++;
		}
		acc->t.freed_bytes += c.bytes;
		return 0;
	}
	if (!ptr)
		return 0;
	e = live_find(&acc->live, ptr);
	if (!e) {
		acc->t.unknown_frees++;
		acc->t.unknown_free_events++;
		return 0;
	}
	/* Matched by pointer only: the freeing thread may differ */
	acc->t.freed_bytes += e->size;
	node_sub_live(acc, e->node, e->size, 1);
	live_remove(&acc->live, e);
	return 0;
}

static int feed_code(struct ma_account *acc, const struct ma_event *ev)
{
	struct code_ent *c;
	int64_t name, file;
	uint32_t id = ev->code.id;

	if (id >= MAX_CODE_ID) {
		acc->t.bad_refs++;
		return 0;
	}
	if (grow_array((void **)&acc->codes, &acc->codes_cap, (size_t)id + 1,
		       sizeof(*acc->codes)) < 0)
		return -ENOMEM;
	name = intern_safe(&acc->str, ev->code.name, ev->code.name_len);
	file = intern_safe(&acc->str, ev->code.file, ev->code.file_len);
	if (name < 0 || file < 0)
		return -ENOMEM;
	c = &acc->codes[id];
	if (!c->defined)
		acc->t.codes++;
	free(c->linetable);
	c->linetable = NULL;
	if (ev->code.linetable_len) {
		c->linetable = malloc(ev->code.linetable_len);
		if (!c->linetable)
			return -ENOMEM;
		memcpy(c->linetable, ev->code.linetable,
		       ev->code.linetable_len);
	}
	c->linetable_len = ev->code.linetable_len;
	c->defined = true;
	c->name = (uint32_t)name;
	c->file = (uint32_t)file;
	c->firstlineno = ev->code.firstlineno;
	c->version_hex = ev->code.version_hex;
	return 0;
}

static const struct code_ent *code_get(const struct ma_account *acc,
				       uint32_t id)
{
	if (id < acc->codes_cap && acc->codes[id].defined)
		return &acc->codes[id];
	return NULL;
}

static int code_line(const struct code_ent *c, int32_t addr)
{
	if (!c)
		return -1;
	if (addr < 0)
		return c->firstlineno;
	return ma_linetable_addr2line(c->version_hex, c->linetable,
				      c->linetable_len, c->firstlineno, addr);
}

static int feed_node(struct ma_account *acc, const struct ma_event *ev)
{
	struct node_ent *n;

	if (ev->node.id == 0 || ev->node.id >= MAX_NODE_ID) {
		acc->t.bad_refs++;
		return 0;
	}
	n = node_get(acc, ev->node.id);
	if (!n)
		return -ENOMEM;
	if (!n->defined)
		acc->t.nodes++;
	n->defined = true;
	n->parent = ev->node.parent;
	n->code = ev->node.code;
	n->addr = ev->node.addr;
	n->line = code_get(acc, n->code)
			  ? code_line(code_get(acc, n->code), n->addr)
			  : INT32_MIN;
	return 0;
}

static int feed_thread(struct ma_account *acc, const struct ma_event *ev)
{
	struct thread_ent *t;

	if (ev->thread >= MAX_THREAD_ID) {
		acc->t.bad_refs++;
		return 0;
	}
	if (grow_array((void **)&acc->threads, &acc->threads_cap,
		       (size_t)ev->thread + 1, sizeof(*acc->threads)) < 0)
		return -ENOMEM;
	t = &acc->threads[ev->thread];
	if (!t->defined)
		acc->t.threads++;
	t->defined = true;
	t->tid = ev->thr.tid;
	memcpy(t->name, ev->thr.name, sizeof(t->name));
	t->name[16] = '\0';
	ma_ctl_sanitize(t->name, strlen(t->name));
	return 0;
}

static int feed_sample(struct ma_account *acc, const struct ma_event *ev)
{
	struct ma_account_sample *s;

	if (grow_array((void **)&acc->samples, &acc->samples_cap,
		       acc->samples_n + 1, sizeof(*acc->samples)) < 0)
		return -ENOMEM;
	s = &acc->samples[acc->samples_n++];
	s->t_ns = ev->sample.t_ns;
	s->rss = ev->sample.rss;
	s->live = ev->sample.live;
	s->index = acc->t.events;
	acc->t.samples++;
	acc->t.last_t_ns = ev->sample.t_ns;
	acc->t.last_rss = ev->sample.rss;
	if (ev->sample.rss > acc->t.peak_rss)
		acc->t.peak_rss = ev->sample.rss;
	if (acc->peak_pending) {
		acc->t.peak_before_ns = ev->sample.t_ns;
		acc->peak_pending = false;
	}
	return 0;
}

/*
 * Aggregated tracking: a key's figures moved by deltas.  The payload
 * counts a block's allocation before its free can be seen, and the
 * attacher reads a key's frees before its allocations (track.c), so a
 * node's live figures never go below zero, whatever the order of deltas.
 */
static int feed_agg(struct ma_account *acc, const struct ma_event *ev)
{
	struct node_ent *n = node_get(acc, ev->agg.node);

	if (!n)
		return -ENOMEM;
	acc->t.agg_events++;
	acc->t.allocs += ev->agg.allocs;
	acc->t.alloc_bytes += ev->agg.alloc_bytes;
	acc->t.frees += ev->agg.frees;
	acc->t.freed_bytes += ev->agg.free_bytes;
	if (ev->agg.kind == MA_KIND_REALLOC)
		acc->t.reallocs += ev->agg.allocs;
	node_touch(acc, n);
	n->total_bytes += ev->agg.alloc_bytes;
	n->total_count += ev->agg.allocs;
	n->live_bytes += ev->agg.alloc_bytes - ev->agg.free_bytes;
	n->live_count += ev->agg.allocs - ev->agg.frees;
	acc->t.live_bytes += ev->agg.alloc_bytes - ev->agg.free_bytes;
	acc->t.live_count += ev->agg.allocs - ev->agg.frees;
	check_peak(acc);
	return 0;
}

/* A key's figures at the peak, from the payload: the first one replaces
 * the peak the deltas made (they only saw it every second) */
static int feed_peak(struct ma_account *acc, const struct ma_event *ev)
{
	struct node_ent *n;

	if (!acc->t.agg_peak) {
		acc->t.agg_peak = true;
		for (size_t i = 0; i < acc->nodes_n; i++)
			acc->nodes[i].fpeak_bytes = acc->nodes[i].fpeak_count =
				0;
	}
	n = node_get(acc, ev->peak.node);
	if (!n)
		return -ENOMEM;
	n->fpeak_bytes += ev->peak.bytes;
	n->fpeak_count += ev->peak.count;
	return 0;
}

static void feed_aggend(struct ma_account *acc, const struct ma_event *ev)
{
	if (!acc->t.agg_peak) {
		/* no key held anything at the peak */
		acc->t.agg_peak = true;
		for (size_t i = 0; i < acc->nodes_n; i++)
			acc->nodes[i].fpeak_bytes = acc->nodes[i].fpeak_count =
				0;
	}
	acc->t.peak_bytes = ev->aggend.peak_bytes;
	acc->t.peak_count = ev->aggend.peak_count;
	acc->t.peak_after_ns = ev->aggend.peak_after_ns;
	acc->t.peak_before_ns = ev->aggend.peak_before_ns;
	acc->t.peak_index = acc->t.events;
	acc->peak_pending = false;
	acc->t.dropped = ev->aggend.dropped;
	acc->t.dropped_bytes = ev->aggend.dropped_bytes;
	acc->t.keys_full = ev->aggend.keys_full;
	acc->t.unknown_frees += ev->aggend.unknown_frees;
}

int ma_account_feed(struct ma_account *acc, const struct ma_event *ev)
{
	int ret = 0;

	switch (ev->type) {
	case MA_EV_ALLOC:
		ret = feed_alloc(acc, ev);
		break;
	case MA_EV_FREE:
		ret = feed_free(acc, ev);
		break;
	case MA_EV_THREAD:
		ret = feed_thread(acc, ev);
		break;
	case MA_EV_CODE:
		ret = feed_code(acc, ev);
		break;
	case MA_EV_NODE:
		ret = feed_node(acc, ev);
		break;
	case MA_EV_FORK:
		acc->t.forks++;
		break;
	case MA_EV_SAMPLE:
		ret = feed_sample(acc, ev);
		break;
	case MA_EV_AGG:
		ret = feed_agg(acc, ev);
		break;
	case MA_EV_PEAK:
		ret = feed_peak(acc, ev);
		break;
	case MA_EV_AGGEND:
		feed_aggend(acc, ev);
		break;
	case MA_EV_STATS:
		/* one per session: a capture of several processes has one
		 * per process, and their sum is the capture's */
		acc->t.lost_records += ev->stats.lost_records;
		acc->t.lost_bytes += ev->stats.lost_bytes;
		acc->t.stack_truncated += ev->stats.stack_truncated;
		acc->t.node_table_full += ev->stats.node_table_full;
		break;
	default:
		break;
	}
	if (ret < 0)
		return ma_err(ret, "accounting: out of memory");
	acc->t.events++;
	return 0;
}

int ma_account_feed_pairs(struct ma_account *acc, const struct ma_event *alloc,
			  const struct ma_event *free, uint64_t count)
{
	struct node_ent *n;
	uint64_t c, bytes;
	int ret;

	if (!count)
		return 0;
	/* the first pair as it comes: the live map, the peak */
	ret = ma_account_feed(acc, alloc);
	if (!ret)
		ret = ma_account_feed(acc, free);
	if (ret || count == 1)
		return ret;
	/* the others change nothing but the totals */
	n = node_get(acc, alloc->alloc.node);
	if (!n)
		return ma_err(-ENOMEM, "accounting: out of memory");
	c = count - 1;
	bytes = c * alloc->alloc.size;
	acc->t.allocs += c;
	acc->t.alloc_bytes += bytes;
	if (alloc->alloc.kind == MA_KIND_REALLOC)
		acc->t.reallocs += c;
	node_touch(acc, n);
	n->total_bytes += bytes;
	n->total_count += c;
	acc->t.frees += c;
	acc->t.freed_bytes += bytes;
	acc->t.events += 2 * c;
	return 0;
}

void ma_account_prefetch(const struct ma_account *acc,
			 const struct ma_event *ev)
{
	uint64_t ptr;

	if (ev->type == MA_EV_ALLOC) {
		ptr = ev->alloc.ptr;
		if (ev->alloc.node < acc->nodes_cap)
			__builtin_prefetch(&acc->nodes[ev->alloc.node], 1);
	} else if (ev->type == MA_EV_FREE) {
		ptr = ev->free.ptr;
	} else {
		return;
	}
	if (acc->live.cap)
		__builtin_prefetch(&acc->live.t[live_slot(&acc->live, ptr)], 1);
}

void ma_account_set_tag(struct ma_account *acc, uint32_t tag)
{
	acc->tag = tag;
}

bool ma_account_block(const struct ma_account *acc, uint64_t ptr,
		      uint32_t *node, uint32_t *tag, uint64_t *size)
{
	const struct live_ent *e;

	if (!ptr || !acc->live.cap)
		return false;
	e = live_find((struct live_map *)&acc->live, ptr);
	if (!e)
		return false;
	*node = e->node;
	*tag = e->tag;
	*size = e->size;
	return true;
}

int ma_account_feed_rec(struct ma_account *acc, const struct ma_rec *rec)
{
	struct ma_event ev;
	int ret = ma_event_from_rec(rec, &ev);

	if (ret <= 0)
		return ret;
	return ma_account_feed(acc, &ev);
}

/* ------------------------------------------------------------------ */
/* Queries */

static void node_peak(const struct ma_account *acc, const struct node_ent *n,
		      struct ma_account_fig *peak)
{
	if (acc->t.agg_peak) {
		peak->bytes = n->fpeak_bytes;
		peak->count = n->fpeak_count;
	} else if (n->epoch == acc->epoch) {
		peak->bytes = n->peak_bytes;
		peak->count = n->peak_count;
	} else {
		peak->bytes = n->live_bytes;
		peak->count = n->live_count;
	}
}

size_t ma_account_node_ids(const struct ma_account *acc)
{
	return acc->nodes_n;
}

void ma_account_node_figs(const struct ma_account *acc, uint32_t node,
			  struct ma_account_fig *live,
			  struct ma_account_fig *total,
			  struct ma_account_fig *peak)
{
	struct ma_account_fig zero = { 0, 0 }, p;
	const struct node_ent *n;

	if (node >= acc->nodes_n) {
		if (live)
			*live = zero;
		if (total)
			*total = zero;
		if (peak)
			*peak = zero;
		return;
	}
	n = &acc->nodes[node];
	node_peak(acc, n, &p);
	if (live)
		*live = (struct ma_account_fig){ n->live_bytes, n->live_count };
	if (total)
		*total = (struct ma_account_fig){ n->total_bytes,
						  n->total_count };
	if (peak)
		*peak = p;
}

/* Innermost frame of a node */
static void node_frame(const struct ma_account *acc, uint32_t id,
		       struct ma_frame *f)
{
	const struct node_ent *n = id < acc->nodes_n ? &acc->nodes[id] : NULL;
	const struct code_ent *c =
		n && n->defined ? code_get(acc, n->code) : NULL;

	f->node = id;
	f->code = c ? n->code : 0;
	f->function = acc->str.s[c ? c->name : STR_UNKNOWN];
	f->file = acc->str.s[c ? c->file : STR_EMPTY];
	f->firstlineno = c ? c->firstlineno : 0;
	if (!c)
		f->line = -1;
	else if (n->line != INT32_MIN)
		f->line = n->line;
	else
		f->line = code_line(c, n->addr);
}

int ma_account_node_frames(const struct ma_account *acc, uint32_t node,
			   struct ma_frame *frames, int max)
{
	int depth = 0;

	/* Parents are defined before children, so ids strictly decrease
	 * along a chain written by a sane payload; the bound below also
	 * stops a corrupt cycle */
	while (node && node < acc->nodes_n && depth < (1 << 16)) {
		if (depth < max)
			node_frame(acc, node, &frames[depth]);
		depth++;
		node = acc->nodes[node].defined ? acc->nodes[node].parent : 0;
	}
	return depth;
}

int ma_account_thread(const struct ma_account *acc, uint32_t index,
		      int32_t *tid, const char **name)
{
	if (index >= acc->threads_cap || !acc->threads[index].defined)
		return -ENOENT;
	if (tid)
		*tid = acc->threads[index].tid;
	if (name)
		*name = acc->threads[index].name;
	return 0;
}

const struct ma_account_sample *ma_account_samples(const struct ma_account *acc,
						   size_t *n)
{
	*n = acc->samples_n;
	return acc->samples;
}

/* Views: group nodes by a key of three numbers */
struct vkey {
	uint32_t a, b;
	int32_t c;
};

struct vgroup {
	struct vkey k;
	size_t row; /* index + 1, 0 = empty */
};

static uint64_t vkey_hash(const struct vkey *k)
{
	uint64_t h = ((uint64_t)k->a << 32 | k->b) * 0x9e3779b97f4a7c15ull;

	return (h ^ (uint32_t)k->c) * 0xff51afd7ed558ccdull;
}

static uint64_t sort_fig(const struct ma_account_row *r, enum ma_account_sort s)
{
	switch (s) {
	case MA_SORT_LIVE_BYTES:
		return r->live.bytes;
	case MA_SORT_TOTAL_BYTES:
		return r->total.bytes;
	case MA_SORT_PEAK_BYTES:
		return r->peak.bytes;
	case MA_SORT_LIVE_COUNT:
		return r->live.count;
	case MA_SORT_TOTAL_COUNT:
		return r->total.count;
	case MA_SORT_PEAK_COUNT:
		return r->peak.count;
	}
	return 0;
}

static int row_cmp(const void *pa, const void *pb, void *arg)
{
	const struct ma_account_row *a = pa, *b = pb;
	enum ma_account_sort s = *(const enum ma_account_sort *)arg;
	uint64_t x = sort_fig(a, s), y = sort_fig(b, s);
	int c;

	if (x != y)
		return x > y ? -1 : 1;
	if (a->total.bytes != b->total.bytes)
		return a->total.bytes > b->total.bytes ? -1 : 1;
	c = ma_location_cmp(a->file, a->function, a->line, b->file, b->function,
			    b->line);
	if (c)
		return c;
	return a->node < b->node ? -1 : a->node > b->node;
}

int ma_location_cmp(const char *file_a, const char *fn_a, int line_a,
		    const char *file_b, const char *fn_b, int line_b)
{
	int c = strcmp(file_a, file_b);

	if (c)
		return c;
	c = strcmp(fn_a ? fn_a : "", fn_b ? fn_b : "");
	if (c)
		return c;
	return line_a < line_b ? -1 : line_a > line_b;
}

static void fig_add(struct ma_account_fig *a, const struct ma_account_fig *b)
{
	a->bytes += b->bytes;
	a->count += b->count;
}

int ma_account_view(const struct ma_account *acc, enum ma_account_view view,
		    enum ma_account_sort sort, struct ma_account_row **rows,
		    size_t *nrows)
{
	struct ma_account_row *out = NULL;
	struct vgroup *groups = NULL;
	size_t n = 0, cap = 0, ngroups = 0;

	*rows = NULL;
	*nrows = 0;
	if (view != MA_VIEW_STACK) {
		for (ngroups = 64; ngroups < acc->nodes_n * 2; ngroups *= 2)
			;
		groups = calloc(ngroups, sizeof(*groups));
		if (!groups)
			return ma_err(-ENOMEM, "accounting: out of memory");
	}
	for (size_t id = 0; id < acc->nodes_n; id++) {
		const struct node_ent *ne = &acc->nodes[id];
		struct ma_account_fig live = { ne->live_bytes, ne->live_count };
		struct ma_account_fig total = { ne->total_bytes,
						ne->total_count };
		struct ma_account_fig peak;
		struct ma_account_row *r;
		struct ma_frame f;
		struct vkey k = { 0, 0, 0 };

		node_peak(acc, ne, &peak);
		if (!live.bytes && !live.count && !total.count && !peak.bytes &&
		    !peak.count)
			continue;
		if (id == 0) {
			f = (struct ma_frame){ .function = acc->str.s[STR_NOPY],
					       .file = acc->str.s[STR_EMPTY],
					       .line = -1 };
		} else {
			node_frame(acc, (uint32_t)id, &f);
		}
		r = NULL;
		if (view != MA_VIEW_STACK) {
			const struct code_ent *c =
				id && ne->defined ? code_get(acc, ne->code)
						  : NULL;
			uint32_t name =
				id ? (c ? c->name : STR_UNKNOWN) : STR_NOPY;
			uint32_t file = c ? c->file : STR_EMPTY;
			size_t j;

			k.a = file;
			if (view == MA_VIEW_LINE) {
				k.b = name;
				k.c = f.line;
			} else if (view == MA_VIEW_FUNCTION) {
				k.b = name;
				k.c = f.firstlineno;
			}
			for (j = vkey_hash(&k) & (ngroups - 1); groups[j].row;
			     j = (j + 1) & (ngroups - 1)) {
				const struct vkey *o = &groups[j].k;

				if (o->a == k.a && o->b == k.b && o->c == k.c) {
					r = &out[groups[j].row - 1];
					break;
				}
			}
			if (!r) {
				groups[j].k = k;
				groups[j].row = n + 1;
			}
		}
		if (!r) {
			if (grow_array((void **)&out, &cap, n + 1,
				       sizeof(*out)) < 0) {
				free(out);
				free(groups);
				return ma_err(-ENOMEM,
					      "accounting: out of memory");
			}
			r = &out[n++];
			r->node = (uint32_t)id;
			r->file = f.file;
			r->function = view == MA_VIEW_FILE ? NULL : f.function;
			r->line = view == MA_VIEW_LINE || view == MA_VIEW_STACK
					  ? f.line
				  : view == MA_VIEW_FUNCTION ? f.firstlineno
							     : 0;
		} else {
			/* Representative: the node with the largest figure */
			struct ma_account_row one = { .live = live,
						      .total = total,
						      .peak = peak };
			uint64_t best = 0;
			struct ma_account_fig l, t, p;

			ma_account_node_figs(acc, r->node, &l, &t, &p);
			best = sort_fig(&(struct ma_account_row){ .live = l,
								  .total = t,
								  .peak = p },
					sort);
			if (sort_fig(&one, sort) > best)
				r->node = (uint32_t)id;
		}
		fig_add(&r->live, &live);
		fig_add(&r->total, &total);
		fig_add(&r->peak, &peak);
	}
	free(groups);
	if (n)
		qsort_r(out, n, sizeof(*out), row_cmp, &sort);
	*rows = out;
	*nrows = n;
	return 0;
}

/* ------------------------------------------------------------------ */
/* The summary */

static void fmt_secs(uint64_t ns, char *buf, size_t len)
{
	snprintf(buf, len, "%.1f s", (double)ns / 1e9);
}

static void print_top(const struct ma_account *acc, FILE *f, int top, int width,
		      bool live)
{
	const struct ma_account_totals *t = &acc->t;
	struct ma_account_row *rows;
	uint64_t all = live ? t->live_bytes : t->alloc_bytes;
	char b[32], c[32], s[16];
	int loc_width = width - 28 < 24 ? 24 : width - 28;
	char *loc;
	size_t n;
	int shown = 0;

	if (ma_account_view(acc, MA_VIEW_LINE,
			    live ? MA_SORT_LIVE_BYTES : MA_SORT_TOTAL_BYTES,
			    &rows, &n) < 0)
		return;
	ma_fmt_bytes(all, b, sizeof(b));
	fprintf(f, "\nTop Python lines by %s (of %s):\n",
		live ? "memory still live" : "memory allocated", b);
	fprintf(f, "%10s %6s %8s  %s\n", live ? "LIVE" : "ALLOCATED", "SHARE",
		live ? "BLOCKS" : "ALLOCS", "LOCATION");
	loc = malloc((size_t)loc_width + 1);
	for (size_t i = 0; loc && i < n && shown < top; i++) {
		const struct ma_account_fig *fig =
			live ? &rows[i].live : &rows[i].total;

		if (!fig->bytes && !fig->count)
			break;
		ma_fmt_bytes(fig->bytes, b, sizeof(b));
		ma_fmt_count(fig->count, c, sizeof(c));
		snprintf(s, sizeof(s), "%.1f%%",
			 all ? 100.0 * (double)fig->bytes / (double)all : 0.0);
		ma_fit_location(rows[i].function ? rows[i].function : "",
				rows[i].file, rows[i].line, loc, loc_width);
		fprintf(f, "%10s %6s %8s  %s\n", b, s, c, loc);
		shown++;
	}
	if (!shown)
		fprintf(f, "%10s\n", "(none)");
	free(loc);
	free(rows);
}

void ma_account_print_summary_width(const struct ma_account *acc, FILE *f,
				    int top, int width)
{
	const struct ma_account_totals *t = &acc->t;
	struct ma_para p = { .f = f, .width = width < 60 ? 60 : width };
	char a[32], b[32], d[32], e[32];

	ma_fmt_count(t->allocs, a, sizeof(a));
	ma_fmt_bytes(t->alloc_bytes, b, sizeof(b));
	ma_para_piece(&p, "", "Allocations: %s (%s)", a, b);
	if (t->duration_ns || t->samples) {
		fmt_secs(t->duration_ns ? t->duration_ns : t->last_t_ns, d,
			 sizeof(d));
		ma_para_piece(&p, " ", "in %s", d);
	}
	/* frees of tracked blocks, as the report counts them: the unknown
	 * ones have their own line */
	ma_fmt_count(t->frees - t->unknown_free_events, a, sizeof(a));
	ma_para_piece(&p, "; ", "frees: %s", a);
	ma_para_end(&p);

	ma_fmt_bytes(t->live_bytes, a, sizeof(a));
	ma_fmt_count(t->live_count, b, sizeof(b));
	ma_para_piece(&p, "", "Still live: %s in %s block%s", a, b,
		      t->live_count == 1 ? "" : "s");
	ma_para_end(&p);

	ma_fmt_bytes(t->peak_bytes, a, sizeof(a));
	ma_fmt_count(t->peak_count, b, sizeof(b));
	ma_para_piece(&p, "", "Peak: %s in %s blocks", a, b);
	/* processes at their own peaks, each at its moment: none is the
	 * sum's (docs/limits.md) */
	if (t->peak_bytes && t->samples && !t->peak_summed) {
		fmt_secs(t->peak_after_ns, d, sizeof(d));
		fmt_secs(t->peak_before_ns, e, sizeof(e));
		if (!t->peak_before_ns)
			ma_para_piece(&p, ", ", "after %s", d);
		else if (strcmp(d, e) == 0)
			ma_para_piece(&p, ", ", "at %s", d);
		else
			ma_para_piece(&p, ", ", "between %s and %s", d, e);
	}
	if (t->peak_bytes && !t->peak_summed)
		ma_para_piece(&p, " ", "(event %llu)",
			      (unsigned long long)t->peak_index);
	/* the payload's peak is of its blocks: mmap regions, events, are
	 * in the live figure above but not in it (docs/limits.md) */
	if (t->agg_peak && t->mmaps)
		ma_para_piece(&p, "; ", "mmap regions not included");
	ma_para_end(&p);

	ma_fmt_count(t->events, a, sizeof(a));
	ma_para_piece(&p, "", "Events: %s", a);
	ma_fmt_count(t->lost_records, a, sizeof(a));
	ma_para_piece(&p, "; ", "lost records: %s", a);
	ma_fmt_count(t->unknown_frees, a, sizeof(a));
	ma_para_piece(&p, "; ", "frees of memory allocated before attach: %s",
		      a);
	ma_fmt_count(t->stack_truncated, a, sizeof(a));
	ma_para_piece(&p, "; ", "truncated stacks: %s", a);
	ma_para_end(&p);
	if (t->lost_records) {
		ma_para_piece(&p, "", "warning: %llu records lost (ring full):",
			      (unsigned long long)t->lost_records);
		ma_para_piece(&p, " ", "the figures are incomplete");
		ma_para_end(&p);
	}
	if (t->dropped || t->keys_full) {
		ma_para_piece(&p, "",
			      "warning: %llu blocks (%llu bytes) not "
			      "tracked (the target's live table could not "
			      "grow), %llu events counted without their stack "
			      "(its key table was full):",
			      (unsigned long long)t->dropped,
			      (unsigned long long)t->dropped_bytes,
			      (unsigned long long)t->keys_full);
		ma_para_piece(&p, " ", "the figures are incomplete");
		ma_para_end(&p);
	}
	if (t->node_table_full) {
		ma_para_piece(&p, "",
			      "warning: %llu allocations counted with a "
			      "shorter stack, often <no Python frame> (the "
			      "payload's table of code objects or stacks was "
			      "full):",
			      (unsigned long long)t->node_table_full);
		ma_para_piece(&p, " ", "their innermost frames are missing");
		ma_para_end(&p);
	}
	if (top > 0) {
		print_top(acc, f, top, p.width, true);
		print_top(acc, f, top, p.width, false);
	}
}

void ma_account_print_summary(const struct ma_account *acc, FILE *f, int top)
{
	ma_account_print_summary_width(acc, f, top, ma_term_width(f));
}
