/* SPDX-License-Identifier: MIT */
/*
 * Records in the ring (payload -> attacher).  Little-endian, every record a
 * multiple of 8 bytes, starting with struct ma_rec.  This is the live wire
 * format; the capture file (docs/capture-format.md) is the attacher's own
 * compressed encoding of the same events.
 *
 * Identifiers are assigned by the payload and defined before first use in
 * ring order: a THREAD record before any event of that thread, a CODE record
 * before a NODE using it, a NODE record before any event naming it.
 *
 * Python stacks are nodes of a tree (a "frame trie"): node N is (parent
 * node, code object, instruction offset), node 0 the empty stack.  An event
 * names its innermost node, so a stack costs one 32-bit number per event,
 * and a new stack that differs from a known one only at the top costs one
 * NODE record.
 */
#ifndef MA_RECORD_H
#define MA_RECORD_H

#include <stddef.h>
#include <stdint.h>

enum ma_rec_type {
	MA_REC_PAD = 1,	   /* filler up to the end of the data area */
	MA_REC_ALLOC = 2,  /* struct ma_rec_alloc */
	MA_REC_FREE = 3,   /* struct ma_rec_free */
	MA_REC_THREAD = 4, /* struct ma_rec_thread */
	MA_REC_CODE = 5,   /* struct ma_rec_code + strings */
	MA_REC_NODE = 6,   /* struct ma_rec_node */
	MA_REC_STATS = 7,  /* struct ma_rec_stats: final counters */
	MA_REC_FORK = 8,   /* the process forked: child untracked */
	MA_REC_TEMP = 9,   /* struct ma_rec_temp: short-lived blocks */
};

/* What allocated: the hook that saw the call */
enum ma_alloc_kind {
	MA_KIND_MALLOC = 1,
	MA_KIND_CALLOC = 2,
	MA_KIND_REALLOC = 3,   /* new block of a realloc (its FREE precedes) */
	MA_KIND_ALIGNED = 4,   /* posix_memalign, aligned_alloc, memalign,
				valloc, pvalloc */
	MA_KIND_MMAP = 5,      /* mmap; FREE of kind MMAP is munmap */
	MA_KIND_PYMEM_RAW = 6, /* PyMem_RawMalloc & co */
	MA_KIND_PYMEM = 7,     /* PyMem_Malloc & co */
	MA_KIND_PYOBJ = 8,     /* PyObject_Malloc & co (pymalloc arenas) */
};

/*
 * Flag on an ALLOC's kind: the payload published it after more than
 * MA_TEMP_DMAX further allocations of its thread (it waited in the
 * short-lived block table), so its place in the ring is later than its
 * moment; it can never be temporary for a window up to MA_TEMP_DMAX.
 */
#define MA_KIND_LATE 0x80u
#define MA_KIND_MASK 0x7fu

struct ma_rec {
	/* (length in bytes, header included) << 8 | type.  Written last,
	 * with a release store: 0 means not published yet. */
	uint32_t type_len;
	uint32_t thread; /* thread index (MA_REC_THREAD), 0 = unknown */
};
_Static_assert(sizeof(struct ma_rec) == 8, "ma_rec: 8 bytes");
_Static_assert(offsetof(struct ma_rec, type_len) == 0,
	       "type_len is the first word, published last");

static inline uint32_t ma_rec_type(uint32_t type_len)
{
	return type_len & 0xff;
}

static inline uint32_t ma_rec_len(uint32_t type_len)
{
	return type_len >> 8;
}

static inline uint32_t ma_rec_make(uint32_t type, uint32_t len)
{
	return len << 8 | type;
}

struct ma_rec_alloc {
	struct ma_rec h;
	uint64_t ptr;
	uint64_t size;
	uint32_t node; /* innermost Python frame node, 0 = none */
	uint8_t kind;  /* enum ma_alloc_kind */
	uint8_t _pad[3];
}; /* 32 bytes */
_Static_assert(sizeof(struct ma_rec_alloc) == 32, "ma_rec_alloc: 32 bytes");

struct ma_rec_free {
	struct ma_rec h;
	uint64_t ptr;
	uint64_t size; /* munmap length for MA_KIND_MMAP, else 0 */
	uint8_t kind;
	uint8_t _pad[7];
}; /* 32 bytes */
_Static_assert(sizeof(struct ma_rec_free) == 32, "ma_rec_free: 32 bytes");

struct ma_rec_thread {
	struct ma_rec h; /* h.thread: the index being defined */
	int32_t tid;	 /* kernel thread ID */
	uint32_t _pad;
	uint64_t pthread; /* pthread_self() */
	char name[16];	  /* comm at first sight */
};			  /* 40 bytes */
_Static_assert(sizeof(struct ma_rec_thread) == 40, "ma_rec_thread: 40 bytes");

struct ma_rec_code {
	struct ma_rec h;
	uint32_t id;
	int32_t firstlineno;
	uint32_t name_len; /* bytes of UTF-8, no NUL */
	uint32_t file_len;
	uint32_t linetable_len; /* co_lnotab / co_linetable bytes */
	uint32_t version_hex;	/* selects the line table format */
				/* then name, file, linetable; padded to 8 */
};
_Static_assert(sizeof(struct ma_rec_code) == 32,
	       "ma_rec_code: 32 bytes, strings follow");

struct ma_rec_node {
	struct ma_rec h;
	uint32_t id;
	uint32_t parent; /* 0 = outermost frame */
	uint32_t code;	 /* MA_REC_CODE id */
	int32_t addr;	 /* byte offset of the instruction, -1 = not started */
};			 /* 24 bytes */
_Static_assert(sizeof(struct ma_rec_node) == 24, "ma_rec_node: 24 bytes");

struct ma_rec_stats {
	struct ma_rec h;
	uint64_t allocs, frees; /* events seen by the hooks */
	uint64_t lost_records;	/* copy of the header's counters */
	uint64_t lost_bytes;
	uint64_t stack_truncated; /* stacks cut at max_frames */
	uint64_t node_table_full; /* events recorded with a shorter stack */
};				  /* 56 bytes */
_Static_assert(sizeof(struct ma_rec_stats) == 56, "ma_rec_stats: 56 bytes");

/*
 * `count` small blocks (Python's MEM and OBJ domains, at most 512 bytes),
 * each allocated by thread h.thread at stack `node` with `size` bytes and
 * freed by the same thread after exactly `dist` (<= MA_TEMP_DMAX) further
 * allocations of that thread, before the payload published its allocation
 * (see "Short-lived blocks" in docs/payload.md).  The consumer replays it
 * as count ALLOC + FREE pairs at MA_TEMP_ADDR(dist), addresses no
 * allocator returns: they count in every total, never in what is live,
 * and a report's temporary view takes their distance from the address.
 */
struct ma_rec_temp {
	struct ma_rec h;
	uint32_t node;
	uint8_t kind;
	uint8_t dist;
	uint8_t _pad[2];
	uint64_t size;
	uint64_t count;
}; /* 32 bytes */
_Static_assert(sizeof(struct ma_rec_temp) == 32, "ma_rec_temp: 32 bytes");

#define MA_TEMP_DMAX	   15
#define MA_TEMP_ADDR(dist) (0x100u + 16u * (dist))
#define MA_IS_TEMP_ADDR(p)                                                     \
	((p) >= 0x100u && (p) < 0x100u + 16u * (MA_TEMP_DMAX + 1u))
#define MA_TEMP_DIST_OF(p) ((uint32_t)(((p)-0x100u) / 16u))

struct ma_rec_fork {
	struct ma_rec h;
	int32_t child_pid;
	uint32_t _pad;
};
_Static_assert(sizeof(struct ma_rec_fork) == 16, "ma_rec_fork: 16 bytes");

#endif
