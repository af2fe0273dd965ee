/* SPDX-License-Identifier: MIT */
/*
 * The heap census (`memattach heap`, docs/heap.md): what the payload's
 * walker and the attacher share.
 *
 * The walker never runs in the target.  ma_heap_fork(), called in the
 * frozen target like ma_start, makes a copy-on-write copy of the process
 * with a raw clone (no atfork handler runs, no SIGCHLD: exit signal 0) and
 * returns at once; the copy, held under memattach's ptrace, walks the heap
 * while the target runs on.  The copy talks to the attacher through one
 * block of its own memory, the box (the exported symbol ma_heap_box, at the
 * same address in the copy as in the target): the attacher reads and writes
 * it with process_vm_readv/writev, the copy polls it.  The copy streams its
 * findings through a window of the box's buffer one chunk at a time, so its
 * own memory stays bounded whatever the heap's size.
 */
#ifndef MA_HEAP_H
#define MA_HEAP_H

#include <stdint.h>

#include "ma_offsets.h"

#define MA_HEAP_MAGIC 0x6d616870u /* "mahp" */
#define MA_HEAP_ABI   3

/* Copies a target remembers until they are reaped (ma_heap_copies) */
#define MA_HEAP_MAX_COPIES 16

/* What the attacher tells ma_heap_fork (copied into the payload first) */
struct ma_heap_cfg {
	uint32_t magic, abi;
	int32_t attacher_pid; /* the copy exits when it is gone (0: unknown) */
	uint32_t chunk_size;  /* bytes per streamed chunk */
	uint64_t runtime_addr;
	/* C functions of the interpreter that only read: 0 when absent */
	uint64_t dict_sizeof; /* Py_ssize_t _PyDict_SizeOf(PyDictObject *) */
	uint64_t dict_next;   /* int PyDict_Next(d, &pos, &key, &value) */
	uint32_t pool_size;   /* pymalloc's pool size (0: no pymalloc) */
	uint32_t flags;	      /* enum ma_heap_flags */
	uint32_t max_frames;  /* frames walked per thread for roots */
	uint32_t _pad;
	struct ma_py_offsets off;
};

enum ma_heap_flags {
	MA_HEAP_INT_TAG = 1 << 0,    /* 3.12+: ints keep their size in lv_tag */
	MA_HEAP_GC_ON_TYPE = 1 << 1, /* 3.11+: getsizeof adds the pre-header
					of the type, not of the object */
	MA_HEAP_PRE_DICT = 1 << 2,   /* 3.11+: managed dict pre-header */
	MA_HEAP_PRE_WEAKREF = 1 << 3,	/* 3.12+: managed weakref pre-header */
	MA_HEAP_GC_PER_INTERP = 1 << 4, /* 3.9+: gc state in the interpreter */
	MA_HEAP_INLINE_VALUES = 1 << 5, /* 3.13+: instances' values inline */
};

/* The copy's state, in box.state */
enum ma_heap_state {
	MA_HEAP_ST_NONE = 0,
	MA_HEAP_ST_WALKING = 1, /* producing chunks */
	MA_HEAP_ST_DONE = 3,	/* every chunk produced; now serving label
				   requests */
	MA_HEAP_ST_FAILED = 4,	/* see box.error, box.message */
};

/* Chunks go through MA_HEAP_NBUFS buffers in turn: the copy fills one
 * while the attacher reads the other (the walk and the reading overlap) */
#define MA_HEAP_NBUFS 2

/* Label requests, once DONE: what is the child of parent called there */
enum ma_heap_req {
	MA_HEAP_REQ_NONE = 0,
	MA_HEAP_REQ_LABEL = 1, /* req_a: a dict, req_b: a value: its key */
	MA_HEAP_REQ_EXIT = 2,
};

/* Stream records, 8-byte aligned, each starting with its tag */
enum ma_heap_tag {
	MA_HEAP_T_OBJ = 1,   /* struct ma_heap_obj + edges */
	MA_HEAP_T_ROOT = 2,  /* struct ma_heap_root */
	MA_HEAP_T_POOLS = 3, /* struct ma_heap_pools */
	MA_HEAP_T_END = 4,   /* struct ma_heap_end */
	MA_HEAP_T_EDGES = 5, /* struct ma_heap_edges + edges: more of the last
				object's */
};

/* Object flags */
enum ma_heap_obj_flags {
	MA_HEAP_O_GC = 1 << 0,	       /* in a GC list */
	MA_HEAP_O_UNREADABLE = 1 << 1, /* faulted or failed a check */
	MA_HEAP_O_PYMALLOC = 1 << 2,   /* the object's own block is pymalloc's
					  (its tables may not be: .pymalloc) */
	MA_HEAP_O_EDGES_CUT = 1 << 3,  /* more referents than recorded */
	MA_HEAP_O_TYPE = 1 << 4,       /* a type object (a class) */
};

struct ma_heap_obj {
	uint32_t tag; /* MA_HEAP_T_OBJ */
	uint32_t nedges;
	uint64_t addr;
	uint64_t type;	 /* its type object */
	uint64_t size;	 /* what sys.getsizeof says */
	uint64_t owned;	 /* buffers it owns beyond that (numpy data...) */
	uint64_t refcnt; /* ob_refcnt, clamped to 2^40 (immortals) */
	uint32_t flags;	 /* enum ma_heap_obj_flags */
	/* of size, the bytes in pymalloc blocks: the object's own block when
	 * pymalloc's, and those of its separately allocated tables and
	 * buffers that are (each at most 512 bytes) */
	uint32_t pymalloc;
	/* followed by nedges uint64_t addresses of referents */
};

/*
 * More referents of the object just sent, and flags to add to it.  An
 * object's referents are sent in pieces of at most MA_HEAP_EDGE_PIECE, so
 * that the copy never holds more than a piece: a list of 50 million items
 * held them all, 400 MB of private memory charged to the target's cgroup.
 * An object sent in pieces ends with one of these (its final flags: a
 * fault part way through its traverse), maybe with no edges.
 */
struct ma_heap_edges {
	uint32_t tag; /* MA_HEAP_T_EDGES */
	uint32_t nedges;
	uint32_t flags; /* enum ma_heap_obj_flags, or'ed into the object's */
	uint32_t _pad;
	/* followed by nedges uint64_t addresses of referents */
};
#define MA_HEAP_EDGE_PIECE (1u << 16)

enum ma_heap_root_kind {
	MA_HEAP_R_MODULE = 1, /* obj: a module object (named by md_name) */
	MA_HEAP_R_LOCAL = 2,  /* obj: a frame's local variable */
};

struct ma_heap_root {
	uint32_t tag; /* MA_HEAP_T_ROOT */
	uint32_t kind;
	uint64_t obj;
	uint64_t name;	   /* a str: module name, or the local's name */
	uint64_t code;	   /* LOCAL: the code object of the frame */
	uint64_t frame;	   /* LOCAL: the frame's address */
	int64_t thread_id; /* LOCAL: native thread id (or pthread id) */
	uint32_t depth;	   /* LOCAL: frame index, 0 = innermost */
	uint32_t _pad;
};

/* pymalloc, as seen from the pools holding the blocks found */
#define MA_HEAP_NCLASSES 64
struct ma_heap_pools {
	uint32_t tag; /* MA_HEAP_T_POOLS */
	uint32_t pool_size;
	uint64_t pools;	     /* distinct pools holding a found block */
	uint64_t arenas;     /* distinct arenas of those pools */
	uint64_t used_bytes; /* blocks in use in those pools x block size */
	uint64_t used_blocks[MA_HEAP_NCLASSES]; /* per size class */
	uint64_t pools_per_class[MA_HEAP_NCLASSES];
};

struct ma_heap_end {
	uint32_t tag;		/* MA_HEAP_T_END */
	uint32_t gc_collecting; /* the collector was running: lists partial */
	uint64_t objects, edges, unreadable, faults;
	uint64_t walk_ns;
	uint64_t copy_bytes; /* memory the walker mapped in the copy */
};

/* Exported by the payload as the symbol `ma_heap_box` */
struct ma_heap_box {
	uint32_t magic;		 /* MA_HEAP_MAGIC once the copy is set up */
	volatile uint32_t state; /* enum ma_heap_state */
	int32_t error;		 /* -errno when FAILED */
	uint32_t _pad;
	uint64_t buf[MA_HEAP_NBUFS]; /* addresses of the chunk buffers */
	volatile uint64_t len[MA_HEAP_NBUFS]; /* bytes in each */
	/* chunk k is in buf[k % NBUFS]; produced: by the copy, consumed:
	 * by the attacher (it writes this word only) */
	volatile uint32_t produced, consumed;
	uint64_t progress;     /* objects so far */
	volatile uint32_t req; /* enum ma_heap_req, written by the attacher */
	volatile uint32_t req_done;
	uint64_t req_a, req_b;
	uint64_t req_result;
	char message[128];
};

#endif
