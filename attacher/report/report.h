/* SPDX-License-Identifier: MIT */
/*
 * memattach report: the model every output format renders.
 *
 * ma_report_load() streams a capture once (a reader thread decodes blocks
 * while the calling thread accounts, so the two halves overlap on two
 * cores) through the accounting (account.h: live, total, peak) and the
 * temporary-allocation tracker (report_temporary.c), then folds the
 * accounting's nodes into a canonical frame tree: nodes with the same
 * (parent, function, file, line) are one tree node, whatever bytecode
 * offset they came from.  Every format reads that tree and the rows
 * grouped from it, so they all agree.  Memory: the accounting's (live
 * blocks, nodes) plus a few words per tree node; never per event.
 */
#ifndef MA_REPORT_H
#define MA_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "account.h"
#include "capture.h"

/* The four views: what question the figures answer */
enum ma_rview {
	MA_RV_LIVE,  /* allocated while tracked, not freed at the end */
	MA_RV_PEAK,  /* live at the first moment tracked bytes were highest */
	MA_RV_TOTAL, /* everything allocated */
	MA_RV_TEMP,  /* freed by its thread within N further allocations */
	MA_RV_N,
};

#define MA_REPORT_MAX_THREADS 64   /* --thread options */
#define MA_REPORT_MAX_PIDS    64   /* --pid options */
#define MA_REPORT_MAX_DEPTH   4096 /* deeper chains (corrupt) restart */
#define MA_REPORT_DEF_WINDOW  1
#define MA_REPORT_MAX_WINDOW  (1u << 20)

struct ma_report_opts {
	enum ma_rview view;
	enum ma_account_view group;
	int top;	 /* rows shown; 0 = all */
	int callers;	 /* text: caller trees for this many top rows */
	int stack_depth; /* json: frames per row's stack, <= 0 all */
	uint32_t window; /* temporary: further allocations allowed */
	const char *threads[MA_REPORT_MAX_THREADS]; /* TID or name */
	int nthreads;
	const char *filter; /* substring of a frame's function or file */
	int width;	    /* text: 0 = terminal, $COLUMNS, or 100 */
	int color;	    /* text: -1 auto (terminal, no NO_COLOR), 0, 1 */
	bool thread_table;  /* --threads: text and csv list the threads */
	/* --pid: a capture of several processes (attach --children), only
	 * these processes' threads; --pids: text lists the processes */
	int32_t pids[MA_REPORT_MAX_PIDS];
	int npids;
	bool proc_table;
	/* --from, --to: a time range of the capture, ns since it started
	 * (to = 0: the end).  Events from the first sample at or past `to`
	 * on are not counted (figures as of that sample); allocations before
	 * the first sample at or past `from` are in no figure (their frees
	 * still find them).  Known to the samples, every 100 ms. */
	uint64_t from_ns, to_ns;
	/* called as the capture is read (first with 0 bytes read, then about
	 * every 64 k events, from the thread that called ma_report_load);
	 * NULL = never */
	void (*progress)(void *arg, uint64_t read, uint64_t size,
			 uint64_t events);
	void *progress_arg;
	/* figures per thread (ma_report.threads, .samples): each ALLOC is
	 * accounted under its (thread, stack) pair, which costs about a
	 * third more time; without it, every figure is thread 0's */
	bool by_thread;
	/* the HTML timeline (report_timeline.h): ma_report.spans; implies
	 * by_thread */
	bool timeline;
};

void ma_report_opts_init(struct ma_report_opts *o);

/* A node of the canonical frame tree; index 0 is the root (no frame) */
struct ma_rnode {
	uint32_t parent;
	uint32_t depth;		     /* root 0, outermost frames 1 */
	const char *function, *file; /* interned: equal strings, equal ptrs */
	int line, firstlineno;
	bool match;   /* --filter: some frame of this stack matches */
	uint32_t row; /* index + 1 of its row, 0 = none */
	/* allocations whose innermost frame is this node */
	struct ma_account_fig self[MA_RV_N];
};

/*
 * A thread of the capture: one per THREAD event, except that a slot the
 * payload defines again with the same tid and comm stays one thread.
 * Thread 0 stands for allocations of a thread the capture never defined.
 */
struct ma_rthread {
	uint32_t index; /* the capture's thread index; UINT32_MAX: thread 0 */
	int32_t tid;
	/* its threading.Thread name when the capture has one (TNAME), else
	 * the kernel's name (comm) */
	char *name;
	char comm[17];
	bool selected; /* --thread: its allocations are counted */
	int32_t pid;   /* its process (PROC events), 0: unknown */
	/* its figures in the matching stacks (--filter) */
	struct ma_account_fig fig[MA_RV_N];
};

/*
 * A process of a capture of several processes (PROC events, attach
 * --children), in the order the capture named them.  Its figures are the
 * sum of its threads' (opts.by_thread): in the peak view, each process's
 * figures at its own peak (docs/memattach.md, "Worker pools").
 */
struct ma_rproc {
	int32_t pid, ppid;
	uint32_t state; /* enum ma_proc_state: the last one seen */
	bool selected;	/* --pid (or no --pid) */
	uint32_t nthreads;
	struct ma_account_fig fig[MA_RV_N];
};

/* The figures of one thread in one stack (tree node): what pprof's
 * thread label and --threads are made of (opts.by_thread) */
struct ma_rsample {
	uint32_t node;	 /* tree node */
	uint32_t thread; /* index into ma_report.threads */
	struct ma_account_fig fig[MA_RV_N];
};

/*
 * Statistics (-f stats, and JSON's "stats"): every allocation of the
 * capture (after --thread), by size and by allocator, and the largest
 * single ones.  Collected by the reader as it goes: a few words, whatever
 * the capture's size.
 */
enum ma_ralloc {
	MA_RA_PYMALLOC, /* PyObject_Malloc & co (pymalloc, its arenas) */
	MA_RA_PYMEM,	/* PyMem_Malloc & co */
	MA_RA_RAW,	/* PyMem_RawMalloc & co */
	MA_RA_MALLOC,	/* malloc, calloc, realloc, aligned allocations */
	MA_RA_MMAP,	/* mmap */
	MA_RA_UNKNOWN,	/* an aggregated capture's key 0: events the payload
			   counted without their stack nor allocator (its key
			   table was full) */
	MA_RA_N,
};
#define MA_RSTATS_BUCKETS 48 /* bucket b: sizes in (2^(b-1), 2^b]; 0: 0-1 */
#define MA_RSTATS_BIG	  10 /* largest single allocations kept */

struct ma_rbig {
	uint64_t size;
	uint64_t index;	 /* event index in the capture */
	uint64_t t_ns;	 /* time of the last sample before it */
	uint32_t node;	 /* tree node (0: none) */
	uint32_t thread; /* index into ma_report.threads */
	enum ma_ralloc alloc;
	uint32_t capnode; /* the capture's node id (the model's business) */
};

struct ma_rstats {
	struct ma_account_fig hist[MA_RA_N][MA_RSTATS_BUCKETS];
	struct ma_account_fig by_alloc[MA_RA_N];
	struct ma_rbig big[MA_RSTATS_BIG]; /* largest first */
	size_t nbig;
};

const char *ma_ralloc_name(enum ma_ralloc a);
/* The bucket of a size: 0 for 0 and 1, else b with 2^(b-1) < size <= 2^b */
unsigned ma_rstats_bucket(uint64_t size);

/* A row: one group of the chosen grouping */
struct ma_rrow {
	const char *function; /* NULL when grouped by file */
	const char *file;
	int line;     /* line; firstlineno by function; 0 by file */
	uint32_t rep; /* tree node with the largest figure in the view */
	struct ma_account_fig fig[MA_RV_N];
};

/* Memory over time.  With samples: one point per sample (x = time);
 * without: one point every so many events (x = event index). */
struct ma_rpoint {
	uint64_t index, t_ns, rss;
	uint64_t live;	   /* accounted live bytes at the point */
	uint64_t live_max; /* highest live bytes since the previous point */
};

struct ma_rseries {
	struct ma_rpoint *p;
	size_t n, cap;
	uint64_t every; /* index series: events between points */
};

/* opts.timeline: bytes and blocks of one thread in one stack allocated
 * in bucket ab and freed in bucket fb (fb = tl_nbound: never); bucket k
 * runs from tl_bounds[k] to tl_bounds[k + 1] (ns since the start) */
struct ma_rspan {
	uint32_t node, thread, ab, fb;
	uint64_t bytes, count;
};

struct ma_report {
	const char *path;
	struct ma_report_opts opts;
	struct ma_capture_reader *rd;
	struct ma_account *acc;
	struct ma_temporary *temp;
	const struct ma_capture_meta *meta;
	const struct ma_capture_trailer *trailer; /* NULL: truncated */
	const char *warning; /* reader's note on a truncated file */
	struct ma_account_totals t;

	/* thread filter */
	bool thread_filtered;
	char thread_desc[256]; /* "4242, worker-1" as matched */
	uint32_t threads_selected;

	struct ma_rstats stats;

	/* --from/--to: the range asked for, and the samples' times that
	 * bound what was counted (range_end_ns 0: the capture's end) */
	bool ranged;
	uint64_t range_start_ns, range_end_ns;
	/* --from on an aggregated capture: the stacks' sums of a process
	 * whose round straddled the start count from this sample on (0:
	 * none did) */
	uint64_t range_agg_late_ns;
	/* --to on an aggregated capture: the stacks' sums come once a
	 * second (AGG rounds), so they are those of the last round before
	 * the cut, at about range_agg_end_ns (0: none came before it); the
	 * figures of every row and the header are as of then */
	bool range_agg_cut;
	uint64_t range_agg_end_ns;

	/* The peak.  peak_unknown: the capture cannot give it (--from on an
	 * aggregated capture, unless the peak came before the range); no
	 * figure is shown.  peak_moment_unknown: its figures are not those
	 * of the moment the capture names (the selected processes' own
	 * peaks); no time is shown.  peak_note: what the figures are, when
	 * not what the header's words say; NULL: nothing to add */
	bool peak_unknown, peak_moment_unknown;
	const char *peak_note;

	/* the threads, in the order the capture defined them (0: unknown),
	 * and each thread's figures per stack, by tree node */
	struct ma_rthread *threads;
	size_t nthreads;
	struct ma_rsample *samples;
	size_t nsamples;

	/* the processes (PROC events; none in a capture of one process) */
	struct ma_rproc *procs;
	size_t nprocs;
	bool pid_filtered;
	char pid_desc[256]; /* "4242, 4243" as matched */

	/* ids beyond what a payload can write (damage): see report_model.c */
	uint64_t bad_ids;

	/* frees of memory not allocated while tracked (the footnote) */
	uint64_t unknown_frees;
	bool unknown_from_trailer; /* thread filter: whole-capture figure */

	struct ma_rnode *nodes;
	size_t nnodes;
	struct ma_rrow *rows; /* sorted by the view, descending */
	size_t nrows;
	/* sums over matching tree nodes; and over all of them */
	struct ma_account_fig sum[MA_RV_N], all[MA_RV_N];

	struct ma_rseries by_time, by_index;

	/* opts.timeline: sorted by node, thread, ab, fb */
	uint64_t *tl_bounds; /* tl_nbound + 1 */
	size_t tl_nbound;
	struct ma_rspan *spans;
	size_t nspans;
	bool tl_approx; /* some mmap regions taken as never unmapped */
	/* false: a capture too big for spans by thread; their thread is
	 * UINT32_MAX (all threads) */
	bool tl_bythread;

	/* where the time went (memattach -v report): CPU of each thread of
	 * the streaming pass, wall time of the pass and of the tree */
	uint64_t cpu_read_ns, cpu_account_ns, cpu_temp_ns;
	uint64_t wall_stream_ns, wall_model_ns;
};

/*
 * Read a capture and build the model.  Errors: -errno with a message
 * (ma_errmsg), exit class MA_EXIT_CAPTURE for a missing, empty, damaged or
 * newer capture.  A truncated capture is not an error (rep->trailer is
 * NULL, rep->warning says what was lost).
 */
int ma_report_load(const char *path, const struct ma_report_opts *o,
		   struct ma_report **out);
void ma_report_free(struct ma_report *r);

/* Names */
const char *ma_rview_name(enum ma_rview v);
const char *ma_rview_desc(enum ma_rview v);
const char *ma_rgroup_name(enum ma_account_view g);
int ma_rview_parse(const char *s, enum ma_rview *v);
int ma_rgroup_parse(const char *s, enum ma_account_view *g);

/* The figure a row or node shows in view v (bytes) */
static inline uint64_t ma_rrow_bytes(const struct ma_rrow *r, enum ma_rview v)
{
	return r->fig[v].bytes;
}

/*
 * Frames of tree node n, innermost first, up to max; returns the depth.
 * For n = 0 (root) returns 0.
 */
int ma_report_stack(const struct ma_report *r, uint32_t n, uint32_t *out,
		    int max);

/* "function (file:line)", or "file" for an empty function; ';' and
 * control characters replaced (collapsed stacks and CSV rely on it) */
void ma_report_frame_name(const struct ma_rnode *n, char *buf, size_t len);

/*
 * The threads to list (--threads, JSON): every thread the capture defined
 * and thread 0 if it has figures, as indices into r->threads, sorted by
 * the view's bytes, then total bytes, then tid.  out holds r->nthreads;
 * returns how many.
 */
size_t ma_report_thread_order(const struct ma_report *r, uint32_t *out);

/* The processes sorted by the view's bytes, then pid, as indices into
 * r->procs; out holds r->nprocs; returns how many */
size_t ma_report_proc_order(const struct ma_report *r, uint32_t *out);

/* Rows shown: min(top, rows with a figure in the view) */
size_t ma_report_shown(const struct ma_report *r);

/* Peak moment as text: "at 12.3 s", "between 1.0 s and 2.0 s", "" */
void ma_report_peak_when(const struct ma_report *r, char *buf, size_t len);

/* The temporary window the figures are of: the one asked for, or for an
 * aggregated capture, whose distances are in buckets (common/ma_agg.h),
 * the largest window at most that whose buckets it counts whole (1000:
 * 511) */
uint32_t ma_report_window_counted(const struct ma_report *r);

/* Whether the capture can give view v: not the peak when peak_unknown,
 * not the temporary view of a sampled capture (a sampled block's distance
 * to its free is not known).  An unknown view's figures are 0 in the
 * model; the formats show "-", null or an empty field instead. */
bool ma_report_view_known(const struct ma_report *r, enum ma_rview v);

/* A sampled capture (`attach --sample`): the note every format shows,
 * "ESTIMATES: ..." in buf, and the mean bytes between samples; 0 (buf
 * "") for an exact capture */
uint64_t ma_report_estimates(const struct ma_report *r, char *buf, size_t len);

/*
 * The output formats.  Each is one file (report_<name>.c) and one row of
 * ma_report_formats[] (report_formats.c): all that `memattach report`
 * knows of a format is in its row.
 */
struct ma_report_format {
	const char *name; /* -f NAME */
	const char *ext;  /* its file name extension: FILE.cap -> FILE<ext> */
	/* false: never written to a terminal; asked for on one without -o,
	 * the report goes to FILE<ext> in the current directory */
	bool terminal;
	/* the output itself says a capture was cut short; for the other
	 * formats the warning goes to stderr too */
	bool shows_warning;
	/* it shows figures per thread (ma_report_opts.by_thread) */
	bool by_thread;
	/* it shows what was allocated when (ma_report_opts.timeline) */
	bool timeline;
	/* it shows the chosen view only: refused when the capture cannot
	 * give that view (ma_report_view_known) rather than all zeros */
	bool one_view;
	/* 0 or -errno with a message */
	int (*render)(const struct ma_report *r, FILE *f);
	/* --diff: what grew from capture a (before) to b (after); NULL: the
	 * format has no diff */
	int (*diff)(const struct ma_report *a, const struct ma_report *b,
		    FILE *f);
};

/* In the order the help lists them, the default first; ends with a row
 * whose name is NULL */
extern const struct ma_report_format ma_report_formats[];

/* The format named s, or NULL */
const struct ma_report_format *ma_report_format_find(const char *s);

/* The names of the formats keep() selects (NULL: all), in the table's
 * order, appended to the string in buf: "a, b, c", with last (" or ")
 * before the last one */
void ma_report_format_names(char *buf, size_t len,
			    bool (*keep)(const struct ma_report_format *),
			    const char *last);

/* Renderers (the rows' render) */
int ma_report_text(const struct ma_report *r, FILE *f);
int ma_report_json(const struct ma_report *r, FILE *f);
int ma_report_csv(const struct ma_report *r, FILE *f);
int ma_report_collapsed(const struct ma_report *r, FILE *f);
int ma_report_speedscope(const struct ma_report *r, FILE *f);
int ma_report_pprof(const struct ma_report *r, FILE *f);
int ma_report_html(const struct ma_report *r, FILE *f);
int ma_report_stats(const struct ma_report *r, FILE *f);

/*
 * --diff (report_diff.c, the rows' diff): what grew from capture a
 * (before) to capture b (after), rows matched by the grouping's key (full
 * stack: the frames' names); collapsed: per stack, the bytes it grew.
 */
int ma_report_diff_text(const struct ma_report *a, const struct ma_report *b,
			FILE *f);
int ma_report_diff_json(const struct ma_report *a, const struct ma_report *b,
			FILE *f);
int ma_report_diff_csv(const struct ma_report *a, const struct ma_report *b,
		       FILE *f);
int ma_report_diff_collapsed(const struct ma_report *a,
			     const struct ma_report *b, FILE *f);

/* ------------------------------------------------------------------ */
/* Temporary allocations (report_temporary.c) */

struct ma_temporary;

int ma_temporary_new(uint32_t window, struct ma_temporary **out);
void ma_temporary_free(struct ma_temporary *t);
/* ALLOC and FREE of the malloc family; other events ignored.  -ENOMEM. */
int ma_temporary_feed(struct ma_temporary *t, const struct ma_event *ev);
/* Figures of an accounting node id */
void ma_temporary_node(const struct ma_temporary *t, uint32_t node,
		       struct ma_account_fig *fig);
/* Sum over all nodes */
void ma_temporary_total(const struct ma_temporary *t,
			struct ma_account_fig *fig);

#endif
