/* SPDX-License-Identifier: MIT */
/*
 * The heap census (`memattach heap`, docs/heap.md): the object graph read
 * from a copy-on-write copy of the target (heapwalk.c), what it means
 * (census.c: by type, retained sizes by dominators, paths from roots,
 * cyclic garbage, where the RSS goes), and its outputs (heap_report.c,
 * heap_snap.c for the snapshot file).
 */
#ifndef MA_HEAPCENSUS_H
#define MA_HEAPCENSUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "ma_heap.h"

struct ma_target;

/* A root: a module, or a frame's local variable */
struct ma_hroot {
	uint32_t kind; /* enum ma_heap_root_kind */
	uint32_t obj;  /* object index */
	char *name;    /* module name, or local variable name */
	/* locals: where */
	char *func, *file;
	int line;
	pid_t tid;	/* kernel thread id, 0 unknown */
	char *thread;	/* thread name */
	uint32_t depth; /* frame index, 0 innermost */
};

struct ma_htype {
	uint64_t addr;
	char *name;
};

/* Where the RSS goes, from /proc/PID/smaps and status */
struct ma_hrss {
	uint64_t rss, hwm;			   /* VmRSS, VmHWM */
	uint64_t heap, anon, stacks, files, other; /* resident, by mapping */
	uint64_t swap;
};

struct ma_heap_graph {
	size_t n;	  /* objects */
	uint64_t *addr;	  /* sorted ascending */
	uint64_t *size;	  /* sys.getsizeof */
	uint32_t *type;	  /* index into types */
	uint32_t *refcnt; /* clamped */
	uint8_t *flags;	  /* enum ma_heap_obj_flags */
	uint32_t *eoff;	  /* n + 1 edge offsets */
	uint32_t *edges;  /* object indexes */
	size_t nedges, unresolved_edges;
	/* of the sizes, the bytes in pymalloc blocks (struct ma_heap_obj's
	 * pymalloc), summed as the stream is read: no array an object */
	uint64_t pymalloc_bytes;

	struct ma_htype *types;
	size_t ntypes;
	struct ma_hroot *roots;
	size_t nroots;

	/* names of the edges on the paths shown (dict keys), kept so that a
	 * snapshot file renders the same paths without the copy */
	struct ma_hlabel {
		uint32_t from, to;
		char *text;
	} * labels;
	size_t nlabels;

	struct ma_heap_pools pools;
	struct ma_heap_end end;
	struct ma_hrss rss;

	/* how it was taken */
	int pyminor;
	/* all_stopped: every thread (safe point, payload loaded); frozen:
	 * the thread that clones, the clone included */
	uint64_t all_stopped_ns, frozen_ns, clone_ns, walk_ns, read_ns,
		total_ns;
	uint64_t copy_peak_kb; /* the copy's own memory at the end of the
				  walk: its private pages (smaps_rollup) */
	uint64_t stream_bytes;
	int partial; /* the copy or the target went away mid-walk */
	char partial_why[128];
	int partial_oom; /* its copy killed by the OOM killer: exit 10 */
	pid_t pid;
	char cmdline[256];
	char version[32];
	uint64_t time; /* unix seconds */
};

struct ma_heap_opts {
	uint32_t chunk_size; /* 0: 4 MiB */
	int quiet;	     /* no progress on stderr */
	int max_frames;	     /* frames per thread for roots (0: 256) */
};

struct ma_heap_live;

/*
 * Ctrl-C (SIGINT, SIGTERM, SIGHUP) during a census: on (1), the first one
 * only sets a flag that the walk looks at, so that the copy is ended and
 * reaped (a zombie only the target could reap otherwise) before memattach
 * leaves; a second one kills as before.  Off (0): the handlers as they
 * were (nothing when they are not ours).  ma_heap_interrupted() says
 * whether one came.
 */
void ma_heap_catch_signals(int on);
int ma_heap_interrupted(void);

/* Take a census of t: freeze, clone, walk the copy.  *live: the copy, kept
 * to name dict keys along paths (ma_heap_live_end reaps it).  A copy or
 * target that went away mid-walk gives a partial graph (g->partial). */
int ma_heap_take(struct ma_target *t, const struct ma_heap_opts *o,
		 struct ma_heap_graph *g, struct ma_heap_live **live);
void ma_heap_graph_free(struct ma_heap_graph *g);

/* The copy stays alive after the walk to name dict keys along paths; these
 * talk to it, then end it */
/* The key under which dict d holds value v, written into buf as read
 * (UTF-8, not escaped): MA_HEAP_KEY_STR for a str, MA_HEAP_KEY_INT for an
 * int of up to 60 bits (decimal); -EMEDIUMTYPE for a key of another type
 * or a larger int, -ENOENT or another negative errno when unknown */
enum { MA_HEAP_KEY_STR = 1, MA_HEAP_KEY_INT = 2 };
/* Whether the copy was ended while it was still wanted, its memory
 * cgroup short of room (the census's figures that read it may miss what
 * it would have told): 1 and the message in why */
int ma_heap_live_cut(const struct ma_heap_live *l, char *why, size_t len);
int ma_heap_live_key(struct ma_heap_live *l, uint64_t d, uint64_t v, char *buf,
		     size_t len);
/* The position of v among the items of list (tuple 0) or tuple (1) seq, in
 * *index: 0, or -ENOENT when not found, another negative errno when
 * unreadable */
int ma_heap_live_index(struct ma_heap_live *l, uint64_t seq, int tuple,
		       uint64_t v, uint64_t *index);
/* 1 when dict d is object o's own __dict__ (where its type keeps it:
 * tp_dictoffset, or 3.11+'s managed dict pointer), 0 when it is not (an
 * attribute's value, an item), a negative errno when unknown */
int ma_heap_live_own_dict(struct ma_heap_live *l, uint64_t o, uint64_t d);
/* End the copy and reap it in the target (a short freeze); frees l */
int ma_heap_live_end(struct ma_heap_live *l, struct ma_target *t);

/* ------------------------------------------------------------------ */
/* The analysis */

struct ma_hcensus_type {
	uint32_t type;
	uint64_t count, bytes;
};

struct ma_hpath_step {
	uint32_t obj;
	char label[96]; /* how the previous object holds this one, e.g.
			   ".frames", "[3]", "['key']"; "" when unknown */
};

struct ma_hobj_report {
	uint32_t obj;
	uint64_t retained;
	char root[256]; /* the root the path starts at */
	int root_kind;	/* 0 none (garbage or C), else ma_heap_root_kind */
	int garbage;	/* kept only by a reference cycle */
	int held_by_c;	/* referenced from outside the objects found */
	struct ma_hpath_step *path;
	size_t npath;
};

struct ma_heap_census {
	uint64_t objects, bytes;
	/* objects whose own block is pymalloc's; the bytes of all objects'
	 * sizes that lie in pymalloc blocks (g->pymalloc_bytes) */
	uint64_t pymalloc_objects, pymalloc_bytes;
	uint64_t garbage_objects, garbage_bytes;
	uint64_t held_by_c_objects;	 /* roots outside modules and frames */
	struct ma_hcensus_type *by_type; /* sorted by bytes, descending */
	size_t ntypes;
	struct ma_hobj_report *largest; /* by own size */
	size_t nlargest;
	struct ma_hobj_report *retainers; /* by retained size */
	size_t nretainers;
	uint64_t dom_ns, paths_ns;
	/* the dominators' tree walks, against their budget (census.c) */
	uint64_t dom_steps, dom_budget;
};

/* Rows per table when --top is not given */
#define MA_HEAP_TOP_DEFAULT 20

struct ma_hcensus_opts {
	int top;   /* rows per table (0: MA_HEAP_TOP_DEFAULT) */
	int depth; /* path steps shown at most (0: 12) */
};

/* live may be NULL (no copy to ask dict keys, items' positions and
 * namespaces of: "[?]" unless g->labels has them).  Consumes g->refcnt (freed, NULL after). */
int ma_heap_census(struct ma_heap_graph *g, const struct ma_hcensus_opts *o,
		   struct ma_heap_live *live, struct ma_heap_census *c);
void ma_heap_census_free(struct ma_heap_census *c);

/* Read /proc/PID/status and smaps into r */
int ma_heap_rss(pid_t pid, struct ma_hrss *r, const uint64_t *stack_sps,
		size_t nsps);

/* Text from the target (a dict key, an attribute, type, module or variable
 * name) as the census keeps it for its labels, tables and paths, into out
 * of len bytes: control characters written out (\x1b, \u009b, as
 * ma_escape_ctl), what is not UTF-8 as '?', cut at a character's
 * boundary.  A dict key "\x1b[2J" printed raw would clear the user's
 * terminal, and jansson refuses a string that is not UTF-8. */
void ma_heap_text(const char *in, char *out, size_t len);

/* A path as text, "__main__.frames -> list[3] -> Frame._mgr -> ndarray",
 * at most depth steps (the middle elided) */
void ma_heap_path_render(const struct ma_heap_graph *g,
			 const struct ma_hobj_report *r, int depth, char *out,
			 size_t len);

/* ------------------------------------------------------------------ */
/* Outputs (heap_report.c): the census as a document (a JSON tree, which is
 * also the snapshot file's content, docs/heap.md), rendered */

typedef struct json_t json_t;

json_t *ma_heap_doc(const struct ma_heap_graph *g,
		    const struct ma_heap_census *c);
/* format: text, json or html; top: rows per table, 0 = every row the
 * document has */
int ma_heap_render(FILE *f, const json_t *doc, const char *format, int top,
		   int depth);
int ma_heap_render_diff(FILE *f, const json_t *a, const json_t *b,
			const char *format, int top);
int ma_heap_snap_write(const char *path, const json_t *doc);
/* 1 when path holds a heap snapshot (by its first bytes) */
int ma_heap_snap_is(const char *path);
/* NULL with a message (exit code MA_EXIT_CAPTURE) when unreadable */
json_t *ma_heap_snap_read(const char *path);
/* memattach report on a snapshot (or two, with diff), into f: 0, or
 * -errno with a message (the caller handles f's write errors); two
 * snapshots of different programs (command line, Python version) are
 * refused unless force */
int ma_heap_report(FILE *f, const char *path, const char *diff,
		   const char *format, int top, bool force);

#endif
