/* SPDX-License-Identifier: MIT */
/*
 * struct ma_py_offsets from CPython's own _Py_DebugOffsets at the start of
 * _PyRuntime (see docs/offsets.md, "2. _Py_DebugOffsets").  Which versions
 * have it is their rows' business (common/ma_pyver.h); the layout of the
 * struct itself is known for 3.13 only (struct ma_dbgoff313).
 */
#include "pyoffsets.h"

#include <errno.h>
#include <string.h>

#include "ma_pyver.h"
#include "errors.h"
#include "memread.h"
#include "offsets_internal.h"

/*
 * CPython 3.13's struct _Py_DebugOffsets (Include/internal/pycore_runtime.h),
 * every field a uint64_t after the 8-byte cookie.  3.14 reorganised it, so
 * this layout is only trusted when the version inside says 3.13.
 */
struct ma_dbgoff313 {
	char cookie[8];
	uint64_t version;
	uint64_t free_threaded;
	struct {
		uint64_t size, finalizing, interpreters_head;
	} runtime_state;
	struct {
		uint64_t size, id, next, threads_head, gc, imports_modules,
			sysdict, builtins, ceval_gil, gil_runtime_state,
			gil_runtime_state_enabled, gil_runtime_state_locked,
			gil_runtime_state_holder;
	} interpreter_state;
	struct {
		uint64_t size, prev, next, interp, current_frame, thread_id,
			native_thread_id, datastack_chunk, status;
	} thread_state;
	struct {
		uint64_t size, previous, executable, instr_ptr, localsplus,
			owner;
	} interpreter_frame;
	struct {
		uint64_t size, filename, name, qualname, linetable, firstlineno,
			argcount, localsplusnames, localspluskinds,
			co_code_adaptive;
	} code_object;
	struct {
		uint64_t size, ob_type;
	} pyobject;
	struct {
		uint64_t size, tp_name, tp_repr, tp_flags;
	} type_object;
	struct {
		uint64_t size, ob_item, ob_size;
	} tuple_object;
	struct {
		uint64_t size, ob_item, ob_size;
	} list_object;
	struct {
		uint64_t size, ma_keys, ma_values;
	} dict_object;
	struct {
		uint64_t size, ob_fval;
	} float_object;
	struct {
		uint64_t size, lv_tag, ob_digit;
	} long_object;
	struct {
		uint64_t size, ob_size, ob_sval;
	} bytes_object;
	struct {
		uint64_t size, state, length, asciiobject_size;
	} unicode_object;
	struct {
		uint64_t size, collecting;
	} gc;
};

_Static_assert(sizeof(struct ma_dbgoff313) == 584,
	       "_Py_DebugOffsets 3.13 is 584 bytes");

/* The version has _Py_DebugOffsets (3.14+: assumed to, like 3.13) */
static int has_debug_offsets(uint32_t version_hex)
{
	return ma_py_major(version_hex) == 3 &&
	       ma_py_minor(version_hex) >= MA_PY_MIN_MINOR &&
	       ma_pyver_nearest(version_hex)->debug_offsets;
}

static int no_debug_offsets(uint32_t version_hex)
{
	int first = MA_PY_MAX_MINOR;

	for (int i = MA_PY_MAX_MINOR; i >= MA_PY_MIN_MINOR; i--)
		if (ma_pyvers[i - MA_PY_MIN_MINOR].debug_offsets)
			first = i;
	return ma_err(-ENOENT,
		      "no _Py_DebugOffsets before Python 3.%d (this is %d.%d)",
		      first, ma_py_major(version_hex),
		      ma_py_minor(version_hex));
}

size_t ma_pyoffsets_debug_offsets_size(void)
{
	return sizeof(struct ma_dbgoff313);
}

/* An offset that must lie inside a struct of the given size */
static int in(uint64_t off, uint64_t size, int32_t *dst)
{
	if (size == 0 || size > (1u << 20) || off >= size)
		return -1;
	*dst = (int32_t)off;
	return 0;
}

int ma_pyoffsets_from_debug_offsets_buf(const void *buf, size_t len,
					uint32_t version_hex,
					struct ma_py_offsets *out)
{
	struct ma_dbgoff313 d;
	uint32_t v;
	int bad = 0;

	if (version_hex && !has_debug_offsets(version_hex))
		return no_debug_offsets(version_hex);
	if (len < 16 || memcmp(buf, "xdebugpy", 8))
		return ma_err(-ENOENT, "no _Py_DebugOffsets: cookie "
				       "\"xdebugpy\" not found at _PyRuntime");
	memcpy(&v, (const char *)buf + 8, sizeof(v));
	if (version_hex && (v >> 16) != (version_hex >> 16))
		return ma_err(-EPROTO,
			      "_Py_DebugOffsets says version 0x%08x, the "
			      "binary 0x%08x",
			      v, version_hex);
	if (ma_py_major(v) != 3 || ma_py_minor(v) != 13)
		return ma_err(-ENOTSUP,
			      "_Py_DebugOffsets of Python %d.%d: layout not "
			      "known (only 3.13 is)",
			      ma_py_major(v), ma_py_minor(v));
	if (len < sizeof(d))
		return ma_err(-EPROTO, "_Py_DebugOffsets: short read");
	memcpy(&d, buf, sizeof(d));
	if (d.free_threaded)
		return ma_err(-ENOTSUP, "_Py_DebugOffsets: free-threaded "
					"(3.13t) builds are not supported");

	ma_pyoffsets_init(out, version_hex ? version_hex : v,
			  MA_OFFSETS_SRC_DEBUG_OFFSETS);
	bad |= in(d.runtime_state.interpreters_head, d.runtime_state.size,
		  &out->runtime_interpreters_head);
	/* Not in _Py_DebugOffsets: 3.13's struct pyinterpreters is
	 * { PyMutex mutex; PyInterpreterState *head, *main; ... }, so main
	 * is the pointer after head. */
	bad |= in(d.runtime_state.interpreters_head + 8, d.runtime_state.size,
		  &out->runtime_interpreters_main);

	bad |= in(d.interpreter_state.next, d.interpreter_state.size,
		  &out->interp_next);
	bad |= in(d.interpreter_state.id, d.interpreter_state.size,
		  &out->interp_id);
	bad |= in(d.interpreter_state.threads_head, d.interpreter_state.size,
		  &out->interp_threads_head);
	bad |= in(d.interpreter_state.ceval_gil, d.interpreter_state.size,
		  &out->interp_gil_ptr);
	/* locked/holder are given from the start of PyInterpreterState (via
	 * its embedded _gil); we want them within struct _gil_runtime_state */
	if (d.interpreter_state.gil_runtime_state_holder <
		    d.interpreter_state.gil_runtime_state ||
	    d.interpreter_state.gil_runtime_state_locked <
		    d.interpreter_state.gil_runtime_state)
		bad = 1;
	else {
		uint64_t g = d.interpreter_state.gil_runtime_state;

		bad |= in(d.interpreter_state.gil_runtime_state_holder - g,
			  4096, &out->gil_last_holder);
		bad |= in(d.interpreter_state.gil_runtime_state_locked - g,
			  4096, &out->gil_locked);
	}

	bad |= in(d.thread_state.next, d.thread_state.size, &out->tstate_next);
	bad |= in(d.thread_state.interp, d.thread_state.size,
		  &out->tstate_interp);
	bad |= in(d.thread_state.current_frame, d.thread_state.size,
		  &out->tstate_frame);
	bad |= in(d.thread_state.thread_id, d.thread_state.size,
		  &out->tstate_thread_id);
	bad |= in(d.thread_state.native_thread_id, d.thread_state.size,
		  &out->tstate_native_thread_id);

	bad |= in(d.interpreter_frame.previous, d.interpreter_frame.size,
		  &out->frame_previous);
	bad |= in(d.interpreter_frame.executable, d.interpreter_frame.size,
		  &out->frame_code);
	bad |= in(d.interpreter_frame.instr_ptr, d.interpreter_frame.size,
		  &out->frame_instr);
	bad |= in(d.interpreter_frame.owner, d.interpreter_frame.size,
		  &out->frame_owner);

	bad |= in(d.code_object.filename, d.code_object.size,
		  &out->code_filename);
	bad |= in(d.code_object.name, d.code_object.size, &out->code_name);
	bad |= in(d.code_object.qualname, d.code_object.size,
		  &out->code_qualname);
	bad |= in(d.code_object.firstlineno, d.code_object.size,
		  &out->code_firstlineno);
	bad |= in(d.code_object.linetable, d.code_object.size,
		  &out->code_linetable);
	/* co_code_adaptive is a trailing array: its offset is the size */
	bad |= in(d.code_object.co_code_adaptive, d.code_object.size + 1,
		  &out->code_code_adaptive);

	bad |= in(d.pyobject.ob_type, d.pyobject.size, &out->object_type);
	/* PyTupleObject starts with its PyVarObject, so this is
	 * offsetof(PyVarObject, ob_size) */
	bad |= in(d.tuple_object.ob_size, d.tuple_object.size,
		  &out->varobject_size);
	bad |= in(d.type_object.tp_name, d.type_object.size, &out->type_name);
	bad |= in(d.bytes_object.ob_sval, d.bytes_object.size,
		  &out->bytes_sval);

	bad |= in(d.unicode_object.length, d.unicode_object.size,
		  &out->unicode_length);
	bad |= in(d.unicode_object.state, d.unicode_object.size,
		  &out->unicode_state);
	bad |= in(d.unicode_object.asciiobject_size, d.unicode_object.size,
		  &out->unicode_ascii_size);
	/* Not in _Py_DebugOffsets: PyCompactUnicodeObject is PyASCIIObject
	 * plus Py_ssize_t utf8_length and char *utf8; and the state bits are
	 * interned:2, kind:3, compact:1, ascii:1 (3.13). */
	out->unicode_compact_size = out->unicode_ascii_size + 16;
	out->unicode_kind_shift = 2;
	out->unicode_compact_bit = 5;
	out->unicode_ascii_bit = 6;

	if (bad || d.pyobject.ob_type != 8)
		return ma_err(-EPROTO, "_Py_DebugOffsets: implausible values "
				       "(an offset outside its struct)");
	return 0;
}

static int read_debug_offsets(struct ma_mem *m, uint64_t addr, void *buf,
			      size_t len)
{
	int r = ma_mem_read(m, addr, buf, len);

	if (r)
		return ma_err(r, "reading _Py_DebugOffsets at 0x%llx in %d: %s",
			      (unsigned long long)addr, (int)ma_mem_pid(m),
			      strerror(-r));
	return 0;
}

int ma_pyoffsets_from_debug_offsets(struct ma_mem *m, uint64_t runtime_addr,
				    uint32_t version_hex,
				    struct ma_py_offsets *out)
{
	struct ma_dbgoff313 d;
	int r;

	if (version_hex && !has_debug_offsets(version_hex))
		return no_debug_offsets(version_hex);
	/* The header first: a 3.14+ struct may be laid out differently but
	 * always starts with cookie and version. */
	r = read_debug_offsets(m, runtime_addr, &d, 16);
	if (r)
		return r;
	if (memcmp(d.cookie, "xdebugpy", 8) || ma_py_minor(d.version) != 13)
		return ma_pyoffsets_from_debug_offsets_buf(&d, 16, version_hex,
							   out);
	r = read_debug_offsets(m, runtime_addr, &d, sizeof(d));
	if (r)
		return r;
	return ma_pyoffsets_from_debug_offsets_buf(&d, sizeof(d), version_hex,
						   out);
}
