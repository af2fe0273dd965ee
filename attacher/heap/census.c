/* SPDX-License-Identifier: MIT */
/*
 * What the object graph means (docs/heap.md, "The analysis"):
 *   - by type: count and bytes;
 *   - what is alive and why: as CPython's collector decides it, an object
 *     is held from outside the objects found when its reference count
 *     exceeds the references the found objects make to it (a C global, a
 *     running frame, an extension's cache); everything reachable from such
 *     objects, from modules or from frames' locals is alive; the rest is
 *     kept only by reference cycles: garbage waiting for the collector;
 *   - retained sizes: what freeing an object would free, the sizes of its
 *     subtree in the dominator tree (Cooper, Harvey and Kennedy's iterative
 *     algorithm over a reverse postorder);
 *   - paths from roots: breadth first from modules and frames' locals, then
 *     from what C holds, so that a path names a variable when one exists.
 */
#include "heap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ptrace.h"  /* ma_now_ns */
#include "textfit.h" /* ma_escape_ctl */

#define NONE	  UINT32_MAX
#define FROM_ROOT 0x80000000u /* parent: a root (index in low bits) */
#define FROM_C	  (NONE - 1)  /* parent: held from outside */

static const char *tname(const struct ma_heap_graph *g, uint32_t obj)
{
	return g->types[g->type[obj]].name;
}

static int is_type(const struct ma_heap_graph *g, uint32_t obj,
		   const char *name)
{
	return !strcmp(tname(g, obj), name);
}

/* The index of the type of that name, NONE when no object has it */
static uint32_t type_named(const struct ma_heap_graph *g, const char *name)
{
	for (size_t i = 0; i < g->ntypes; i++)
		if (!strcmp(g->types[i].name, name))
			return (uint32_t)i;
	return NONE;
}

/* ------------------------------------------------------------------ */
/* By type */

static int cmp_type(const void *a, const void *b)
{
	const struct ma_hcensus_type *x = a, *y = b;

	if (x->bytes != y->bytes)
		return x->bytes < y->bytes ? 1 : -1;
	return x->count < y->count ? 1 : x->count > y->count ? -1 : 0;
}

static int by_type(const struct ma_heap_graph *g, struct ma_heap_census *c)
{
	c->by_type = calloc(g->ntypes ? g->ntypes : 1, sizeof(*c->by_type));
	if (!c->by_type)
		return -ENOMEM;
	for (size_t i = 0; i < g->ntypes; i++)
		c->by_type[i].type = (uint32_t)i;
	for (size_t i = 0; i < g->n; i++) {
		struct ma_hcensus_type *t = &c->by_type[g->type[i]];

		t->count++;
		t->bytes += g->size[i];
		c->objects++;
		c->bytes += g->size[i];
		if (g->flags[i] & MA_HEAP_O_PYMALLOC)
			c->pymalloc_objects++;
	}
	/* Not the sizes of the objects whose own block is pymalloc's: a
	 * bytearray or list there keeps its buffer or item table in malloc's
	 * blocks when larger than 512 bytes.  The walker tells each part
	 * apart (injector/heap.c, pymalloc_part). */
	c->pymalloc_bytes = g->pymalloc_bytes;
	c->ntypes = g->ntypes;
	qsort(c->by_type, c->ntypes, sizeof(*c->by_type), cmp_type);
	while (c->ntypes && !c->by_type[c->ntypes - 1].count)
		c->ntypes--;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Liveness and paths: breadth first, roots first, then what C holds */

struct work {
	uint32_t *parent; /* n: NONE, FROM_ROOT|root, FROM_C, or an object */
	uint32_t *queue;
	uint8_t *seed;	  /* n: a successor of the virtual root */
	uint8_t *garbage; /* n */
};

/* Breadth first over queue[head, tail); returns the new tail.  With
 * modtype (a type index, else NONE), a module reached is held but not
 * gone through: its index is put in hold[*nhold], for a later pass */
static size_t bfs_from(const struct ma_heap_graph *g, struct work *w,
		       size_t head, size_t tail, uint32_t modtype,
		       uint32_t *hold, size_t *nhold)
{
	while (head < tail) {
		uint32_t u = w->queue[head++];

		if (modtype != NONE && g->type[u] == modtype &&
		    (w->parent[u] & FROM_ROOT) == 0) {
			hold[(*nhold)++] = u;
			continue;
		}
		for (uint32_t e = g->eoff[u]; e < g->eoff[u + 1]; e++) {
			uint32_t v = g->edges[e];

			if (w->parent[v] != NONE)
				continue;
			w->parent[v] = u;
			w->queue[tail++] = v;
		}
	}
	return tail;
}

static void bfs(const struct ma_heap_graph *g, struct work *w, size_t head,
		size_t tail)
{
	bfs_from(g, w, head, tail, NONE, NULL, NULL);
}

/* __main__ (0), then frames' locals (1), then the other modules (2): a
 * path names the user's own variable when it can.  The roots' order and
 * the passes of liveness() */
static int root_class(const struct ma_hroot *r)
{
	if (r->kind == MA_HEAP_R_LOCAL)
		return 1;
	return r->kind == MA_HEAP_R_MODULE && !strcmp(r->name, "__main__") ? 0
									   : 2;
}

static int cmp_root(const void *a, const void *b, void *arg)
{
	const struct ma_heap_graph *g = arg;
	const struct ma_hroot *x = &g->roots[*(const uint32_t *)a],
			      *y = &g->roots[*(const uint32_t *)b];
	int cx = root_class(x), cy = root_class(y);

	/* by class, locals innermost first, then by name */
	if (cx != cy)
		return cx - cy;
	if (x->kind == MA_HEAP_R_LOCAL && x->depth != y->depth)
		return x->depth < y->depth ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int liveness(const struct ma_heap_graph *g, struct work *w,
		    struct ma_heap_census *c)
{
	size_t n = g->n, tail = 0;
	uint32_t *inref = calloc(n ? n : 1, sizeof(*inref));
	uint32_t *rorder = malloc((g->nroots ? g->nroots : 1) * 4);

	if (!inref || !rorder) {
		free(inref);
		free(rorder);
		return -ENOMEM;
	}
	for (size_t i = 0; i < g->nedges; i++)
		if (inref[g->edges[i]] < UINT32_MAX)
			inref[g->edges[i]]++;
	for (size_t i = 0; i < n; i++)
		w->parent[i] = NONE;
	for (size_t i = 0; i < g->nroots; i++)
		rorder[i] = (uint32_t)i;
	qsort_r(rorder, g->nroots, 4, cmp_root, (void *)g);
	/* Three passes, each breadth first, so that a path names what the
	 * user named when it can: from __main__, then from the frames'
	 * locals, then from the other modules.  A module is a root of its
	 * own (named by itself) from the start; one reached in the first two
	 * passes is held there and gone through in the third, so that
	 * `__main__.np` does not bring all of numpy into the first.  Before
	 * the passes, an object both a local and a global of __main__ hold
	 * got the local's path: the local is at depth 0, the global two
	 * steps down (module, its dict) */
	uint32_t modtype = type_named(g, "module"), *hold = NULL;
	size_t nhold = 0, from = 0;

	for (size_t k = 0; k < g->nroots; k++) {
		const struct ma_hroot *r = &g->roots[rorder[k]];

		w->seed[r->obj] = 1;
		if (r->kind == MA_HEAP_R_MODULE && w->parent[r->obj] == NONE)
			w->parent[r->obj] = FROM_ROOT | rorder[k];
	}
	if (modtype != NONE) {
		hold = malloc((n ? n : 1) * sizeof(*hold));
		if (!hold)
			modtype = NONE; /* one pass: every path still found */
	}
	for (int pass = 0; pass < 3; pass++) {
		for (size_t k = 0; k < g->nroots; k++) {
			const struct ma_hroot *r = &g->roots[rorder[k]];

			if (root_class(r) != pass)
				continue;
			if (w->parent[r->obj] == NONE)
				w->parent[r->obj] = FROM_ROOT | rorder[k];
			else if (w->parent[r->obj] != (FROM_ROOT | rorder[k]))
				continue; /* reached already, or a root twice */
			w->queue[tail++] = r->obj;
		}
		/* the held modules' referents (each object takes one place
		 * in the queue, ever: the held are not queued again) */
		for (size_t i = 0; pass == 2 && i < nhold; i++)
			for (uint32_t e = g->eoff[hold[i]];
			     e < g->eoff[hold[i] + 1]; e++) {
				uint32_t v = g->edges[e];

				if (w->parent[v] != NONE)
					continue;
				w->parent[v] = hold[i];
				w->queue[tail++] = v;
			}
		tail = bfs_from(g, w, from, tail, pass < 2 ? modtype : NONE,
				hold, &nhold);
		from = tail;
	}
	free(hold);
	/* Held from outside: more references than the objects found make */
	size_t head = tail;

	for (size_t i = 0; i < n; i++) {
		if (g->refcnt[i] <= inref[i])
			continue;
		w->seed[i] = 1;
		if (w->parent[i] != NONE)
			continue;
		w->parent[i] = FROM_C;
		w->queue[tail++] = (uint32_t)i;
		c->held_by_c_objects++;
	}
	/* ... also the unreadable, whose references are unknown */
	for (size_t i = 0; i < n; i++)
		if ((g->flags[i] & MA_HEAP_O_UNREADABLE) &&
		    w->parent[i] == NONE) {
			w->seed[i] = 1;
			w->parent[i] = FROM_C;
			w->queue[tail++] = (uint32_t)i;
		}
	bfs(g, w, head, tail);
	for (size_t i = 0; i < n; i++)
		if (w->parent[i] == NONE) {
			w->garbage[i] = 1;
			c->garbage_objects++;
			c->garbage_bytes += g->size[i];
		}
	/* The garbage's entries (2): what no other garbage refers to, then
	 * one object of each cycle left, so that a cycle's entry retains the
	 * cycle (breaking it frees all of it) */
	for (size_t i = 0; i < n; i++)
		for (uint32_t e = g->eoff[i]; e < g->eoff[i + 1]; e++)
			if (w->garbage[i] && w->garbage[g->edges[e]])
				w->seed[g->edges[e]] |= 2;
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < n; i++) {
			if (!w->garbage[i] || w->parent[i] != NONE ||
			    (pass == 0 && (w->seed[i] & 2)))
				continue;
			w->garbage[i] = 2;
			w->parent[i] = FROM_C - 1; /* garbage */
			w->queue[tail] = (uint32_t)i;
			bfs(g, w, tail, tail + 1);
			tail = head; /* the queue is scratch now */
		}
	for (size_t i = 0; i < n; i++)
		w->seed[i] &= 1;
	free(inref);
	free(rorder);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Dominators.  Nodes 0..n-1 are objects, n the virtual root (successors:
 * the seeds), n+1 the garbage node (successor of the root; successors: the
 * garbage). */

struct dom {
	size_t N;	/* n + 2 */
	uint32_t *rpo;	/* reverse postorder: node at position */
	uint32_t *pos;	/* position of node */
	uint32_t *idom; /* by node */
	uint32_t *poff; /* predecessors, CSR by node */
	uint32_t *pred;
};

static size_t succ_count(const struct ma_heap_graph *g, const struct work *w,
			 uint32_t u)
{
	(void)w;
	if (u < g->n)
		return (size_t)(g->eoff[u + 1] - g->eoff[u]);
	return g->n; /* scanned with a filter */
}

/* The k-th successor of u, or NONE when it is filtered out */
static uint32_t succ(const struct ma_heap_graph *g, const struct work *w,
		     uint32_t u, size_t k)
{
	if (u < g->n)
		return g->edges[g->eoff[u] + k];
	if (u == g->n) { /* the root: seeds, and the garbage node last */
		if (k == g->n)
			return (uint32_t)(g->n + 1);
		return w->seed[k] ? (uint32_t)k : NONE;
	}
	return w->garbage[k] == 2 ? (uint32_t)k : NONE;
}

static int postorder(const struct ma_heap_graph *g, const struct work *w,
		     struct dom *d)
{
	size_t N = d->N, np = 0, sp = 0;
	uint32_t *stack = malloc(N * 4);
	uint32_t *next = calloc(N, 4);
	uint8_t *vis = calloc(N, 1);

	if (!stack || !next || !vis) {
		free(stack);
		free(next);
		free(vis);
		return -ENOMEM;
	}
	stack[sp++] = (uint32_t)g->n;
	vis[g->n] = 1;
	while (sp) {
		uint32_t u = stack[sp - 1];
		size_t cnt = succ_count(g, w, u) + (u == g->n);
		uint32_t v = NONE;

		while (next[u] < cnt && v == NONE) {
			v = succ(g, w, u, next[u]++);
			if (v != NONE && vis[v])
				v = NONE;
		}
		if (v == NONE) {
			d->rpo[np++] = u; /* postorder for now */
			sp--;
			continue;
		}
		vis[v] = 1;
		stack[sp++] = v;
	}
	/* reverse it */
	for (size_t i = 0; i < np / 2; i++) {
		uint32_t t = d->rpo[i];

		d->rpo[i] = d->rpo[np - 1 - i];
		d->rpo[np - 1 - i] = t;
	}
	for (size_t i = 0; i < N; i++)
		d->pos[i] = NONE;
	for (size_t i = 0; i < np; i++)
		d->pos[d->rpo[i]] = (uint32_t)i;
	free(stack);
	free(next);
	free(vis);
	return np == N ? 0 : -EPROTO;
}

static int predecessors(const struct ma_heap_graph *g, const struct work *w,
			struct dom *d)
{
	size_t N = d->N, n = g->n, total = 0;

	if (g->nedges + 2 * g->n + 1 > UINT32_MAX)
		return -E2BIG;
	d->poff = calloc(N + 1, 4);
	if (!d->poff)
		return -ENOMEM;
	for (size_t i = 0; i < g->nedges; i++)
		d->poff[g->edges[i] + 1]++;
	for (size_t i = 0; i < n; i++) {
		if (w->seed[i])
			d->poff[i + 1]++;
		if (w->garbage[i] == 2)
			d->poff[i + 1]++;
	}
	d->poff[n + 1 + 1]++; /* garbage node <- root */
	for (size_t i = 0; i < N; i++)
		d->poff[i + 1] += d->poff[i];
	total = d->poff[N];
	d->pred = malloc((total ? total : 1) * 4);
	if (!d->pred)
		return -ENOMEM;
	/* Filled with poff[v] as v's cursor (it ends at v+1's start), then
	 * shifted back: no second array of N cursors */
	for (size_t u = 0; u < n; u++)
		for (uint32_t e = g->eoff[u]; e < g->eoff[u + 1]; e++)
			d->pred[d->poff[g->edges[e]]++] = (uint32_t)u;
	for (size_t i = 0; i < n; i++) {
		if (w->seed[i])
			d->pred[d->poff[i]++] = (uint32_t)n;
		if (w->garbage[i] == 2)
			d->pred[d->poff[i]++] = (uint32_t)(n + 1);
	}
	d->pred[d->poff[n + 1]++] = (uint32_t)n;
	for (size_t i = N; i > 0; i--)
		d->poff[i] = d->poff[i - 1];
	d->poff[0] = 0;
	return 0;
}

/*
 * The iterative algorithm of Cooper, Harvey and Kennedy: simple and
 * light (no arrays beyond the order and the tree), but an intersection
 * walks the tree from each predecessor up to the others' common
 * ancestor, so that an object whose referrers lie along a deep chain
 * costs the chain's depth per referrer: quadratic.  Found with CPython's
 * test_itertools (`tee(repeat(None, 20000000))`, one iterator exhausted:
 * 350,000 linked tee data objects, each pointing at the shared source
 * iterator): the census ran for hours.  The walks are counted against a
 * budget of DOM_BUDGET_BASE steps plus DOM_BUDGET_PER per node and per
 * edge (a fraction of a second; on real heaps the walks take a few steps
 * per edge: memattach -v prints the count).  Past it, dominators_snca()
 * computes the tree again with an algorithm whose cost does not grow with
 * such chains (an ordinary linked list of 10,000 objects, each pointing
 * at its class, spent the budget: no retained sizes at all), under a
 * budget of its own; only past that, or without the memory for it, are
 * the retained sizes not computed, and the census says so (-ETIME).
 */
#define DOM_BUDGET_BASE (50ull * 1000 * 1000)
#define DOM_BUDGET_PER	16 /* steps per node and per edge */
#define SNCA_BUDGET_PER 64

static uint32_t intersect(const struct dom *d, uint32_t a, uint32_t b,
			  uint64_t *steps)
{
	uint64_t n = 0;

	while (a != b) {
		while (d->pos[a] > d->pos[b]) {
			a = d->idom[a];
			n++;
		}
		while (d->pos[b] > d->pos[a]) {
			b = d->idom[b];
			n++;
		}
	}
	*steps += n;
	return a;
}

/*
 * The semi-NCA algorithm (Georgiadis): Lengauer and Tarjan's
 * semidominators over a depth-first preorder, with path compression (a
 * step or a few per edge, however deep the chains), then each node's
 * immediate dominator found by climbing the tree from its DFS parent to
 * the first node not below its semidominator.  Five arrays of N words
 * more than the iterative algorithm needs, which is why that one runs
 * first.  Leaves d->rpo the preorder and d->pos each node's place in it:
 * a node's dominators come before it there too, as the retained sizes'
 * sum needs.  0, -ETIME past the budget, -ENOMEM, -EPROTO.
 */
static int dominators_snca(const struct ma_heap_graph *g, const struct work *w,
			   struct dom *d, uint64_t *steps, uint64_t budget)
{
	size_t N = d->N, np = 0, sp = 0;
	uint32_t root = (uint32_t)g->n;
	uint32_t *parent = malloc(N * 4), *semi = malloc(N * 4),
		 *label = malloc(N * 4), *anc = malloc(N * 4),
		 *stack = malloc(N * 4), *next = calloc(N, 4);
	int err = 0;

	if (!parent || !semi || !label || !anc || !stack || !next) {
		err = -ENOMEM;
		goto out;
	}
	/* preorder, iteratively: a chain is as deep as the heap is large */
	for (size_t i = 0; i < N; i++)
		d->pos[i] = NONE;
	d->pos[root] = 0;
	d->rpo[np++] = root;
	parent[root] = root;
	stack[sp++] = root;
	while (sp) {
		uint32_t u = stack[sp - 1], v = NONE;
		size_t cnt = succ_count(g, w, u) + (u == root);

		while (next[u] < cnt && v == NONE) {
			v = succ(g, w, u, next[u]++);
			if (v != NONE && d->pos[v] != NONE)
				v = NONE;
		}
		if (v == NONE) {
			sp--;
			continue;
		}
		d->pos[v] = (uint32_t)np;
		d->rpo[np++] = v;
		parent[v] = u;
		stack[sp++] = v;
	}
	if (np != N) {
		err = -EPROTO;
		goto out;
	}
	for (size_t i = 0; i < N; i++) {
		semi[i] = d->pos[i];
		label[i] = (uint32_t)i;
		anc[i] = NONE;
	}
	for (size_t i = N - 1; i > 0; i--) {
		uint32_t x = d->rpo[i];

		for (uint32_t e = d->poff[x]; e < d->poff[x + 1]; e++) {
			uint32_t v = d->pred[e], y = v;
			size_t top = 0;

			/* eval(v): compress v's path in the forest, from
			 * its top down, and take the least semidominator
			 * on it */
			while (anc[y] != NONE && anc[anc[y]] != NONE) {
				stack[top++] = y;
				y = anc[y];
			}
			*steps += top + 1;
			while (top) {
				uint32_t a;

				y = stack[--top];
				a = anc[y];
				if (semi[label[a]] < semi[label[y]])
					label[y] = label[a];
				anc[y] = anc[a];
			}
			if (semi[label[v]] < semi[x])
				semi[x] = semi[label[v]];
		}
		anc[x] = parent[x];
		if (*steps > budget) {
			err = -ETIME;
			goto out;
		}
	}
	d->idom[root] = root;
	for (size_t i = 1; i < N; i++) {
		uint32_t x = d->rpo[i], y = parent[x];

		while (d->pos[y] > semi[x]) {
			y = d->idom[y];
			++*steps;
		}
		d->idom[x] = y;
		if (*steps > budget) {
			err = -ETIME;
			goto out;
		}
	}
out:
	free(parent);
	free(semi);
	free(label);
	free(anc);
	free(stack);
	free(next);
	return err;
}

static int dominators(const struct ma_heap_graph *g, const struct work *w,
		      struct dom *d, struct ma_heap_census *c)
{
	int err;

	d->N = g->n + 2;
	d->rpo = malloc(d->N * 4);
	d->pos = malloc(d->N * 4);
	d->idom = malloc(d->N * 4);
	if (!d->rpo || !d->pos || !d->idom)
		return -ENOMEM;
	err = postorder(g, w, d);
	if (!err)
		err = predecessors(g, w, d);
	if (err)
		return err;
	for (size_t i = 0; i < d->N; i++)
		d->idom[i] = NONE;
	d->idom[g->n] = (uint32_t)g->n;
	uint64_t steps = 0;

	c->dom_budget =
		DOM_BUDGET_BASE + DOM_BUDGET_PER * ((uint64_t)d->N + g->nedges);

	for (int changed = 1, rounds = 0; changed && rounds < 1000; rounds++) {
		changed = 0;
		for (size_t i = 1; i < d->N; i++) {
			uint32_t b = d->rpo[i], nd = NONE;

			for (uint32_t e = d->poff[b]; e < d->poff[b + 1]; e++) {
				uint32_t p = d->pred[e];

				if (d->idom[p] == NONE)
					continue;
				nd = nd == NONE ? p
						: intersect(d, p, nd, &steps);
				/* here: one object may have all the referrers */
				if (steps > c->dom_budget)
					goto snca;
			}
			if (nd != d->idom[b]) {
				d->idom[b] = nd;
				changed = 1;
			}
		}
	}
	c->dom_steps = steps;
	return 0;
snca:
	c->dom_budget += DOM_BUDGET_BASE +
			 SNCA_BUDGET_PER * ((uint64_t)d->N + g->nedges);
	err = dominators_snca(g, w, d, &steps, c->dom_budget);
	c->dom_steps = steps;
	return err == -ENOMEM ? -ETIME : err;
}

static void dom_free(struct dom *d)
{
	free(d->rpo);
	free(d->pos);
	free(d->idom);
	free(d->poff);
	free(d->pred);
}

/* ------------------------------------------------------------------ */
/* Paths */

static const char *label_cached(const struct ma_heap_graph *g, uint32_t from,
				uint32_t to)
{
	for (size_t i = 0; i < g->nlabels; i++)
		if (g->labels[i].from == from && g->labels[i].to == to)
			return g->labels[i].text;
	return NULL;
}

static void label_store(struct ma_heap_graph *g, uint32_t from, uint32_t to,
			const char *text)
{
	struct ma_hlabel *l =
		realloc(g->labels, (g->nlabels + 1) * sizeof(*g->labels));

	if (!l)
		return;
	g->labels = l;
	l[g->nlabels++] = (struct ma_hlabel){ from, to, strdup(text) };
}

/* ------------------------------------------------------------------ */
/* Text from the target in labels */

/* The length of the UTF-8 character at s (strict, as jansson's check: no
 * overlong form, no surrogate, nothing past U+10FFFF), 0 when s does not
 * start one */
static size_t utf8_char(const unsigned char *s)
{
	unsigned char c = s[0];
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

void ma_heap_text(const char *in, char *out, size_t len)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t n = strlen(in), k = 0, o = 0;
	char *valid, *esc;

	if (!len)
		return;
	out[0] = '\0';
	valid = malloc(n + 1);
	if (!valid)
		return;
	/* what is not UTF-8 (a stray byte of an extension's tp_name) as '?':
	 * jansson refuses such a string, and a terminal makes of it what it
	 * likes */
	while (k < n) {
		size_t c = utf8_char(s + k);

		if (c) {
			memcpy(valid + o, s + k, c);
			o += c;
			k += c;
		} else {
			valid[o++] = '?';
			k++;
		}
	}
	valid[o] = '\0';
	esc = ma_escape_ctl(valid);
	free(valid);
	if (!esc)
		return;
	/* cut at a character's boundary */
	for (k = 0, o = 0; esc[k];) {
		size_t c = utf8_char((const unsigned char *)esc + k);

		if (!c || o + c >= len)
			break;
		memcpy(out + o, esc + k, c);
		o += c;
		k += c;
	}
	out[o] = '\0';
	free(esc);
}

/* s cut at the last whole UTF-8 character: snprintf cuts at a byte */
static void utf8_whole(char *s)
{
	size_t n = strlen(s), k = 0;

	while (k < n) {
		size_t c = utf8_char((const unsigned char *)s + k);

		if (!c || k + c > n)
			break;
		k += c;
	}
	s[k] = '\0';
}

/* ------------------------------------------------------------------ */

/*
 * Whether dict u is o's namespace (a module's, a class's, an instance's
 * __dict__): its keys are then o's attributes.  Asked of the copy, by
 * where o's type keeps its dict: a dict that is the value of an
 * attribute (self.table = {}) is not one, and 3.11+ keep an instance's
 * attributes as values without a dict, the values being its referents
 * themselves: "Registry -> dict['big']" was printed "Registry.big", an
 * attribute that does not exist.  Without the copy: a module's or a
 * class's dict referent is its namespace (its traverse visits no other
 * dict), an instance's may be anything.
 */
static int own_dict(const struct ma_heap_graph *g, struct ma_heap_live *live,
		    uint32_t o, uint32_t u)
{
	int r = live ? ma_heap_live_own_dict(live, g->addr[o], g->addr[u])
		     : -ENOENT;

	if (r >= 0)
		return r;
	return is_type(g, o, "module") || (g->flags[o] & MA_HEAP_O_TYPE);
}

/*
 * A str key as a path shows it: sanitized (ma_heap_text), a quote or a
 * backslash escaped as Python writes them ('a\'b'), and a long one cut at
 * a character with "..." after it (it was cut at 95 bytes, mid-way and with
 * no closing quote: dict['xxxx -> bytearray)
 */
enum { KEY_SHOWN = 80 };
static void key_text(const char *key, char *out, size_t len)
{
	char q[2 * KEY_SHOWN + 8], t[4 * KEY_SHOWN];
	size_t o = 0, k;

	for (k = 0; key[k] && o + 3 < sizeof(q); k++) {
		if (key[k] == '\'' || key[k] == '\\')
			q[o++] = '\\';
		q[o++] = key[k];
	}
	q[o] = '\0';
	ma_heap_text(q, t, sizeof(t));
	if (strlen(t) <= KEY_SHOWN && !key[k]) {
		snprintf(out, len, "%s", t);
		return;
	}
	t[KEY_SHOWN - 3] = '\0';
	/* not after a lone backslash, nor inside a character */
	k = strlen(t);
	if (k && t[k - 1] == '\\' && (k < 2 || t[k - 2] != '\\'))
		t[--k] = '\0';
	utf8_whole(t);
	snprintf(out, len, "%s...", t);
}

/* How u holds v, written as an accessor: ".name", "['key']", "[3]", "" */
static void edge_label(struct ma_heap_graph *g, struct ma_heap_live *live,
		       uint32_t prev, uint32_t u, uint32_t v, char *out,
		       size_t len)
{
	const char *cached = label_cached(g, u, v);
	char key[256], text[KEY_SHOWN + 8];
	uint64_t idx;

	out[0] = '\0';
	if (cached) {
		snprintf(out, len, "%s", cached);
		return;
	}
	if (is_type(g, u, "list") || is_type(g, u, "tuple")) {
		/* The item's position, read from the copy.  Not the edge's
		 * place among u's referents: list_traverse and tupletraverse
		 * visit the items from the last to the first, skip NULL ones
		 * (a list or tuple being filled), and an edge to what does
		 * not look like an object is dropped.  Unknown: "[?]". */
		if (ma_heap_live_index(live, g->addr[u], is_type(g, u, "tuple"),
				       g->addr[v], &idx) == 0)
			snprintf(out, len, "[%llu]", (unsigned long long)idx);
		else
			snprintf(out, len, "[?]");
	} else if (is_type(g, u, "dict")) {
		int attr = prev != NONE && own_dict(g, live, prev, u);
		int kind = live ? ma_heap_live_key(live, g->addr[u], g->addr[v],
						   key, sizeof(key))
				: -ENOENT;

		if (kind == MA_HEAP_KEY_STR) {
			key_text(key, text, sizeof(text));
			snprintf(out, len, attr ? ".%s" : "['%s']", text);
		} else if (kind == MA_HEAP_KEY_INT) {
			snprintf(out, len, "[%s]", key);
		} else {
			/* a namespace's key that is not a str is no
			 * attribute */
			snprintf(out, len, "%s",
				 attr && kind != -EMEDIUMTYPE ? ".?" : "[?]");
		}
		utf8_whole(out);
	}
	label_store(g, u, v, out);
}

static int obj_path(struct ma_heap_graph *g, const struct work *w,
		    struct ma_heap_live *live, uint32_t obj,
		    struct ma_hobj_report *r)
{
	uint32_t chain[4096];
	size_t k = 0;
	uint32_t u = obj;

	r->garbage = w->garbage[obj];
	/* up to the root */
	while (k < 4096) {
		chain[k++] = u;
		uint32_t p = w->parent[u];

		if (p == NONE || p == FROM_C || (p & FROM_ROOT))
			break;
		u = p;
	}
	uint32_t top = chain[k - 1], p = w->parent[top];

	if (r->garbage) {
		/* the path from the cycle's entry, whose row retains the
		 * cycle: `(cycle) Node -> bytearray`, where it was
		 * `(cycle) bytearray`, an object that is in no cycle */
		snprintf(r->root, sizeof(r->root),
			 "unreachable: kept only by a reference cycle "
			 "(garbage the collector has not freed yet)");
	} else if (p == FROM_C || p == NONE) {
		r->held_by_c = 1;
		snprintf(r->root, sizeof(r->root),
			 "held from outside the objects found (C code, an "
			 "extension, the interpreter)");
	} else if (!(p & FROM_ROOT)) {
		/* more steps from its root than the path keeps (the 4097th
		 * link of a linked list): its last 4096, "..." before them.
		 * p is an object here, not a root's index (read as one, it
		 * ran past the roots) */
		snprintf(r->root, sizeof(r->root), "...");
	} else {
		const struct ma_hroot *ro = &g->roots[p & ~FROM_ROOT];

		r->root_kind = (int)ro->kind;
		if (ro->kind == MA_HEAP_R_MODULE)
			snprintf(r->root, sizeof(r->root), "%s", ro->name);
		else
			snprintf(r->root, sizeof(r->root), "%s", ro->name);
	}
	r->path = calloc(k, sizeof(*r->path));
	if (!r->path)
		return -ENOMEM;
	r->npath = k;
	for (size_t i = 0; i < k; i++) {
		uint32_t cur = chain[k - 1 - i];

		r->path[i].obj = cur;
		if (i == 0)
			continue;
		uint32_t prev = chain[k - i],
			 pprev = i >= 2 ? chain[k - i + 1] : NONE;

		/* the first object of a module root is the module itself */
		if (i == 1 && r->root_kind == MA_HEAP_R_MODULE)
			pprev = prev;
		edge_label(g, live, pprev, prev, cur, r->path[i].label,
			   sizeof(r->path[i].label));
	}
	return 0;
}

/* ------------------------------------------------------------------ */

struct topk {
	uint32_t *v;
	size_t n, cap;
	const uint64_t *key;
};

static void topk_add(struct topk *t, uint32_t obj)
{
	size_t i;

	if (t->n == t->cap && t->key[obj] <= t->key[t->v[t->n - 1]])
		return;
	if (t->n < t->cap)
		t->n++;
	for (i = t->n - 1; i > 0 && t->key[t->v[i - 1]] < t->key[obj]; i--)
		t->v[i] = t->v[i - 1];
	t->v[i] = obj;
}

/* Containers of everything (modules, their dicts, sys.modules, the
 * interpreter's own tables) would head every retainers list: leave them out */
/*
 * The dicts that are a module's or a class's namespace: referents of a
 * module or of a class (their traverse visits their dict; a class's also
 * tables of the interpreter's, which are no retainers either).  Reached
 * first through a function's __globals__, a module's dict was listed as a
 * retainer under that path (`__main__.th -> Thread -> function -> dict`
 * for threading's globals).  NULL without the memory: the path's rule
 * below only.
 */
static uint8_t *namespace_dicts(const struct ma_heap_graph *g)
{
	uint8_t *ns = calloc(g->n ? g->n : 1, 1);

	if (!ns)
		return NULL;
	for (size_t u = 0; u < g->n; u++) {
		if (!is_type(g, (uint32_t)u, "module") &&
		    !(g->flags[u] & MA_HEAP_O_TYPE))
			continue;
		for (uint32_t e = g->eoff[u]; e < g->eoff[u + 1]; e++)
			if (is_type(g, g->edges[e], "dict"))
				ns[g->edges[e]] = 1;
	}
	return ns;
}

static int is_namespace(const struct ma_heap_graph *g, const struct work *w,
			const uint8_t *ns, uint32_t obj)
{
	if (is_type(g, obj, "module") || (g->flags[obj] & MA_HEAP_O_TYPE))
		return 1;
	if (ns && ns[obj])
		return 1;
	if (is_type(g, obj, "dict")) {
		/* a module's dict: its referrer on the path is the module */
		uint32_t p = w->parent[obj];

		return p == FROM_C ||
		       (p != NONE && !(p & FROM_ROOT) &&
			(is_type(g, p, "module") || is_type(g, p, "type")));
	}
	return w->parent[obj] == FROM_C && w->seed[obj] &&
	       is_type(g, obj, "dict");
}

struct cand {
	uint32_t obj, at; /* an object, its place in the candidates */
};

static int cand_cmp(const void *a, const void *b)
{
	uint32_t x = ((const struct cand *)a)->obj,
		 y = ((const struct cand *)b)->obj;

	return x < y ? -1 : x > y;
}

/* b retains at least 90 % of what a retains */
static int holds_most(const uint64_t *retained, uint32_t b, uint32_t a)
{
	return retained[b] * 10 >= retained[a] * 9;
}

/*
 * The inner links of recursive structures, left out of the retainers'
 * candidates so that a linked list of 20,000 nodes does not fill them
 * (fold_chains then sees only its head): an object whose immediate
 * dominator is of its own type, or a dict whose owner is (an instance's
 * __dict__ on 3.8-3.10: Node -> dict -> Node), and that holds 90 % of it;
 * and the __dict__ of such a link.  In the dominator tree's order, owners
 * first.  NULL without the memory: nothing left out.
 */
static uint8_t *inner_links(const struct ma_heap_graph *g, const struct dom *d,
			    const uint64_t *retained)
{
	uint32_t dict = type_named(g, "dict");
	uint8_t *in = calloc(g->n ? g->n : 1, 1);

	if (!in || !d->idom || !d->rpo)
		return in;
	for (size_t i = 0; i < d->N; i++) {
		uint32_t v = d->rpo[i], a = v < g->n ? d->idom[v] : NONE, a2;

		if (a == NONE || a == v || a >= g->n)
			continue;
		if (g->type[v] == dict) {
			in[v] = g->type[a] != dict && in[a] &&
				holds_most(retained, v, a);
			continue;
		}
		a2 = d->idom[a];
		if (g->type[a] == dict && a2 != NONE && a2 != a && a2 < g->n)
			a = a2;
		in[v] = g->type[a] == g->type[v] && holds_most(retained, v, a);
	}
	return in;
}

/*
 * One chain of objects each holding almost all of the next (an instance
 * and the list in one of its attributes; a DataFrame, its BlockManager,
 * a tuple, a Block, the ndarray) filled the retainers table with the same
 * bytes once per link.  Its innermost link stays: its path names every
 * outer one.  An object A goes when a candidate B that stays and that A
 * dominates retains at least 90 % of what A retains.  Two exceptions,
 * where the outer object stands for the inner: a recursive structure
 * (B goes when its immediate dominator, or the owner of that one when it
 * is a dict, is of B's own type: a linked list's head stands for its
 * nodes, most of which inner_links() kept out of the candidates already;
 * one of B's type further out is an outer link as any other: a list of
 * handlers, one of which holds the list that grows), and a dict that is
 * most of its owner (an instance's __dict__).  The walk up also stops at any other type met twice; dicts
 * do not count there (nested dicts, {"db": {"pools": {...}}}, fold into
 * what they hold).  Inner objects first (they retain less), so that an
 * object dropped drops nothing.  Keeps the candidates' order; t->n
 * shrinks.
 */
static void fold_chains(const struct ma_heap_graph *g, const struct dom *d,
			const uint64_t *retained, struct topk *t)
{
	enum { MAX_LINKS = 64 };
	struct cand *c = malloc((t->n ? t->n : 1) * sizeof(*c));
	uint8_t *drop = calloc(t->n ? t->n : 1, 1);
	uint32_t dict = type_named(g, "dict");
	size_t k = 0;

	if (!c || !drop || !d->idom)
		goto out; /* not folded: the table as it was */
	for (size_t i = 0; i < t->n; i++)
		c[i] = (struct cand){ .obj = t->v[i], .at = (uint32_t)i };
	qsort(c, t->n, sizeof(*c), cand_cmp);
	for (size_t i = t->n; i-- > 0;) {
		uint32_t b = t->v[i], cur = b, seen[MAX_LINKS + 1];
		size_t nseen = 0;

		if (drop[i])
			continue;
		/* a dict that is most of its owner: the owner's row stands
		 * for it (an instance's __dict__; on 3.11+ a dict in an
		 * attribute, told apart only by the copy) */
		if (g->type[b] == dict && d->idom[b] < g->n &&
		    d->idom[b] != b && g->type[d->idom[b]] != dict &&
		    holds_most(retained, b, d->idom[b])) {
			drop[i] = 1;
			continue;
		}
		seen[nseen++] = g->type[b];
		for (int links = 0; links < MAX_LINKS; links++) {
			uint32_t a = d->idom[cur];
			struct cand key = { .obj = a }, *hit;
			size_t s;

			if (a == NONE || a == cur || a >= g->n ||
			    !holds_most(retained, b, a))
				break;
			if (g->type[a] == g->type[b] && g->type[b] != dict) {
				/* a node held by one of its own type (through
				 * an instance's __dict__ on 3.8-3.10): its
				 * outer one stays */
				if (links == 0 ||
				    (links == 1 && g->type[cur] == dict)) {
					drop[i] = 1;
					break;
				}
				/* one further out (a list of handlers whose
				 * one handler holds a list) is an outer link
				 * like any other: the inner object keeps the
				 * row, its path names the outer one */
				hit = bsearch(&key, c, t->n, sizeof(*c),
					      cand_cmp);
				if (hit)
					drop[hit->at] = 1;
				cur = a;
				continue;
			}
			for (s = 0; s < nseen &&
				    (seen[s] != g->type[a] || seen[s] == dict);
			     s++)
				;
			if (s < nseen)
				break;
			seen[nseen++] = g->type[a];
			hit = bsearch(&key, c, t->n, sizeof(*c), cand_cmp);
			if (hit)
				drop[hit->at] = 1;
			cur = a;
		}
	}
	for (size_t i = 0; i < t->n; i++)
		if (!drop[i])
			t->v[k++] = t->v[i];
	t->n = k;
out:
	free(c);
	free(drop);
}

int ma_heap_census(struct ma_heap_graph *g, const struct ma_hcensus_opts *o,
		   struct ma_heap_live *live, struct ma_heap_census *c)
{
	size_t n = g->n,
	       top = (size_t)(o->top > 0 ? o->top : MA_HEAP_TOP_DEFAULT);
	struct work w = { 0 };
	struct dom d = { 0 };
	uint64_t *retained = NULL, t0 = ma_now_ns();
	int err;

	/* a table has no more rows than there are objects: the tables'
	 * arrays below are allocated for top rows (--top 1000000000 ran the
	 * whole census, then failed for memory) */
	if (top > n)
		top = n ? n : 1;
	memset(c, 0, sizeof(*c));
	err = by_type(g, c);
	if (err)
		return err;
	w.parent = malloc((n ? n : 1) * 4);
	w.queue = malloc((n ? n : 1) * 4);
	w.seed = calloc(n ? n : 1, 1);
	w.garbage = calloc(n ? n : 1, 1);
	if (!w.parent || !w.queue || !w.seed || !w.garbage) {
		err = -ENOMEM;
		goto out;
	}
	err = liveness(g, &w, c);
	if (err)
		goto out;
	free(w.queue);
	w.queue = NULL;
	/* reference counts served liveness only: their 4 bytes an object go
	 * back before the dominators' arrays come */
	free(g->refcnt);
	g->refcnt = NULL;
	err = dominators(g, &w, &d, c);
	if (err == -ETIME) {
		/* each object then retains its own bytes only: said */
		const char *why = "retained sizes not computed (dominator "
				  "tree too costly: "
				  "a shared object referred to along a deep "
				  "chain)";
		size_t len = strlen(g->partial_why);

		if (!g->partial)
			snprintf(g->partial_why, sizeof(g->partial_why), "%s",
				 why);
		else if (len + 3 < sizeof(g->partial_why))
			snprintf(g->partial_why + len,
				 sizeof(g->partial_why) - len, "; %s", why);
		g->partial = 1;
		for (size_t i = 0; i < d.N; i++)
			d.idom[i] = NONE;
		err = 0;
	}
	if (err)
		goto out;
	/* only the order and the tree are needed now */
	free(d.pred);
	free(d.poff);
	free(d.pos);
	d.pred = NULL;
	d.poff = NULL;
	d.pos = NULL;
	retained = malloc((n + 2) * 8);
	if (!retained) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		retained[i] = g->size[i];
	retained[n] = retained[n + 1] = 0;
	for (size_t i = d.N; i-- > 1;) {
		uint32_t v = d.rpo[i];

		if (d.idom[v] != NONE && d.idom[v] != v)
			retained[d.idom[v]] += retained[v];
	}
	c->dom_ns = ma_now_ns() - t0;

	/* the tables; the retainers' from more candidates than rows, as
	 * the links of one chain fold into one (fold_chains) */
	size_t rcap = top < n / 4 ? top * 4 : (n ? n : 1);
	uint32_t *lv = calloc(top, 4), *rv = calloc(rcap, 4);
	struct topk tl = { lv, 0, top, g->size },
		    tr = { rv, 0, rcap, retained };

	if (!lv || !rv) {
		free(lv);
		free(rv);
		err = -ENOMEM;
		goto out;
	}
	uint8_t *ns = namespace_dicts(g), *in = inner_links(g, &d, retained);

	for (size_t i = 0; i < n; i++) {
		topk_add(&tl, (uint32_t)i);
		if (!is_namespace(g, &w, ns, (uint32_t)i) && !(in && in[i]))
			topk_add(&tr, (uint32_t)i);
	}
	free(ns);
	free(in);
	fold_chains(g, &d, retained, &tr);
	if (tr.n > top)
		tr.n = top;
	uint64_t p0 = ma_now_ns();

	c->largest = calloc(top, sizeof(*c->largest));
	c->retainers = calloc(top, sizeof(*c->retainers));
	if (!c->largest || !c->retainers) {
		free(lv);
		free(rv);
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < tl.n; i++) {
		c->largest[i].obj = lv[i];
		c->largest[i].retained = retained[lv[i]];
		obj_path(g, &w, live, lv[i], &c->largest[i]);
	}
	c->nlargest = tl.n;
	for (size_t i = 0; i < tr.n; i++) {
		c->retainers[i].obj = rv[i];
		c->retainers[i].retained = retained[rv[i]];
		obj_path(g, &w, live, rv[i], &c->retainers[i]);
	}
	c->nretainers = tr.n;
	c->paths_ns = ma_now_ns() - p0;
	free(lv);
	free(rv);
out:
	free(retained);
	dom_free(&d);
	free(w.parent);
	free(w.queue);
	free(w.seed);
	free(w.garbage);
	return err;
}

void ma_heap_census_free(struct ma_heap_census *c)
{
	for (size_t i = 0; i < c->nlargest; i++)
		free(c->largest[i].path);
	for (size_t i = 0; i < c->nretainers; i++)
		free(c->retainers[i].path);
	free(c->largest);
	free(c->retainers);
	free(c->by_type);
	memset(c, 0, sizeof(*c));
}
