/* SPDX-License-Identifier: MIT */
/*
 * struct ma_py_offsets from DWARF (see docs/offsets.md, "1. DWARF").
 *
 * DWARF lookups are by name, and must be fast: `memattach stacks` has a
 * budget of ~50 ms end to end, while walking every DIE of a libpython costs
 * 65-75 ms, and even the top level of every compile unit 11-17 ms (3.11,
 * 3.12), against ~1 ms for the one CU we need.  So we index lazily, one CU at
 * a time, and start with the CUs that are known to define the types we need:
 * the CU of _PyEval_EvalFrameDefault (Python/ceval.c includes the internal
 * headers for runtime, interpreter, thread, frame and code objects), found by
 * address through .debug_aranges.  Only a type not found there makes us index
 * further CUs, in file order, until it turns up.
 */
#include "pyoffsets.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <gelf.h>
#include <libelf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ma_pyver.h"
#include "errors.h"
#include "offsets_internal.h"

/* ---------------------------------------------------------------------- */
/* A lazy name index over compile units                                    */

enum { NS_TYPEDEF = 0, NS_TAG = 1 };

struct ent {
	const char *name; /* NULL: empty slot; points into the DWARF data */
	int ns;
	int decl; /* a struct declaration only (no members) */
	Dwarf_Die die;
};

/* Functions whose CUs define (most of) the types we need, tried in order
 * before any full scan.  ceval.c has nearly everything; the others cover
 * types that a given version's ceval.c does not use (GCC emits only the
 * types a CU uses). */
static const char *const anchor_syms[] = {
	"_PyEval_EvalFrameDefault", /* Python/ceval.c */
	"PyEval_SaveThread", /* ceval_gil.c (3.12+): _gil_runtime_state */
	"PyBytes_FromStringAndSize", /* Objects/bytesobject.c */
	"PyUnicode_New",	     /* Objects/unicodeobject.c */
	"PyThreadState_Get",	     /* Python/pystate.c */
	/* for the heap census' optional fields */
	"PyModule_GetDict", /* Objects/moduleobject.c: PyModuleObject */
	"PySet_Size",	    /* Objects/setobject.c */
	"PyByteArray_Size", /* Objects/bytearrayobject.c */
	"PyGC_Collect",	    /* the collector: _gc_runtime_state */
};

#define NANCHORS (sizeof(anchor_syms) / sizeof(anchor_syms[0]))

struct dwx {
	Dwfl_Module *mod;
	Dwarf *dw;
	Dwarf_Addr bias;

	struct ent *tab;
	size_t cap, n;

	Dwarf_Addr anchor_addr[NANCHORS]; /* 0: symbol absent */
	size_t next_anchor;
	int anchors_found;

	Dwarf_Off *done; /* offsets of CU DIEs already indexed */
	size_t ndone, capdone;

	Dwarf_Off scan_off; /* next CU header for the full scan */
	int scan_over;

	/* CUs indexed so far: tells index_more whether it made progress */
	unsigned ncu_indexed;
};

static uint64_t hash_name(int ns, const char *s)
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)ns;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

static struct ent *tab_slot(struct dwx *x, int ns, const char *name)
{
	size_t mask = x->cap - 1;
	size_t i = hash_name(ns, name) & mask;

	for (;; i = (i + 1) & mask) {
		struct ent *e = &x->tab[i];

		if (!e->name || (e->ns == ns && !strcmp(e->name, name)))
			return e;
	}
}

static int tab_grow(struct dwx *x)
{
	struct ent *old = x->tab;
	size_t oldcap = x->cap;

	x->cap = oldcap ? oldcap * 2 : 4096;
	x->tab = calloc(x->cap, sizeof(*x->tab));
	if (!x->tab) {
		x->tab = old;
		x->cap = oldcap;
		return -ENOMEM;
	}
	for (size_t i = 0; i < oldcap; i++)
		if (old[i].name)
			*tab_slot(x, old[i].ns, old[i].name) = old[i];
	free(old);
	return 0;
}

static int is_decl(Dwarf_Die *die)
{
	bool flag = false;
	Dwarf_Attribute a;

	if (!dwarf_attr(die, DW_AT_declaration, &a))
		return 0;
	return dwarf_formflag(&a, &flag) == 0 && flag;
}

/* First complete definition wins; a declaration is only kept until a
 * definition shows up. */
static int tab_add(struct dwx *x, int ns, const char *name, Dwarf_Die *die)
{
	struct ent *e;
	int decl = ns == NS_TAG && is_decl(die);

	if ((x->n + 1) * 2 > x->cap && tab_grow(x))
		return -ENOMEM;
	e = tab_slot(x, ns, name);
	if (e->name && !(e->decl && !decl))
		return 0;
	if (!e->name)
		x->n++;
	e->name = name;
	e->ns = ns;
	e->decl = decl;
	e->die = *die;
	return 0;
}

static int cu_done(struct dwx *x, Dwarf_Off off)
{
	for (size_t i = 0; i < x->ndone; i++)
		if (x->done[i] == off)
			return 1;
	return 0;
}

static int mark_done(struct dwx *x, Dwarf_Off off)
{
	if (x->ndone == x->capdone) {
		size_t c = x->capdone ? x->capdone * 2 : 64;
		Dwarf_Off *d = realloc(x->done, c * sizeof(*d));

		if (!d)
			return -ENOMEM;
		x->done = d;
		x->capdone = c;
	}
	x->done[x->ndone++] = off;
	return 0;
}

/* Index the named struct/union/typedef DIEs directly under a unit DIE.
 * Only top-level DIEs: C types at file scope are always there. */
static int index_unit(struct dwx *x, Dwarf_Die *cu, int depth)
{
	Dwarf_Die c;
	int r;

	if (cu_done(x, dwarf_dieoffset(cu)))
		return 0;
	r = mark_done(x, dwarf_dieoffset(cu));
	if (r)
		return r;
	x->ncu_indexed++;
	if (dwarf_child(cu, &c) != 0)
		return 0;
	do {
		int tag = dwarf_tag(&c);
		const char *name;
		int ns;

		if (tag == DW_TAG_imported_unit && depth < 8) {
			/* dwz-style partial units holding shared types */
			Dwarf_Attribute a;
			Dwarf_Die pu;

			if (dwarf_attr(&c, DW_AT_import, &a) &&
			    dwarf_formref_die(&a, &pu)) {
				r = index_unit(x, &pu, depth + 1);
				if (r)
					return r;
			}
			continue;
		}
		if (tag == DW_TAG_typedef)
			ns = NS_TYPEDEF;
		else if (tag == DW_TAG_structure_type ||
			 tag == DW_TAG_union_type)
			ns = NS_TAG;
		else
			continue;
		name = dwarf_diename(&c);
		if (!name)
			continue;
		r = tab_add(x, ns, name, &c);
		if (r)
			return r;
	} while (dwarf_siblingof(&c, &c) == 0);
	return 0;
}

static void find_anchors(struct dwx *x)
{
	int n = dwfl_module_getsymtab(x->mod);

	x->anchors_found = 1;
	for (int i = 1; i < n; i++) {
		GElf_Sym sym;
		GElf_Addr addr;
		const char *name = dwfl_module_getsym_info(
			x->mod, i, &sym, &addr, NULL, NULL, NULL);

		if (!name || GELF_ST_TYPE(sym.st_info) != STT_FUNC ||
		    sym.st_shndx == SHN_UNDEF)
			continue;
		for (size_t k = 0; k < NANCHORS; k++)
			if (!x->anchor_addr[k] && !strcmp(name, anchor_syms[k]))
				x->anchor_addr[k] = addr;
	}
}

/* The DIE at the end of a subprogram's DW_AT_abstract_origin /
 * DW_AT_specification chain: the one in the unit that declared it.  (Its
 * name is what dwarf_diename() returns for any DIE of the chain, since that
 * integrates those attributes.) */
static void subprogram_origin(Dwarf_Die *die, Dwarf_Die *org)
{
	Dwarf_Attribute a;
	Dwarf_Die tmp;

	*org = *die;
	for (int hops = 0; hops < 4; hops++) {
		if (!(dwarf_attr(org, DW_AT_abstract_origin, &a) ||
		      dwarf_attr(org, DW_AT_specification, &a)) ||
		    !dwarf_formref_die(&a, &tmp))
			return;
		*org = tmp;
	}
}

/* The CU to index for anchor function k.  With LTO (Debian's python3.11)
 * the code lives in "<artificial>" ltrans units that hold no types: the
 * function's DIE there is a concrete instance whose DW_AT_abstract_origin
 * lies in the early-debug unit of the real source file, which has them.
 * Matched by name rather than by PC, so that split hot/cold ranges need no
 * .debug_rnglists (which we may not have loaded). */
static int anchor_cu(struct dwx *x, size_t k, Dwarf_Die *out)
{
	Dwarf_Addr addr = x->anchor_addr[k];
	const char *producer;
	Dwarf_Attribute a;
	Dwarf_Die c;

	if (!dwarf_addrdie(x->dw, addr - x->bias, out))
		return -ENOENT;
	producer = dwarf_formstring(dwarf_attr(out, DW_AT_producer, &a));
	if (!producer || strncmp(producer, "GNU GIMPLE", 10))
		return 0;
	if (dwarf_child(out, &c) != 0)
		return 0;
	do {
		Dwarf_Die org, cu;
		const char *n;

		if (dwarf_tag(&c) != DW_TAG_subprogram)
			continue;
		n = dwarf_diename(&c);
		if (!n || strcmp(n, anchor_syms[k]))
			continue;
		subprogram_origin(&c, &org);
		if (dwarf_diecu(&org, &cu, NULL, NULL)) {
			*out = cu;
			return 0;
		}
	} while (dwarf_siblingof(&c, &c) == 0);
	return 0;
}

/* Index cu: 0 when that indexed a CU not indexed before, 1 when not
 * (done already), or -errno */
static int index_new(struct dwx *x, Dwarf_Die *cu)
{
	size_t before = x->ncu_indexed;
	int r = index_unit(x, cu, 0);

	if (r)
		return r;
	return x->ncu_indexed != before ? 0 : 1;
}

/* Index one more CU: the next anchor's, else the next one in file order.
 * Returns 0 when something was indexed, 1 when there is nothing left. */
static int index_more(struct dwx *x)
{
	if (!x->anchors_found)
		find_anchors(x);
	while (x->next_anchor < NANCHORS) {
		size_t k = x->next_anchor++;
		Dwarf_Die cu;
		int r;

		if (!x->anchor_addr[k] || anchor_cu(x, k, &cu))
			continue;
		r = index_new(x, &cu);
		if (r <= 0)
			return r;
	}
	while (!x->scan_over) {
		Dwarf_Off off = x->scan_off, next;
		size_t hsize;
		Dwarf_Die cu;
		int r;

		if (dwarf_nextcu(x->dw, off, &next, &hsize, NULL, NULL, NULL)) {
			x->scan_over = 1;
			break;
		}
		x->scan_off = next;
		if (!dwarf_offdie(x->dw, off + hsize, &cu))
			continue;
		r = index_new(x, &cu);
		if (r <= 0)
			return r;
	}
	return 1;
}

/* A type by name, in one namespace; indexes more CUs until a complete
 * definition turns up.  Returns NULL when absent, or the declaration when
 * only that exists. */
static struct ent *find_type(struct dwx *x, int ns, const char *name)
{
	for (;;) {
		struct ent *e = x->cap ? tab_slot(x, ns, name) : NULL;

		if (e && e->name && !e->decl)
			return e;
		if (index_more(x) != 0)
			break;
	}
	/* looked up again: indexing may have moved the table */
	if (x->cap && tab_slot(x, ns, name)->name)
		return tab_slot(x, ns, name);
	return NULL;
}

/* Strip typedefs and qualifiers down to the underlying type. */
static int peel(Dwarf_Die *die)
{
	for (int i = 0; i < 32; i++) {
		Dwarf_Attribute a;

		switch (dwarf_tag(die)) {
		case DW_TAG_typedef:
		case DW_TAG_const_type:
		case DW_TAG_volatile_type:
		case DW_TAG_restrict_type:
		case DW_TAG_atomic_type:
			if (!dwarf_attr(die, DW_AT_type, &a) ||
			    !dwarf_formref_die(&a, die))
				return -ENOENT;
			break;
		default:
			return 0;
		}
	}
	return -ELOOP;
}

/* Peel, then swap a bare declaration for its definition elsewhere. */
static int complete_struct(struct dwx *x, Dwarf_Die *die)
{
	const char *name;
	struct ent *e;

	if (peel(die))
		return -ENOENT;
	if (dwarf_tag(die) != DW_TAG_structure_type &&
	    dwarf_tag(die) != DW_TAG_union_type)
		return -ENOENT;
	if (!is_decl(die))
		return 0;
	name = dwarf_diename(die);
	if (!name)
		return -ENOENT;
	e = find_type(x, NS_TAG, name);
	if (!e || e->decl)
		return -ENOENT;
	*die = e->die;
	return 0;
}

static int member_location(Dwarf_Die *m, Dwarf_Word *off)
{
	Dwarf_Attribute a;
	Dwarf_Op *ops;
	size_t nops;

	*off = 0;
	if (!dwarf_attr(m, DW_AT_data_member_location, &a)) {
		/* union members and DWARF5 bit fields carry none */
		if (dwarf_attr(m, DW_AT_data_bit_offset, &a)) {
			if (dwarf_formudata(&a, off))
				return -EPROTO;
			*off /= 8;
		}
		return 0;
	}
	if (dwarf_formudata(&a, off) == 0)
		return 0;
	/* DWARF 2 style: a location expression DW_OP_plus_uconst N */
	if (dwarf_getlocation(&a, &ops, &nops) == 0 && nops == 1 &&
	    ops[0].atom == DW_OP_plus_uconst) {
		*off = ops[0].number;
		return 0;
	}
	return -EPROTO;
}

/* Member `name` of struct/union `st`, looking through anonymous struct and
 * union members.  On success *m is the member DIE and *off its byte offset
 * from the start of st. */
static int find_member(struct dwx *x, Dwarf_Die *st, const char *name,
		       size_t namelen, Dwarf_Die *m, Dwarf_Word *off, int depth)
{
	Dwarf_Die c;

	if (depth > 8 || dwarf_child(st, &c) != 0)
		return -ENOENT;
	do {
		const char *n;
		Dwarf_Word loc, sub;
		Dwarf_Attribute a;
		Dwarf_Die t;

		if (dwarf_tag(&c) != DW_TAG_member)
			continue;
		n = dwarf_diename(&c);
		if (n && (strlen(n) != namelen || strncmp(n, name, namelen)))
			continue;
		if (member_location(&c, &loc))
			return -EPROTO;
		if (n) {
			*m = c;
			*off = loc;
			return 0;
		}
		/* anonymous struct/union: search inside */
		if (!dwarf_attr(&c, DW_AT_type, &a) ||
		    !dwarf_formref_die(&a, &t) || complete_struct(x, &t))
			continue;
		if (find_member(x, &t, name, namelen, m, &sub, depth + 1) ==
		    0) {
			*off = loc + sub;
			return 0;
		}
	} while (dwarf_siblingof(&c, &c) == 0);
	return -ENOENT;
}

/* Offset of a dotted member path ("interpreters.head") in struct st.  Every
 * component but the last must be an embedded struct/union (not a pointer). */
static int member_path(struct dwx *x, Dwarf_Die st, const char *path,
		       Dwarf_Die *last, Dwarf_Word *off)
{
	Dwarf_Word total = 0;

	for (;;) {
		const char *dot = strchr(path, '.');
		size_t len = dot ? (size_t)(dot - path) : strlen(path);
		Dwarf_Word o;
		Dwarf_Die m;
		Dwarf_Attribute a;

		if (find_member(x, &st, path, len, &m, &o, 0))
			return -ENOENT;
		total += o;
		if (!dot) {
			*last = m;
			*off = total;
			return 0;
		}
		if (!dwarf_attr(&m, DW_AT_type, &a) ||
		    !dwarf_formref_die(&a, &st) || complete_struct(x, &st))
			return -ENOENT;
		path = dot + 1;
	}
}

/* Bit position (from bit 0 of the containing word, little-endian) of the
 * bit field m, relative to the start of its struct. */
static int bitfield_pos(Dwarf_Die *m, int *pos)
{
	Dwarf_Attribute a;
	Dwarf_Word v, loc = 0, bitoff, bitsize, bytes;

	if (dwarf_attr(m, DW_AT_data_bit_offset, &a)) {
		/* DWARF 4+: counted from the start of the struct */
		if (dwarf_formudata(&a, &v))
			return -EPROTO;
		*pos = (int)v;
		return 0;
	}
	/* DWARF 2/3 style: DW_AT_bit_offset counts from the most significant
	 * bit of a storage unit of DW_AT_byte_size bytes at the member
	 * location, so on little-endian the low bit is at
	 * unit_bits - bit_offset - bit_size. */
	if (!dwarf_attr(m, DW_AT_bit_offset, &a) ||
	    dwarf_formudata(&a, &bitoff))
		return -ENOENT;
	if (!dwarf_attr(m, DW_AT_bit_size, &a) || dwarf_formudata(&a, &bitsize))
		return -EPROTO;
	if (dwarf_attr(m, DW_AT_byte_size, &a)) {
		if (dwarf_formudata(&a, &bytes))
			return -EPROTO;
	} else {
		Dwarf_Die t;

		if (!dwarf_attr(m, DW_AT_type, &a) ||
		    !dwarf_formref_die(&a, &t) ||
		    dwarf_aggregate_size(&t, &bytes))
			return -EPROTO;
	}
	if (member_location(m, &loc))
		return -EPROTO;
	*pos = (int)(loc * 8 + bytes * 8 - bitoff - bitsize);
	return 0;
}

/* The types we read, by typedef name first (what CPython's code uses), then
 * by struct tag.  NULL: no such name. */
enum {
	T_RUNTIME,
	T_INTERP,
	T_GIL,
	T_TSTATE,
	T_CFRAME,
	T_FRAMEOBJ,
	T_IFRAME,
	T_CODE,
	T_OBJECT,
	T_VAROBJECT,
	T_TYPE,
	T_BYTES,
	T_ASCII,
	T_COMPACT,
	T_GCSTATE,
	T_GCGEN,
	T_LIST,
	T_SET,
	T_BYTEARRAY,
	T_MODULE,
	T_COUNT
};

static const struct {
	const char *tdef, *tag;
} types[T_COUNT] = {
	[T_RUNTIME] = { "_PyRuntimeState", "pyruntimestate" },
	[T_INTERP] = { "PyInterpreterState", "_is" },
	[T_GIL] = { NULL, "_gil_runtime_state" },
	[T_TSTATE] = { "PyThreadState", "_ts" },
	[T_CFRAME] = { "_PyCFrame", "_PyCFrame" },
	[T_FRAMEOBJ] = { "PyFrameObject", "_frame" },
	[T_IFRAME] = { "_PyInterpreterFrame", "_PyInterpreterFrame" },
	[T_CODE] = { "PyCodeObject", "PyCodeObject" },
	[T_OBJECT] = { "PyObject", "_object" },
	[T_VAROBJECT] = { "PyVarObject", NULL },
	[T_TYPE] = { "PyTypeObject", "_typeobject" },
	[T_BYTES] = { "PyBytesObject", NULL },
	[T_ASCII] = { "PyASCIIObject", NULL },
	[T_COMPACT] = { "PyCompactUnicodeObject", NULL },
	[T_GCSTATE] = { NULL, "_gc_runtime_state" },
	[T_GCGEN] = { NULL, "gc_generation" },
	[T_LIST] = { "PyListObject", NULL },
	[T_SET] = { "PySetObject", NULL },
	[T_BYTEARRAY] = { "PyByteArrayObject", NULL },
	[T_MODULE] = { "PyModuleObject", NULL },
};

enum { K_MEMBER, K_SIZEOF, K_BIT };

/*
 * Where one field is in DWARF from minor version `from` on (0: from the
 * first version that has it), until a later row for the same field.  Which
 * fields a version has is not said here but in its row of
 * common/ma_pyver.h: a field is looked up when that row has it, with the
 * last of its rows here that applies.
 */
struct spec {
	int field; /* enum ma_py_field */
	int from;
	int type;
	const char *path;
	int kind;
};

#define S(f, from, t, p)                                                       \
	{                                                                      \
		MA_FI_##f, from, t, p, K_MEMBER                                \
	}

static const struct spec specs[] = {
	S(runtime_interpreters_head, 0, T_RUNTIME, "interpreters.head"),
	S(runtime_interpreters_main, 0, T_RUNTIME, "interpreters.main"),
	S(runtime_gil, 0, T_RUNTIME, "ceval.gil"),

	S(interp_next, 0, T_INTERP, "next"),
	S(interp_id, 0, T_INTERP, "id"),
	S(interp_threads_head, 0, T_INTERP, "tstate_head"),
	S(interp_threads_head, 11, T_INTERP, "threads.head"),
	S(interp_gil_ptr, 0, T_INTERP, "ceval.gil"),

	S(gil_last_holder, 0, T_GIL, "last_holder"),
	S(gil_locked, 0, T_GIL, "locked"),

	S(tstate_next, 0, T_TSTATE, "next"),
	S(tstate_interp, 0, T_TSTATE, "interp"),
	S(tstate_frame, 0, T_TSTATE, "frame"),
	S(tstate_frame, 13, T_TSTATE, "current_frame"),
	S(tstate_cframe, 0, T_TSTATE, "cframe"),
	S(cframe_current_frame, 0, T_CFRAME, "current_frame"),
	S(tstate_thread_id, 0, T_TSTATE, "thread_id"),
	S(tstate_native_thread_id, 0, T_TSTATE, "native_thread_id"),

	S(frame_previous, 0, T_FRAMEOBJ, "f_back"),
	S(frame_previous, 11, T_IFRAME, "previous"),
	S(frame_code, 0, T_FRAMEOBJ, "f_code"),
	S(frame_code, 11, T_IFRAME, "f_code"),
	S(frame_code, 13, T_IFRAME, "f_executable"),
	S(frame_instr, 0, T_FRAMEOBJ, "f_lasti"),
	S(frame_instr, 11, T_IFRAME, "prev_instr"),
	S(frame_instr, 13, T_IFRAME, "instr_ptr"),
	S(frame_owner, 0, T_IFRAME, "owner"),
	S(frame_is_entry, 0, T_IFRAME, "is_entry"),

	S(code_filename, 0, T_CODE, "co_filename"),
	S(code_name, 0, T_CODE, "co_name"),
	S(code_qualname, 0, T_CODE, "co_qualname"),
	S(code_firstlineno, 0, T_CODE, "co_firstlineno"),
	S(code_linetable, 0, T_CODE, "co_lnotab"),
	S(code_linetable, 10, T_CODE, "co_linetable"),
	S(code_code, 0, T_CODE, "co_code"),
	S(code_code_adaptive, 0, T_CODE, "co_code_adaptive"),

	S(object_type, 0, T_OBJECT, "ob_type"),
	S(varobject_size, 0, T_VAROBJECT, "ob_size"),
	S(type_name, 0, T_TYPE, "tp_name"),

	S(bytes_sval, 0, T_BYTES, "ob_sval"),

	S(unicode_length, 0, T_ASCII, "length"),
	S(unicode_state, 0, T_ASCII, "state"),
	{ MA_FI_unicode_ascii_size, 0, T_ASCII, NULL, K_SIZEOF },
	{ MA_FI_unicode_compact_size, 0, T_COMPACT, NULL, K_SIZEOF },
	{ MA_FI_unicode_kind_shift, 0, T_ASCII, "state.kind", K_BIT },
	{ MA_FI_unicode_compact_bit, 0, T_ASCII, "state.compact", K_BIT },
	{ MA_FI_unicode_ascii_bit, 0, T_ASCII, "state.ascii", K_BIT },

	/* The heap census (optional fields: ma_pyver_heap_fields) */
	S(runtime_gc, 0, T_RUNTIME, "gc"),
	S(interp_gc, 0, T_INTERP, "gc"),
	S(gc_generations, 0, T_GCSTATE, "generations"),
	{ MA_FI_gc_generation_size, 0, T_GCGEN, NULL, K_SIZEOF },
	S(gc_permanent, 0, T_GCSTATE, "permanent_generation"),
	S(gc_collecting, 0, T_GCSTATE, "collecting"),
	S(frame_localsplus, 0, T_FRAMEOBJ, "f_localsplus"),
	S(frame_localsplus, 11, T_IFRAME, "localsplus"),
	S(code_nlocals, 0, T_CODE, "co_nlocals"),
	S(code_nlocals, 11, T_CODE, "co_nlocalsplus"),
	S(code_varnames, 0, T_CODE, "co_varnames"),
	S(code_varnames, 11, T_CODE, "co_localsplusnames"),
	S(type_basicsize, 0, T_TYPE, "tp_basicsize"),
	S(type_itemsize, 0, T_TYPE, "tp_itemsize"),
	S(type_flags, 0, T_TYPE, "tp_flags"),
	S(type_traverse, 0, T_TYPE, "tp_traverse"),
	S(type_base, 0, T_TYPE, "tp_base"),
	S(list_items, 0, T_LIST, "ob_item"),
	S(list_allocated, 0, T_LIST, "allocated"),
	S(set_mask, 0, T_SET, "mask"),
	S(set_table, 0, T_SET, "table"),
	S(bytearray_alloc, 0, T_BYTEARRAY, "ob_alloc"),
	S(unicode_utf8, 0, T_COMPACT, "utf8"),
	S(unicode_utf8_length, 0, T_COMPACT, "utf8_length"),
	S(module_dict, 0, T_MODULE, "md_dict"),
	S(module_name, 0, T_MODULE, "md_name"),
};

#undef S

#define NSPECS (sizeof(specs) / sizeof(specs[0]))

/* The spec of field for minor: the last of its rows from <= minor */
static const struct spec *spec_of(int field, int minor)
{
	const struct spec *s = NULL;

	for (size_t i = 0; i < NSPECS; i++)
		if (specs[i].field == field && specs[i].from <= minor)
			s = &specs[i];
	return s;
}

static const char *type_label(int t)
{
	return types[t].tdef ? types[t].tdef : types[t].tag;
}

static int resolve_type(struct dwx *x, int t, Dwarf_Die *out)
{
	struct ent *e = NULL;

	if (types[t].tdef)
		e = find_type(x, NS_TYPEDEF, types[t].tdef);
	if (e) {
		*out = e->die;
		if (complete_struct(x, out) == 0)
			return 0;
	}
	if (types[t].tag) {
		e = find_type(x, NS_TAG, types[t].tag);
		if (e && !e->decl) {
			*out = e->die;
			return 0;
		}
	}
	return -ENOENT;
}

/* fields: what must be found; optional: what is looked up too, and left
 * MA_OFF_NONE when the DWARF does not have it */
static int fill_from_dwarf(struct dwx *x, int minor, uint64_t fields,
			   uint64_t optional, struct ma_py_offsets *out)
{
	const char *mname = dwfl_module_info(x->mod, NULL, NULL, NULL, NULL,
					     NULL, NULL, NULL);
	Dwarf_Die tdie[T_COUNT];
	int tstate[T_COUNT] = { 0 }; /* 0 unresolved, 1 ok, -1 missing */

	for (int i = 0; i < MA_FI_COUNT; i++)
		if ((fields >> i & 1) && !spec_of(i, minor))
			return ma_err(-EPROTO,
				      "DWARF: no member name known for %s "
				      "(Python 3.%d)",
				      ma_py_fields[i].name, minor);
	for (size_t i = 0; i < NSPECS; i++) {
		const struct spec *s = &specs[i];
		const struct ma_py_field_desc *f = &ma_py_fields[s->field];
		Dwarf_Die m, *st = &tdie[s->type];
		const char *tl = type_label(s->type);
		Dwarf_Word off, size;
		int pos;

		int opt = !(fields >> s->field & 1);

		if ((opt && !(optional >> s->field & 1)) ||
		    spec_of(s->field, minor) != s)
			continue;
		if (!tstate[s->type])
			tstate[s->type] = resolve_type(x, s->type, st) ? -1 : 1;
		if (tstate[s->type] < 0 && opt)
			continue;
		if (tstate[s->type] < 0)
			return ma_err(-EPROTO,
				      "DWARF of %s: no definition of type %s "
				      "(needed for %s)",
				      mname, tl, f->name);
		if (s->kind == K_SIZEOF) {
			if (dwarf_aggregate_size(st, &size) && opt)
				continue;
			if (dwarf_aggregate_size(st, &size))
				return ma_err(-EPROTO,
					      "DWARF of %s: no size for %s: %s",
					      mname, tl, dwarf_errmsg(-1));
			ma_py_field_set(out, s->field, (int)size);
			continue;
		}
		if (member_path(x, *st, s->path, &m, &off) && opt)
			continue;
		if (member_path(x, *st, s->path, &m, &off))
			return ma_err(-EPROTO,
				      "DWARF of %s: type %s has no member %s "
				      "(needed for %s, Python 3.%d)",
				      mname, tl, s->path, f->name, minor);
		if (s->kind == K_MEMBER) {
			ma_py_field_set(out, s->field, (int)off);
			continue;
		}
		/* A bit field: its position within the state word.  The
		 * member sits directly in the "state" struct, so its bit
		 * offset is relative to that word. */
		if (bitfield_pos(&m, &pos))
			return ma_err(-EPROTO,
				      "DWARF of %s: %s.%s is not a bit field",
				      mname, tl, s->path);
		if (pos < 0 || pos >= 32)
			return ma_err(-EPROTO,
				      "DWARF of %s: %s.%s at bit %d, outside "
				      "the 32-bit state word",
				      mname, tl, s->path, pos);
		ma_py_field_set(out, s->field, pos);
	}
	return 0;
}

/*
 * Debian ships its debug files with zlib-compressed sections, and libdw
 * inflates every DWARF section it knows when it opens a file: 22 MB for
 * python3.11, ~95 ms, most of it .debug_line and .debug_loclists which we
 * never read.  So when the DWARF is compressed we open the file ourselves,
 * copy-on-write, hide the sections we do not need from libdw by renaming
 * them in our private copy of the section name table (".debug_line" ->
 * "_debug_line"), and hand the Elf to dwarf_begin_elf.  Uncompressed DWARF
 * (pyenv builds) costs nothing to open and goes through libdwfl as usual.
 */
static const char *const lean_keep[] = {
	".debug_info",	   ".debug_abbrev",	 ".debug_str",
	".debug_line_str", ".debug_str_offsets", ".debug_addr",
	".debug_aranges",  ".debug_types",
};

struct lean {
	int fd;
	Elf *elf;
	Dwarf *dw;
};

static Elf_Scn *find_section(Elf *elf, const char *want)
{
	size_t shstrndx;
	Elf_Scn *scn = NULL;

	if (elf_getshdrstrndx(elf, &shstrndx))
		return NULL;
	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		const char *n;

		if (!gelf_getshdr(scn, &sh))
			continue;
		n = elf_strptr(elf, shstrndx, sh.sh_name);
		if (n && !strcmp(n, want))
			return scn;
	}
	return NULL;
}

static int compressed(Elf_Scn *scn)
{
	GElf_Shdr sh;

	return gelf_getshdr(scn, &sh) && (sh.sh_flags & SHF_COMPRESSED);
}

/* Hide the DWARF sections we do not read; 0, or -1 when the name table is
 * not writable (then the caller falls back to libdwfl). */
static int hide_sections(Elf *elf)
{
	size_t shstrndx;
	Elf_Scn *scn = NULL;

	if (elf_getshdrstrndx(elf, &shstrndx))
		return -1;
	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		char *n;
		size_t i;

		if (!gelf_getshdr(scn, &sh))
			continue;
		n = elf_strptr(elf, shstrndx, sh.sh_name);
		if (!n || strncmp(n, ".debug_", 7))
			continue;
		for (i = 0; i < sizeof(lean_keep) / sizeof(lean_keep[0]); i++)
			if (!strcmp(n, lean_keep[i]))
				break;
		if (i == sizeof(lean_keep) / sizeof(lean_keep[0]))
			n[0] = '_';
	}
	return 0;
}

/* 0: x->dw set from the lean open; 1: not applicable, use libdwfl. */
static int lean_open(struct dwx *x, struct lean *l)
{
	const char *mainfile = NULL, *debugfile = NULL;
	Dwarf_Addr mbias;
	Elf *main = dwfl_module_getelf(x->mod, &mbias);
	Elf_Scn *scn;
	const char *path;

	if (!main)
		return 1;
	/* Which file holds the DWARF is libdwfl's business (its search
	 * path, .gnu_debuglink, build ID, debuginfod, as configured by the
	 * caller's callbacks): reading the symbol table of a stripped file
	 * has made it look for the separate debug file already, without
	 * loading its DWARF. */
	if (!x->anchors_found)
		find_anchors(x);
	dwfl_module_info(x->mod, NULL, NULL, NULL, NULL, NULL, &mainfile,
			 &debugfile);
	if (debugfile) {
		path = debugfile;
	} else {
		scn = find_section(main, ".debug_info");
		if (!scn || !compressed(scn) || !mainfile)
			return 1;
		path = mainfile;
	}
	l->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (l->fd < 0)
		return 1;
	l->elf = elf_begin(l->fd, ELF_C_READ_MMAP_PRIVATE, NULL);
	if (!l->elf || !(scn = find_section(l->elf, ".debug_info")) ||
	    !compressed(scn) || hide_sections(l->elf))
		goto no;
	l->dw = dwarf_begin_elf(l->elf, DWARF_C_READ, NULL);
	if (!l->dw)
		goto no;
	x->dw = l->dw;
	/* A separate debug file has the addresses of the file it belongs
	 * to.  Were this ever wrong, we would only lose speed: addresses
	 * merely pick which CU is indexed first. */
	x->bias = mbias;
	return 0;
no:
	if (l->elf)
		elf_end(l->elf);
	close(l->fd);
	l->elf = NULL;
	l->fd = -1;
	return 1;
}

static void lean_close(struct lean *l)
{
	if (l->dw)
		dwarf_end(l->dw);
	if (l->elf)
		elf_end(l->elf);
	if (l->fd >= 0)
		close(l->fd);
}

int ma_pyoffsets_from_dwarf(Dwfl_Module *mod, uint32_t version_hex,
			    struct ma_py_offsets *out)
{
	const char *name =
		dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
	int minor = ma_py_minor(version_hex);
	struct dwx x = { .mod = mod };
	struct lean l = { .fd = -1 };
	int r;

	/* 3.14+: the newest row's fields, under their newest names */
	if (ma_py_major(version_hex) != 3 || minor < MA_PY_MIN_MINOR)
		return ma_err(-ENOTSUP,
			      "offsets from DWARF: Python %d.%d is not "
			      "supported (3.%d or later)",
			      ma_py_major(version_hex), minor, MA_PY_MIN_MINOR);
	if (lean_open(&x, &l)) {
		x.dw = dwfl_module_getdwarf(mod, &x.bias);
		if (!x.dw)
			return ma_err(-ENOENT,
				      "no DWARF debug info for %s (looked in "
				      "the file, /usr/lib/debug/.build-id/ and "
				      ".gnu_debuglink): %s",
				      name ? name : "?", dwfl_errmsg(-1));
	}
	ma_pyoffsets_init(out, version_hex, MA_OFFSETS_SRC_DWARF);
	r = fill_from_dwarf(&x, minor, ma_pyver_nearest(version_hex)->fields,
			    ma_pyver_heap_fields(ma_pyver_nearest(version_hex)),
			    out);
	free(x.tab);
	free(x.done);
	lean_close(&l);
	return r;
}

/* ---------------------------------------------------------------------- */
/* A file, opened offline                                                  */

static const Dwfl_Callbacks offline_cb = {
	.find_elf = dwfl_build_id_find_elf,
	.find_debuginfo = dwfl_standard_find_debuginfo,
	.section_address = dwfl_offline_section_address,
};

int ma_pyoffsets_from_file(const char *path, uint32_t version_hex,
			   struct ma_py_offsets *out)
{
	Dwfl *dwfl = dwfl_begin(&offline_cb);
	Dwfl_Module *mod;
	int r;

	if (!dwfl)
		return ma_err(-ENOMEM, "dwfl_begin: %s", dwfl_errmsg(-1));
	if (access(path, R_OK)) {
		r = -errno;
		dwfl_end(dwfl);
		return ma_err(r == -ENOENT ? -ENOENT : r, "%s: %s", path,
			      strerror(-r));
	}
	mod = dwfl_report_offline(dwfl, path, path, -1);
	if (!mod) {
		ma_err(-ENOENT, "%s: not an ELF file libdwfl can read: %s",
		       path, dwfl_errmsg(-1));
		dwfl_end(dwfl);
		return -ENOENT;
	}
	dwfl_report_end(dwfl, NULL, NULL);
	r = ma_pyoffsets_from_dwarf(mod, version_hex, out);
	dwfl_end(dwfl);
	return r;
}
