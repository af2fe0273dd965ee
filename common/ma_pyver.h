/* SPDX-License-Identifier: MIT */
/*
 * What differs between the CPython versions memattach supports, in one
 * place, for the attacher and the payload alike (header only, no libc):
 *   - the supported range (MA_PY_MIN_MINOR .. MA_PY_MAX_MINOR);
 *   - the frame layouts (ma_py_layouts[]): what a stack walk specialises on;
 *   - one row per minor version (ma_pyvers[]): its layout, its line table
 *     format, and which fields of struct ma_py_offsets exist in it;
 *   - the frame rules, as inline functions over a layout, that the
 *     attacher's reader (attacher/cpython/pyread.c) and the payload's stack walk
 *     (injector/pystack.c) both call.  The payload calls them with a
 *     constant layout (one copy of its walk per layout), so every test of a
 *     layout's facts folds away there.
 *
 * Adding a Python version: docs/architecture.md, "How to add a Python
 * version".
 */
#ifndef MA_PYVER_H
#define MA_PYVER_H

#include <stdint.h>

#include "ma_heap.h"
#include "ma_offsets.h"

#define MA_PY_MIN_MINOR 8
#define MA_PY_MAX_MINOR 13

/* _PyInterpreterFrame.owner of the shim frame CPython pushes at each entry
 * from C (3.12+: FRAME_OWNED_BY_CSTACK) */
#define MA_FRAME_OWNED_BY_CSTACK 3

/* ------------------------------------------------------------------ */
/* Frame layouts */

enum ma_py_layout_id {
	MA_LAYOUT_38,  /* 3.8, 3.9 */
	MA_LAYOUT_310, /* 3.10 */
	MA_LAYOUT_311, /* 3.11 */
	MA_LAYOUT_312, /* 3.12 */
	MA_LAYOUT_313, /* 3.13 */
	MA_LAYOUT_COUNT
};

/* How a walk knows the first Python frame run by a C-level call of
 * _PyEval_EvalFrameDefault (to interleave native and Python frames) */
enum ma_py_entry {
	MA_ENTRY_EVERY, /* every frame object is one */
	MA_ENTRY_FLAG,	/* the frame's is_entry flag (frame_is_entry) */
	MA_ENTRY_SHIM,	/* the frame just below a C-stack shim, and the
			   outermost frame */
};

struct ma_py_layout {
	/* frame_instr is f_lasti, an int counting bytes (1) or code units
	 * (2); 0: an instruction pointer into co_code_adaptive */
	int8_t lasti_scale;
	/* the innermost frame is tstate->cframe->current_frame, else
	 * tstate_frame (tstate->frame / tstate->current_frame) */
	uint8_t top_in_cframe;
	/* frame_owner value of the C-stack shim frames to skip; -1: none */
	int8_t cstack_owner;
	uint8_t entry; /* enum ma_py_entry */
	/* an instruction pointer before the first instruction: the frame is
	 * still being set up ("incomplete"), CPython does not show it */
	uint8_t skip_incomplete;
	/* frame_code may be another executable than a code object */
	uint8_t other_executables;
	/* The opcodes a frame runs only before its first traceable
	 * instruction (_co_firsttraceable, the first RESUME): MAKE_CELL,
	 * COPY_FREE_VARS, RETURN_GENERATOR, and on 3.13 EXIT_INIT_CHECK (the
	 * shim _Py_InitCleanup that a specialized call of a class pushes under
	 * its __init__, a code object named __init__ in a file __init__, sits
	 * at it until __init__ returns); 0: none.  A frame running one is
	 * incomplete too (_PyFrame_IsIncomplete): CPython, tracemalloc and
	 * tracebacks show its caller, where the generator or cell it makes
	 * was asked for.  The numbers are each version's opcode.opmap */
	uint8_t op_setup[4];
};

static const struct ma_py_layout ma_py_layouts[MA_LAYOUT_COUNT] = {
	/* clang-format off */
	/*                lasti  cframe  shim owner                entry           incomplete  other exec  setup opcodes */
	[MA_LAYOUT_38]  = { 1,   0,      -1,                       MA_ENTRY_EVERY, 0,          0,          { 0 } },
	[MA_LAYOUT_310] = { 2,   0,      -1,                       MA_ENTRY_EVERY, 0,          0,          { 0 } },
	[MA_LAYOUT_311] = { 0,   1,      -1,                       MA_ENTRY_FLAG,  1,          0,          { 135, 149, 75 } },
	[MA_LAYOUT_312] = { 0,   1,      MA_FRAME_OWNED_BY_CSTACK, MA_ENTRY_SHIM,  1,          0,          { 135, 149, 75 } },
	[MA_LAYOUT_313] = { 0,   0,      MA_FRAME_OWNED_BY_CSTACK, MA_ENTRY_SHIM,  0,          1,          { 94, 62, 35, 13 } },
	/* clang-format on */
};

/* ------------------------------------------------------------------ */
/* One row per minor version */

enum ma_py_linetable {
	MA_LT_LNOTAB,	 /* co_lnotab (3.8, 3.9) */
	MA_LT_LINES310,	 /* co_linetable of 3.10 */
	MA_LT_LOCATIONS, /* co_linetable location table (3.11+) */
};

/* The fields every supported version has */
#define MA_F_EVERY_VERSION                                                     \
	(MA_F(runtime_interpreters_head) | MA_F(runtime_interpreters_main) |   \
	 MA_F(interp_next) | MA_F(interp_id) | MA_F(interp_threads_head) |     \
	 MA_F(gil_last_holder) | MA_F(gil_locked) | MA_F(tstate_next) |        \
	 MA_F(tstate_interp) | MA_F(tstate_thread_id) | MA_F(frame_previous) | \
	 MA_F(frame_code) | MA_F(frame_instr) | MA_F(code_filename) |          \
	 MA_F(code_name) | MA_F(code_firstlineno) | MA_F(code_linetable) |     \
	 MA_F(object_type) | MA_F(varobject_size) | MA_F(type_name) |          \
	 MA_F(bytes_sval) | MA_F(unicode_length) | MA_F(unicode_state) |       \
	 MA_F(unicode_ascii_size) | MA_F(unicode_compact_size) |               \
	 MA_F(unicode_kind_shift) | MA_F(unicode_compact_bit) |                \
	 MA_F(unicode_ascii_bit))

/* Frame objects (<= 3.10) */
#define MA_F_FRAMEOBJ (MA_F(runtime_gil) | MA_F(tstate_frame) | MA_F(code_code))
/* Interpreter frames (3.11+) */
#define MA_F_IFRAME                                                            \
	(MA_F(tstate_native_thread_id) | MA_F(frame_owner) |                   \
	 MA_F(code_qualname) | MA_F(code_code_adaptive))

struct ma_pyver {
	uint8_t minor;
	uint8_t layout;	   /* enum ma_py_layout_id */
	uint8_t linetable; /* enum ma_py_linetable */
	/* _Py_DebugOffsets at the start of _PyRuntime */
	uint8_t debug_offsets;
	/* each interpreter may have its own GIL (interp_gil_ptr) */
	uint8_t gil_per_interp;
	/* the thread state getter without checks (needs the GIL) */
	const char *tstate_get;
	/* the fields of struct ma_py_offsets this version has (MA_F bits);
	 * the others are MA_OFF_NONE */
	uint64_t fields;
	/* The heap census (docs/heap.md): enum ma_heap_flags, and pymalloc's
	 * pool size in KiB (16 from 3.10, where the radix tree came) */
	uint32_t heap_flags;
	uint32_t pool_kib;
};

static const struct ma_pyver ma_pyvers[] = {
	/* clang-format off */
	/* minor layout         line table       dbg gil  thread state getter            fields */
	{ 8,  MA_LAYOUT_38,  MA_LT_LNOTAB,    0,  0,  "_PyThreadState_UncheckedGet",
	  MA_F_EVERY_VERSION | MA_F_FRAMEOBJ,
	  0, 4 },
	{ 9,  MA_LAYOUT_38,  MA_LT_LNOTAB,    0,  0,  "_PyThreadState_UncheckedGet",
	  MA_F_EVERY_VERSION | MA_F_FRAMEOBJ,
	  MA_HEAP_GC_PER_INTERP, 4 },
	{ 10, MA_LAYOUT_310, MA_LT_LINES310,  0,  0,  "_PyThreadState_UncheckedGet",
	  MA_F_EVERY_VERSION | MA_F_FRAMEOBJ,
	  MA_HEAP_GC_PER_INTERP, 16 },
	{ 11, MA_LAYOUT_311, MA_LT_LOCATIONS, 0,  0,  "_PyThreadState_UncheckedGet",
	  MA_F_EVERY_VERSION | MA_F_IFRAME | MA_F(runtime_gil) |
	  MA_F(tstate_cframe) | MA_F(cframe_current_frame) | MA_F(frame_is_entry),
	  MA_HEAP_GC_PER_INTERP | MA_HEAP_GC_ON_TYPE | MA_HEAP_PRE_DICT, 16 },
	{ 12, MA_LAYOUT_312, MA_LT_LOCATIONS, 0,  1,  "_PyThreadState_UncheckedGet",
	  MA_F_EVERY_VERSION | MA_F_IFRAME | MA_F(interp_gil_ptr) |
	  MA_F(tstate_cframe) | MA_F(cframe_current_frame),
	  MA_HEAP_GC_PER_INTERP | MA_HEAP_GC_ON_TYPE | MA_HEAP_PRE_DICT |
	  MA_HEAP_PRE_WEAKREF | MA_HEAP_INT_TAG, 16 },
	{ 13, MA_LAYOUT_313, MA_LT_LOCATIONS, 1,  1,  "PyThreadState_GetUnchecked",
	  MA_F_EVERY_VERSION | MA_F_IFRAME | MA_F(interp_gil_ptr) |
	  MA_F(tstate_frame),
	  MA_HEAP_GC_PER_INTERP | MA_HEAP_GC_ON_TYPE | MA_HEAP_PRE_DICT |
	  MA_HEAP_PRE_WEAKREF | MA_HEAP_INT_TAG | MA_HEAP_INLINE_VALUES, 16 },
	/* clang-format on */
};

_Static_assert(sizeof(ma_pyvers) / sizeof(ma_pyvers[0]) ==
		       MA_PY_MAX_MINOR - MA_PY_MIN_MINOR + 1,
	       "one row per supported minor version, in order");

static inline int ma_pyver_supported(uint32_t version_hex)
{
	int minor = ma_py_minor(version_hex);

	return ma_py_major(version_hex) == 3 && minor >= MA_PY_MIN_MINOR &&
	       minor <= MA_PY_MAX_MINOR;
}

/* The row of a supported version, or NULL */
static inline const struct ma_pyver *ma_pyver_of(uint32_t version_hex)
{
	if (!ma_pyver_supported(version_hex))
		return 0;
	return &ma_pyvers[ma_py_minor(version_hex) - MA_PY_MIN_MINOR];
}

/* The row of the nearest supported minor (major not looked at): for what
 * is only assumed to hold beyond the range, e.g. the line tables of a 3.14
 * code object, or DWARF member names (3.13's for 3.14+) */
static inline const struct ma_pyver *ma_pyver_nearest(uint32_t version_hex)
{
	int minor = ma_py_minor(version_hex);

	if (minor < MA_PY_MIN_MINOR)
		minor = MA_PY_MIN_MINOR;
	if (minor > MA_PY_MAX_MINOR)
		minor = MA_PY_MAX_MINOR;
	return &ma_pyvers[minor - MA_PY_MIN_MINOR];
}

/* ------------------------------------------------------------------ */
/* Which fields a reader needs */

/* What a frame walk reads (both the attacher's reader and the payload):
 * the thread's innermost frame, the frames, the code objects and their
 * names and line tables */
#define MA_F_FRAME_WALK                                                        \
	(MA_F(tstate_frame) | MA_F(tstate_cframe) |                            \
	 MA_F(cframe_current_frame) | MA_F(frame_previous) |                   \
	 MA_F(frame_code) | MA_F(frame_instr) | MA_F(frame_owner) |            \
	 MA_F(code_filename) | MA_F(code_name) | MA_F(code_qualname) |         \
	 MA_F(code_firstlineno) | MA_F(code_linetable) |                       \
	 MA_F(code_code_adaptive) | MA_F(object_type) | MA_F(varobject_size) | \
	 MA_F(bytes_sval) | MA_F(unicode_length) | MA_F(unicode_state) |       \
	 MA_F(unicode_ascii_size) | MA_F(unicode_compact_size))

/* ... and what the attacher's reader reads besides: the interpreter and
 * thread lists, entry flags, type names */
#define MA_F_THREAD_WALK                                                       \
	(MA_F(runtime_interpreters_head) | MA_F(interp_next) |                 \
	 MA_F(interp_threads_head) | MA_F(tstate_next) | MA_F(tstate_interp) | \
	 MA_F(tstate_thread_id) | MA_F(frame_is_entry) | MA_F(type_name))

/* What the heap census reads besides the thread walk: the collector's
 * lists, frames' locals, type objects and the builtin containers' sizes */
#define MA_F_HEAP_COMMON                                                       \
	(MA_F(gc_generations) | MA_F(gc_generation_size) |                     \
	 MA_F(gc_permanent) | MA_F(gc_collecting) | MA_F(frame_localsplus) |   \
	 MA_F(code_nlocals) | MA_F(code_varnames) | MA_F(type_basicsize) |     \
	 MA_F(type_itemsize) | MA_F(type_flags) | MA_F(type_traverse) |        \
	 MA_F(type_base) | MA_F(list_items) | MA_F(list_allocated) |           \
	 MA_F(set_mask) | MA_F(set_table) | MA_F(bytearray_alloc) |            \
	 MA_F(unicode_utf8) | MA_F(unicode_utf8_length) | MA_F(module_dict) |  \
	 MA_F(module_name))

/* The fields the heap census needs in version v: optional for every other
 * command (a build whose DWARF lacks them still attaches) */
static inline uint64_t ma_pyver_heap_fields(const struct ma_pyver *v)
{
	return MA_F_HEAP_COMMON |
	       (v->heap_flags & MA_HEAP_GC_PER_INTERP ? MA_F(interp_gc)
						      : MA_F(runtime_gc));
}

/* The fields the payload's stack walk needs in version v: frame_owner
 * only serves to skip shim frames */
static inline uint64_t ma_pyver_stack_fields(const struct ma_pyver *v)
{
	uint64_t f = v->fields & MA_F_FRAME_WALK;

	if (ma_py_layouts[v->layout].cstack_owner < 0)
		f &= ~MA_F(frame_owner);
	return f;
}

/* The fields the attacher's reader needs in version v */
static inline uint64_t ma_pyver_reader_fields(const struct ma_pyver *v)
{
	return v->fields & (MA_F_FRAME_WALK | MA_F_THREAD_WALK);
}

/* The name of the first field of set `need` that o lacks (MA_OFF_NONE or
 * implausible), or NULL when o has them all */
static inline const char *ma_pyver_missing(const struct ma_py_offsets *o,
					   uint64_t need)
{
	for (int i = 0; i < MA_FI_COUNT; i++) {
		int v;

		if (!(need >> i & 1))
			continue;
		v = ma_py_field_get(o, i);
		if (v < 0 || v >= 65536)
			return ma_py_fields[i].name;
	}
	return 0;
}

/* The bit positions of a str's kind, compact and ascii flags are usable */
static inline int ma_py_str_bits_ok(const struct ma_py_offsets *o)
{
	return o->unicode_kind_shift >= 0 && o->unicode_kind_shift <= 29 &&
	       o->unicode_compact_bit >= 0 && o->unicode_compact_bit <= 31 &&
	       o->unicode_ascii_bit >= 0 && o->unicode_ascii_bit <= 31;
}

/* ------------------------------------------------------------------ */
/* Frame rules.  `fb` is the address of a frame's bytes: the frame itself
 * in the payload, a copy of it in the attacher. */

/* The offsets a frame walk reads, kept in registers by the payload */
struct ma_py_walk_off {
	intptr_t prev, code, instr, owner, adaptive, type;
};

static inline void ma_py_walk_off_init(struct ma_py_walk_off *w,
				       const struct ma_py_offsets *o)
{
	w->prev = o->frame_previous;
	w->code = o->frame_code;
	w->instr = o->frame_instr;
	w->owner = o->frame_owner;
	w->adaptive = o->code_code_adaptive;
	w->type = o->object_type;
}

static inline uint64_t ma_py_ld64(uintptr_t p)
{
	uint64_t v;

	__builtin_memcpy(&v, (const void *)p, sizeof(v));
	return v;
}

/* A C-stack shim frame: no Python function, skipped by every walk */
static inline __attribute__((always_inline)) int
ma_py_frame_is_shim(const struct ma_py_layout *L,
		    const struct ma_py_walk_off *w, uintptr_t fb)
{
	return L->cstack_owner >= 0 &&
	       *(const uint8_t *)(fb + w->owner) == (uint8_t)L->cstack_owner;
}

/* The frame's raw instruction word: f_lasti (an int, zero-extended) or the
 * instruction pointer */
static inline __attribute__((always_inline)) uintptr_t
ma_py_frame_ip(const struct ma_py_layout *L, uintptr_t fb, intptr_t instr)
{
	if (L->lasti_scale) {
		int32_t lasti;

		__builtin_memcpy(&lasti, (const void *)(fb + instr),
				 sizeof(lasti));
		return (uint32_t)lasti;
	}
	return ma_py_ld64(fb + instr);
}

/* The raw instruction word names the code object too (it points into the
 * code's own bytecode); f_lasti does not */
static inline int ma_py_ip_names_code(const struct ma_py_layout *L)
{
	return !L->lasti_scale;
}

/*
 * The byte offset into the code of a frame's raw instruction word ip, for
 * the frame running code: -1 for f_lasti -1 (not started: its first line),
 * `bad` for an instruction pointer outside the code.  0 when the frame is
 * not to be shown (incomplete), else 1.
 */
static inline __attribute__((always_inline)) int
ma_py_instr_addr(const struct ma_py_layout *L, const struct ma_py_walk_off *w,
		 uintptr_t code, uintptr_t ip, int32_t bad, int32_t *addr)
{
	if (L->lasti_scale) {
		int32_t lasti = (int32_t)(uint32_t)ip;

		/* f_lasti is the target's to write: beyond 2^29 units (no
		 * code object is that long) it is garbage, and scaling it
		 * would overflow an int (fuzz/pyread, issue 13) */
		*addr = lasti < 0	    ? -1
			: lasti > (1 << 29) ? bad
					    : L->lasti_scale * lasti;
	} else {
		uintptr_t start = code + (uintptr_t)w->adaptive;

		if (L->skip_incomplete && ip < start)
			return 0;
		*addr = ip - start > (1u << 30) ? bad : (int32_t)(ip - start);
	}
	return 1;
}

/*
 * Whether op, the opcode at a frame's instruction pointer (addr >= 0 from
 * ma_py_instr_addr), is one a frame runs while still incomplete
 * (ma_py_layout.op_setup): such a frame is not shown either.
 */
static inline __attribute__((always_inline)) int
ma_py_op_is_setup(const struct ma_py_layout *L, uint8_t op)
{
	return L->op_setup[0] &&
	       (op == L->op_setup[0] || op == L->op_setup[1] ||
		op == L->op_setup[2] ||
		(L->op_setup[3] && op == L->op_setup[3]));
}

#endif
