/* SPDX-License-Identifier: MIT */
/*
 * The census, printed: where the RSS goes, by type, the largest objects and
 * the top retainers with their paths from a root (docs/heap.md shows an
 * example and explains each line).
 */
#include "heap.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "units.h"

static const char *tname(const struct ma_heap_graph *g, uint32_t obj)
{
	return g->types[g->type[obj]].name;
}

static char *bytes(uint64_t n, char *buf, size_t len)
{
	ma_fmt_bytes(n, buf, len);
	return buf;
}

/* ------------------------------------------------------------------ */
/* Paths: "__main__.frames -> list[3] -> Frame._mgr -> ndarray" */

/* A dict holding the attributes of the object before it (a module's, an
 * instance's): not shown, its key is ("frames" above) */
static int namespace_dict(const struct ma_heap_graph *g,
			  const struct ma_hobj_report *r, size_t i)
{
	return !strcmp(tname(g, r->path[i].obj), "dict") && i + 1 < r->npath &&
	       r->path[i + 1].label[0] == '.';
}

struct toks {
	char *v[64];
	size_t n;
};

static void tok_add(struct toks *t, const char *s)
{
	if (t->n < 64)
		t->v[t->n++] = strdup(s);
}

void ma_heap_path_render(const struct ma_heap_graph *g,
			 const struct ma_hobj_report *r, int depth, char *out,
			 size_t len);

void ma_heap_path_render(const struct ma_heap_graph *g,
			 const struct ma_hobj_report *r, int depth, char *out,
			 size_t len)
{
	struct toks t = { 0 };
	char cur[512];
	size_t start = 0;

	if (r->garbage || r->held_by_c) {
		snprintf(cur, sizeof(cur), "%s", r->garbage ? "(cycle)" : "(C)");
		start = 0;
		if (r->npath) {
			snprintf(cur + strlen(cur), sizeof(cur) - strlen(cur),
				 " %s", tname(g, r->path[0].obj));
			start = 1;
		}
	} else {
		snprintf(cur, sizeof(cur), "%s", r->root);
		/* a module root's first object is the module, named already;
		 * a local's is the variable's value */
		start = r->root_kind == MA_HEAP_R_MODULE ? 1 : 0;
	}
	for (size_t i = start; i < r->npath; i++) {
		const char *lab = r->path[i].label;
		uint32_t o = r->path[i].obj;

		if (lab[0] == '.' || lab[0] == '[')
			snprintf(cur + strlen(cur), sizeof(cur) - strlen(cur),
				 "%s", lab);
		if (namespace_dict(g, r, i))
			continue;
		/* a class reached by name and left by an attribute:
		 * "mod.Class.attr", its type ("type") says nothing */
		if ((g->flags[o] & MA_HEAP_O_TYPE) && lab[0] == '.' &&
		    i + 1 < r->npath)
			continue;
		tok_add(&t, cur);
		snprintf(cur, sizeof(cur), "%s", tname(g, o));
	}
	tok_add(&t, cur);
	/* Too deep: the first and last steps, "..." between */
	out[0] = '\0';
	size_t d = depth > 2 ? (size_t)depth : 12;

	for (size_t i = 0; i < t.n; i++) {
		int elide = t.n > d && i >= d / 2 && i < t.n - d / 2;

		if (elide && i != d / 2)
			continue;
		snprintf(out + strlen(out), len - strlen(out), "%s%s",
			 i ? " -> " : "", elide ? "..." : t.v[i]);
	}
	for (size_t i = 0; i < t.n; i++)
		free(t.v[i]);
}

/* Where a local-variable root is: "local 'x' of f() at a.py:3, thread ..." */
static const struct ma_hroot *root_of(const struct ma_heap_graph *g,
				      const struct ma_hobj_report *r)
{
	if (!r->root_kind || !r->npath)
		return NULL;
	for (size_t i = 0; i < g->nroots; i++)
		if (g->roots[i].obj == r->path[0].obj &&
		    (int)g->roots[i].kind == r->root_kind &&
		    !strcmp(g->roots[i].name, r->root))
			return &g->roots[i];
	return NULL;
}

static void root_where(const struct ma_heap_graph *g,
		       const struct ma_hobj_report *r, char *out, size_t len)
{
	const struct ma_hroot *ro = root_of(g, r);

	out[0] = '\0';
	if (r->garbage) {
		snprintf(out, len, "kept only by a reference cycle: garbage "
				   "the collector has not freed yet");
		return;
	}
	if (r->held_by_c) {
		snprintf(out, len, "held from outside the objects found (C "
				   "code, an extension, the interpreter)");
		return;
	}
	if (!ro)
		return;
	if (ro->kind == MA_HEAP_R_MODULE) {
		snprintf(out, len, "global of module %s", ro->name);
		return;
	}
	snprintf(out, len, "local '%s' of %s() at %s:%d, thread %d%s%s%s",
		 ro->name, ro->func, ro->file, ro->line, (int)ro->tid,
		 ro->thread[0] ? " \"" : "", ro->thread,
		 ro->thread[0] ? "\"" : "");
}

/* ------------------------------------------------------------------ */
/* Text */

static void rss_section(FILE *f, const struct ma_heap_graph *g,
			const struct ma_heap_census *c)
{
	const struct ma_hrss *r = &g->rss;
	char a[32], b[32];
	uint64_t mem = r->heap + r->anon;
	uint64_t pool_bytes = g->pools.pools * g->pools.pool_size;
	uint64_t pool_free = pool_bytes > g->pools.used_bytes
				     ? pool_bytes - g->pools.used_bytes
				     : 0;
	int64_t rest = (int64_t)mem - (int64_t)c->bytes - (int64_t)pool_free;

	fprintf(f, "Where the RSS goes (RSS %s, peak %s)\n",
		bytes(r->rss, a, sizeof(a)), bytes(r->hwm, b, sizeof(b)));
	fprintf(f, "  %-52s %12s\n", "heap and anonymous memory",
		bytes(mem, a, sizeof(a)));
	fprintf(f, "    %-50s %12s\n", "Python objects (as sys.getsizeof)",
		bytes(c->bytes, a, sizeof(a)));
	fprintf(f, "      %-48s %12s\n", "in pymalloc blocks (<= 512 bytes)",
		bytes(c->pymalloc_bytes, a, sizeof(a)));
	fprintf(f, "      %-48s %12s\n",
		"in malloc blocks (large objects, item tables)",
		bytes(c->bytes - c->pymalloc_bytes, a, sizeof(a)));
	fprintf(f, "    %-50s %12s\n", "free space inside pymalloc's pools",
		bytes(pool_free, a, sizeof(a)));
	if (rest >= 0)
		fprintf(f, "    %-50s %12s\n",
			"the rest: C allocations, free lists, fragmentation",
			bytes((uint64_t)rest, a, sizeof(a)));
	else
		fprintf(f, "    %-50s %12s\n",
			"objects not resident (swapped, or never touched)",
			bytes((uint64_t)-rest, a, sizeof(a)));
	fprintf(f, "  %-52s %12s\n", "thread stacks",
		bytes(r->stacks, a, sizeof(a)));
	fprintf(f, "  %-52s %12s\n", "files (code, libraries, mapped files)",
		bytes(r->files, a, sizeof(a)));
	fprintf(f, "  %-52s %12s\n", "other (shared memory, vdso)",
		bytes(r->other, a, sizeof(a)));
	if (r->swap)
		fprintf(f, "  (and %s swapped out)\n",
			bytes(r->swap, a, sizeof(a)));
	if (g->pools.pool_size)
		fprintf(f,
			"  pymalloc: %llu pools of %u KiB in use in %llu "
			"arenas, %s of blocks in use in them\n",
			(unsigned long long)g->pools.pools,
			g->pools.pool_size / 1024,
			(unsigned long long)g->pools.arenas,
			bytes(g->pools.used_bytes, a, sizeof(a)));
	fputc('\n', f);
}

static void obj_table(FILE *f, const struct ma_heap_graph *g,
		      const struct ma_hobj_report *v, size_t n, int width,
		      int retained_first)
{
	char a[32], b[32], path[2048], where[512];

	for (size_t i = 0; i < n; i++) {
		const struct ma_hobj_report *r = &v[i];
		uint32_t o = r->obj;

		ma_heap_path_render(g, r, 12, path, sizeof(path));
		root_where(g, r, where, sizeof(where));
		fprintf(f, "  %10s %10s  %s\n",
			bytes(retained_first ? r->retained : g->size[o], a,
			      sizeof(a)),
			bytes(retained_first ? g->size[o] : r->retained, b,
			      sizeof(b)),
			tname(g, o));
		fprintf(f, "      %s\n", path);
		if (where[0])
			fprintf(f, "      (%s)\n", where);
	}
	(void)width;
}

int ma_heap_print_text(FILE *f, const struct ma_heap_graph *g,
		       const struct ma_heap_census *c, int width)
{
	char a[32], b[32];
	size_t top = c->nlargest > c->nretainers ? c->nlargest : c->nretainers;

	fprintf(f, "Process %d: %s (Python %s)\n", (int)g->pid, g->cmdline,
		g->version);
	fprintf(f,
		"Census of %llu objects (%s), target stopped %.1f ms, "
		"walked in %.2f s\n\n",
		(unsigned long long)c->objects, bytes(c->bytes, a, sizeof(a)),
		g->frozen_ns / 1e6, g->walk_ns / 1e9);
	rss_section(f, g, c);

	fprintf(f, "By type (top %zu of %zu)\n", top < c->ntypes ? top : c->ntypes,
		c->ntypes);
	fprintf(f, "  %12s %12s %7s  %s\n", "count", "bytes", "share", "type");
	for (size_t i = 0; i < c->ntypes && i < top; i++) {
		const struct ma_hcensus_type *t = &c->by_type[i];

		fprintf(f, "  %12llu %12s %6.1f%%  %s\n",
			(unsigned long long)t->count,
			bytes(t->bytes, a, sizeof(a)),
			c->bytes ? 100.0 * (double)t->bytes / (double)c->bytes
				 : 0.0,
			g->types[t->type].name);
	}
	fputc('\n', f);
	fprintf(f, "Largest objects (own size, retained size, type, path)\n");
	obj_table(f, g, c->largest, c->nlargest, width, 0);
	fputc('\n', f);
	fprintf(f, "Top retainers (retained size: freed with it; own size; "
		   "type, path)\n");
	obj_table(f, g, c->retainers, c->nretainers, width, 1);
	fputc('\n', f);
	if (c->garbage_objects)
		fprintf(f,
			"Cyclic garbage: %llu objects, %s, kept only by "
			"reference cycles until the collector runs "
			"(gc.collect() frees them)\n",
			(unsigned long long)c->garbage_objects,
			bytes(c->garbage_bytes, b, sizeof(b)));
	else
		fprintf(f, "Cyclic garbage: none\n");
	if (g->end.gc_collecting)
		fprintf(f, "Note: the collector was running when the copy was "
			   "made: some objects may be missing\n");
	if (g->end.unreadable)
		fprintf(f,
			"Note: %llu objects could not be read (being "
			"changed when the copy was made)\n",
			(unsigned long long)g->end.unreadable);
	if (g->partial)
		fprintf(f, "Note: partial census: %s\n", g->partial_why);
	return 0;
}

/* ------------------------------------------------------------------ */
/* JSON */

static json_t *obj_json(const struct ma_heap_graph *g,
			const struct ma_hobj_report *r)
{
	json_t *o = json_object(), *p = json_array();
	char path[2048], where[512];

	ma_heap_path_render(g, r, 1000, path, sizeof(path));
	root_where(g, r, where, sizeof(where));
	json_object_set_new(o, "type", json_string(tname(g, r->obj)));
	json_object_set_new(o, "size", json_integer((json_int_t)g->size[r->obj]));
	json_object_set_new(o, "retained", json_integer((json_int_t)r->retained));
	json_object_set_new(o, "address",
			    json_integer((json_int_t)g->addr[r->obj]));
	json_object_set_new(o, "path", json_string(path));
	json_object_set_new(o, "root", json_string(where));
	json_object_set_new(o, "garbage", json_boolean(r->garbage));
	json_object_set_new(o, "held_by_c", json_boolean(r->held_by_c));
	for (size_t i = 0; i < r->npath; i++) {
		json_t *s = json_object();

		json_object_set_new(s, "type",
				    json_string(tname(g, r->path[i].obj)));
		json_object_set_new(s, "label", json_string(r->path[i].label));
		json_array_append_new(p, s);
	}
	json_object_set_new(o, "steps", p);
	return o;
}

int ma_heap_print_json(FILE *f, const struct ma_heap_graph *g,
		       const struct ma_heap_census *c)
{
	json_t *root = json_object(), *types = json_array(),
	       *largest = json_array(), *ret = json_array(),
	       *rss = json_object(), *pm = json_object();

	json_object_set_new(root, "pid", json_integer(g->pid));
	json_object_set_new(root, "command", json_string(g->cmdline));
	json_object_set_new(root, "python", json_string(g->version));
	json_object_set_new(root, "objects", json_integer((json_int_t)c->objects));
	json_object_set_new(root, "bytes", json_integer((json_int_t)c->bytes));
	json_object_set_new(root, "pymalloc_bytes",
			    json_integer((json_int_t)c->pymalloc_bytes));
	json_object_set_new(root, "garbage_objects",
			    json_integer((json_int_t)c->garbage_objects));
	json_object_set_new(root, "garbage_bytes",
			    json_integer((json_int_t)c->garbage_bytes));
	json_object_set_new(root, "frozen_ms", json_real(g->frozen_ns / 1e6));
	json_object_set_new(root, "walk_s", json_real(g->walk_ns / 1e9));
	json_object_set_new(root, "partial", json_boolean(g->partial));
	json_object_set_new(root, "unreadable",
			    json_integer((json_int_t)g->end.unreadable));
	json_object_set_new(rss, "rss", json_integer((json_int_t)g->rss.rss));
	json_object_set_new(rss, "peak", json_integer((json_int_t)g->rss.hwm));
	json_object_set_new(rss, "heap", json_integer((json_int_t)g->rss.heap));
	json_object_set_new(rss, "anonymous",
			    json_integer((json_int_t)g->rss.anon));
	json_object_set_new(rss, "stacks",
			    json_integer((json_int_t)g->rss.stacks));
	json_object_set_new(rss, "files", json_integer((json_int_t)g->rss.files));
	json_object_set_new(rss, "other", json_integer((json_int_t)g->rss.other));
	json_object_set_new(rss, "swap", json_integer((json_int_t)g->rss.swap));
	json_object_set_new(root, "rss", rss);
	json_object_set_new(pm, "pool_size",
			    json_integer(g->pools.pool_size));
	json_object_set_new(pm, "pools", json_integer((json_int_t)g->pools.pools));
	json_object_set_new(pm, "arenas",
			    json_integer((json_int_t)g->pools.arenas));
	json_object_set_new(pm, "used_bytes",
			    json_integer((json_int_t)g->pools.used_bytes));
	json_object_set_new(root, "pymalloc", pm);
	for (size_t i = 0; i < c->ntypes; i++) {
		json_t *t = json_object();

		json_object_set_new(t, "type",
				    json_string(g->types[c->by_type[i].type].name));
		json_object_set_new(t, "count",
				    json_integer((json_int_t)c->by_type[i].count));
		json_object_set_new(t, "bytes",
				    json_integer((json_int_t)c->by_type[i].bytes));
		json_array_append_new(types, t);
	}
	json_object_set_new(root, "by_type", types);
	for (size_t i = 0; i < c->nlargest; i++)
		json_array_append_new(largest, obj_json(g, &c->largest[i]));
	json_object_set_new(root, "largest", largest);
	for (size_t i = 0; i < c->nretainers; i++)
		json_array_append_new(ret, obj_json(g, &c->retainers[i]));
	json_object_set_new(root, "retainers", ret);
	json_dumpf(root, f, JSON_INDENT(2));
	fputc('\n', f);
	json_decref(root);
	return 0;
}
