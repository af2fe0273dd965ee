/* SPDX-License-Identifier: MIT */
/*
 * The live view of `memattach attach --live` (live.h).
 *
 * The model: one entry per Python line (the innermost frame's function,
 * file and line, as the summary's rows), its live bytes and blocks summed
 * from the accounting's nodes at each model frame, and its live bytes at
 * the last HIST frames, from which the growth rate comes.  A model frame
 * is taken when the accounting moved and about a second has passed: with
 * aggregated tracking the accounting moves once a second (track.c reads
 * the payload's sums then), so the frames follow those reads and the rates
 * divide by the time between them.
 */
#include "live.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#include "errors.h"
#include "textfit.h"
#include "track.h"
#include "units.h"

#define HIST	      11	    /* model frames kept: 10 s of growth */
#define FRAME_NS      900000000ull  /* a model frame at most this often */
#define FRAME_IDLE_NS 2000000000ull /* ... and at least, if nothing moved */
#define HEADER_ROWS   5		    /* three lines, a blank, the titles */
#define NO_THREAD     UINT32_MAX    /* a line of every thread */

/* Terminal control: alternate screen and cursor hidden, and back */
#define TERM_ENTER "\033[?1049h\033[?25l\033[H\033[2J"
#define TERM_LEAVE "\033[?25h\033[?1049l"

enum live_sort { SORT_LIVE, SORT_GROWTH, SORT_COUNT, SORT_N };

static const char *const sort_name[SORT_N] = {
	[SORT_LIVE] = "live bytes",
	[SORT_GROWTH] = "growth",
	[SORT_COUNT] = "blocks",
};

struct loc {
	const char *fn, *file; /* interned by the accounting: compared as
				  pointers */
	int line;
	uint32_t thread; /* thread index, or NO_THREAD: all threads */
	uint64_t live, count;
	int64_t rate;	     /* bytes per second over the frames kept */
	uint64_t hist[HIST]; /* live bytes at each frame kept */
};

struct ma_live {
	struct ma_live_opts o;
	int in_fd, own_in; /* keys; own_in: /dev/tty, ours to close */

	struct loc *locs;
	size_t nlocs, locs_cap;
	uint32_t *slots; /* loc index + 1, 0 = empty */
	size_t nslots;
	uint32_t *node_loc; /* node id -> loc index + 1, 0 = not yet known */
	size_t node_cap;

	/* the frames kept: time, total live bytes; head = the next slot */
	uint64_t ft[HIST], ftot[HIST];
	unsigned head, nframes;
	uint64_t moved; /* the accounting's figures at the last frame */
	int64_t total_rate;
	struct ma_account_totals tot; /* as of the last frame */
	struct ma_live_status st;

	uint32_t *top; /* the rows shown: loc indices, best first */
	size_t ntop, top_cap;

	int sort, paused, quit, rows, cols;
	/* t: rows by (thread, line), from the payload's keys; possible
	 * with aggregated tracking only (have_threads) */
	int by_thread, have_threads;
	const char *note; /* one line of the header, until the next key */
	const struct ma_account *acc; /* during a tick */
	int oom;
	uint64_t last_draw_ns;
	char *buf; /* the frame, written at once */
	size_t len, cap;

	/* -v: what the frames cost memattach */
	uint64_t frames, frame_ns, frame_max_ns;
	size_t max_nodes;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ */
/* The terminal, restorable from a signal handler */

static struct {
	int in_fd, out_fd;
	struct termios saved;
	int have_saved;
	volatile sig_atomic_t up, suspended;
} term = { .in_fd = -1, .out_fd = -1 };

static volatile sig_atomic_t winched;

/* the signals whose handlers the view replaces while it is up */
static const int fatal_sigs[] = { SIGQUIT, SIGILL, SIGABRT, SIGFPE,
				  SIGSEGV, SIGBUS, SIGSYS,  SIGXCPU };
static struct sigaction old_fatal[sizeof(fatal_sigs) / sizeof(int)];
static struct sigaction old_winch, old_tstp, old_cont;

static void write_all(int fd, const char *s, size_t n)
{
	while (n) {
		ssize_t w = write(fd, s, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

/* Async-signal-safe, both: write and tcsetattr only */
static void term_leave(void)
{
	if (!term.up)
		return;
	term.up = 0;
	write_all(term.out_fd, TERM_LEAVE, sizeof(TERM_LEAVE) - 1);
	if (term.have_saved)
		tcsetattr(term.in_fd, TCSANOW, &term.saved);
}

static void term_enter(void)
{
	if (term.have_saved) {
		struct termios raw = term.saved;

		/* keys one at a time, unechoed, reads that never wait;
		 * Ctrl-C still a SIGINT (the attach stops as it always
		 * does), Ctrl-Z disabled: a memattach suspended for more
		 * than a second ends the tracking (the payload's
		 * heartbeat), and Ctrl-S must not freeze the screen */
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_iflag &= ~(tcflag_t)(IXON | ICRNL);
		raw.c_cc[VMIN] = 0;
		raw.c_cc[VTIME] = 0;
		raw.c_cc[VSUSP] = _POSIX_VDISABLE;
		tcsetattr(term.in_fd, TCSANOW, &raw);
	}
	write_all(term.out_fd, TERM_ENTER, sizeof(TERM_ENTER) - 1);
	term.up = 1;
}

static void on_fatal(int sig)
{
	term_leave();
	/* the handler before ours (the default: die) once we return; a
	 * fault happens again, a raised signal is delivered then */
	for (size_t i = 0; i < sizeof(fatal_sigs) / sizeof(int); i++)
		if (fatal_sigs[i] == sig)
			sigaction(sig, &old_fatal[i], NULL);
	raise(sig);
}

static void on_winch(int sig)
{
	(void)sig;
	winched = 1;
}

/* SIGTSTP from kill(1) (the Ctrl-Z key is disabled): the shell's screen
 * back, then stop; SIGCONT takes the screen again */
static void on_tstp(int sig)
{
	int e = errno;

	(void)sig;
	term.suspended = term.up;
	term_leave();
	signal(SIGTSTP, SIG_DFL);
	raise(SIGTSTP); /* delivered when this returns: stopped there */
	errno = e;
}

static void on_cont(int sig)
{
	struct sigaction sa = { .sa_handler = on_tstp };
	int e = errno;

	(void)sig;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTSTP, &sa, NULL);
	if (term.suspended) {
		term.suspended = 0;
		term_enter();
		winched = 1;
	}
	errno = e;
}

static void handlers_install(void)
{
	struct sigaction sa = { .sa_handler = on_fatal };

	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(fatal_sigs) / sizeof(int); i++) {
		sigaction(fatal_sigs[i], NULL, &old_fatal[i]);
		if (old_fatal[i].sa_handler != SIG_IGN)
			sigaction(fatal_sigs[i], &sa, NULL);
	}
	sa.sa_handler = on_winch;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGWINCH, &sa, &old_winch);
	sa.sa_handler = on_tstp;
	sigaction(SIGTSTP, &sa, &old_tstp);
	sa.sa_handler = on_cont;
	sigaction(SIGCONT, &sa, &old_cont);
}

static void handlers_restore(void)
{
	for (size_t i = 0; i < sizeof(fatal_sigs) / sizeof(int); i++)
		sigaction(fatal_sigs[i], &old_fatal[i], NULL);
	sigaction(SIGWINCH, &old_winch, NULL);
	sigaction(SIGTSTP, &old_tstp, NULL);
	sigaction(SIGCONT, &old_cont, NULL);
}

/* exit() from anywhere while the view is up still gives the screen back */
static void at_exit(void)
{
	term_leave();
}

static void term_size(struct ma_live *lv)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row &&
	    ws.ws_col) {
		lv->rows = ws.ws_row;
		lv->cols = ws.ws_col;
	} else {
		lv->rows = 24;
		lv->cols = 80;
	}
}

int ma_live_start(const struct ma_live_opts *o, struct ma_live **out)
{
	static int atexit_done;
	struct ma_live *lv;

	*out = NULL;
	if (!isatty(STDOUT_FILENO))
		return ma_err(-ENOTTY, "--live: stdout is not a terminal");
	lv = calloc(1, sizeof(*lv));
	if (!lv)
		return ma_err(-ENOMEM, "--live: out of memory");
	lv->o = *o;
	lv->in_fd = -1;
	if (isatty(STDIN_FILENO)) {
		lv->in_fd = STDIN_FILENO;
	} else {
		/* keys from the terminal the view is on; none if there is
		 * no controlling one (q then cannot quit: Ctrl-C can) */
		lv->in_fd = open("/dev/tty", O_RDONLY | O_NOCTTY | O_CLOEXEC);
		lv->own_in = lv->in_fd >= 0;
	}
	term.in_fd = lv->in_fd;
	term.out_fd = STDOUT_FILENO;
	term.have_saved =
		lv->in_fd >= 0 && tcgetattr(lv->in_fd, &term.saved) == 0;
	if (!atexit_done)
		atexit_done = atexit(at_exit) == 0;
	term_size(lv);
	winched = 0;
	handlers_install();
	term_enter();
	*out = lv;
	return 0;
}

void ma_live_end(struct ma_live *lv)
{
	if (!lv)
		return;
	term_leave();
	handlers_restore();
	if (ma_cli_verbose && lv->frames)
		fprintf(stderr,
			"memattach: live view: %llu frames, %.2f ms each on "
			"average, %.2f ms the slowest; %zu stacks, %zu lines "
			"(by thread included)\n",
			(unsigned long long)lv->frames,
			(double)lv->frame_ns / 1e6 / (double)lv->frames,
			(double)lv->frame_max_ns / 1e6, lv->max_nodes,
			lv->nlocs);
	if (lv->own_in)
		close(lv->in_fd);
	term.in_fd = term.out_fd = -1;
	free(lv->locs);
	free(lv->slots);
	free(lv->node_loc);
	free(lv->top);
	free(lv->buf);
	free(lv);
}

/* ------------------------------------------------------------------ */
/* The model */

static uint64_t loc_hash(const char *fn, const char *file, int line,
			 uint32_t thread)
{
	uint64_t h = ((uintptr_t)fn ^ ((uintptr_t)file << 1)) *
		     0x9e3779b97f4a7c15ull;

	h = (h ^ (uint32_t)line) * 0xff51afd7ed558ccdull;
	return (h ^ thread) * 0x9e3779b97f4a7c15ull;
}

static int slots_grow(struct ma_live *lv)
{
	size_t n = lv->nslots ? lv->nslots * 2 : 1024;
	uint32_t *s = calloc(n, sizeof(*s));

	if (!s)
		return -ENOMEM;
	for (size_t i = 0; i < lv->nlocs; i++) {
		const struct loc *l = &lv->locs[i];
		size_t j =
			loc_hash(l->fn, l->file, l->line, l->thread) & (n - 1);

		while (s[j])
			j = (j + 1) & (n - 1);
		s[j] = (uint32_t)i + 1;
	}
	free(lv->slots);
	lv->slots = s;
	lv->nslots = n;
	return 0;
}

/* The index of a line's entry, made on first sight; <0 on ENOMEM */
static int64_t loc_get(struct ma_live *lv, const char *fn, const char *file,
		       int line, uint32_t thread)
{
	size_t j;

	if ((lv->nlocs + 1) * 2 > lv->nslots && slots_grow(lv))
		return -ENOMEM;
	for (j = loc_hash(fn, file, line, thread) & (lv->nslots - 1);
	     lv->slots[j]; j = (j + 1) & (lv->nslots - 1)) {
		const struct loc *l = &lv->locs[lv->slots[j] - 1];

		if (l->fn == fn && l->file == file && l->line == line &&
		    l->thread == thread)
			return lv->slots[j] - 1;
	}
	if (lv->nlocs == lv->locs_cap) {
		size_t cap = lv->locs_cap ? lv->locs_cap * 2 : 256;
		struct loc *p = realloc(lv->locs, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		lv->locs = p;
		lv->locs_cap = cap;
	}
	/* zero live bytes at every frame before: it had none then */
	lv->locs[lv->nlocs] = (struct loc){
		.fn = fn, .file = file, .line = line, .thread = thread
	};
	lv->slots[j] = (uint32_t)lv->nlocs + 1;
	return (int64_t)lv->nlocs++;
}

/* A node's line: looked up once, unless its code is not defined yet */
static int64_t node_line(struct ma_live *lv, const struct ma_account *acc,
			 uint32_t id)
{
	struct ma_frame f;
	int64_t idx;

	if (lv->node_loc[id])
		return lv->node_loc[id] - 1;
	if (!id || ma_account_node_frames(acc, id, &f, 1) < 1)
		f = (struct ma_frame){ .function = "<no Python frame>",
				       .file = "",
				       .line = -1,
				       .code = 1 };
	idx = loc_get(lv, f.function, f.file, f.line, NO_THREAD);
	if (idx >= 0 && f.code)
		lv->node_loc[id] = (uint32_t)idx + 1;
	return idx;
}

static int64_t rate_of(const struct ma_live *lv, const uint64_t *hist)
{
	unsigned cur = (lv->head + HIST - 1) % HIST;
	unsigned old = (lv->head + HIST - lv->nframes) % HIST;
	uint64_t dt = lv->ft[cur] - lv->ft[old];

	if (lv->nframes < 2 || !dt)
		return 0;
	return (int64_t)((double)(int64_t)(hist[cur] - hist[old]) * 1e9 /
			 (double)dt);
}

/* A (thread, stack) key's figures into its (thread, line) */
static void add_key(void *arg, uint32_t thread, uint32_t node, uint64_t bytes,
		    uint64_t count)
{
	struct ma_live *lv = arg;
	int64_t base, idx;

	/* a node beyond the accounting's: not in it yet, nothing to add */
	if (lv->oom || node >= lv->node_cap)
		return;
	base = node_line(lv, lv->acc, node);
	if (base < 0) {
		lv->oom = 1;
		return;
	}
	/* loc_get may move the entries: the base line's name first */
	const struct loc b = lv->locs[base];

	idx = loc_get(lv, b.fn, b.file, b.line, thread);
	if (idx < 0) {
		lv->oom = 1;
		return;
	}
	lv->locs[idx].live += bytes;
	lv->locs[idx].count += count;
}

/* Every node's live figures into its line (and with aggregated tracking
 * every key's into its thread's line), then the frame kept */
static int model_frame(struct ma_live *lv, const struct ma_account *acc,
		       const struct ma_live_status *st)
{
	size_t n = ma_account_node_ids(acc);
	unsigned cur = lv->head;

	if (n > lv->node_cap) {
		uint32_t *p = realloc(lv->node_loc, n * sizeof(*p));

		if (!p)
			return -ENOMEM;
		memset(p + lv->node_cap, 0, (n - lv->node_cap) * sizeof(*p));
		lv->node_loc = p;
		lv->node_cap = n;
	}
	for (size_t i = 0; i < lv->nlocs; i++)
		lv->locs[i].live = lv->locs[i].count = 0;
	for (size_t id = 0; id < n; id++) {
		struct ma_account_fig live;
		int64_t idx;

		ma_account_node_figs(acc, (uint32_t)id, &live, NULL, NULL);
		if (!live.bytes && !live.count && !lv->node_loc[id])
			continue; /* never held memory yet: no line needed */
		idx = node_line(lv, acc, (uint32_t)id);
		if (idx < 0)
			return -ENOMEM;
		lv->locs[idx].live += live.bytes;
		lv->locs[idx].count += live.count;
	}
	lv->oom = 0;
	lv->have_threads =
		st->tr && ma_track_each_key(st->tr, add_key, lv) == 0;
	if (lv->oom)
		return -ENOMEM;
	lv->tot = *ma_account_totals(acc);
	lv->st = *st;
	lv->ft[cur] = st->elapsed_ns;
	lv->ftot[cur] = lv->tot.live_bytes;
	lv->head = (cur + 1) % HIST;
	if (lv->nframes < HIST)
		lv->nframes++;
	for (size_t i = 0; i < lv->nlocs; i++) {
		struct loc *l = &lv->locs[i];

		l->hist[cur] = l->live;
		l->rate = rate_of(lv, l->hist);
	}
	lv->total_rate = rate_of(lv, lv->ftot);
	return 0;
}

/* ------------------------------------------------------------------ */
/* The rows: the best `rows` lines by a heap of that size */

static int64_t sort_key(const struct ma_live *lv, const struct loc *l)
{
	switch (lv->sort) {
	case SORT_GROWTH:
		return l->rate;
	case SORT_COUNT:
		return (int64_t)l->count;
	default:
		return (int64_t)l->live;
	}
}

/* a before b: the larger key, then more live bytes, then the older line */
static int better(const struct ma_live *lv, uint32_t a, uint32_t b)
{
	const struct loc *x = &lv->locs[a], *y = &lv->locs[b];
	int64_t kx = sort_key(lv, x), ky = sort_key(lv, y);

	if (kx != ky)
		return kx > ky;
	if (x->live != y->live)
		return x->live > y->live;
	return a < b;
}

/* top[0] is the worst of the rows kept (a min-heap by better()) */
static void sift_down(const struct ma_live *lv, uint32_t *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < n && better(lv, h[m], h[l]))
			m = l;
		if (r < n && better(lv, h[m], h[r]))
			m = r;
		if (m == i)
			return;
		uint32_t t = h[i];

		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

static void select_top(struct ma_live *lv, size_t want)
{
	uint32_t *h;
	size_t n = 0;

	if (want > lv->top_cap) {
		h = realloc(lv->top, want * sizeof(*h));
		if (!h) {
			lv->ntop = 0;
			return;
		}
		lv->top = h;
		lv->top_cap = want;
	}
	h = lv->top;
	for (size_t i = 0; i < lv->nlocs && want; i++) {
		const struct loc *l = &lv->locs[i];

		if ((!l->live && !l->count && !l->rate) ||
		    (l->thread != NO_THREAD) != lv->by_thread)
			continue;
		if (n < want) {
			/* sift up */
			size_t k = n++;

			h[k] = (uint32_t)i;
			while (k && better(lv, h[(k - 1) / 2], h[k])) {
				uint32_t t = h[k];

				h[k] = h[(k - 1) / 2];
				h[(k - 1) / 2] = t;
				k = (k - 1) / 2;
			}
		} else if (better(lv, (uint32_t)i, h[0])) {
			h[0] = (uint32_t)i;
			sift_down(lv, h, n, 0);
		}
	}
	/* the heap in order, best first: pop the worst to the end */
	for (size_t k = n; k > 1; k--) {
		uint32_t t = h[0];

		h[0] = h[k - 1];
		h[k - 1] = t;
		sift_down(lv, h, k - 1, 0);
	}
	lv->ntop = n;
}

/* ------------------------------------------------------------------ */
/* Drawing */

static void put(struct ma_live *lv, const char *s, size_t n)
{
	if (lv->len + n + 1 > lv->cap) {
		size_t cap = (lv->len + n + 1) * 2;
		char *p = realloc(lv->buf, cap);

		if (!p)
			return;
		lv->buf = p;
		lv->cap = cap;
	}
	memcpy(lv->buf + lv->len, s, n);
	lv->len += n;
}

/* One line of the screen, cut to its width (the escapes are not text) */
static void line(struct ma_live *lv, const char *pre, const char *post,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void line(struct ma_live *lv, const char *pre, const char *post,
		 const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if (n > (int)sizeof(tmp) - 1)
		n = (int)sizeof(tmp) - 1;
	if (n > lv->cols)
		n = lv->cols;
	put(lv, pre, strlen(pre));
	put(lv, tmp, (size_t)n);
	put(lv, post, strlen(post));
	put(lv, "\033[K\r\n", 5);
}

static void fmt_rate(int64_t r, char *buf, size_t len)
{
	char b[32];

	ma_fmt_bytes((uint64_t)(r < 0 ? -r : r), b, sizeof(b));
	snprintf(buf, len, "%s%s/s", r > 0 ? "+" : r < 0 ? "-" : "", b);
}

static void draw(struct ma_live *lv, uint64_t elapsed_ns)
{
	const struct ma_account_totals *t = &lv->tot;
	const struct ma_live_status *st = &lv->st;
	char a[32], b[32], c[32], d[32], left[48] = "", rss[48] = "",
					 est[64] = "";
	char warn[240] = "";
	int locw = lv->cols - 36;
	size_t want = lv->rows > HEADER_ROWS + 1
			      ? (size_t)(lv->rows - HEADER_ROWS - 1)
			      : 0;
	char *loc;

	lv->len = 0;
	put(lv, "\033[H", 3);
	if (lv->rows < HEADER_ROWS + 2) {
		/* no room for a row: one line that says so, rather than a
		 * header scrolled off and "(nothing live yet)" */
		ma_fmt_bytes(t->live_bytes, a, sizeof(a));
		ma_fmt_count(t->live_count, b, sizeof(b));
		line(lv, "", "",
		     "live %s in %s blocks; terminal too small (%d rows, %d "
		     "needed); q quits",
		     a, b, lv->rows, HEADER_ROWS + 2);
		lv->len -= 2; /* no "\r\n": it would scroll */
		put(lv, "\033[J", 3);
		write_all(STDOUT_FILENO, lv->buf, lv->len);
		return;
	}
	if (lv->o.duration_ns)
		snprintf(left, sizeof(left), ", %.0f s left",
			 elapsed_ns < lv->o.duration_ns
				 ? (double)(lv->o.duration_ns - elapsed_ns) /
					   1e9
				 : 0.0);
	if (t->last_rss) {
		ma_fmt_bytes(t->last_rss, a, sizeof(a));
		snprintf(rss, sizeof(rss), "  RSS %s", a);
	}
	/* sampled: every figure below is an estimate, as the summary says */
	if (lv->o.sample_mean) {
		ma_fmt_bytes(lv->o.sample_mean, a, sizeof(a));
		snprintf(est, sizeof(est), "  ESTIMATES (--sample %s)", a);
	}
	line(lv, "\033[1m", "\033[0m",
	     "memattach --live  PID %d  python %s  %.0f s%s%s%s%s",
	     (int)lv->o.pid, lv->o.py_version, (double)elapsed_ns / 1e9, left,
	     rss, est, lv->paused ? "  [PAUSED]" : "");

	ma_fmt_bytes(t->live_bytes, a, sizeof(a));
	ma_fmt_count(t->live_count, b, sizeof(b));
	ma_fmt_count(t->allocs, c, sizeof(c));
	ma_fmt_bytes(t->alloc_bytes, d, sizeof(d));
	{
		char r[40] = "";

		if (lv->nframes >= 2)
			fmt_rate(lv->total_rate, r, sizeof(r));
		line(lv, "", "",
		     "live %s%s%s%s in %s blocks;  %s allocations tracked "
		     "(%s)",
		     a, r[0] ? " (" : "", r, r[0] ? ")" : "", b, c, d);
	}
	if (st->lost_records) {
		ma_fmt_count(st->lost_records, a, sizeof(a));
		snprintf(warn, sizeof(warn), "LOST %s records (ring full)  ",
			 a);
	}
	if (st->dropped) {
		size_t k = strlen(warn);

		ma_fmt_count(st->dropped, a, sizeof(a));
		ma_fmt_bytes(st->dropped_bytes, b, sizeof(b));
		snprintf(warn + k, sizeof(warn) - k,
			 "DROPPED %s blocks (%s): live table full  ", a, b);
	}
	if (st->keys_full) {
		size_t k = strlen(warn);

		ma_fmt_count(st->keys_full, a, sizeof(a));
		snprintf(warn + k, sizeof(warn) - k,
			 "NO STACK for %s events: key table full  ", a);
	}
	line(lv, warn[0] ? "\033[1;31m" : "", "",
	     "%s%ssorted by %s%s;  q quit, s sort, t threads, p pause%s%s",
	     warn, warn[0] ? "\033[0m" : "", sort_name[lv->sort],
	     lv->by_thread ? ", by thread" : "", lv->note ? ";  " : "",
	     lv->note ? lv->note : "");
	line(lv, "", "", "%s", "");
	if (locw < 20)
		locw = 20;
	line(lv, "\033[7m", "\033[0m", "%10s %12s %9s  %-*s",
	     lv->sort == SORT_LIVE ? "*LIVE" : "LIVE",
	     lv->sort == SORT_GROWTH ? "*GROWTH/s" : "GROWTH/s",
	     lv->sort == SORT_COUNT ? "*BLOCKS" : "BLOCKS", locw,
	     "FUNCTION (FILE:LINE)");
	if (!lv->paused)
		select_top(lv, want);
	loc = malloc((size_t)locw + 1);
	for (size_t i = 0; loc && i < lv->ntop && i < want; i++) {
		const struct loc *l = &lv->locs[lv->top[i]];
		char r[40] = "-";

		ma_fmt_bytes(l->live, a, sizeof(a));
		ma_fmt_count(l->count, b, sizeof(b));
		char th[48] = "";
		int32_t tid;
		const char *name;
		int w;

		if (lv->nframes >= 2)
			fmt_rate(l->rate, r, sizeof(r));
		if (l->thread != NO_THREAD) {
			if (ma_account_thread(lv->acc, l->thread, &tid,
					      &name) == 0)
				snprintf(th, sizeof(th), "[%d %s] ", (int)tid,
					 name);
			else
				snprintf(th, sizeof(th), "[?] ");
		}
		w = locw - (int)strlen(th);
		ma_fit_location(l->fn, l->file, l->line, loc, w < 20 ? 20 : w);
		line(lv, "", "", "%10s %12s %9s  %s%s", a, r, b, th, loc);
	}
	if (!lv->ntop)
		line(lv, "", "", "%10s", "(nothing live yet)");
	free(loc);
	/* the last line's "\r\n" would scroll a full screen: end before */
	if (lv->len >= 2 && lv->buf[lv->len - 1] == '\n')
		lv->len -= 2;
	put(lv, "\033[J", 3);
	write_all(STDOUT_FILENO, lv->buf, lv->len);
}

static void read_keys(struct ma_live *lv)
{
	char k[64];
	ssize_t n;

	if (lv->in_fd < 0)
		return;
	while ((n = read(lv->in_fd, k, sizeof(k))) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			lv->note = NULL;
			if (k[i] == '\033')
				break; /* an arrow or function key: ignored */
			switch (k[i]) {
			case 'q':
			case 'Q':
				lv->quit = 1;
				break;
			case 's':
			case 'S':
				lv->sort = (lv->sort + 1) % SORT_N;
				lv->last_draw_ns = 0; /* redraw now */
				break;
			case 't':
			case 'T':
				if (lv->have_threads)
					lv->by_thread = !lv->by_thread;
				else
					lv->note = "by thread: only with "
						   "aggregated tracking";
				lv->last_draw_ns = 0;
				break;
			case 'p':
			case 'P':
			case ' ':
				lv->paused = !lv->paused;
				lv->last_draw_ns = 0;
				break;
			}
		}
	}
}

int ma_live_tick(struct ma_live *lv, const struct ma_account *acc,
		 const struct ma_live_status *st)
{
	const struct ma_account_totals *t = ma_account_totals(acc);
	uint64_t moved = t->allocs + t->frees + t->agg_events;
	uint64_t since =
		lv->nframes
			? st->elapsed_ns - lv->ft[(lv->head + HIST - 1) % HIST]
			: UINT64_MAX;
	int redraw = 0;

	lv->acc = acc;
	read_keys(lv);
	if (winched) {
		winched = 0;
		term_size(lv);
		redraw = 1;
	}
	/* paused: the model waits too, the rows stay as they were */
	uint64_t t0 = mono_ns(), dt;
	int model = 0;

	if (!lv->paused && (since >= FRAME_IDLE_NS ||
			    (since >= FRAME_NS && moved != lv->moved))) {
		lv->moved = moved;
		model_frame(lv, acc, st);
		model = redraw = 1;
	}
	if (!lv->last_draw_ns || st->elapsed_ns - lv->last_draw_ns >= FRAME_NS)
		redraw = 1;
	if (redraw && term.up) {
		draw(lv, st->elapsed_ns);
		lv->last_draw_ns = st->elapsed_ns ? st->elapsed_ns : 1;
	}
	if (model) {
		dt = mono_ns() - t0;
		lv->frames++;
		lv->frame_ns += dt;
		if (dt > lv->frame_max_ns)
			lv->frame_max_ns = dt;
		if (lv->node_cap > lv->max_nodes)
			lv->max_nodes = lv->node_cap;
	}
	return lv->quit;
}
