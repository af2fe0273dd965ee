/* SPDX-License-Identifier: MIT */
/*
 * Capture file writer and reader.  The byte layout is documented in
 * docs/capture-format.md; keep both in step and bump MA_CAPTURE_VERSION for
 * any change a version-1 reader would misread.
 *
 * Inside a block, events are split into streams, one per field (operation
 * byte, thread changes, pointer references, pointer deltas, sizes, nodes,
 * everything else), so that zstd sees runs of alike values instead of
 * fields interleaved, and its entropy coder gets one table per field.
 * Both sides run the same small model (struct model) of the recent past,
 * so most pointers and sizes are coded as "seen N events ago" or "as last
 * time"; the model restarts with each block, which keeps blocks
 * independently decodable.
 */
#include "capture.h"
#include "ma_agg.h"
#include "ma_config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "errors.h"
#include "outpath.h"
#include "textfit.h"

#define FILE_MAGIC     "MEMATCAP"
#define BLOCK_MAGIC    "MABK"
#define FILE_HDR_FIXED 48
#define BLOCK_HDR_SIZE 36

enum block_type {
	BLOCK_EVENTS = 1,
	BLOCK_TRAILER = 2,
};

#define CODEC_ZSTD 1

/* Streams of an events block, in the order they are stored */
enum {
	S_OP,	  /* one byte per event */
	S_THREAD, /* thread index, when it differs from the previous event's */
	S_AREF, /* ALLOC pointer: distance back in the FREE history, 0 = miss */
	S_FREF, /* FREE pointer: distance back in the ALLOC history, 0 = miss */
	S_ADELTA, /* ALLOC pointer on a miss: delta to the previous miss */
	S_FDELTA, /* FREE pointer on a miss: delta to the previous miss */
	S_SIZE,	  /* sizes of ALLOC (unless predicted) and of sized FREE */
	S_NODE,	  /* node of ALLOC */
	S_MISC,	  /* definitions, samples, stats, rare escapes */
	S_COUNT
};

/* Operation byte: bits 0-2 opcode, bits 3-6 kind, bit 7 thread changed */
enum {
	OP_ALLOC = 0,
	OP_ALLOC_SAME = 1, /* size: the last size of the same node */
	OP_FREE = 2,	   /* size 0 */
	OP_FREE_SIZED = 3,
	OP_DEF = 4, /* anything else: subtype in S_MISC */
};

enum {
	DEF_THREAD = 1,
	DEF_CODE = 2,
	DEF_NODE = 3,
	DEF_FORK = 4,
	DEF_SAMPLE = 5,
	DEF_STATS = 6,
	DEF_AGG = 7,	 /* format version 2 */
	DEF_AGGTEMP = 8, /* format version 2 */
	DEF_PEAK = 9,	 /* format version 2 */
	DEF_AGGEND = 10, /* format version 2 */
	DEF_PROC = 11,	 /* format version 3 */
	DEF_TNAME = 12,	 /* format version 3 */
};

#define OP_KIND_SHIFT  3
#define OP_KIND_ESCAPE 15 /* kind >= 15: the kind byte follows in S_MISC */
#define OP_THREAD_BIT  0x80

/*
 * Pointer history.  A FREE usually names a block allocated shortly before,
 * and an allocator hands out again the block it was given back last for
 * the same size class (glibc tcache, pymalloc pools: LIFO free lists), so
 * most pointers were seen a few events ago.  Both sides keep the last
 * PTR_WIN pointers of ALLOC events and of FREE events; a FREE is coded as
 * its distance back in the ALLOC history and an ALLOC as its distance back
 * in the FREE history (1 = the latest), or 0 and a delta to the previous
 * miss of its kind (fresh memory tends to come in ascending runs).
 */
#define PTR_WIN_BITS 16
#define PTR_WIN	     (1u << PTR_WIN_BITS)
enum { H_ALLOC, H_FREE };

/* Size prediction: the last size allocated at each node, in a
 * direct-mapped table (a collision only costs a missed prediction) */
#define SIZE_BITS 12

/* Flush a block at this many raw bytes or events */
#define BLOCK_RAW_TARGET (1u << 20)
#define BLOCK_EVENTS_MAX (1u << 20)

#define ZSTD_LEVEL 3 /* measured: best size per CPU time (capture-format.md) */

/* ------------------------------------------------------------------ */
/* CRC-32 (IEEE 802.3, reflected, as zlib and PNG compute it) */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc32_update(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	pthread_once(&crc_once, crc_init);
	crc = ~crc;
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ------------------------------------------------------------------ */
/* Little-endian fields and varints */

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static inline uint64_t zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t unzigzag(uint64_t v)
{
	return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static int buf_reserve(struct buf *b, size_t more)
{
	size_t cap;
	uint8_t *p;

	if (b->len + more <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

/* Callers reserve first: a varint takes at most 10 bytes */
static inline void put_varint(struct buf *b, uint64_t v)
{
	uint8_t *p = b->p + b->len;

	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	b->len = (size_t)(p - b->p);
}

static inline void put_byte(struct buf *b, uint8_t v)
{
	b->p[b->len++] = v;
}

static void put_bytes(struct buf *b, const void *src, size_t n)
{
	if (n)
		memcpy(b->p + b->len, src, n);
	b->len += n;
}

/* A cursor over a stream read back; any overrun marks it bad, and the block
 * is rejected as a whole */
struct cur {
	const uint8_t *p, *end;
	bool bad;
};

static inline uint64_t get_varint(struct cur *c)
{
	uint64_t v = 0;

	for (int shift = 0; shift < 64; shift += 7) {
		uint8_t b;

		if (c->p >= c->end) {
			c->bad = true;
			return 0;
		}
		b = *c->p++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return v;
	}
	c->bad = true; /* more than 10 bytes */
	return 0;
}

static inline uint8_t get_byte(struct cur *c)
{
	if (c->p >= c->end) {
		c->bad = true;
		return 0;
	}
	return *c->p++;
}

static const uint8_t *get_bytes(struct cur *c, uint64_t n)
{
	const uint8_t *p = c->p;

	if (n > (uint64_t)(c->end - c->p)) {
		c->bad = true;
		return NULL;
	}
	c->p += n;
	return p;
}

/* ------------------------------------------------------------------ */
/* ------------------------------------------------------------------ */
/* The model shared by writer and reader */

struct size_ent {
	uint64_t gen; /* block generation that wrote it */
	uint64_t size;
	uint32_t node;
};

struct model {
	uint64_t gen; /* incremented at each block start */
	uint32_t prev_thread;
	uint64_t prev_miss[2];
	uint64_t *ring[2]; /* last PTR_WIN pointers of each history */
	uint64_t count[2]; /* pointers pushed (reader: in this block) */
	struct size_ent *sizes;
};

static int model_init(struct model *m)
{
	m->ring[0] = calloc(PTR_WIN, sizeof(uint64_t));
	m->ring[1] = calloc(PTR_WIN, sizeof(uint64_t));
	m->sizes = calloc((size_t)1 << SIZE_BITS, sizeof(*m->sizes));
	return m->ring[0] && m->ring[1] && m->sizes ? 0 : -ENOMEM;
}

static void model_free(struct model *m)
{
	free(m->ring[0]);
	free(m->ring[1]);
	free(m->sizes);
}

static void model_block_start(struct model *m)
{
	m->gen++;
	m->prev_thread = 0;
	m->prev_miss[0] = m->prev_miss[1] = 0;
}

static inline void model_push(struct model *m, int h, uint64_t ptr)
{
	m->ring[h][m->count[h]++ & (PTR_WIN - 1)] = ptr;
}

static inline struct size_ent *model_size(struct model *m, uint32_t node)
{
	return &m->sizes[(node * 0x9e3779b9u) >> (32 - SIZE_BITS)];
}

/* The size predicted for node; false when there is none */
static inline bool model_predict(struct model *m, uint32_t node, uint64_t *size)
{
	struct size_ent *e = model_size(m, node);

	if (e->gen != m->gen || e->node != node)
		return false;
	*size = e->size;
	return true;
}

static inline void model_learn(struct model *m, uint32_t node, uint64_t size)
{
	struct size_ent *e = model_size(m, node);

	e->gen = m->gen;
	e->node = node;
	e->size = size;
}

/* ------------------------------------------------------------------ */
/* Writer */

struct ma_capture_writer {
	int fd;
	char *path;
	char *tmp; /* its name until published (ma_capture_publish); NULL */
	int error; /* sticky */
	uint64_t bytes; /* written to the file */

	/* counters for the trailer */
	uint64_t events, allocs, frees, samples, blocks;

	/* the open block */
	struct buf s[S_COUNT];
	uint64_t block_first; /* index of its first event */
	uint32_t block_events;
	uint64_t block_t_ns; /* sample time when the block was opened */
	bool block_timed;

	/* The model; its history counts are global (never reset), so a
	 * position from an older block is told apart by start[] */
	struct model m;
	uint64_t *pos[2]; /* pointer -> position + 1 in m.ring, direct-mapped */
	uint64_t start[2]; /* m.count[] when the block began */

	ZSTD_CCtx *cctx;
	struct buf out; /* block header + compressed payload */
};

static int wr_err(struct ma_capture_writer *w, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Record the writer's (sticky) error, "capture PATH: ..." */
static int wr_err(struct ma_capture_writer *w, int err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ma_err_set_exit(MA_EXIT_CAPTURE);
	w->error = ma_err(err, "capture %s: %s", w->path, msg);
	return w->error;
}

static int write_all(struct ma_capture_writer *w, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n) {
		ssize_t k = write(w->fd, b, n);

		if (k < 0) {
			int e = errno;

			if (e == EINTR)
				continue;
			return wr_err(w, -e, "write: %s", strerror(e));
		}
		b += k;
		n -= (size_t)k;
		w->bytes += (uint64_t)k;
	}
	return 0;
}

static size_t clamp_len(const char *s, size_t max)
{
	return s ? strnlen(s, max) : 0;
}

static int write_header(struct ma_capture_writer *w,
			const struct ma_capture_meta *m)
{
	size_t vl = clamp_len(m->py_version, MA_CAPTURE_MAX_PYVER);
	size_t el = clamp_len(m->exe, MA_CAPTURE_MAX_EXE);
	size_t cl = clamp_len(m->cmdline, MA_CAPTURE_MAX_CMDLINE);
	size_t total = FILE_HDR_FIXED + vl + el + cl + 4;
	uint8_t *h = calloc(1, total);
	int ret;

	if (!h)
		return wr_err(w, -ENOMEM, "out of memory");
	memcpy(h, FILE_MAGIC, 8);
	put_le(h + 8, MA_CAPTURE_VERSION, 4);
	put_le(h + 12, total, 4);
	put_le(h + 16, (uint32_t)m->pid, 4);
	put_le(h + 20, m->py_version_hex, 4);
	put_le(h + 24, m->flags, 4);
	/* reserved (0) before sampled captures: older readers ignore it */
	put_le(h + 28, m->flags & MA_TRACK_SAMPLE ? m->sample_mean : 0, 4);
	put_le(h + 32, m->start_wall_ns, 8);
	put_le(h + 40, vl, 2);
	put_le(h + 42, el, 2);
	put_le(h + 44, cl, 4);
	if (vl)
		memcpy(h + 48, m->py_version, vl);
	if (el)
		memcpy(h + 48 + vl, m->exe, el);
	if (cl)
		memcpy(h + 48 + vl + el, m->cmdline, cl);
	put_le(h + total - 4, crc32_update(0, h, total - 4), 4);
	ret = write_all(w, h, total);
	free(h);
	return ret;
}

static void writer_free(struct ma_capture_writer *w)
{
	for (int i = 0; i < S_COUNT; i++)
		free(w->s[i].p);
	free(w->out.p);
	model_free(&w->m);
	free(w->pos[0]);
	free(w->pos[1]);
	ZSTD_freeCCtx(w->cctx);
	/* never published: what it holds never reaches the path */
	if (w->tmp)
		unlink(w->tmp);
	free(w->tmp);
	free(w->path);
	free(w);
}

/*
 * Open a new file for w->path that belongs to us (the effective user),
 * mode 0600, and was reached through no symlink: root writing a capture
 * into /tmp must not write through a link another user planted there.
 * The file is created exclusively (O_EXCL: neither an existing file nor a
 * symlink is opened) under a temporary name beside the path, which the
 * caller renames over the path once the header is in (rename replaces a
 * directory entry and never follows a link).  What is at the path already
 * is checked first so that a clear message beats a surprise: a symlink or
 * anything but a regular file is refused (ma_outpath_check).  *tmp: the
 * temporary name.
 */
static int create_private(struct ma_capture_writer *w, char **tmp)
{
	const char *path = w->path, *base = strrchr(path, '/'), *why;
	size_t dirlen = base ? (size_t)(base - path) + 1 : 0;
	int err;

	*tmp = NULL;
	err = ma_outpath_check(path, &why);
	if (err)
		return wr_err(w, err, "create: %s", why);
	base = base ? base + 1 : path;
	if (asprintf(tmp, "%.*s.%s.XXXXXX", (int)dirlen, path, base) < 0) {
		*tmp = NULL;
		return wr_err(w, -ENOMEM, "out of memory");
	}
	/* mkostemp: O_CREAT | O_EXCL, mode 0600 */
	w->fd = mkostemp(*tmp, O_CLOEXEC);
	if (w->fd < 0) {
		int e = errno;

		free(*tmp);
		*tmp = NULL;
		return wr_err(w, -e, "create: %s", strerror(e));
	}
	return 0;
}

int ma_capture_publish(struct ma_capture_writer *w)
{
	if (!w->tmp)
		return 0;
	if (rename(w->tmp, w->path)) {
		int e = errno;

		return wr_err(w, -e, "create: rename from %s: %s", w->tmp,
			      strerror(e));
	}
	free(w->tmp);
	w->tmp = NULL;
	return 0;
}

int ma_capture_create(const char *path, const struct ma_capture_meta *meta,
		      struct ma_capture_writer **out)
{
	int err = ma_capture_begin(path, meta, out);

	if (!err && (err = ma_capture_publish(*out)) < 0) {
		ma_capture_abort(*out);
		*out = NULL;
	}
	return err;
}

int ma_capture_begin(const char *path, const struct ma_capture_meta *meta,
		     struct ma_capture_writer **out)
{
	struct ma_capture_writer *w;
	char *tmp = NULL;
	int ret;

	*out = NULL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return ma_err(-ENOMEM, "capture %s: out of memory", path);
	w->fd = -1;
	w->path = strdup(path);
	w->cctx = ZSTD_createCCtx();
	w->pos[0] = calloc(PTR_WIN, sizeof(uint64_t));
	w->pos[1] = calloc(PTR_WIN, sizeof(uint64_t));
	if (!w->path || !w->cctx || !w->pos[0] || !w->pos[1] ||
	    model_init(&w->m) < 0) {
		ret = ma_err(-ENOMEM, "capture %s: out of memory", path);
		goto fail;
	}
	model_block_start(&w->m);
	if (ZSTD_isError(ZSTD_CCtx_setParameter(
		    w->cctx, ZSTD_c_compressionLevel, ZSTD_LEVEL)) ||
	    ZSTD_isError(
		    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1))) {
		ret = wr_err(w, -EINVAL, "zstd refuses its parameters");
		goto fail;
	}
	ret = create_private(w, &tmp);
	if (ret < 0)
		goto fail;
	ret = write_header(w, meta);
	if (ret < 0)
		goto fail;
	w->tmp = tmp;
	*out = w;
	return 0;
fail:
	if (w->fd >= 0)
		close(w->fd);
	if (tmp)
		unlink(tmp);
	free(tmp);
	writer_free(w);
	return ret;
}

/* Compress the parts as one zstd frame and append the block to the file */
static int write_block(struct ma_capture_writer *w, int type,
		       const struct buf *parts, int nparts, uint32_t nevents,
		       uint64_t first)
{
	size_t raw = 0, bound, r;
	ZSTD_outBuffer ob;
	uint8_t *h;

	for (int i = 0; i < nparts; i++)
		raw += parts[i].len;
	if (raw > MA_CAPTURE_MAX_RAW)
		return wr_err(w, -EFBIG,
			      "block of %zu bytes exceeds the format's limit",
			      raw);
	bound = ZSTD_compressBound(raw);
	w->out.len = 0;
	if (buf_reserve(&w->out, BLOCK_HDR_SIZE + bound) < 0)
		return wr_err(w, -ENOMEM, "out of memory");
	ZSTD_CCtx_reset(w->cctx, ZSTD_reset_session_only);
	ZSTD_CCtx_setPledgedSrcSize(w->cctx, raw);
	ob.dst = w->out.p + BLOCK_HDR_SIZE;
	ob.size = bound;
	ob.pos = 0;
	for (int i = 0; i < nparts; i++) {
		ZSTD_inBuffer ib = { parts[i].p, parts[i].len, 0 };

		while (ib.pos < ib.size) {
			r = ZSTD_compressStream2(w->cctx, &ob, &ib,
						 ZSTD_e_continue);
			if (ZSTD_isError(r))
				goto zerr;
		}
	}
	do {
		ZSTD_inBuffer ib = { NULL, 0, 0 };

		r = ZSTD_compressStream2(w->cctx, &ob, &ib, ZSTD_e_end);
		if (ZSTD_isError(r))
			goto zerr;
	} while (r);

	h = w->out.p;
	memcpy(h, BLOCK_MAGIC, 4);
	h[4] = (uint8_t)type;
	h[5] = CODEC_ZSTD;
	put_le(h + 6, 0, 2);
	put_le(h + 8, ob.pos, 4);
	put_le(h + 12, raw, 4);
	put_le(h + 16, first, 8);
	put_le(h + 24, nevents, 4);
	put_le(h + 28, crc32_update(0, h + BLOCK_HDR_SIZE, ob.pos), 4);
	put_le(h + 32, crc32_update(0, h, 32), 4);
	w->blocks++;
	return write_all(w, h, BLOCK_HDR_SIZE + ob.pos);
zerr:
	return wr_err(w, -EIO, "zstd: %s", ZSTD_getErrorName(r));
}

int ma_capture_flush(struct ma_capture_writer *w)
{
	struct buf parts[1 + S_COUNT];
	uint8_t dir[1 + 10 * S_COUNT];
	struct buf d = { dir, 0, sizeof(dir) };
	int ret;

	if (w->error)
		return w->error;
	if (!w->block_events)
		return 0;
	/* The block starts with its stream directory: count, then lengths */
	put_varint(&d, S_COUNT);
	for (int i = 0; i < S_COUNT; i++)
		put_varint(&d, w->s[i].len);
	parts[0] = d;
	for (int i = 0; i < S_COUNT; i++)
		parts[1 + i] = w->s[i];
	ret = write_block(w, BLOCK_EVENTS, parts, 1 + S_COUNT, w->block_events,
			  w->block_first);
	if (ret < 0)
		return ret;
	for (int i = 0; i < S_COUNT; i++)
		w->s[i].len = 0;
	w->block_first = w->events;
	w->block_events = 0;
	w->block_timed = false;
	model_block_start(&w->m);
	w->start[0] = w->m.count[0];
	w->start[1] = w->m.count[1];
	return 0;
}

static size_t raw_len(const struct ma_capture_writer *w)
{
	size_t n = 0;

	for (int i = 0; i < S_COUNT; i++)
		n += w->s[i].len;
	return n;
}

/* Room for the fixed-size part of any event in every stream */
#define EVENT_ROOM 80

static int reserve_all(struct ma_capture_writer *w, size_t misc_extra)
{
	for (int i = 0; i < S_COUNT; i++)
		if (buf_reserve(&w->s[i], EVENT_ROOM + (i == S_MISC ? misc_extra
								    : 0)) < 0)
			return wr_err(w, -ENOMEM, "out of memory");
	return 0;
}

static void put_op(struct ma_capture_writer *w, int opcode, unsigned kind,
		   uint32_t thread)
{
	uint8_t op = (uint8_t)opcode;

	op |= (uint8_t)((kind < OP_KIND_ESCAPE ? kind : OP_KIND_ESCAPE)
			<< OP_KIND_SHIFT);
	if (thread != w->m.prev_thread) {
		op |= OP_THREAD_BIT;
		put_varint(&w->s[S_THREAD], thread);
		w->m.prev_thread = thread;
	}
	put_byte(&w->s[S_OP], op);
	if (kind >= OP_KIND_ESCAPE)
		put_byte(&w->s[S_MISC], (uint8_t)kind);
}

static inline size_t ptr_hash(uint64_t ptr)
{
	return (size_t)((ptr * 0x9e3779b97f4a7c15ull) >> (64 - PTR_WIN_BITS));
}

/* Code ptr against history `look`, then push it on history `into` */
static void put_ptr(struct ma_capture_writer *w, uint64_t ptr, int look,
		    int into)
{
	struct model *m = &w->m;
	uint64_t p = w->pos[look][ptr_hash(ptr)];
	uint64_t d = 0;
	int ref = into == H_ALLOC ? S_AREF : S_FREF;

	if (p) {
		uint64_t at = p - 1;

		if (at >= w->start[look] && m->count[look] - at <= PTR_WIN &&
		    m->ring[look][at & (PTR_WIN - 1)] == ptr)
			d = m->count[look] - at;
	}
	put_varint(&w->s[ref], d);
	if (!d) {
		put_varint(&w->s[ref + 2],
			   zigzag((int64_t)(ptr - m->prev_miss[into])));
		m->prev_miss[into] = ptr;
	}
	w->pos[into][ptr_hash(ptr)] = m->count[into] + 1;
	model_push(m, into, ptr);
}

static void put_def(struct ma_capture_writer *w, int def, uint32_t thread)
{
	put_op(w, OP_DEF, 0, thread);
	put_varint(&w->s[S_MISC], (uint64_t)def);
}

int ma_capture_write_event(struct ma_capture_writer *w,
			   const struct ma_event *ev)
{
	struct buf *m = &w->s[S_MISC];
	size_t extra = 0;
	uint64_t pred;
	int ret;

	if (w->error)
		return w->error;
	if (ev->type == MA_EV_CODE)
		extra = (size_t)ev->code.name_len + ev->code.file_len +
			ev->code.linetable_len;
	if (ev->type == MA_EV_TNAME)
		extra = ev->tname.len;
	ret = reserve_all(w, extra);
	if (ret < 0)
		return ret;

	switch (ev->type) {
	case MA_EV_ALLOC:
		if (model_predict(&w->m, ev->alloc.node, &pred) &&
		    pred == ev->alloc.size) {
			put_op(w, OP_ALLOC_SAME, ev->alloc.kind, ev->thread);
		} else {
			put_op(w, OP_ALLOC, ev->alloc.kind, ev->thread);
			put_varint(&w->s[S_SIZE], ev->alloc.size);
			model_learn(&w->m, ev->alloc.node, ev->alloc.size);
		}
		put_ptr(w, ev->alloc.ptr, H_FREE, H_ALLOC);
		put_varint(&w->s[S_NODE], ev->alloc.node);
		w->allocs++;
		break;
	case MA_EV_FREE:
		put_op(w, ev->free.size ? OP_FREE_SIZED : OP_FREE,
		       ev->free.kind, ev->thread);
		put_ptr(w, ev->free.ptr, H_ALLOC, H_FREE);
		if (ev->free.size)
			put_varint(&w->s[S_SIZE], ev->free.size);
		w->frees++;
		break;
	case MA_EV_THREAD: {
		size_t nl = strnlen(ev->thr.name, 16);

		put_def(w, DEF_THREAD, ev->thread);
		put_varint(m, zigzag(ev->thr.tid));
		put_varint(m, ev->thr.pthread);
		put_varint(m, nl);
		put_bytes(m, ev->thr.name, nl);
		break;
	}
	case MA_EV_TNAME:
		if (ev->tname.len > MA_EV_TNAME_MAX)
			return ma_err(-EINVAL, "capture: thread name too long");
		put_def(w, DEF_TNAME, ev->thread);
		put_varint(m, ev->tname.len);
		put_bytes(m, ev->tname.name, ev->tname.len);
		break;
	case MA_EV_CODE:
		put_def(w, DEF_CODE, ev->thread);
		put_varint(m, ev->code.id);
		put_varint(m, zigzag(ev->code.firstlineno));
		put_varint(m, ev->code.version_hex);
		put_varint(m, ev->code.name_len);
		put_varint(m, ev->code.file_len);
		put_varint(m, ev->code.linetable_len);
		put_bytes(m, ev->code.name, ev->code.name_len);
		put_bytes(m, ev->code.file, ev->code.file_len);
		put_bytes(m, ev->code.linetable, ev->code.linetable_len);
		break;
	case MA_EV_NODE:
		put_def(w, DEF_NODE, ev->thread);
		put_varint(m, ev->node.id);
		put_varint(m, ev->node.parent);
		put_varint(m, ev->node.code);
		put_varint(m, zigzag(ev->node.addr));
		break;
	case MA_EV_FORK:
		put_def(w, DEF_FORK, ev->thread);
		put_varint(m, zigzag(ev->fork.child_pid));
		break;
	case MA_EV_SAMPLE:
		put_def(w, DEF_SAMPLE, ev->thread);
		put_varint(m, ev->sample.t_ns);
		put_varint(m, ev->sample.rss);
		put_varint(m, ev->sample.live);
		w->samples++;
		break;
	case MA_EV_STATS:
		put_def(w, DEF_STATS, ev->thread);
		put_varint(m, ev->stats.allocs);
		put_varint(m, ev->stats.frees);
		put_varint(m, ev->stats.lost_records);
		put_varint(m, ev->stats.lost_bytes);
		put_varint(m, ev->stats.stack_truncated);
		put_varint(m, ev->stats.node_table_full);
		break;
	case MA_EV_AGG:
		put_def(w, DEF_AGG, ev->thread);
		put_varint(m, ev->agg.node);
		put_varint(m, ev->agg.kind);
		put_varint(m, ev->agg.allocs);
		put_varint(m, ev->agg.alloc_bytes);
		put_varint(m, ev->agg.frees);
		put_varint(m, ev->agg.free_bytes);
		break;
	case MA_EV_AGGTEMP:
		put_def(w, DEF_AGGTEMP, ev->thread);
		put_varint(m, ev->aggtemp.node);
		put_varint(m, ev->aggtemp.kind);
		put_varint(m, ev->aggtemp.dist);
		put_varint(m, ev->aggtemp.count);
		put_varint(m, ev->aggtemp.bytes);
		break;
	case MA_EV_PEAK:
		put_def(w, DEF_PEAK, ev->thread);
		put_varint(m, ev->peak.node);
		put_varint(m, ev->peak.kind);
		put_varint(m, ev->peak.bytes);
		put_varint(m, ev->peak.count);
		break;
	case MA_EV_AGGEND:
		put_def(w, DEF_AGGEND, ev->thread);
		put_varint(m, ev->aggend.peak_bytes);
		put_varint(m, ev->aggend.peak_count);
		put_varint(m, ev->aggend.peak_after_ns);
		put_varint(m, ev->aggend.peak_before_ns);
		put_varint(m, ev->aggend.dropped);
		put_varint(m, ev->aggend.dropped_bytes);
		put_varint(m, ev->aggend.keys_full);
		put_varint(m, ev->aggend.unknown_frees);
		break;
	case MA_EV_PROC:
		put_def(w, DEF_PROC, ev->thread);
		put_varint(m, zigzag(ev->proc.pid));
		put_varint(m, zigzag(ev->proc.ppid));
		put_varint(m, ev->proc.state);
		break;
	default:
		return ma_err(-EINVAL, "capture: cannot write event type %u",
			      ev->type);
	}
	w->events++;
	w->block_events++;
	if (w->block_events >= BLOCK_EVENTS_MAX ||
	    raw_len(w) >= BLOCK_RAW_TARGET)
		return ma_capture_flush(w);
	return 0;
}

int ma_capture_write(struct ma_capture_writer *w, const struct ma_rec *rec)
{
	struct ma_event ev;
	int ret;

	if (w->error)
		return w->error;
	ret = ma_event_from_rec(rec, &ev);
	if (ret <= 0)
		return ret;
	return ma_capture_write_event(w, &ev);
}

int ma_capture_sample(struct ma_capture_writer *w, uint64_t t_ns, uint64_t rss,
		      uint64_t live)
{
	struct ma_event ev = { .type = MA_EV_SAMPLE };
	int ret;

	ev.sample.t_ns = t_ns;
	ev.sample.rss = rss;
	ev.sample.live = live;
	ret = ma_capture_write_event(w, &ev);
	if (ret < 0)
		return ret;
	if (!w->block_events) /* the sample itself filled a block */
		return 0;
	if (!w->block_timed) {
		w->block_timed = true;
		w->block_t_ns = t_ns;
	} else if (t_ns - w->block_t_ns >= MA_CAPTURE_FLUSH_NS) {
		return ma_capture_flush(w);
	}
	return 0;
}

uint64_t ma_capture_bytes(const struct ma_capture_writer *w)
{
	return w->bytes;
}

uint64_t ma_capture_events(const struct ma_capture_writer *w)
{
	return w->events;
}

/* Trailer fields, in stored order (new fields are appended) */
#define TRAILER_FIELDS 11

int ma_capture_close(struct ma_capture_writer *w,
		     const struct ma_capture_trailer *tr)
{
	struct ma_capture_trailer t = { 0 };
	uint8_t tb[10 * (TRAILER_FIELDS + 1)];
	struct buf b = { tb, 0, sizeof(tb) };
	int ret;

	if (tr)
		t = *tr;
	ret = ma_capture_flush(w);
	if (ret == 0) {
		put_varint(&b, TRAILER_FIELDS);
		put_varint(&b, w->events);
		put_varint(&b, w->allocs);
		put_varint(&b, w->frees);
		put_varint(&b, w->samples);
		put_varint(&b, t.lost_records);
		put_varint(&b, t.lost_bytes);
		put_varint(&b, t.unknown_frees);
		put_varint(&b, t.stack_truncated);
		put_varint(&b, t.end_wall_ns);
		put_varint(&b, t.duration_ns);
		put_varint(&b, t.complete);
		ret = write_block(w, BLOCK_TRAILER, &b, 1, 0, w->events);
	}
	if (close(w->fd) < 0 && ret == 0) {
		int e = errno;

		ret = wr_err(w, -e, "close: %s", strerror(e));
	}
	writer_free(w);
	return ret;
}

void ma_capture_abort(struct ma_capture_writer *w)
{
	if (!w)
		return;
	close(w->fd);
	writer_free(w);
}

/* ------------------------------------------------------------------ */
/* Reader */

struct ma_capture_reader {
	int fd;
	char *path;
	struct ma_capture_meta meta;
	char *strings; /* py_version, exe, cmdline, each NUL-terminated */

	int error; /* sticky */
	bool ended;
	bool have_trailer;
	struct ma_capture_trailer trailer;
	char warning[512];

	uint64_t off; /* offset of the next block */
	uint64_t file_size;
	uint64_t events; /* returned */
	uint64_t blocks; /* events blocks decoded */

	/* the current block */
	uint64_t block_off;
	uint32_t block_left;
	struct cur s[S_COUNT];
	struct model m;

	ZSTD_DCtx *dctx;
	uint8_t *comp, *raw;
	size_t comp_cap, raw_cap;
};

static int rd_err(struct ma_capture_reader *r, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Record the reader's (sticky) error, "capture PATH: ..." */
static int rd_err(struct ma_capture_reader *r, int err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ma_err_set_exit(MA_EXIT_CAPTURE);
	r->error = ma_err(err, "capture %s: %s", r->path, msg);
	return r->error;
}

/* Read n bytes at off; returns the bytes read (< n only at the end of the
 * file) or -errno */
static ssize_t read_at(int fd, void *buf, size_t n, uint64_t off)
{
	size_t got = 0;

	while (got < n) {
		ssize_t k = pread(fd, (uint8_t *)buf + got, n - got,
				  (off_t)(off + got));

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (k == 0)
			break;
		got += (size_t)k;
	}
	return (ssize_t)got;
}

static int read_header(struct ma_capture_reader *r)
{
	uint8_t fixed[FILE_HDR_FIXED];
	uint32_t version, total, vl, el, cl;
	uint8_t *h;
	ssize_t k;

	k = read_at(r->fd, fixed, sizeof(fixed), 0);
	if (k < 0)
		return rd_err(r, (int)k, "read: %s", strerror((int)-k));
	if (k == 0) {
		/* not "capture PATH": it may have been meant as a heap
		 * snapshot as well */
		ma_err_set_exit(MA_EXIT_CAPTURE);
		r->error = ma_err(-ENODATA, "%s: " MA_EMPTY_FILE_MSG, r->path);
		return r->error;
	}
	if (memcmp(fixed, FILE_MAGIC, k < 8 ? (size_t)k : 8) != 0)
		return rd_err(r, -EPROTO,
			      "not a memattach capture file (bad magic)");
	if (k < (ssize_t)sizeof(fixed))
		return rd_err(r, -EBADMSG, "header cut short at byte %zd", k);
	version = (uint32_t)get_le(fixed + 8, 4);
	if (version > MA_CAPTURE_VERSION)
		return rd_err(r, -EPROTONOSUPPORT,
			      "format version %u is newer than this memattach "
			      "reads (%u): use a newer memattach",
			      version, MA_CAPTURE_VERSION);
	if (version == 0)
		return rd_err(r, -EBADMSG, "damaged header (format version 0)");
	total = (uint32_t)get_le(fixed + 12, 4);
	vl = (uint32_t)get_le(fixed + 40, 2);
	el = (uint32_t)get_le(fixed + 42, 2);
	cl = (uint32_t)get_le(fixed + 44, 4);
	if (vl > MA_CAPTURE_MAX_PYVER || el > MA_CAPTURE_MAX_EXE ||
	    cl > MA_CAPTURE_MAX_CMDLINE ||
	    total != FILE_HDR_FIXED + vl + el + cl + 4)
		return rd_err(r, -EBADMSG, "damaged header (bad lengths)");
	h = malloc(total);
	r->strings = malloc(vl + el + cl + 3);
	if (!h || !r->strings) {
		free(h);
		return rd_err(r, -ENOMEM, "out of memory");
	}
	k = read_at(r->fd, h, total, 0);
	if (k < 0) {
		free(h);
		return rd_err(r, (int)k, "read: %s", strerror((int)-k));
	}
	if ((size_t)k < total) {
		free(h);
		return rd_err(r, -EBADMSG, "header cut short at byte %zd", k);
	}
	if (crc32_update(0, h, total - 4) != get_le(h + total - 4, 4)) {
		free(h);
		return rd_err(r, -EBADMSG,
			      "damaged header (checksum mismatch)");
	}
	memcpy(r->strings, h + 48, vl);
	r->strings[vl] = '\0';
	memcpy(r->strings + vl + 1, h + 48 + vl, el);
	r->strings[vl + 1 + el] = '\0';
	memcpy(r->strings + vl + el + 2, h + 48 + vl + el, cl);
	r->strings[vl + el + 2 + cl] = '\0';
	r->meta.version = version;
	r->meta.pid = (int32_t)get_le(h + 16, 4);
	r->meta.py_version_hex = (uint32_t)get_le(h + 20, 4);
	r->meta.flags = (uint32_t)get_le(h + 24, 4);
	r->meta.sample_mean = r->meta.flags & MA_TRACK_SAMPLE
				      ? (uint32_t)get_le(h + 28, 4)
				      : 0;
	r->meta.start_wall_ns = get_le(h + 32, 8);
	if ((r->meta.flags & MA_TRACK_SAMPLE) && !r->meta.sample_mean) {
		/* a sampled capture's estimates need their mean: a header
		 * with the flag and no mean was never written by memattach */
		free(h);
		return rd_err(r, -EBADMSG,
			      "damaged header (sampled, with no mean)");
	}
	r->meta.py_version = r->strings;
	r->meta.exe = r->strings + vl + 1;
	r->meta.cmdline = r->strings + vl + el + 2;
	r->off = total;
	free(h);
	return 0;
}

int ma_capture_is(const char *path)
{
	char head[8];

	return ma_inpath_head(path, head, sizeof(head)) ==
		       (ssize_t)sizeof(head) &&
	       !memcmp(head, FILE_MAGIC, 8);
}

int ma_capture_open(const char *path, struct ma_capture_reader **out)
{
	struct ma_capture_reader *r;
	struct stat st;
	int ret;

	*out = NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return ma_err(-ENOMEM, "capture %s: out of memory", path);
	r->fd = -1;
	r->path = strdup(path);
	r->dctx = ZSTD_createDCtx();
	if (!r->path || !r->dctx || model_init(&r->m) < 0) {
		ret = ma_err(-ENOMEM, "capture %s: out of memory", path);
		goto fail;
	}
	/* O_NONBLOCK: a FIFO is refused below rather than waited on; a
	 * regular file's reads ignore the flag */
	r->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (r->fd < 0) {
		int e = errno;

		ret = rd_err(r, -e, "open: %s", strerror(e));
		goto fail;
	}
	if (fstat(r->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		ret = rd_err(r, -EINVAL, "not a regular file");
		goto fail;
	}
	r->file_size = (uint64_t)st.st_size;
	ret = read_header(r);
	if (ret < 0)
		goto fail;
	*out = r;
	return 0;
fail:
	ma_capture_reader_close(r);
	return ret;
}

void ma_capture_reader_close(struct ma_capture_reader *r)
{
	if (!r)
		return;
	if (r->fd >= 0)
		close(r->fd);
	ZSTD_freeDCtx(r->dctx);
	model_free(&r->m);
	free(r->comp);
	free(r->raw);
	free(r->strings);
	free(r->path);
	free(r);
}

const struct ma_capture_meta *ma_capture_meta(const struct ma_capture_reader *r)
{
	return &r->meta;
}

const struct ma_capture_trailer *
ma_capture_trailer(const struct ma_capture_reader *r)
{
	return r->have_trailer ? &r->trailer : NULL;
}

const char *ma_capture_warning(const struct ma_capture_reader *r)
{
	return r->warning[0] ? r->warning : NULL;
}

uint64_t ma_capture_events_read(const struct ma_capture_reader *r)
{
	return r->events;
}

uint64_t ma_capture_offset(const struct ma_capture_reader *r)
{
	return r->off;
}

static int grow(uint8_t **p, size_t *cap, size_t need)
{
	uint8_t *n;

	if (need <= *cap)
		return 0;
	n = realloc(*p, need);
	if (!n)
		return -ENOMEM;
	*p = n;
	*cap = need;
	return 0;
}

/* The file ends inside a block or between blocks without a trailer: not an
 * error, the complete blocks were read */
static void truncated(struct ma_capture_reader *r, uint64_t at)
{
	r->ended = true;
	snprintf(r->warning, sizeof(r->warning),
		 "capture %s is truncated at byte %llu (memattach did not "
		 "finish it): read %llu events from %llu complete blocks, "
		 "the rest is lost",
		 r->path, (unsigned long long)at, (unsigned long long)r->events,
		 (unsigned long long)r->blocks);
}

static int decode_trailer(struct ma_capture_reader *r, size_t raw)
{
	struct cur c = { r->raw, r->raw + raw, false };
	uint64_t f[TRAILER_FIELDS] = { 0 };
	uint64_t n = get_varint(&c);

	for (uint64_t i = 0; i < n && !c.bad; i++) {
		uint64_t v = get_varint(&c);

		if (i < TRAILER_FIELDS)
			f[i] = v;
	}
	if (c.bad || c.p != c.end || n < TRAILER_FIELDS)
		return rd_err(r, -EBADMSG,
			      "damaged trailer block at offset %llu",
			      (unsigned long long)r->block_off);
	r->trailer.events = f[0];
	r->trailer.allocations = f[1];
	r->trailer.frees = f[2];
	r->trailer.samples = f[3];
	r->trailer.lost_records = f[4];
	r->trailer.lost_bytes = f[5];
	r->trailer.unknown_frees = f[6];
	r->trailer.stack_truncated = f[7];
	r->trailer.end_wall_ns = f[8];
	r->trailer.duration_ns = f[9];
	r->trailer.complete = (uint32_t)f[10];
	if (r->trailer.events != r->events)
		return rd_err(r, -EBADMSG,
			      "trailer at offset %llu counts %llu events but "
			      "the blocks hold %llu",
			      (unsigned long long)r->block_off,
			      (unsigned long long)r->trailer.events,
			      (unsigned long long)r->events);
	r->have_trailer = true;
	r->ended = true;
	return 0;
}

/* Split a decompressed events block into its streams */
static int open_streams(struct ma_capture_reader *r, size_t raw, uint32_t nev)
{
	struct cur d = { r->raw, r->raw + raw, false };
	uint64_t n = get_varint(&d), len[S_COUNT], sum = 0;
	const uint8_t *p;

	if (n != S_COUNT)
		return rd_err(r, -EBADMSG,
			      "block at offset %llu: %llu streams, expected %d",
			      (unsigned long long)r->block_off,
			      (unsigned long long)n, S_COUNT);
	for (int i = 0; i < S_COUNT; i++) {
		len[i] = get_varint(&d);
		if (len[i] > raw)
			d.bad = true;
		sum += len[i];
	}
	if (d.bad || sum != (uint64_t)(d.end - d.p))
		return rd_err(r, -EBADMSG,
			      "block at offset %llu: stream lengths do not add "
			      "up",
			      (unsigned long long)r->block_off);
	if (len[S_OP] != nev)
		return rd_err(r, -EBADMSG,
			      "block at offset %llu: %u events but %llu "
			      "operations",
			      (unsigned long long)r->block_off, nev,
			      (unsigned long long)len[S_OP]);
	p = d.p;
	for (int i = 0; i < S_COUNT; i++) {
		r->s[i].p = p;
		r->s[i].end = p + len[i];
		r->s[i].bad = false;
		p += len[i];
	}
	r->block_left = nev;
	model_block_start(&r->m);
	r->m.count[0] = r->m.count[1] = 0;
	r->blocks++;
	return 0;
}

/* Read, check and decompress the block at r->off: 1 = an events block is
 * ready, 0 = end of data (trailer read, or the file is cut short) */
static int next_block(struct ma_capture_reader *r)
{
	uint8_t h[BLOCK_HDR_SIZE];
	uint32_t comp, raw, nev;
	uint64_t first, off = r->off;
	unsigned long long fcs;
	ssize_t k;
	size_t dz;
	int type, ret;

	k = read_at(r->fd, h, sizeof(h), off);
	if (k < 0)
		return rd_err(r, (int)k, "read at offset %llu: %s",
			      (unsigned long long)off, strerror((int)-k));
	if (k < (ssize_t)sizeof(h)) {
		truncated(r, off + (uint64_t)k);
		return 0;
	}
	if (memcmp(h, BLOCK_MAGIC, 4) != 0)
		return rd_err(r, -EBADMSG,
			      "damaged block header at offset %llu (bad magic)",
			      (unsigned long long)off);
	if (crc32_update(0, h, 32) != get_le(h + 32, 4))
		return rd_err(r, -EBADMSG,
			      "damaged block header at offset %llu (checksum "
			      "mismatch)",
			      (unsigned long long)off);
	type = h[4];
	comp = (uint32_t)get_le(h + 8, 4);
	raw = (uint32_t)get_le(h + 12, 4);
	first = get_le(h + 16, 8);
	nev = (uint32_t)get_le(h + 24, 4);
	r->block_off = off;
	if ((type != BLOCK_EVENTS && type != BLOCK_TRAILER) ||
	    h[5] != CODEC_ZSTD)
		return rd_err(r, -EBADMSG,
			      "block at offset %llu: unknown type %d or codec "
			      "%d",
			      (unsigned long long)off, type, h[5]);
	if (raw > MA_CAPTURE_MAX_RAW ||
	    comp > ZSTD_compressBound(MA_CAPTURE_MAX_RAW))
		return rd_err(r, -EBADMSG,
			      "block at offset %llu: sizes %u/%u beyond the "
			      "format's limits",
			      (unsigned long long)off, comp, raw);
	if (first != r->events)
		return rd_err(r, -EBADMSG,
			      "block at offset %llu starts at event %llu, "
			      "expected %llu (a block is missing)",
			      (unsigned long long)off,
			      (unsigned long long)first,
			      (unsigned long long)r->events);
	if (grow(&r->comp, &r->comp_cap, comp ? comp : 1) < 0 ||
	    grow(&r->raw, &r->raw_cap, raw ? raw : 1) < 0)
		return rd_err(r, -ENOMEM,
			      "out of memory for a block of %u bytes", raw);
	k = read_at(r->fd, r->comp, comp, off + BLOCK_HDR_SIZE);
	if (k < 0)
		return rd_err(r, (int)k, "read at offset %llu: %s",
			      (unsigned long long)off, strerror((int)-k));
	if ((size_t)k < comp) {
		truncated(r, off + BLOCK_HDR_SIZE + (uint64_t)k);
		return 0;
	}
	if (crc32_update(0, r->comp, comp) != get_le(h + 28, 4))
		return rd_err(
			r, -EBADMSG,
			"damaged block at offset %llu (checksum mismatch)",
			(unsigned long long)off);
	fcs = ZSTD_getFrameContentSize(r->comp, comp);
	if (fcs != raw)
		return rd_err(r, -EBADMSG,
			      "damaged block at offset %llu (zstd frame of "
			      "%llu bytes, header says %u)",
			      (unsigned long long)off, fcs, raw);
	dz = ZSTD_decompressDCtx(r->dctx, r->raw, raw, r->comp, comp);
	if (ZSTD_isError(dz) || dz != raw)
		return rd_err(r, -EBADMSG,
			      "damaged block at offset %llu (zstd: %s)",
			      (unsigned long long)off,
			      ZSTD_isError(dz) ? ZSTD_getErrorName(dz)
					       : "short output");
	r->off = off + BLOCK_HDR_SIZE + comp;

	if (type == BLOCK_TRAILER) {
		ret = decode_trailer(r, raw);
		if (ret < 0)
			return ret;
		if (r->off != r->file_size)
			return rd_err(
				r, -EBADMSG,
				"%llu bytes of garbage after the trailer "
				"at offset %llu",
				(unsigned long long)(r->file_size - r->off),
				(unsigned long long)r->off);
		return 0;
	}
	ret = open_streams(r, raw, nev);
	return ret < 0 ? ret : 1;
}

static int bad_event(struct ma_capture_reader *r, const char *why)
{
	return rd_err(r, -EBADMSG, "block at offset %llu: event %llu: %s",
		      (unsigned long long)r->block_off,
		      (unsigned long long)r->events, why);
}

/* Every stream must be consumed exactly at the end of a block */
static int check_block_end(struct ma_capture_reader *r)
{
	for (int i = 0; i < S_COUNT; i++)
		if (r->s[i].p != r->s[i].end)
			return rd_err(r, -EBADMSG,
				      "block at offset %llu: stream %d has %td "
				      "bytes left over",
				      (unsigned long long)r->block_off, i,
				      r->s[i].end - r->s[i].p);
	return 0;
}

static uint32_t get_u32(struct cur *c)
{
	uint64_t v = get_varint(c);

	if (v > UINT32_MAX)
		c->bad = true;
	return (uint32_t)v;
}

static int32_t get_i32(struct cur *c)
{
	int64_t v = unzigzag(get_varint(c));

	if (v < INT32_MIN || v > INT32_MAX)
		c->bad = true;
	return (int32_t)v;
}

/* The pointer coded against history `look`; pushed on history `into` */
static uint64_t get_ptr(struct ma_capture_reader *r, int look, int into)
{
	struct model *m = &r->m;
	int ref = into == H_ALLOC ? S_AREF : S_FREF;
	uint64_t d = get_varint(&r->s[ref]), ptr;

	if (!d) {
		ptr = m->prev_miss[into] +
		      (uint64_t)unzigzag(get_varint(&r->s[ref + 2]));
		m->prev_miss[into] = ptr;
	} else if (d <= m->count[look] && d <= PTR_WIN) {
		ptr = m->ring[look][(m->count[look] - d) & (PTR_WIN - 1)];
	} else {
		r->s[ref].bad = true;
		ptr = 0;
	}
	model_push(m, into, ptr);
	return ptr;
}

/* A kind byte of an aggregated event: one of enum ma_alloc_kind, or 0
 * (key 0, whose events lost their stack) */
static uint8_t get_kind(struct ma_capture_reader *r, struct cur *m)
{
	uint64_t k = get_varint(m);

	if (k > 0xff)
		m->bad = true;
	(void)r;
	return (uint8_t)k;
}

static int get_def(struct ma_capture_reader *r, struct ma_event *ev)
{
	struct cur *m = &r->s[S_MISC];

	switch (get_varint(m)) {
	case DEF_THREAD: {
		const uint8_t *name;
		uint64_t nl;

		ev->type = MA_EV_THREAD;
		ev->thr.tid = get_i32(m);
		ev->thr.pthread = get_varint(m);
		nl = get_varint(m);
		if (nl > 16)
			return bad_event(r, "thread name too long");
		name = get_bytes(m, nl);
		if (name) {
			memcpy(ev->thr.name, name, nl);
			ma_ctl_sanitize(ev->thr.name, nl);
		}
		break;
	}
	case DEF_TNAME:
		if (r->meta.version < 3)
			return bad_event(r, "unknown event subtype");
		ev->type = MA_EV_TNAME;
		ev->tname.len = get_u32(m);
		if (ev->tname.len > MA_EV_TNAME_MAX)
			return bad_event(r, "thread name too long");
		ev->tname.name = (const char *)get_bytes(m, ev->tname.len);
		/* the reader's own copy of the block: names from the target
		 * made safe to print here, for every report */
		if (ev->tname.name)
			ma_ctl_sanitize((char *)ev->tname.name, ev->tname.len);
		break;
	case DEF_CODE:
		ev->type = MA_EV_CODE;
		ev->code.id = get_u32(m);
		ev->code.firstlineno = get_i32(m);
		ev->code.version_hex = get_u32(m);
		ev->code.name_len = get_u32(m);
		ev->code.file_len = get_u32(m);
		ev->code.linetable_len = get_u32(m);
		ev->code.name = (const char *)get_bytes(m, ev->code.name_len);
		ev->code.file = (const char *)get_bytes(m, ev->code.file_len);
		ev->code.linetable = get_bytes(m, ev->code.linetable_len);
		if (ev->code.name)
			ma_ctl_sanitize((char *)ev->code.name,
					ev->code.name_len);
		if (ev->code.file)
			ma_ctl_sanitize((char *)ev->code.file,
					ev->code.file_len);
		break;
	case DEF_NODE:
		ev->type = MA_EV_NODE;
		ev->node.id = get_u32(m);
		ev->node.parent = get_u32(m);
		ev->node.code = get_u32(m);
		ev->node.addr = get_i32(m);
		break;
	case DEF_FORK:
		ev->type = MA_EV_FORK;
		ev->fork.child_pid = get_i32(m);
		break;
	case DEF_SAMPLE:
		ev->type = MA_EV_SAMPLE;
		ev->sample.t_ns = get_varint(m);
		ev->sample.rss = get_varint(m);
		ev->sample.live = get_varint(m);
		break;
	case DEF_STATS:
		ev->type = MA_EV_STATS;
		ev->stats.allocs = get_varint(m);
		ev->stats.frees = get_varint(m);
		ev->stats.lost_records = get_varint(m);
		ev->stats.lost_bytes = get_varint(m);
		ev->stats.stack_truncated = get_varint(m);
		ev->stats.node_table_full = get_varint(m);
		break;
	case DEF_AGG:
		ev->type = MA_EV_AGG;
		ev->agg.node = get_u32(m);
		ev->agg.kind = get_kind(r, m);
		ev->agg.allocs = get_varint(m);
		ev->agg.alloc_bytes = get_varint(m);
		ev->agg.frees = get_varint(m);
		ev->agg.free_bytes = get_varint(m);
		break;
	case DEF_AGGTEMP:
		ev->type = MA_EV_AGGTEMP;
		ev->aggtemp.node = get_u32(m);
		ev->aggtemp.kind = get_kind(r, m);
		ev->aggtemp.dist = (uint8_t)get_varint(m);
		if (ev->aggtemp.dist >= MA_AGG_TEMPW)
			return bad_event(r, "temporary distance too large");
		ev->aggtemp.count = get_varint(m);
		ev->aggtemp.bytes = get_varint(m);
		break;
	case DEF_PEAK:
		ev->type = MA_EV_PEAK;
		ev->peak.node = get_u32(m);
		ev->peak.kind = get_kind(r, m);
		ev->peak.bytes = get_varint(m);
		ev->peak.count = get_varint(m);
		break;
	case DEF_AGGEND:
		ev->type = MA_EV_AGGEND;
		ev->aggend.peak_bytes = get_varint(m);
		ev->aggend.peak_count = get_varint(m);
		ev->aggend.peak_after_ns = get_varint(m);
		ev->aggend.peak_before_ns = get_varint(m);
		ev->aggend.dropped = get_varint(m);
		ev->aggend.dropped_bytes = get_varint(m);
		ev->aggend.keys_full = get_varint(m);
		ev->aggend.unknown_frees = get_varint(m);
		break;
	case DEF_PROC:
		if (r->meta.version < 3)
			return bad_event(r, "unknown event subtype");
		ev->type = MA_EV_PROC;
		ev->proc.pid = get_i32(m);
		ev->proc.ppid = get_i32(m);
		ev->proc.state = get_u32(m);
		if (ev->proc.state > MA_PROC_STOPPED)
			return bad_event(r, "unknown process state");
		break;
	default:
		return bad_event(r, "unknown event subtype");
	}
	return 0;
}

int ma_capture_next(struct ma_capture_reader *r, struct ma_event *ev)
{
	unsigned kind;
	uint8_t op;
	int ret;

	if (r->error)
		return r->error;
	while (!r->block_left) {
		if (r->ended)
			return 0;
		ret = next_block(r);
		if (ret <= 0)
			return ret;
		/* an events block may hold no event (none is written so) */
		if (!r->block_left && (ret = check_block_end(r)) < 0)
			return ret;
	}
	memset(ev, 0, sizeof(*ev));
	op = get_byte(&r->s[S_OP]);
	if (op & OP_THREAD_BIT)
		r->m.prev_thread = get_u32(&r->s[S_THREAD]);
	ev->thread = r->m.prev_thread;
	ev->index = r->events;
	kind = (op >> OP_KIND_SHIFT) & 15;
	if (kind == OP_KIND_ESCAPE)
		kind = get_byte(&r->s[S_MISC]);
	switch (op & 7) {
	case OP_ALLOC:
	case OP_ALLOC_SAME:
		ev->type = MA_EV_ALLOC;
		ev->alloc.kind = (uint8_t)kind;
		if ((op & 7) == OP_ALLOC)
			ev->alloc.size = get_varint(&r->s[S_SIZE]);
		ev->alloc.ptr = get_ptr(r, H_FREE, H_ALLOC);
		ev->alloc.node = get_u32(&r->s[S_NODE]);
		if ((op & 7) == OP_ALLOC) {
			model_learn(&r->m, ev->alloc.node, ev->alloc.size);
		} else if (!model_predict(&r->m, ev->alloc.node,
					  &ev->alloc.size)) {
			return bad_event(r, "no size to repeat for the node");
		}
		break;
	case OP_FREE:
	case OP_FREE_SIZED:
		ev->type = MA_EV_FREE;
		ev->free.kind = (uint8_t)kind;
		ev->free.ptr = get_ptr(r, H_ALLOC, H_FREE);
		if ((op & 7) == OP_FREE_SIZED)
			ev->free.size = get_varint(&r->s[S_SIZE]);
		break;
	case OP_DEF:
		ret = get_def(r, ev);
		if (ret < 0)
			return ret;
		break;
	default:
		return bad_event(r, "unknown operation");
	}
	for (int i = 0; i < S_COUNT; i++)
		if (r->s[i].bad)
			return bad_event(r, "a stream ends early or holds an "
					    "out-of-range value");
	r->events++;
	r->block_left--;
	if (!r->block_left && (ret = check_block_end(r)) < 0)
		return ret;
	return 1;
}
