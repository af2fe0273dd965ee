/* SPDX-License-Identifier: MIT */
/*
 * The heap census' analysis (attacher/heap/census.c) on a small graph built
 * by hand, with every answer known: counts by type, what is garbage, what C
 * holds, retained sizes (dominators), the paths and their labels, and the
 * snapshot document and its diff (heap_report.c).
 */
#include <criterion/criterion.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"

enum { T_MODULE, T_DICT, T_LIST, T_BYTES, T_NODE, T_OWNER, NT };
static const char *const tnames[NT] = { "module", "dict", "list",
					"bytes",  "Node", "Owner" };

/*
 *  0 module __main__ (a root)
 *  1   dict (its namespace)       <- 0
 *  2     list L  ('frames')       <- 1
 *  3       bytes 100              <- 2
 *  4       bytes 200              <- 2, 5   (shared: retained by neither list)
 *  5     list M  ('other')        <- 1
 *  6 Node X <-> 7 Node Y          (a cycle nothing else refers to: garbage)
 *  8   bytes 1000                 <- 6
 *  9 dict held by C (refcnt 2, no referrer among the objects)
 * 10   bytes 50                   <- 9
 */
struct spec {
	int type;
	uint64_t size;
	uint32_t refcnt;
	int edges[6];
};

static const struct spec objs[] = {
	[0] = { T_MODULE, 72, 2, { 1, -1 } },
	[1] = { T_DICT, 640, 1, { 2, 5, -1 } },
	[2] = { T_LIST, 72, 1, { 3, 4, -1 } },
	[3] = { T_BYTES, 100, 1, { -1 } },
	[4] = { T_BYTES, 200, 2, { -1 } },
	[5] = { T_LIST, 64, 1, { 4, -1 } },
	[6] = { T_NODE, 48, 1, { 7, 8, -1 } },
	[7] = { T_NODE, 48, 1, { 6, -1 } },
	[8] = { T_BYTES, 1000, 1, { -1 } },
	[9] = { T_DICT, 232, 2, { 10, -1 } },
	[10] = { T_BYTES, 50, 1, { -1 } },
};

#define N (sizeof(objs) / sizeof(objs[0]))

/* A graph of n objects and room for max_edges references */
static void arrays(struct ma_heap_graph *g, size_t n, size_t max_edges)
{
	memset(g, 0, sizeof(*g));
	g->n = n;
	g->addr = calloc(n, 8);
	g->size = calloc(n, 8);
	g->type = calloc(n, 4);
	g->refcnt = calloc(n, 4);
	g->flags = calloc(n, 1);
	g->eoff = calloc(n + 1, 4);
	g->edges = calloc(max_edges, 4);
}

/* The types' names, and object 0 as the module __main__, the one root */
static void types_and_root(struct ma_heap_graph *g)
{
	g->ntypes = NT;
	g->types = calloc(NT, sizeof(*g->types));
	for (int t = 0; t < NT; t++)
		g->types[t].name = strdup(tnames[t]);
	g->nroots = 1;
	g->roots = calloc(1, sizeof(*g->roots));
	g->roots[0] = (struct ma_hroot){ .kind = MA_HEAP_R_MODULE,
					 .obj = 0,
					 .name = strdup("__main__"),
					 .func = strdup(""),
					 .file = strdup(""),
					 .thread = strdup("") };
}

/* The graph of n objects of spec, object 0 the module __main__ */
static void build_spec(struct ma_heap_graph *g, const struct spec *o, size_t n)
{
	uint32_t ne = 0;

	arrays(g, n, 64);
	for (size_t i = 0; i < n; i++) {
		g->addr[i] = 0x1000 + 0x100 * i;
		g->size[i] = o[i].size;
		g->type[i] = (uint32_t)o[i].type;
		g->refcnt[i] = o[i].refcnt;
		g->flags[i] = MA_HEAP_O_GC;
		g->eoff[i] = ne;
		for (int k = 0; o[i].edges[k] >= 0; k++)
			g->edges[ne++] = (uint32_t)o[i].edges[k];
	}
	g->eoff[n] = ne;
	g->nedges = ne;
	types_and_root(g);
}

static void build(struct ma_heap_graph *g)
{
	build_spec(g, objs, N);
	/* what the live copy would name (a snapshot keeps these too) */
	g->nlabels = 2;
	g->labels = calloc(2, sizeof(*g->labels));
	g->labels[0] = (struct ma_hlabel){ 1, 2, strdup(".frames") };
	g->labels[1] = (struct ma_hlabel){ 1, 5, strdup(".other") };
}

static const struct ma_hobj_report *row_of(const struct ma_hobj_report *v,
					   size_t n, uint32_t obj)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].obj == obj)
			return &v[i];
	return NULL;
}

static uint64_t type_bytes(const struct ma_heap_census *c, int t)
{
	for (size_t i = 0; i < c->ntypes; i++)
		if ((int)c->by_type[i].type == t)
			return c->by_type[i].bytes;
	return 0;
}

Test(census, types_garbage_and_c)
{
	struct ma_heap_graph g;
	struct ma_heap_census c;
	struct ma_hcensus_opts o = { .top = 50 };

	build(&g);
	cr_assert_eq(ma_heap_census(&g, &o, NULL, &c), 0);
	cr_assert_eq(c.objects, N);
	cr_assert_eq(type_bytes(&c, T_BYTES), 100 + 200 + 1000 + 50);
	cr_assert_eq(type_bytes(&c, T_LIST), 72 + 64);
	/* the largest type first */
	cr_assert_eq(c.by_type[0].type, T_BYTES);
	cr_assert_eq(c.garbage_objects, 3, "X, Y and X's bytes");
	cr_assert_eq(c.garbage_bytes, 48 + 48 + 1000);
	cr_assert_eq(c.held_by_c_objects, 1, "the dict with no referrer");
	ma_heap_census_free(&c);
	ma_heap_graph_free(&g);
}

Test(census, retained_sizes_are_dominator_subtrees)
{
	struct ma_heap_graph g;
	struct ma_heap_census c;
	struct ma_hcensus_opts o = { .top = 50 };
	const struct ma_hobj_report *r;

	build(&g);
	cr_assert_eq(ma_heap_census(&g, &o, NULL, &c), 0);
	r = row_of(c.retainers, c.nretainers, 2);
	cr_assert(r);
	cr_assert_eq(r->retained, 72 + 100,
		     "L retains its own bytes, not the "
		     "ones M shares");
	r = row_of(c.retainers, c.nretainers, 5);
	cr_assert(r && r->retained == 64);
	r = row_of(c.largest, c.nlargest, 4);
	cr_assert(r && r->retained == 200);
	/* a cycle's entry retains the cycle; here its bytes are 91 % of
	 * that, so they stand for it (fold_chains), garbage too */
	r = row_of(c.largest, c.nlargest, 6);
	cr_assert(r && r->garbage && r->retained == 48 + 48 + 1000, "%llu",
		  r ? (unsigned long long)r->retained : 0ull);
	cr_assert_null(row_of(c.retainers, c.nretainers, 6));
	r = row_of(c.retainers, c.nretainers, 8);
	cr_assert(r && r->garbage && r->retained == 1000);
	r = row_of(c.largest, c.nlargest, 9);
	cr_assert(r && r->held_by_c && r->retained == 232 + 50);
	/* modules and their namespaces are not listed as retainers, nor
	 * dicts only C holds (the interpreter's own: builtins, sys.modules) */
	cr_assert_null(row_of(c.retainers, c.nretainers, 0));
	cr_assert_null(row_of(c.retainers, c.nretainers, 1));
	cr_assert_null(row_of(c.retainers, c.nretainers, 9));
	ma_heap_census_free(&c);
	ma_heap_graph_free(&g);
}

/*
 *  0 module __main__
 *  1   dict (its namespace)
 *  2     Owner (48 B)                <- 1
 *  3       list (100 B)              <- 2: 500 B, 91 % of the Owner's 548
 *  4..7      bytes 100 each          <- 3
 *  8     Node A (64)                 <- 1
 *  9       Node B (64)               <- 8
 * 10         Node C (64)             <- 9
 * 11           bytes 5000            <- 10
 *  12    list S (64)                 <- 1
 *  13      bytes 600, 14 bytes 500  <- 12: neither holds 90 % of S
 *  15    dict D (64)                 <- 1
 *  16      dict E (64)               <- 15
 *  17        list F (64)             <- 16
 *  18..20      bytes 1000 each       <- 17: none holds 90 % of F
 */
static const struct spec chained[] = {
	[0] = { T_MODULE, 72, 2, { 1, -1 } },
	[1] = { T_DICT, 640, 1, { 2, 8, 12, 15, -1 } },
	[2] = { T_OWNER, 48, 1, { 3, -1 } },
	[3] = { T_LIST, 100, 1, { 4, 5, 6, 7, -1 } },
	[4] = { T_BYTES, 100, 1, { -1 } },
	[5] = { T_BYTES, 100, 1, { -1 } },
	[6] = { T_BYTES, 100, 1, { -1 } },
	[7] = { T_BYTES, 100, 1, { -1 } },
	[8] = { T_NODE, 64, 1, { 9, -1 } },
	[9] = { T_NODE, 64, 1, { 10, -1 } },
	[10] = { T_NODE, 64, 1, { 11, -1 } },
	[11] = { T_BYTES, 5000, 1, { -1 } },
	[12] = { T_LIST, 64, 1, { 13, 14, -1 } },
	[13] = { T_BYTES, 600, 1, { -1 } },
	[14] = { T_BYTES, 500, 1, { -1 } },
	[15] = { T_DICT, 64, 1, { 16, -1 } },
	[16] = { T_DICT, 64, 1, { 17, -1 } },
	[17] = { T_LIST, 64, 1, { 18, 19, 20, -1 } },
	[18] = { T_BYTES, 1000, 1, { -1 } },
	[19] = { T_BYTES, 1000, 1, { -1 } },
	[20] = { T_BYTES, 1000, 1, { -1 } },
};

Test(census, chains_fold_to_their_innermost_link)
{
	struct ma_heap_graph g;
	struct ma_heap_census c;
	struct ma_hcensus_opts o = { .top = 50 };
	size_t n = sizeof(chained) / sizeof(chained[0]);

	build_spec(&g, chained, n);
	cr_assert_eq(ma_heap_census(&g, &o, NULL, &c), 0);
	/* the instance goes, its list stays */
	cr_assert_null(row_of(c.retainers, c.nretainers, 2));
	cr_assert(row_of(c.retainers, c.nretainers, 3));
	/* the last node's bytes stand for it; a node held by a node (a
	 * linked list) goes, its head stays */
	cr_assert(row_of(c.retainers, c.nretainers, 11));
	cr_assert_null(row_of(c.retainers, c.nretainers, 10));
	cr_assert_null(row_of(c.retainers, c.nretainers, 9));
	cr_assert(row_of(c.retainers, c.nretainers, 8));
	/* nested dicts fold into the list they hold */
	cr_assert_null(row_of(c.retainers, c.nretainers, 15));
	cr_assert_null(row_of(c.retainers, c.nretainers, 16));
	cr_assert(row_of(c.retainers, c.nretainers, 17));
	/* no part holds 90 %: the list and both parts */
	cr_assert(row_of(c.retainers, c.nretainers, 12));
	cr_assert(row_of(c.retainers, c.nretainers, 13));
	cr_assert(row_of(c.retainers, c.nretainers, 14));
	/* the largest objects are not folded */
	cr_assert(row_of(c.largest, c.nlargest, 2));
	ma_heap_census_free(&c);
	ma_heap_graph_free(&g);

	/* the table is drawn from more candidates than it shows: the rows
	 * left after the fold fill it */
	build_spec(&g, chained, n);
	o.top = 3;
	cr_assert_eq(ma_heap_census(&g, &o, NULL, &c), 0);
	cr_assert_eq(c.nretainers, 3);
	cr_assert_null(row_of(c.retainers, c.nretainers, 10));
	ma_heap_census_free(&c);
	ma_heap_graph_free(&g);
}

/*
 * A list of handlers whose one handler holds the list that grows (a
 * logging handler keeping its records):
 *  0 module __main__
 *  1   dict (its namespace)
 *  2     list H (64)               <- 1
 *  3       Owner (48)              <- 2
 *  4         list R (100)          <- 3
 *  5..8        bytes 1000 each     <- 4: none holds 90 % of R
 * R is not a node of a recursive structure (H holds it through an
 * Owner, not directly): R keeps the row, its path naming H, where H
 * stood for it and hid where the memory grows.
 */
static const struct spec handlers[] = {
	[0] = { T_MODULE, 72, 2, { 1, -1 } },
	[1] = { T_DICT, 640, 1, { 2, -1 } },
	[2] = { T_LIST, 64, 1, { 3, -1 } },
	[3] = { T_OWNER, 48, 1, { 4, -1 } },
	[4] = { T_LIST, 100, 1, { 5, 6, 7, 8, -1 } },
	[5] = { T_BYTES, 1000, 1, { -1 } },
	[6] = { T_BYTES, 1000, 1, { -1 } },
	[7] = { T_BYTES, 1000, 1, { -1 } },
	[8] = { T_BYTES, 1000, 1, { -1 } },
};

Test(census, a_list_in_an_item_of_a_list_keeps_the_row)
{
	struct ma_heap_graph g;
	struct ma_heap_census c;
	struct ma_hcensus_opts o = { .top = 50 };

	build_spec(&g, handlers, sizeof(handlers) / sizeof(handlers[0]));
	cr_assert_eq(ma_heap_census(&g, &o, NULL, &c), 0);
	cr_assert(row_of(c.retainers, c.nretainers, 4),
		  "the list that holds the bytes keeps its row");
	cr_assert_null(row_of(c.retainers, c.nretainers, 3));
	cr_assert_null(row_of(c.retainers, c.nretainers, 2),
		       "the outer list is named in the path, not a row");
	ma_heap_census_free(&c);
	ma_heap_graph_free(&g);
}

Test(census, paths_from_roots)
{
	struct ma_heap_graph g;
	struct ma_heap_census c;
	struct ma_hcensus_opts o = { .top = 50 };
	char path[512];

	build(&g);
	cr_assert_eq(ma_heap_census(&g, &o, NULL, &c), 0);
	ma_heap_path_render(&g, row_of(c.largest, c.nlargest, 3), 12, path,
			    sizeof(path));
	/* an item's position is read from the copy: without it unknown, not
	 * the edge's place among the list's referents (CPython's traverse
	 * visits the last item first, and skips NULL ones) */
	cr_assert_str_eq(path, "__main__.frames -> list[?] -> bytes");
	/* shared: reached first through L (breadth first, in edge order) */
	ma_heap_path_render(&g, row_of(c.largest, c.nlargest, 4), 12, path,
			    sizeof(path));
	cr_assert_str_eq(path, "__main__.frames -> list[?] -> bytes");
	ma_heap_path_render(&g, row_of(c.largest, c.nlargest, 8), 12, path,
			    sizeof(path));
	/* garbage: the path from the cycle's entry, not the object alone
	 * (a bytes is in no cycle: `(cycle) bytes` said it was) */
	cr_assert_str_eq(path, "(cycle) Node -> bytes");
	ma_heap_path_render(&g, row_of(c.largest, c.nlargest, 10), 12, path,
			    sizeof(path));
	/* a dict's key unknown without the live copy or a stored label */
	cr_assert_str_eq(path, "(C) dict[?] -> bytes");
	/* too deep: the middle elided */
	ma_heap_path_render(&g, row_of(c.largest, c.nlargest, 3), 2, path,
			    sizeof(path));
	cr_assert_str_eq(path, "__main__.frames -> ... -> bytes");
	ma_heap_census_free(&c);
	ma_heap_graph_free(&g);
}

/*
 * A dict an instance holds: without the copy, not taken for its __dict__
 * (it may be an attribute's value, or 3.11+'s values without a dict): its
 * key is an item's, "[?]", not an attribute ".?"; a module's dict is its
 * namespace.
 *   0 module __main__ -> 1 dict -> 2 Node -> 3 dict -> 4 bytes
 */
Test(census, instance_dict_without_the_copy)
{
	static const int type[] = { T_MODULE, T_DICT, T_NODE, T_DICT, T_BYTES };
	struct ma_heap_graph g;
	struct ma_heap_census c;
	struct ma_hcensus_opts o = { .top = 5 };
	char path[512];

	arrays(&g, 5, 4);
	for (uint32_t i = 0; i < 5; i++) {
		g.addr[i] = 0x1000 + 0x100 * i;
		g.size[i] = i == 4 ? 100000 : 64;
		g.type[i] = (uint32_t)type[i];
		g.refcnt[i] = 1;
		g.eoff[i] = i;
		if (i < 4)
			g.edges[i] = i + 1;
	}
	g.eoff[5] = 4;
	g.nedges = 4;
	types_and_root(&g);
	cr_assert_eq(ma_heap_census(&g, &o, NULL, &c), 0);
	ma_heap_path_render(&g, row_of(c.largest, c.nlargest, 4), 12, path,
			    sizeof(path));
	cr_assert_str_eq(path, "__main__.? -> Node -> dict[?] -> bytes");
	ma_heap_census_free(&c);
	ma_heap_graph_free(&g);
}

/* Text from the target as labels hold it: control characters written out,
 * what is not UTF-8 as '?', cut at a character's boundary */
Test(census, target_text_escaped)
{
	char out[96];

	ma_heap_text("\x1b[2J\x07k\xc2\x9b"
		     "ey\x7f",
		     out, sizeof(out));
	cr_assert_str_eq(out, "\\x1b[2J\\x07k\\u009bey\\x7f");
	ma_heap_text("caf\xc3\xa9 \xe2\x82\xac", out, sizeof(out));
	cr_assert_str_eq(out, "caf\xc3\xa9 \xe2\x82\xac");
	/* a stray byte (an extension's tp_name), an encoded surrogate, an
	 * overlong '/' */
	ma_heap_text("a\xff"
		     "b\xed\xa0\x80"
		     "c\xc0\xaf",
		     out, sizeof(out));
	cr_assert_str_eq(out, "a?b???c??");
	/* cut before the euro sign, not inside it */
	ma_heap_text("ab\xe2\x82\xac", out, 5);
	cr_assert_str_eq(out, "ab");
	ma_heap_text("ab\xe2\x82\xac", out, 6);
	cr_assert_str_eq(out, "ab\xe2\x82\xac");
}

Test(census, document_and_diff)
{
	struct ma_heap_graph g;
	struct ma_heap_census c;
	struct ma_hcensus_opts o = { .top = 50 };
	json_t *a, *b, *d;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	build(&g);
	cr_assert_eq(ma_heap_census(&g, &o, NULL, &c), 0);
	a = ma_heap_doc(&g, &c);
	ma_heap_census_free(&c);
	cr_assert_null(g.refcnt, "the census consumes the reference counts");
	ma_heap_graph_free(&g);
	/* the list L grows by 5000 bytes (its table, as appends make it:
	 * one item growing to most of the list would take the list's row,
	 * fold_chains) */
	build(&g);
	g.size[2] += 5000;
	cr_assert_eq(ma_heap_census(&g, &o, NULL, &c), 0);
	b = ma_heap_doc(&g, &c);
	f = open_memstream(&text, &len);
	cr_assert_eq(ma_heap_render_diff(f, a, b, "json", 20), 0);
	fclose(f);
	d = json_loads(text, 0, NULL);
	cr_assert(d, "%s", text);
	json_t *grew = json_object_get(d, "types_grew"),
	       *ret = json_object_get(d, "retainers_grew");

	cr_assert_eq(json_array_size(grew), 1, "%s", text);
	cr_assert_str_eq(json_string_value(json_object_get(
				 json_array_get(grew, 0), "key")),
			 "list");
	cr_assert_eq(json_integer_value(json_object_get(json_array_get(grew, 0),
							"bytes_delta")),
		     5000);
	cr_assert_eq(json_array_size(json_object_get(d, "types_shrank")), 0);
	int found = 0;

	for (size_t i = 0; i < json_array_size(ret); i++) {
		json_t *r = json_array_get(ret, i);

		if (!strcmp(json_string_value(json_object_get(r, "key")),
			    "__main__.frames -> list"))
			found = json_integer_value(json_object_get(
					r, "bytes_delta")) == 5000;
	}
	cr_assert(found, "%s", text);
	free(text);
	json_decref(a);
	json_decref(b);
	json_decref(d);
	ma_heap_census_free(&c);
	ma_heap_graph_free(&g);
}

/*
 * A snapshot's figures are read from a file, not trusted: a damaged or
 * edited one with the extreme integers JSON can hold must diff without
 * signed overflow (the sanitized build aborted in diff_rows: -1 *
 * INT64_MIN), in both formats.
 */
Test(census, diff_of_extreme_figures)
{
	static const char *const sa =
		"{\"time\":-9223372036854775808,\"objects\":1,"
		"\"bytes\":-9223372036854775808,"
		"\"rss\":{\"rss\":9223372036854775807},"
		"\"by_type\":[{\"type\":\"t\",\"count\":-9223372036854775808,"
		"\"bytes\":-9223372036854775808},"
		"{\"type\":\"t\",\"count\":9223372036854775807,"
		"\"bytes\":9223372036854775807}],"
		"\"retainers\":[{\"path\":\"p\","
		"\"retained\":-9223372036854775808}]}";
	static const char *const sb =
		"{\"time\":9223372036854775807,\"objects\":1,"
		"\"bytes\":9223372036854775807,"
		"\"rss\":{\"rss\":-9223372036854775808},"
		"\"by_type\":[{\"type\":\"u\",\"count\":9223372036854775807,"
		"\"bytes\":9223372036854775807}],"
		"\"retainers\":[{\"path\":\"q\","
		"\"retained\":9223372036854775807}]}";
	json_t *a = json_loads(sa, 0, NULL), *b = json_loads(sb, 0, NULL);

	cr_assert(a && b);
	for (int k = 0; k < 4; k++) {
		char *text = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&text, &len);

		cr_assert_eq(ma_heap_render_diff(f, k & 1 ? b : a,
						 k & 1 ? a : b,
						 k & 2 ? "json" : "text", 20),
			     0);
		fclose(f);
		cr_assert(len > 0);
		free(text);
	}
	json_decref(a);
	json_decref(b);
}

/*
 * A shared object referred to by every link of a deep chain (CPython's
 * tee data objects, each pointing at the source iterator; any linked list
 * of objects of a class): the iterative dominators' walks are quadratic
 * there.  The census must end with the exact retained sizes all the same
 * (the semi-NCA algorithm takes over: census.c, dominators_snca); a
 * shallow graph of the same size is done by the first algorithm.
 */
static void chain(struct ma_heap_graph *g, uint32_t links, int deep)
{
	uint32_t n = links + 2, ne = 0; /* 0 module, 1 shared, 2.. links */

	arrays(g, n, 2 * (size_t)n + 2);
	for (uint32_t i = 0; i < n; i++) {
		g->addr[i] = 0x100000 + 0x40 * (uint64_t)i;
		g->size[i] = i == 1 ? 4096 : 64;
		g->type[i] = i ? T_NODE : T_MODULE;
		g->refcnt[i] = i == 1 ? links : 1;
		g->flags[i] = MA_HEAP_O_GC;
		g->eoff[i] = ne;
		if (i == 0) {
			/* deep: the module holds the chain's head; shallow:
			 * every link */
			if (deep)
				g->edges[ne++] = 2;
			else
				for (uint32_t k = 2; k < n; k++)
					g->edges[ne++] = k;
		} else if (i >= 2) {
			g->edges[ne++] = 1;
			if (deep && i + 1 < n)
				g->edges[ne++] = i + 1;
		}
	}
	g->eoff[n] = ne;
	g->nedges = ne;
	types_and_root(g);
}

/*
 * What an object retains, by the definition: its own bytes and those of
 * every object no longer reachable from the roots (object 0, the module,
 * and what C holds) once it is gone.  Breadth first, v left out.
 */
#define DOM_BUDGET_FIRST (50ull * 1000 * 1000)

static uint64_t retained_brute(const struct ma_heap_graph *g,
			       const uint32_t *refcnt, uint32_t v)
{
	size_t n = g->n, head = 0, tail = 0;
	uint8_t *seen = calloc(n, 1);
	uint32_t *q = malloc(n * 4), *inref = calloc(n, 4);
	uint64_t lost = 0;

	for (size_t e = 0; e < g->nedges; e++)
		inref[g->edges[e]]++;
	for (uint32_t r = 0; r < n; r++)
		if (r != v && (r == 0 || refcnt[r] > inref[r])) {
			seen[r] = 1;
			q[tail++] = r;
		}
	while (head < tail) {
		uint32_t u = q[head++];

		for (uint32_t e = g->eoff[u]; e < g->eoff[u + 1]; e++) {
			uint32_t x = g->edges[e];

			if (x != v && !seen[x]) {
				seen[x] = 1;
				q[tail++] = x;
			}
		}
	}
	for (size_t i = 0; i < n; i++)
		if (!seen[i])
			lost += g->size[i];
	free(seen);
	free(q);
	free(inref);
	return lost;
}

/*
 * The deep chain and, hanging from it, 300 objects with random references
 * among them (each reachable: one edge from an earlier one or the chain,
 * then random ones), sizes at random, every reference count that of the
 * referrers (nothing held by C).  The iterative algorithm spends its
 * budget on the chain; the semi-NCA one that follows must give every
 * object the retained size the definition gives.
 */
static void chain_and_random(struct ma_heap_graph *g, uint32_t links,
			     uint32_t nrand, unsigned seed, uint32_t **refcnt)
{
	uint32_t n = links + 2 + nrand, ne = 0, first = links + 2;
	size_t cap = 2 * (size_t)n + 8 * (size_t)nrand + 2;
	uint32_t *from = malloc(cap * 4), *to = malloc(cap * 4), nl = 0;

	srand(seed);
	/* the chain, as chain(): 0 module -> 2 -> 3 -> ...; each link -> 1 */
	from[nl] = 0, to[nl++] = 2;
	for (uint32_t i = 2; i < first; i++) {
		from[nl] = i, to[nl++] = 1;
		if (i + 1 < first)
			from[nl] = i, to[nl++] = i + 1;
	}
	for (uint32_t k = 0; k < nrand; k++) {
		uint32_t v = first + k;
		/* one referrer among what came before (one of the first 50
		 * chain links, or an earlier random object), then up to 6
		 * random edges */
		uint32_t nchain = links < 50 ? links : 50;
		uint32_t pick = (uint32_t)rand() % (nchain + k);
		uint32_t p = pick < nchain ? 2 + pick : first + (pick - nchain);

		from[nl] = p, to[nl++] = v;
		for (int e = rand() % 7; e > 0; e--)
			from[nl] = v,
			to[nl++] = first + (uint32_t)rand() % nrand;
	}
	arrays(g, n, nl);
	*refcnt = calloc(n, 4);
	for (uint32_t u = 0; u < n; u++) {
		g->addr[u] = 0x100000 + 0x40 * (uint64_t)u;
		g->size[u] = u == 1	 ? 4096
			     : u < first ? 64
					 : 100 + rand() % 5000;
		g->type[u] = u ? T_NODE : T_MODULE;
		g->flags[u] = MA_HEAP_O_GC;
		g->eoff[u] = ne;
		for (uint32_t e = 0; e < nl; e++)
			if (from[e] == u) {
				g->edges[ne++] = to[e];
				(*refcnt)[to[e]]++;
			}
	}
	g->eoff[n] = ne;
	g->nedges = ne;
	(*refcnt)[0] = 1;
	for (uint32_t u = 0; u < n; u++)
		g->refcnt[u] = (*refcnt)[u];
	free(from);
	free(to);
	types_and_root(g);
}

Test(census, deep_chain_to_a_shared_object_ends)
{
	struct ma_heap_graph g;
	struct ma_heap_census c;
	struct ma_hcensus_opts o = { .top = 5 };
	const struct ma_hobj_report *r;
	uint32_t links = 30000, nrand = 300, *refcnt;

	/* 30,000 links: 4.5e8 steps for the iterative algorithm, against a
	 * budget of 5e7 and 16 a node and an edge; then semi-NCA, exact */
	for (unsigned seed = 1; seed <= 3; seed++) {
		chain_and_random(&g, links, nrand, seed, &refcnt);
		/* the largest: the random objects and the shared one (the
		 * links are 64 bytes); the head among the retainers */
		o.top = (int)nrand + 1;
		cr_assert_eq(ma_heap_census(&g, &o, NULL, &c), 0);
		cr_assert(!g.partial, "%s", g.partial_why);
		cr_assert(c.dom_steps < c.dom_budget, "%llu of %llu",
			  (unsigned long long)c.dom_steps,
			  (unsigned long long)c.dom_budget);
		cr_assert(c.dom_steps > DOM_BUDGET_FIRST,
			  "the iterative algorithm's budget was spent: %llu",
			  (unsigned long long)c.dom_steps);
		/* the head retains everything but the module */
		r = row_of(c.retainers, c.nretainers, 2);
		cr_assert(r && r->retained == retained_brute(&g, refcnt, 2),
			  "head: %llu",
			  r ? (unsigned long long)r->retained : 0ull);
		for (uint32_t v = links + 2; v < g.n; v++) {
			r = row_of(c.largest, c.nlargest, v);
			cr_assert(r, "object %u listed", v);
			cr_assert_eq(r->retained, retained_brute(&g, refcnt, v),
				     "seed %u, object %u: %llu", seed, v,
				     (unsigned long long)r->retained);
		}
		r = row_of(c.largest, c.nlargest, 1);
		cr_assert(r && r->retained == 4096, "the shared object");
		ma_heap_census_free(&c);
		ma_heap_graph_free(&g);
		free(refcnt);
	}

	/* a short chain: the first algorithm, against the definition too */
	for (unsigned seed = 4; seed <= 6; seed++) {
		chain_and_random(&g, 10, nrand, seed, &refcnt);
		o.top = (int)nrand + 1;
		cr_assert_eq(ma_heap_census(&g, &o, NULL, &c), 0);
		cr_assert(c.dom_steps < DOM_BUDGET_FIRST);
		for (uint32_t v = 12; v < g.n; v++) {
			r = row_of(c.largest, c.nlargest, v);
			cr_assert(r && r->retained ==
						  retained_brute(&g, refcnt, v),
				  "seed %u, object %u", seed, v);
		}
		ma_heap_census_free(&c);
		ma_heap_graph_free(&g);
		free(refcnt);
	}

	/* the same objects, every link held by the module: the first
	 * algorithm within its budget, and the module's namespace retains
	 * them all */
	o.top = 5;
	chain(&g, 30000, 0);
	cr_assert_eq(ma_heap_census(&g, &o, NULL, &c), 0);
	cr_assert(!g.partial, "%s", g.partial_why);
	cr_assert(c.dom_steps < DOM_BUDGET_FIRST);
	ma_heap_census_free(&c);
	ma_heap_graph_free(&g);
}
