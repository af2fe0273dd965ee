/* SPDX-License-Identifier: MIT */
/*
 * The census as a document (a JSON tree: what `heap -f json` prints and
 * what a snapshot file holds), and the document printed: where the RSS
 * goes, by type, the largest objects and the top retainers with their paths
 * from a root, and the difference of two snapshots (docs/heap.md shows an
 * example and explains each line).
 */
#include "heap.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "capture.h" /* MA_EMPTY_FILE_MSG */
#include "errors.h"
#include "outpath.h"
#include "textfit.h"
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
			 size_t len)
{
	struct toks t = { 0 };
	char cur[512];
	size_t start = 0;

	if (r->garbage || r->held_by_c) {
		snprintf(cur, sizeof(cur), "%s",
			 r->garbage ? "(cycle)" : "(C)");
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
	size_t d = depth >= 2 ? (size_t)depth : 12;

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
		snprintf(out, len,
			 "kept only by a reference cycle: garbage "
			 "the collector has not freed yet");
		return;
	}
	if (r->held_by_c) {
		snprintf(out, len,
			 "held from outside the objects found (C "
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
/* The document */

#define SNAP_FORMAT  "memattach-heap-snapshot"
#define SNAP_VERSION 1

static void seti(json_t *o, const char *k, uint64_t v)
{
	json_object_set_new(o, k, json_integer((json_int_t)v));
}

static json_t *obj_json(const struct ma_heap_graph *g,
			const struct ma_hobj_report *r)
{
	json_t *o = json_object(), *p = json_array();
	char path[2048], where[512];

	ma_heap_path_render(g, r, 1000, path, sizeof(path));
	root_where(g, r, where, sizeof(where));
	json_object_set_new(o, "type", json_string(tname(g, r->obj)));
	seti(o, "size", g->size[r->obj]);
	seti(o, "retained", r->retained);
	seti(o, "address", g->addr[r->obj]);
	json_object_set_new(o, "path", json_string(path));
	json_object_set_new(o, "root", json_string(where));
	json_object_set_new(o, "garbage", json_boolean(r->garbage));
	json_object_set_new(o, "held_by_c", json_boolean(r->held_by_c));
	for (size_t i = 0; i < r->npath; i++) {
		json_t *st = json_object();

		json_object_set_new(st, "type",
				    json_string(tname(g, r->path[i].obj)));
		json_object_set_new(st, "label", json_string(r->path[i].label));
		json_array_append_new(p, st);
	}
	json_object_set_new(o, "steps", p);
	return o;
}

json_t *ma_heap_doc(const struct ma_heap_graph *g,
		    const struct ma_heap_census *c)
{
	json_t *root = json_object(), *types = json_array(),
	       *largest = json_array(), *ret = json_array(),
	       *rss = json_object(), *pm = json_object(),
	       *notes = json_object();

	json_object_set_new(root, "format", json_string(SNAP_FORMAT));
	seti(root, "version", SNAP_VERSION);
	seti(root, "time", g->time);
	seti(root, "pid", (uint64_t)g->pid);
	json_object_set_new(root, "command", json_string(g->cmdline));
	json_object_set_new(root, "python", json_string(g->version));
	seti(root, "objects", c->objects);
	seti(root, "bytes", c->bytes);
	seti(root, "pymalloc_bytes", c->pymalloc_bytes);
	seti(root, "garbage_objects", c->garbage_objects);
	seti(root, "garbage_bytes", c->garbage_bytes);
	seti(root, "held_by_c_objects", c->held_by_c_objects);
	json_object_set_new(root, "frozen_ms", json_real(g->frozen_ns / 1e6));
	json_object_set_new(root, "all_stopped_ms",
			    json_real(g->all_stopped_ns / 1e6));
	json_object_set_new(root, "walk_s", json_real(g->walk_ns / 1e9));
	json_object_set_new(root, "partial", json_boolean(g->partial));
	seti(rss, "rss", g->rss.rss);
	seti(rss, "peak", g->rss.hwm);
	seti(rss, "heap", g->rss.heap);
	seti(rss, "anonymous", g->rss.anon);
	seti(rss, "stacks", g->rss.stacks);
	seti(rss, "files", g->rss.files);
	seti(rss, "other", g->rss.other);
	seti(rss, "swap", g->rss.swap);
	json_object_set_new(root, "rss", rss);
	seti(pm, "pool_size", g->pools.pool_size);
	seti(pm, "pools", g->pools.pools);
	seti(pm, "arenas", g->pools.arenas);
	seti(pm, "used_bytes", g->pools.used_bytes);
	json_object_set_new(root, "pymalloc", pm);
	json_object_set_new(notes, "gc_collecting",
			    json_boolean(g->end.gc_collecting));
	seti(notes, "unreadable", g->end.unreadable);
	seti(notes, "unresolved_edges", g->unresolved_edges);
	json_object_set_new(notes, "partial_why", json_string(g->partial_why));
	json_object_set_new(root, "notes", notes);
	for (size_t i = 0; i < c->ntypes; i++) {
		json_t *t = json_object();

		json_object_set_new(
			t, "type",
			json_string(g->types[c->by_type[i].type].name));
		seti(t, "count", c->by_type[i].count);
		seti(t, "bytes", c->by_type[i].bytes);
		json_array_append_new(types, t);
	}
	json_object_set_new(root, "by_type", types);
	for (size_t i = 0; i < c->nlargest; i++)
		json_array_append_new(largest, obj_json(g, &c->largest[i]));
	json_object_set_new(root, "largest", largest);
	for (size_t i = 0; i < c->nretainers; i++)
		json_array_append_new(ret, obj_json(g, &c->retainers[i]));
	json_object_set_new(root, "retainers", ret);
	return root;
}

/* ------------------------------------------------------------------ */
/* Text */

static uint64_t ju(const json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	return json_is_integer(v) ? (uint64_t)json_integer_value(v) : 0;
}

static const char *js(const json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));

	return v ? v : "";
}

static double jr(const json_t *o, const char *k)
{
	return json_number_value(json_object_get(o, k));
}

static void rss_section(FILE *f, const json_t *d)
{
	const json_t *r = json_object_get(d, "rss"),
		     *pm = json_object_get(d, "pymalloc");
	char a[32], b[32];
	uint64_t mem = ju(r, "heap") + ju(r, "anonymous"),
		 objs = ju(d, "bytes"), pyb = ju(d, "pymalloc_bytes");
	uint64_t pool_bytes = ju(pm, "pools") * ju(pm, "pool_size");
	uint64_t used = ju(pm, "used_bytes");
	uint64_t pool_free = pool_bytes > used ? pool_bytes - used : 0;
	int64_t rest = (int64_t)mem - (int64_t)objs - (int64_t)pool_free;

	fprintf(f, "Where the RSS goes (RSS %s, peak %s)\n",
		bytes(ju(r, "rss"), a, sizeof(a)),
		bytes(ju(r, "peak"), b, sizeof(b)));
	fprintf(f, "  %-52s %12s\n", "heap and anonymous memory",
		bytes(mem, a, sizeof(a)));
	fprintf(f, "    %-50s %12s\n", "Python objects (as sys.getsizeof)",
		bytes(objs, a, sizeof(a)));
	/* Of each object, what lies in pymalloc's blocks (its own block of
	 * up to 512 bytes, its small tables) and what does not: malloc's
	 * blocks (large objects, large tables and buffers), and the objects
	 * compiled into the interpreter (static types, small ints).  A
	 * snapshot saying more of the first than objects in all is damaged:
	 * no wrapped difference printed for it. */
	if (pyb > objs)
		pyb = objs;
	fprintf(f, "      %-48s %12s\n", "in pymalloc blocks (<= 512 bytes)",
		bytes(pyb, a, sizeof(a)));
	fprintf(f, "      %-48s %12s\n",
		"in malloc blocks (larger), or static objects",
		bytes(objs - pyb, a, sizeof(a)));
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
		bytes(ju(r, "stacks"), a, sizeof(a)));
	fprintf(f, "  %-52s %12s\n", "files (code, libraries, mapped files)",
		bytes(ju(r, "files"), a, sizeof(a)));
	fprintf(f, "  %-52s %12s\n", "other (shared memory, vdso)",
		bytes(ju(r, "other"), a, sizeof(a)));
	if (ju(r, "swap"))
		fprintf(f, "  (and %s swapped out)\n",
			bytes(ju(r, "swap"), a, sizeof(a)));
	if (ju(pm, "pool_size"))
		fprintf(f,
			"  pymalloc: %llu pools of %llu KiB in use in %llu "
			"arenas, %s of blocks in use in them\n",
			(unsigned long long)ju(pm, "pools"),
			(unsigned long long)ju(pm, "pool_size") / 1024,
			(unsigned long long)ju(pm, "arenas"),
			bytes(used, a, sizeof(a)));
	fputc('\n', f);
}

/* A path of more than depth steps, its middle elided */
static void print_path(FILE *f, const char *path, int depth)
{
	const char *sep = " -> ", *p = path;
	int n = 1, k = 0;

	for (const char *q = path; (q = strstr(q, sep)); q += 4)
		n++;
	if (depth < 2 || n <= depth) {
		fprintf(f, "      %s\n", path);
		return;
	}
	fputs("      ", f);
	for (; k < n; k++) {
		const char *e = strstr(p, sep);
		int len = e ? (int)(e - p) : (int)strlen(p);

		if (k < depth / 2 || k >= n - depth / 2)
			fprintf(f, "%s%.*s", k ? sep : "", len, p);
		else if (k == depth / 2)
			fprintf(f, "%s...", sep);
		p = e ? e + 4 : p + len;
	}
	fputc('\n', f);
}

static void obj_table(FILE *f, const json_t *rows, int retained_first, int top,
		      int depth)
{
	char a[32], b[32];
	size_t i;
	json_t *r;

	json_array_foreach(rows, i, r)
	{
		if ((int)i >= top)
			break;
		fprintf(f, "  %10s %10s  %s\n",
			bytes(ju(r, retained_first ? "retained" : "size"), a,
			      sizeof(a)),
			bytes(ju(r, retained_first ? "size" : "retained"), b,
			      sizeof(b)),
			js(r, "type"));
		print_path(f, js(r, "path"), depth);
		if (*js(r, "root"))
			fprintf(f, "      (%s)\n", js(r, "root"));
	}
}

static int print_text(FILE *f, const json_t *d, int top, int depth)
{
	const json_t *types = json_object_get(d, "by_type"),
		     *notes = json_object_get(d, "notes");
	char a[32];
	size_t i, nt = json_array_size(types);
	json_t *t;

	char *cmd = ma_escape_ctl(js(d, "command"));

	fprintf(f, "Process %llu: %s (Python %s)\n",
		(unsigned long long)ju(d, "pid"), cmd ? cmd : "?",
		js(d, "python"));
	free(cmd);
	fprintf(f,
		"Census of %llu objects (%s), target stopped %.1f ms, then "
		"paused up to %.1f ms by the clone (a thread that writes "
		"memory waits for it), walked in %.2f s\n\n",
		(unsigned long long)ju(d, "objects"),
		bytes(ju(d, "bytes"), a, sizeof(a)), jr(d, "all_stopped_ms"),
		jr(d, "frozen_ms"), jr(d, "walk_s"));
	rss_section(f, d);
	fprintf(f, "By type (top %zu of %zu)\n",
		(size_t)top < nt ? (size_t)top : nt, nt);
	fprintf(f, "  %12s %12s %7s  %s\n", "count", "bytes", "share", "type");
	json_array_foreach(types, i, t)
	{
		if ((int)i >= top)
			break;
		fprintf(f, "  %12llu %12s %6.1f%%  %s\n",
			(unsigned long long)ju(t, "count"),
			bytes(ju(t, "bytes"), a, sizeof(a)),
			ju(d, "bytes") ? 100.0 * (double)ju(t, "bytes") /
						 (double)ju(d, "bytes")
				       : 0.0,
			js(t, "type"));
	}
	fputc('\n', f);
	fprintf(f, "Largest objects (own size, retained size, type, path)\n");
	obj_table(f, json_object_get(d, "largest"), 0, top, depth);
	fputc('\n', f);
	fprintf(f, "Top retainers (retained size: freed with it; own size; "
		   "type, path)\n");
	obj_table(f, json_object_get(d, "retainers"), 1, top, depth);
	fputc('\n', f);
	if (ju(d, "garbage_objects"))
		fprintf(f,
			"Cyclic garbage: %llu objects, %s, kept only by "
			"reference cycles until the collector runs "
			"(gc.collect() frees them)\n",
			(unsigned long long)ju(d, "garbage_objects"),
			bytes(ju(d, "garbage_bytes"), a, sizeof(a)));
	else
		fprintf(f, "Cyclic garbage: none\n");
	if (json_is_true(json_object_get(notes, "gc_collecting")))
		fprintf(f, "Note: the collector was running when the copy was "
			   "made: some objects may be missing\n");
	if (ju(notes, "unreadable"))
		fprintf(f,
			"Note: %llu objects could not be read (being "
			"changed when the copy was made)\n",
			(unsigned long long)ju(notes, "unreadable"));
	if (json_is_true(json_object_get(d, "partial")))
		fprintf(f, "Note: partial census: %s\n",
			js(notes, "partial_why"));
	return ferror(f) ? -EIO : 0;
}

/* ------------------------------------------------------------------ */
/* HTML: the tables, and a treemap of the top retainers by retained size
 * (self-contained: no script from elsewhere) */

static void html_esc(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '<')
			fputs("&lt;", f);
		else if (*s == '>')
			fputs("&gt;", f);
		else if (*s == '&')
			fputs("&amp;", f);
		else if (*s == '"')
			fputs("&quot;", f);
		else
			fputc(*s, f);
	}
}

static int print_html(FILE *f, const json_t *d, int top, int depth)
{
	char *text = NULL;
	size_t len = 0;
	FILE *mf = open_memstream(&text, &len);
	char *js_doc;

	if (!mf)
		return -ENOMEM;
	print_text(mf, d, top, depth);
	fclose(mf);
	js_doc = json_dumps(d, JSON_COMPACT);
	fputs("<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
	      "<title>memattach heap</title><style>"
	      "body{font:14px sans-serif;margin:1em}"
	      "pre{font:12px monospace;background:#f6f6f6;padding:1em}"
	      "#map{position:relative;width:100%;height:420px;"
	      "border:1px solid #888}"
	      "#map div{position:absolute;overflow:hidden;cursor:pointer;"
	      "font:11px "
	      "sans-serif;border:1px solid #fff;box-sizing:border-box;"
	      "padding:2px;color:#000}"
	      "</style></head><body><h1>memattach heap</h1>"
	      "<h2>Top retainers by retained size: <span id=\"where\">"
	      "</span></h2><div id=\"map\"></div><div id=\"ma-errors\">"
	      "</div>"
	      "<h2>Report</h2><pre>",
	      f);
	html_esc(f, text ? text : "");
	fputs("</pre><script>const D=", f);
	/* the document, safe inside a script element */
	for (const char *p = js_doc ? js_doc : "{}"; *p; p++) {
		if (*p == '<')
			fputs("\\u003c", f);
		else
			fputc(*p, f);
	}
	fputs(";\n"
	      "window.onerror=(m)=>{document.getElementById('ma-errors')"
	      ".textContent+=m+'\\n'};\n"
	      "function fmt(n){const u=['B','KiB','MiB','GiB','TiB'];let i=0;"
	      "while(n>=1024&&i<4){n/=1024;i++}return n.toFixed(i?1:0)+' '+"
	      "u[i]}\n"
	      /* slice the rectangle along its longer side, halves by size */
	      "function lay(items,x,y,w,h,out){if(!items.length)return;"
	      "if(items.length==1){out.push([items[0],x,y,w,h]);return}"
	      "const tot=items.reduce((s,r)=>s+r.retained,0);let acc=0,k=0;"
	      "while(k<items.length-1&&acc+items[k].retained<tot/2)"
	      "acc+=items[k++].retained;if(!k){acc=items[0].retained;k=1}"
	      "const f=acc/tot;if(w>=h){lay(items.slice(0,k),x,y,w*f,h,out);"
	      "lay(items.slice(k),x+w*f,y,w*(1-f),h,out)}else{"
	      "lay(items.slice(0,k),x,y,w,h*f,out);"
	      "lay(items.slice(k),x,y+h*f,w,h*(1-f),out)}}\n"
	      /* two levels: what holds them (a module, frames' locals, C,
	       * cycles), then the retainers; a click zooms in, and out */
	      "function holder(r){if(r.garbage)return 'cyclic garbage';"
	      "if(r.held_by_c)return 'held from C';"
	      "if(r.root.startsWith('local'))return 'frame locals';"
	      "return 'module '+r.path.split(/[.\\[ ]/)[0]}\n"
	      "const G={};for(const r of (D.retainers||[])){if(r.retained<=0)"
	      "continue;const k=holder(r);const g=G[k]||(G[k]={path:k,"
	      "retained:0,kids:[],root:''});g.retained+=r.retained;"
	      "g.kids.push(r)}\n"
	      "const m=document.getElementById('map');let view=null;\n"
	      "function draw(){m.textContent='';const W=m.clientWidth,"
	      "H=m.clientHeight,out=[];const items=(view?view.kids:"
	      "Object.values(G)).slice().sort((a,b)=>b.retained-a.retained);"
	      "lay(items,0,0,W,H,out);out.forEach(([r,x,y,w,h],i)=>{"
	      "const e=document.createElement('div');e.style.left=x+'px';"
	      "e.style.top=y+'px';e.style.width=w+'px';e.style.height=h+'px';"
	      "e.style.background='hsl('+(i*47%360)+',60%,80%)';"
	      "e.title=r.path+'\\n'+fmt(r.retained)+' retained'+(r.root?"
	      "'\\n'+r.root:'');e.textContent=r.path+' '+fmt(r.retained)+"
	      "(r.kids?' ('+r.kids.length+')':'');"
	      "e.onclick=()=>{view=view?null:(r.kids?r:null);draw()};"
	      "m.appendChild(e)});document.getElementById('where')"
	      ".textContent=view?view.path+' (click to go back)':"
	      "'what holds them (click to zoom in)'}\n"
	      "draw();\n"
	      "if(location.hash=='#selftest'){const n0=m.children.length;"
	      "const g=Object.values(G).sort((a,b)=>b.retained-a.retained)[0];"
	      "m.children[0].onclick();const n1=m.children.length;"
	      "m.children[0].onclick();const n2=m.children.length;"
	      "document.body.dataset.selftest='groups='+n0+' zoom='+"
	      "(g&&n1==g.kids.length&&n2==n0?'ok':'bad:'+n1+'/'+n2)}\n"
	      "document.body.dataset.ready='1';"
	      "</script></body></html>\n",
	      f);
	free(js_doc);
	free(text);
	return ferror(f) ? -EIO : 0;
}

int ma_heap_render(FILE *f, const json_t *doc, const char *format, int top,
		   int depth)
{
	/* 0: every row the document has (report --top 0), as a capture's
	 * report; memattach heap passes its default itself */
	if (top <= 0)
		top = INT_MAX;
	if (depth <= 0)
		depth = 12;
	if (!strcmp(format, "json")) {
		json_dumpf(doc, f, JSON_INDENT(2));
		fputc('\n', f);
		return ferror(f) ? -EIO : 0;
	}
	if (!strcmp(format, "html"))
		return print_html(f, doc, top, depth);
	return print_text(f, doc, top, depth);
}

/* ------------------------------------------------------------------ */
/* Snapshots */

int ma_heap_snap_write(const char *path, const json_t *doc)
{
	char tmp[4096];
	int fd, err = 0;
	FILE *f;

	/* a fresh file under a temporary name, renamed over the path: never
	 * through a symlink or into a file someone else opened */
	snprintf(tmp, sizeof(tmp), "%s.tmp-%d", path, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  0600);
	if (fd < 0)
		return ma_err(-errno, "heap: creating %s: %s", tmp,
			      strerror(errno));
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		unlink(tmp);
		return ma_err(-ENOMEM, "heap: writing %s", path);
	}
	/* the write's own error (a full disk: ENOSPC), not a bare EIO */
	errno = 0;
	if (json_dumpf(doc, f, JSON_COMPACT) || fputc('\n', f) == EOF)
		err = errno ? -errno : -EIO;
	if (fclose(f) && !err)
		err = -errno;
	if (!err && rename(tmp, path))
		err = -errno;
	if (err) {
		unlink(tmp);
		return ma_err(err, "heap: writing %s: %s", path,
			      strerror(-err));
	}
	return 0;
}

int ma_heap_snap_is(const char *path)
{
	char head[64] = "";
	ssize_t n = ma_inpath_head(path, head, sizeof(head) - 1);

	if (n <= 0)
		return 0;
	head[n] = '\0';
	return strstr(head, "\"format\":\"" SNAP_FORMAT "\"") != NULL ||
	       strstr(head, "\"format\": \"" SNAP_FORMAT "\"") != NULL;
}

/* The fields a snapshot's report cannot do without, there since its first
 * version (docs/heap.md, "Snapshots and diffs") */
static const struct {
	const char *name;
	json_type type;
	const char *what;
} snap_fields[] = {
	{ "version", JSON_INTEGER, "a number" },
	{ "objects", JSON_INTEGER, "a number" },
	{ "bytes", JSON_INTEGER, "a number" },
	{ "rss", JSON_OBJECT, "an object" },
	{ "pymalloc", JSON_OBJECT, "an object" },
	{ "by_type", JSON_ARRAY, "an array" },
	{ "largest", JSON_ARRAY, "an array" },
	{ "retainers", JSON_ARRAY, "an array" },
};

#define NSNAP_FIELDS (sizeof(snap_fields) / sizeof(snap_fields[0]))

static int is_empty_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0;
}

json_t *ma_heap_snap_read(const char *path)
{
	json_error_t je;
	json_t *d = json_load_file(path, 0, &je), *ver;
	char missing[256] = "";
	size_t len = 0;

	ma_err_set_exit(MA_EXIT_CAPTURE);
	if (!d && is_empty_file(path)) {
		ma_err(-ENODATA, "%s: " MA_EMPTY_FILE_MSG, path);
		return NULL;
	}
	if (!d) {
		ma_err(-EPROTO,
		       "%s: not a readable heap snapshot (truncated or "
		       "corrupt?): %s at line %d",
		       path, je.text, je.line);
		return NULL;
	}
	ver = json_object_get(d, "version");
	if (!json_is_object(d) || strcmp(js(d, "format"), SNAP_FORMAT)) {
		ma_err(-EPROTO,
		       "%s: not a heap snapshot (no \"format\": \"%s\")", path,
		       SNAP_FORMAT);
		json_decref(d);
		return NULL;
	}
	/* Another version is said as such; one of ours that lacks fields is
	 * incomplete (not written by memattach heap, or edited since) */
	if (json_is_integer(ver) && json_integer_value(ver) != SNAP_VERSION) {
		ma_err(-EPROTONOSUPPORT,
		       "%s: a heap snapshot of version %lld; this memattach "
		       "reads version %d",
		       path, (long long)json_integer_value(ver), SNAP_VERSION);
		json_decref(d);
		return NULL;
	}
	for (size_t i = 0; i < NSNAP_FIELDS; i++)
		if (!json_object_get(d, snap_fields[i].name) &&
		    len < sizeof(missing))
			len += (size_t)snprintf(
				missing + len, sizeof(missing) - len, "%s%s",
				len ? ", " : "", snap_fields[i].name);
	if (len) {
		ma_err(-EPROTO, "%s: an incomplete heap snapshot: missing %s",
		       path, missing);
		json_decref(d);
		return NULL;
	}
	for (size_t i = 0; i < NSNAP_FIELDS; i++)
		if (json_typeof(json_object_get(d, snap_fields[i].name)) !=
		    snap_fields[i].type) {
			ma_err(-EPROTO,
			       "%s: a corrupt heap snapshot: \"%s\" is not %s",
			       path, snap_fields[i].name, snap_fields[i].what);
			json_decref(d);
			return NULL;
		}
	ma_err_set_exit(MA_EXIT_OK);
	return d;
}

/* ------------------------------------------------------------------ */
/* What changed between two snapshots */

struct drow {
	const char *key;
	int64_t dcount, dbytes;
	uint64_t bytes_a, bytes_b;
	const char *extra; /* root of a retainer */
};

/* |d|, for INT64_MIN too: a snapshot's figures are read, not trusted */
static uint64_t mag(int64_t d)
{
	return d < 0 ? 0 - (uint64_t)d : (uint64_t)d;
}

/* d + x (side b) or d - x (side a), wrapping rather than overflowing */
static int64_t add_side(int64_t d, uint64_t x, int side)
{
	return (int64_t)(side ? (uint64_t)d + x : (uint64_t)d - x);
}

static int cmp_drow(const void *x, const void *y)
{
	const struct drow *a = x, *b = y;
	uint64_t ma = mag(a->dbytes), mb = mag(b->dbytes);

	return ma < mb ? 1 : ma > mb ? -1 : strcmp(a->key, b->key);
}

/* Rows keyed by `key` in array `arr` of a and b, with their value field */
static struct drow *diff_rows(const json_t *ra, const json_t *rb,
			      const char *key, const char *val, const char *cnt,
			      size_t *n)
{
	size_t na = json_array_size(ra), nb = json_array_size(rb), m = 0;
	struct drow *v = calloc(na + nb + 1, sizeof(*v));
	size_t i;
	json_t *r;

	if (!v)
		return NULL;
	/* rows of the same key (two classes of one name) are summed; a's
	 * count negatively, b's positively */
	for (int side = 0; side < 2; side++) {
		const json_t *rows = side ? rb : ra;

		json_array_foreach(rows, i, r)
		{
			size_t k;

			for (k = 0; k < m; k++)
				if (!strcmp(v[k].key, js(r, key)))
					break;
			if (k == m)
				v[m++] =
					(struct drow){ .key = js(r, key),
						       .extra = js(r, "root") };
			*(side ? &v[k].bytes_b : &v[k].bytes_a) += ju(r, val);
			v[k].dbytes = add_side(v[k].dbytes, ju(r, val), side);
			if (cnt)
				v[k].dcount =
					add_side(v[k].dcount, ju(r, cnt), side);
		}
	}
	qsort(v, m, sizeof(*v), cmp_drow);
	*n = m;
	return v;
}

static void sbytes(int64_t d, char *buf, size_t len)
{
	char b[32];

	ma_fmt_bytes(mag(d), b, sizeof(b));
	snprintf(buf, len, "%s%s", d < 0 ? "-" : "+", b);
}

static json_t *drows_json(const struct drow *v, size_t n, int shrank,
			  int counts)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++) {
		json_t *o;

		if ((shrank && v[i].dbytes >= 0) ||
		    (!shrank && v[i].dbytes <= 0))
			continue;
		o = json_object();
		json_object_set_new(o, "key", json_string(v[i].key));
		json_object_set_new(o, "bytes_delta",
				    json_integer(v[i].dbytes));
		if (counts)
			json_object_set_new(o, "count_delta",
					    json_integer(v[i].dcount));
		seti(o, "bytes_a", v[i].bytes_a);
		seti(o, "bytes_b", v[i].bytes_b);
		json_array_append_new(a, o);
	}
	return a;
}

int ma_heap_render_diff(FILE *f, const json_t *a, const json_t *b,
			const char *format, int top)
{
	size_t nt, nr;
	struct drow *t = diff_rows(json_object_get(a, "by_type"),
				   json_object_get(b, "by_type"), "type",
				   "bytes", "count", &nt);
	struct drow *r = diff_rows(json_object_get(a, "retainers"),
				   json_object_get(b, "retainers"), "path",
				   "retained", NULL, &nr);
	char x[32], y[32], z[32];
	int err = 0;

	if (top <= 0)
		top = INT_MAX;
	if (!t || !r) {
		free(t);
		free(r);
		return -ENOMEM;
	}
	if (!strcmp(format, "json")) {
		json_t *o = json_object();

		seti(o, "seconds_between", ju(b, "time") - ju(a, "time"));
		json_object_set_new(
			o, "rss_delta",
			json_integer((json_int_t)(ju(json_object_get(b, "rss"),
						     "rss") -
						  ju(json_object_get(a, "rss"),
						     "rss"))));
		json_object_set_new(o, "bytes_delta",
				    json_integer((json_int_t)(ju(b, "bytes") -
							      ju(a, "bytes"))));
		json_object_set_new(
			o, "garbage_bytes_delta",
			json_integer((json_int_t)(ju(b, "garbage_bytes") -
						  ju(a, "garbage_bytes"))));
		json_object_set_new(
			o, "garbage_objects_delta",
			json_integer((json_int_t)(ju(b, "garbage_objects") -
						  ju(a, "garbage_objects"))));
		json_object_set_new(o, "types_grew", drows_json(t, nt, 0, 1));
		json_object_set_new(o, "types_shrank", drows_json(t, nt, 1, 1));
		json_object_set_new(o, "retainers_grew",
				    drows_json(r, nr, 0, 0));
		json_object_set_new(o, "retainers_shrank",
				    drows_json(r, nr, 1, 0));
		json_dumpf(o, f, JSON_INDENT(2));
		fputc('\n', f);
		json_decref(o);
	} else {
		int64_t drss = (int64_t)(ju(json_object_get(b, "rss"), "rss") -
					 ju(json_object_get(a, "rss"), "rss"));
		/*
		 * Signed: the second snapshot may be the older one (report
		 * B --diff A), and the unsigned difference would wrap to
		 * 2^64 - N.
		 */
		int64_t dt = (int64_t)(ju(b, "time") - ju(a, "time"));

		sbytes(drss, x, sizeof(x));
		sbytes((int64_t)(ju(b, "bytes") - ju(a, "bytes")), y,
		       sizeof(y));
		fprintf(f,
			"From the census of %llu objects to the one of %llu, "
			"%llu s %s (process %llu, then %llu)\n"
			"  RSS %s, Python objects %s\n",
			(unsigned long long)ju(a, "objects"),
			(unsigned long long)ju(b, "objects"),
			(unsigned long long)mag(dt),
			dt < 0 ? "earlier" : "later",
			(unsigned long long)ju(a, "pid"),
			(unsigned long long)ju(b, "pid"), x, y);
		/* garbage is in no retainer's path: without this line a
		 * leak of reference cycles (gc.disable()) showed only as
		 * types that grew, with "Retainers ... (none)" */
		if (ju(a, "garbage_bytes") || ju(b, "garbage_bytes")) {
			int64_t dn = (int64_t)(ju(b, "garbage_objects") -
					       ju(a, "garbage_objects"));

			sbytes((int64_t)(ju(b, "garbage_bytes") -
					 ju(a, "garbage_bytes")),
			       x, sizeof(x));
			ma_fmt_bytes(ju(a, "garbage_bytes"), y, sizeof(y));
			ma_fmt_bytes(ju(b, "garbage_bytes"), z, sizeof(z));
			fprintf(f,
				"  Cyclic garbage (kept only by reference "
				"cycles) %s (%s -> %s), %+lld objects\n",
				x, y, z, (long long)dn);
		}
		fputc('\n', f);
		for (int pass = 0; pass < 2; pass++) {
			int shown = 0;

			fprintf(f, "By type, %s\n", pass ? "shrank" : "grew");
			for (size_t i = 0; i < nt && shown < top; i++) {
				if (pass ? t[i].dbytes >= 0 : t[i].dbytes <= 0)
					continue;
				sbytes(t[i].dbytes, x, sizeof(x));
				fprintf(f, "  %12s %+12lld  %s\n", x,
					(long long)t[i].dcount, t[i].key);
				shown++;
			}
			if (!shown)
				fprintf(f, "  (none)\n");
			fputc('\n', f);
		}
		for (int pass = 0; pass < 2; pass++) {
			int shown = 0;

			fprintf(f, "Retainers (by path), %s\n",
				pass ? "shrank or gone" : "grew or new");
			for (size_t i = 0; i < nr && shown < top; i++) {
				if (pass ? r[i].dbytes >= 0 : r[i].dbytes <= 0)
					continue;
				sbytes(r[i].dbytes, x, sizeof(x));
				ma_fmt_bytes(r[i].bytes_a, y, sizeof(y));
				ma_fmt_bytes(r[i].bytes_b, z, sizeof(z));
				fprintf(f, "  %12s  (%s -> %s)  %s\n", x, y, z,
					r[i].key);
				shown++;
			}
			if (!shown)
				fprintf(f, "  (none)\n");
			fputc('\n', f);
		}
		fprintf(f, "Retainers are the top ones of each census: one "
			   "that fell out of a top list shows as gone.\n");
	}
	if (ferror(f))
		err = -EIO;
	free(t);
	free(r);
	return err;
}

/* Snapshots of different programs compare nothing that means anything:
 * refused unless --force, as captures are (cmd_report.c) */
static int same_program(const char *pa, const json_t *a, const char *pb,
			const json_t *b)
{
	const char *ca = js(a, "command"), *cb = js(b, "command");
	const char *va = js(a, "python"), *vb = js(b, "python");
	char wa[96], wb[96];

	if (!strcmp(ca, cb) && !strcmp(va, vb))
		return 0;
	snprintf(wa, sizeof(wa), "pid %llu, Python %s",
		 (unsigned long long)ju(a, "pid"), va);
	snprintf(wb, sizeof(wb), "pid %llu, Python %s",
		 (unsigned long long)ju(b, "pid"), vb);
	return ma_diff_programs_differ(
		&(struct ma_diff_side){ .path = pa, .who = wa, .cmd = ca },
		&(struct ma_diff_side){ .path = pb, .who = wb, .cmd = cb });
}

int ma_heap_report(FILE *f, const char *path, const char *diff,
		   const char *format, int top, bool force)
{
	json_t *a, *b = NULL;
	int err;

	if (strcmp(format, "text") && strcmp(format, "json") &&
	    (strcmp(format, "html") || diff)) {
		ma_err_set_exit(MA_EXIT_USAGE);
		return ma_err(-EINVAL,
			      "a heap snapshot renders as text, json or html "
			      "(--diff: text or json), not %s",
			      format);
	}
	a = ma_heap_snap_read(path);
	if (!a)
		return -EPROTO;
	if (diff) {
		b = ma_heap_snap_read(diff);
		if (!b) {
			json_decref(a);
			return -EPROTO;
		}
		if (!force && same_program(path, a, diff, b)) {
			json_decref(a);
			json_decref(b);
			return -EINVAL;
		}
	}
	err = b ? ma_heap_render_diff(f, a, b, format, top)
		: ma_heap_render(f, a, format, top, 0);
	json_decref(a);
	json_decref(b);
	return err;
}
