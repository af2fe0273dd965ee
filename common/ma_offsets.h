/* SPDX-License-Identifier: MIT */
/*
 * struct ma_py_offsets: everything memattach needs to know about the layout
 * of one CPython build in order to walk its interpreters, threads and frames
 * without running any Python code.
 *
 * Shared by the attacher (which fills it from DWARF, _Py_DebugOffsets or the
 * built-in table) and the payload (which will walk frames from inside the
 * target with the very same struct).  Plain C only: no libelf/libdw types.
 *
 * Every offset is a byte offset from the start of the named struct; a value of
 * MA_OFF_NONE means "this field does not exist in this Python version".
 */
#ifndef MA_OFFSETS_H
#define MA_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

#define MA_OFF_NONE (-1)

/* Bumped whenever the layout of struct ma_py_offsets changes, so that a payload
 * already loaded by an older memattach can refuse a config it cannot read. */
#define MA_OFFSETS_ABI 2

enum ma_offsets_source {
	MA_OFFSETS_SRC_NONE = 0,
	MA_OFFSETS_SRC_DWARF = 1, /* DWARF of the running binary: exact */
	MA_OFFSETS_SRC_DEBUG_OFFSETS =
		2,		  /* CPython's own _Py_DebugOffsets (3.13+) */
	MA_OFFSETS_SRC_TABLE = 3, /* built-in table for the minor version */
};

struct ma_py_offsets {
	uint32_t abi;	      /* MA_OFFSETS_ABI */
	uint32_t version_hex; /* PY_VERSION_HEX these offsets were made for */
	uint32_t source;      /* enum ma_offsets_source */
	uint32_t _pad;

	/* _PyRuntimeState (the object at symbol _PyRuntime) */
	int32_t runtime_interpreters_head; /* .interpreters.head */
	int32_t runtime_interpreters_main; /* .interpreters.main */
	/* <= 3.11: the GIL lives in the runtime: .ceval.gil */
	int32_t runtime_gil; /* offset of struct _gil_runtime_state in runtime, or NONE */

	/* PyInterpreterState */
	int32_t interp_next;	     /* .next */
	int32_t interp_id;	     /* .id */
	int32_t interp_threads_head; /* .tstate_head (<= 3.10) / .threads.head */
	int32_t interp_gil_ptr; /* 3.12+: .ceval.gil (struct _gil_runtime_state *) */

	/* struct _gil_runtime_state */
	int32_t gil_last_holder; /* .last_holder (_Py_atomic_address / PyThreadState*) */
	int32_t gil_locked; /* .locked (_Py_atomic_int / int) */

	/* PyThreadState */
	int32_t tstate_next;	      /* .next */
	int32_t tstate_interp;	      /* .interp */
	int32_t tstate_frame;	      /* <= 3.10: .frame (PyFrameObject *);
				 3.13+: .current_frame (_PyInterpreterFrame *) */
	int32_t tstate_cframe;	      /* 3.11-3.12: .cframe (_PyCFrame *) */
	int32_t cframe_current_frame; /* 3.11-3.12: _PyCFrame.current_frame */
	int32_t tstate_thread_id;     /* .thread_id (pthread_t) */
	int32_t tstate_native_thread_id; /* .native_thread_id (kernel TID) */

	/* Frames: PyFrameObject (<= 3.10) or _PyInterpreterFrame (3.11+) */
	int32_t frame_previous; /* .f_back / .previous */
	int32_t frame_code;	/* .f_code / .f_executable (3.13+) */
	int32_t frame_instr; /* .f_lasti (int, <= 3.10) / .prev_instr (3.11-3.12) /
				.instr_ptr (3.13+): pointers to _Py_CODEUNIT */
	int32_t frame_owner;	/* 3.11+: .owner (char) */
	int32_t frame_is_entry; /* 3.11 only: .is_entry (bool) */

	/* PyCodeObject */
	int32_t code_filename;	  /* .co_filename (str) */
	int32_t code_name;	  /* .co_name (str) */
	int32_t code_qualname;	  /* 3.11+: .co_qualname (str) */
	int32_t code_firstlineno; /* .co_firstlineno (int) */
	int32_t code_linetable; /* .co_lnotab (<= 3.9) / .co_linetable (bytes) */
	int32_t code_code;	/* <= 3.10: .co_code (bytes) */
	int32_t code_code_adaptive; /* 3.11+: offsetof(PyCodeObject, co_code_adaptive) */

	/* PyObject / PyVarObject / PyTypeObject */
	int32_t object_type;	/* PyObject.ob_type */
	int32_t varobject_size; /* PyVarObject.ob_size */
	int32_t type_name;	/* PyTypeObject.tp_name (const char *) */

	/* PyBytesObject */
	int32_t bytes_sval; /* .ob_sval */

	/* PyUnicodeObject: the compact forms are what code objects hold */
	int32_t unicode_length; /* PyASCIIObject.length */
	int32_t unicode_state; /* PyASCIIObject.state (a 32-bit bitfield word) */
	int32_t unicode_ascii_size; /* sizeof(PyASCIIObject): ascii data follows */
	int32_t unicode_compact_size; /* sizeof(PyCompactUnicodeObject) */
	/* bit positions inside the state word */
	int8_t unicode_kind_shift;  /* kind:3 */
	int8_t unicode_compact_bit; /* compact:1 */
	int8_t unicode_ascii_bit;   /* ascii:1 */
	int8_t _pad2;

	/* What the heap census reads (memattach heap, docs/heap.md); none of
	 * it is needed by stacks or tracking, so a build whose DWARF lacks
	 * one of these still attaches */
	int32_t runtime_gc;	     /* 3.8: _PyRuntimeState.gc */
	int32_t interp_gc;	     /* 3.9+: PyInterpreterState.gc */
	int32_t gc_generations;	     /* struct _gc_runtime_state.generations */
	int32_t gc_generation_size;  /* sizeof(struct gc_generation) */
	int32_t gc_permanent;	     /* .permanent_generation */
	int32_t gc_collecting;	     /* .collecting (int) */
	int32_t frame_localsplus;    /* .f_localsplus / .localsplus */
	int32_t code_nlocals;	     /* .co_nlocals / .co_nlocalsplus (int) */
	int32_t code_varnames;	     /* .co_varnames / .co_localsplusnames */
	int32_t type_basicsize;	     /* PyTypeObject.tp_basicsize */
	int32_t type_itemsize;	     /* .tp_itemsize */
	int32_t type_flags;	     /* .tp_flags (unsigned long) */
	int32_t type_traverse;	     /* .tp_traverse */
	int32_t type_base;	     /* .tp_base */
	int32_t list_items;	     /* PyListObject.ob_item */
	int32_t list_allocated;	     /* PyListObject.allocated */
	int32_t set_mask;	     /* PySetObject.mask */
	int32_t set_table;	     /* PySetObject.table */
	int32_t bytearray_alloc;     /* PyByteArrayObject.ob_alloc */
	int32_t unicode_utf8;	     /* PyCompactUnicodeObject.utf8 */
	int32_t unicode_utf8_length; /* PyCompactUnicodeObject.utf8_length */
	int32_t module_dict;	     /* PyModuleObject.md_dict */
	int32_t module_name;	     /* PyModuleObject.md_name */
	int32_t _pad3;
};

/*
 * Every field of struct ma_py_offsets after the header, in order, with its
 * width in bits: X(name, 32) for an int32_t offset, X(name, 8) for an int8_t
 * bit position.  Field sets (common/ma_pyver.h) are bit masks over this
 * order, and the attacher prints and compares through it.
 */
#define MA_PY_OFFSETS_FIELDS(X)                                                \
	X(runtime_interpreters_head, 32)                                       \
	X(runtime_interpreters_main, 32)                                       \
	X(runtime_gil, 32)                                                     \
	X(interp_next, 32)                                                     \
	X(interp_id, 32)                                                       \
	X(interp_threads_head, 32)                                             \
	X(interp_gil_ptr, 32)                                                  \
	X(gil_last_holder, 32)                                                 \
	X(gil_locked, 32)                                                      \
	X(tstate_next, 32)                                                     \
	X(tstate_interp, 32)                                                   \
	X(tstate_frame, 32)                                                    \
	X(tstate_cframe, 32)                                                   \
	X(cframe_current_frame, 32)                                            \
	X(tstate_thread_id, 32)                                                \
	X(tstate_native_thread_id, 32)                                         \
	X(frame_previous, 32)                                                  \
	X(frame_code, 32)                                                      \
	X(frame_instr, 32)                                                     \
	X(frame_owner, 32)                                                     \
	X(frame_is_entry, 32)                                                  \
	X(code_filename, 32)                                                   \
	X(code_name, 32)                                                       \
	X(code_qualname, 32)                                                   \
	X(code_firstlineno, 32)                                                \
	X(code_linetable, 32)                                                  \
	X(code_code, 32)                                                       \
	X(code_code_adaptive, 32)                                              \
	X(object_type, 32)                                                     \
	X(varobject_size, 32)                                                  \
	X(type_name, 32)                                                       \
	X(bytes_sval, 32)                                                      \
	X(unicode_length, 32)                                                  \
	X(unicode_state, 32)                                                   \
	X(unicode_ascii_size, 32)                                              \
	X(unicode_compact_size, 32)                                            \
	X(unicode_kind_shift, 8)                                               \
	X(unicode_compact_bit, 8)                                              \
	X(unicode_ascii_bit, 8)                                                \
	X(runtime_gc, 32)                                                      \
	X(interp_gc, 32)                                                       \
	X(gc_generations, 32)                                                  \
	X(gc_generation_size, 32)                                              \
	X(gc_permanent, 32)                                                    \
	X(gc_collecting, 32)                                                   \
	X(frame_localsplus, 32)                                                \
	X(code_nlocals, 32)                                                    \
	X(code_varnames, 32)                                                   \
	X(type_basicsize, 32)                                                  \
	X(type_itemsize, 32)                                                   \
	X(type_flags, 32)                                                      \
	X(type_traverse, 32)                                                   \
	X(type_base, 32)                                                       \
	X(list_items, 32)                                                      \
	X(list_allocated, 32)                                                  \
	X(set_mask, 32)                                                        \
	X(set_table, 32)                                                       \
	X(bytearray_alloc, 32)                                                 \
	X(unicode_utf8, 32)                                                    \
	X(unicode_utf8_length, 32)                                             \
	X(module_dict, 32)                                                     \
	X(module_name, 32)

enum ma_py_field {
#define MA_PY_FIELD_ENUM_(n, w) MA_FI_##n,
	MA_PY_OFFSETS_FIELDS(MA_PY_FIELD_ENUM_)
#undef MA_PY_FIELD_ENUM_
		MA_FI_COUNT
};

/* The bit of one field in a field set */
#define MA_F(n) (1ull << MA_FI_##n)

_Static_assert(MA_FI_COUNT <= 64, "a field set is a uint64_t");

#define MA_PY_FIELD_BYTES_(n, w) +(w) / 8
_Static_assert(sizeof(struct ma_py_offsets) ==
		       16 MA_PY_OFFSETS_FIELDS(MA_PY_FIELD_BYTES_) + 1 + 4,
	       "MA_PY_OFFSETS_FIELDS lists every field of ma_py_offsets");
#undef MA_PY_FIELD_BYTES_

struct ma_py_field_desc {
	const char *name;
	uint16_t off; /* offsetof(struct ma_py_offsets, name) */
	uint8_t is8;  /* int8_t (a bit position), else int32_t */
};

static const struct ma_py_field_desc ma_py_fields[MA_FI_COUNT] = {
#define MA_PY_FIELD_DESC_(n, w)                                                \
	[MA_FI_##n] = { #n, offsetof(struct ma_py_offsets, n), (w) == 8 },
	MA_PY_OFFSETS_FIELDS(MA_PY_FIELD_DESC_)
#undef MA_PY_FIELD_DESC_
};

static inline int ma_py_field_get(const struct ma_py_offsets *o, int i)
{
	const char *p = (const char *)o + ma_py_fields[i].off;

	if (ma_py_fields[i].is8)
		return *(const int8_t *)p;
	return *(const int32_t *)p;
}

static inline void ma_py_field_set(struct ma_py_offsets *o, int i, int v)
{
	char *p = (char *)o + ma_py_fields[i].off;

	if (ma_py_fields[i].is8)
		*(int8_t *)p = (int8_t)v;
	else
		*(int32_t *)p = v;
}

static inline int ma_py_minor(uint32_t version_hex)
{
	return (int)((version_hex >> 16) & 0xff);
}

static inline int ma_py_major(uint32_t version_hex)
{
	return (int)((version_hex >> 24) & 0xff);
}

#endif
