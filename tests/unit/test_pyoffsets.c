/* SPDX-License-Identifier: MIT */
/*
 * struct ma_py_offsets from its three sources:
 *   - DWARF of every real interpreter present (pyenv 3.8-3.13 with embedded
 *     DWARF, Debian's stripped /usr/bin/python3.11 with python3.11-dbg),
 *     checked for the fields each version must and must not have and for
 *     the layout facts that hold on every version;
 *   - DWARF of small synthetic libraries compiled here with DWARF 5, 4 and
 *     strict 2, whose layout we chose (bit fields counted from either end,
 *     member locations as expressions, anonymous members, qualifiers, a
 *     type only declared in the anchor CU);
 *   - _Py_DebugOffsets of 3.13, from the file and from a live process;
 *   - the built-in table, and the error paths.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "errors.h"
#include "memread.h"
#include "pyoffsets.h"
#include "ma_pyver.h"
#include "pyversion.h"
#include "symbols.h"

#define PY(minor) (0x03000000u | ((uint32_t)(minor) << 16) | 0xf0u)
#define SET(x)	  ((x) != MA_OFF_NONE)

static const char *pyenv_root(void)
{
	const char *r = getenv("PYENV_ROOT");

	return r && *r ? r : "/root/.pyenv";
}

/* The pyenv libpython of a minor version, or "" (first match by glob) */
static void pyenv_lib(int minor, char *buf, size_t len)
{
	char pat[512];
	glob_t g;

	snprintf(pat, sizeof(pat),
		 "%s/versions/3.%d.*/lib/libpython3.%d.so.1.0", pyenv_root(),
		 minor, minor);
	buf[0] = '\0';
	if (glob(pat, 0, NULL, &g) == 0) {
		snprintf(buf, len, "%s", g.gl_pathv[0]);
		globfree(&g);
	}
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* What must hold for the DWARF offsets of any real CPython 3.8-3.13. */
static void check_real(const struct ma_py_offsets *o, int minor)
{
	cr_assert_eq(o->abi, MA_OFFSETS_ABI);
	cr_assert_eq(o->source, MA_OFFSETS_SRC_DWARF);
	cr_assert_eq(ma_py_minor(o->version_hex), minor);

	/* present on every version */
	cr_assert_geq(o->runtime_interpreters_head, 0);
	cr_assert_eq(o->runtime_interpreters_main,
		     o->runtime_interpreters_head + 8,
		     "interpreters.main follows interpreters.head");
	cr_assert_geq(o->interp_next, 0);
	cr_assert_geq(o->interp_id, 0);
	cr_assert_geq(o->interp_threads_head, 0);
	cr_assert_geq(o->gil_last_holder, 0);
	cr_assert_geq(o->gil_locked, 0);
	cr_assert_lt(o->gil_last_holder, 256);
	cr_assert_lt(o->gil_locked, 256);
	cr_assert_eq(o->tstate_next, 8, "PyThreadState: prev, then next");
	cr_assert_geq(o->tstate_interp, 0);
	cr_assert_gt(o->tstate_thread_id, o->tstate_interp);
	cr_assert_geq(o->frame_previous, 0);
	cr_assert_geq(o->frame_code, 0);
	cr_assert_geq(o->frame_instr, 0);
	cr_assert_gt(o->code_filename, 0);
	cr_assert_eq(o->code_name, o->code_filename + 8);
	cr_assert_gt(o->code_firstlineno, 16);
	cr_assert_gt(o->code_linetable, 0);

	/* object headers: the same since 3.8 on 64-bit, non-debug builds */
	cr_assert_eq(o->object_type, 8);
	cr_assert_eq(o->varobject_size, 16);
	cr_assert_eq(o->type_name, 24);
	cr_assert_eq(o->bytes_sval, 32);
	cr_assert_eq(o->unicode_length, 16);
	cr_assert_eq(o->unicode_state, 32);
	cr_assert_gt(o->unicode_ascii_size, o->unicode_state);
	cr_assert_eq(o->unicode_ascii_size, minor <= 11 ? 48 : 40);
	cr_assert_eq(o->unicode_compact_size,
		     o->unicode_ascii_size + (minor <= 11 ? 24 : 16));
	cr_assert_eq(o->unicode_kind_shift, 2);
	cr_assert_eq(o->unicode_compact_bit, 5);
	cr_assert_eq(o->unicode_ascii_bit, 6);

	/* version-specific presence */
	cr_assert_eq(SET(o->runtime_gil), minor <= 11, "runtime_gil");
	cr_assert_eq(SET(o->interp_gil_ptr), minor >= 12, "interp_gil_ptr");
	cr_assert_eq(SET(o->tstate_frame), minor <= 10 || minor >= 13,
		     "tstate_frame");
	cr_assert_eq(SET(o->tstate_cframe), minor == 11 || minor == 12,
		     "tstate_cframe");
	cr_assert_eq(SET(o->cframe_current_frame), minor == 11 || minor == 12,
		     "cframe_current_frame");
	cr_assert_eq(SET(o->tstate_native_thread_id), minor >= 11,
		     "tstate_native_thread_id");
	cr_assert_eq(SET(o->frame_owner), minor >= 11, "frame_owner");
	cr_assert_eq(SET(o->frame_is_entry), minor == 11, "frame_is_entry");
	cr_assert_eq(SET(o->code_qualname), minor >= 11, "code_qualname");
	cr_assert_eq(SET(o->code_code), minor <= 10, "code_code");
	cr_assert_eq(SET(o->code_code_adaptive), minor >= 11,
		     "code_code_adaptive");
	if (minor >= 11) {
		/* the bytecode is the last member, after all of the above */
		cr_assert_gt(o->code_code_adaptive, o->code_linetable);
		cr_assert_gt(o->code_code_adaptive, o->code_qualname);
	}
	if (minor >= 12)
		cr_assert_eq(o->frame_code, 0, "f_code/f_executable first");
}

static void check_pyenv(int minor)
{
	char lib[512], vstr[32];
	struct ma_py_offsets o, t;
	uint32_t hex;
	double t0;
	int r;

	pyenv_lib(minor, lib, sizeof(lib));
	if (!lib[0])
		cr_skip_test("no pyenv Python 3.%d under %s", minor,
			     pyenv_root());
	cr_assert_eq(ma_pyversion_from_elf(lib, &hex, vstr, sizeof(vstr)), 0,
		     "%s", ma_errmsg());
	t0 = now_ms();
	r = ma_pyoffsets_from_file(lib, hex, &o);
	cr_assert_eq(r, 0, "%s: %s", lib, ma_errmsg());
	cr_log_info("%s (%s): DWARF offsets in %.1f ms", lib, vstr,
		    now_ms() - t0);
	cr_assert_eq(o.version_hex, hex);
	check_real(&o, minor);
	/* the table was generated from these very files when present */
	cr_assert_eq(ma_pyoffsets_from_table(hex, &t), 0, "%s", ma_errmsg());
	cr_assert_eq(ma_pyoffsets_diff(stderr, &o, &t), 0,
		     "3.%d: DWARF differs from the table", minor);
}

Test(dwarf, pyenv_3_8)
{
	check_pyenv(8);
}

Test(dwarf, pyenv_3_9)
{
	check_pyenv(9);
}

Test(dwarf, pyenv_3_10)
{
	check_pyenv(10);
}

Test(dwarf, pyenv_3_11)
{
	check_pyenv(11);
}

Test(dwarf, pyenv_3_12)
{
	check_pyenv(12);
}

Test(dwarf, pyenv_3_13)
{
	check_pyenv(13);
}

/* Debian: non-PIE static libpython, stripped; DWARF (compressed) from
 * python3.11-dbg under /usr/lib/debug/.build-id/ */
Test(dwarf, debian_python3_11)
{
	const char *exe = "/usr/bin/python3.11";
	struct ma_py_offsets o, t;
	char dbg[256], vstr[32];
	struct ma_elf *e;
	const char *id;
	uint32_t hex;
	double t0;

	if (access(exe, X_OK))
		cr_skip_test("%s absent", exe);
	cr_assert_eq(ma_elf_open(exe, &e), 0, "%s", ma_errmsg());
	id = ma_elf_build_id(e);
	cr_assert(id && strlen(id) > 2, "%s has no build ID", exe);
	snprintf(dbg, sizeof(dbg), "/usr/lib/debug/.build-id/%.2s/%s.debug", id,
		 id + 2);
	ma_elf_close(e);
	if (access(dbg, R_OK))
		cr_skip_test("%s absent (install python3.11-dbg)", dbg);

	cr_assert_eq(ma_pyversion_from_elf(exe, &hex, vstr, sizeof(vstr)), 0,
		     "%s", ma_errmsg());
	cr_assert_eq(ma_py_minor(hex), 11);
	t0 = now_ms();
	cr_assert_eq(ma_pyoffsets_from_file(exe, hex, &o), 0, "%s",
		     ma_errmsg());
	cr_log_info("%s (%s): DWARF offsets in %.1f ms", exe, vstr,
		    now_ms() - t0);
	check_real(&o, 11);
	cr_assert_eq(ma_pyoffsets_from_table(hex, &t), 0, "%s", ma_errmsg());
	cr_assert_eq(ma_pyoffsets_diff(stderr, &o, &t), 0,
		     "Debian 3.11 differs from the table");
}

/* ---------------------------------------------------------------------- */
/* Synthetic libraries with a layout chosen here                          */

/* Pretends to be 3.11.  Offsets (x86_64) are in the comments; where CPython
 * has 2 we use 3 bits for `interned`, so that the kind/compact/ascii
 * positions (3, 6, 7) prove they are read, not assumed. */
static const char fake_ceval[] =
	"typedef struct _object { union { long ob_refcnt;\n"
	"  unsigned int split[2]; }; struct _typeobject *ob_type; } PyObject;\n"
	"typedef struct { PyObject ob_base; long ob_size; } PyVarObject;\n"
	"typedef struct _typeobject { PyVarObject ob_base;\n"
	"  const char *tp_name; } PyTypeObject;\n"
	"typedef struct { PyVarObject ob_base; long ob_shash;\n"
	"  char ob_sval[1]; } PyBytesObject;\n"
	"typedef struct { PyObject ob_base; long length; long hash;\n"
	"  struct { unsigned int interned:3; unsigned int kind:3;\n"
	"    unsigned int compact:1; unsigned int ascii:1;\n"
	"    unsigned int ready:1; unsigned int :23; } state;\n"
	"  void *wstr; } PyASCIIObject;\n" /* length 16, state 32, size 48 */
	"typedef struct { PyASCIIObject _base; long utf8_length; char *utf8;\n"
	"  long wstr_length; } PyCompactUnicodeObject;\n" /* 72 */
	"struct _gil_runtime_state { long interval; void *last_holder;\n"
	"  int locked; };\n" /* 8, 16 */
	"struct _ceval_runtime_state { int pad[3];\n"
	"  struct _gil_runtime_state gil; };\n" /* gil 16 */
	"typedef struct pyruntimestate { int initialized; void *finalizing;\n"
	"  struct pyinterpreters { void *mutex; struct _is *head;\n"
	"    struct _is *main; } interpreters; char pad[100];\n"
	"  volatile struct _ceval_runtime_state ceval; } _PyRuntimeState;\n"
	/* head 24, main 32, ceval 144, ceval.gil 160 */
	"typedef struct _is { struct _is *next; long long id; char pad[40];\n"
	"  struct { void *mutex; struct _ts *head; } threads;\n"
	"} PyInterpreterState;\n" /* next 0, id 8, threads.head 64 */
	"typedef struct _PyCFrame { unsigned char use_tracing;\n"
	"  struct _PyInterpreterFrame *current_frame;\n"
	"  struct _PyCFrame *previous; } _PyCFrame;\n" /* current_frame 8 */
	"typedef struct _ts { struct _ts *prev; struct { struct _ts *next;\n"
	"  PyInterpreterState *interp; }; int pad; _PyCFrame *cframe;\n"
	"  unsigned long thread_id;\n"
	"#ifndef MISSING\n"
	"  unsigned long native_thread_id;\n"
	"#endif\n"
	"} PyThreadState;\n"
	/* next 8, interp 16, cframe 32, thread_id 40, native 48 */
	"typedef struct PyCodeObject PyCodeObject;\n"
	"typedef struct _PyInterpreterFrame { PyObject *f_func;\n"
	"  PyCodeObject *f_code; struct _PyInterpreterFrame *previous;\n"
	"  unsigned short *prev_instr; int stacktop; _Bool is_entry;\n"
	"  char owner; } _PyInterpreterFrame;\n"
	/* f_code 8, previous 16, prev_instr 24, is_entry 36, owner 37 */
	"const void *_PyEval_EvalFrameDefault(const PyThreadState *ts,\n"
	"  _PyInterpreterFrame *f, _PyRuntimeState *rt, PyBytesObject *b,\n"
	"  PyCompactUnicodeObject *u, PyTypeObject *t)\n"
	"{ return ts->cframe->current_frame ? (void *)f->f_code :\n"
	"  rt->ceval.gil.locked ? (void *)b->ob_sval :\n"
	"  u->_base.state.kind ? (void *)t->tp_name :\n"
	"  (void *)ts->interp->threads.head; }\n";

/* PyCodeObject is complete only here: found by the fallback scan */
static const char fake_code[] =
	"typedef struct _object { long ob_refcnt;\n"
	"  struct _typeobject *ob_type; } PyObject;\n"
	"typedef struct { PyObject ob_base; long ob_size; } PyVarObject;\n"
	"typedef struct PyCodeObject PyCodeObject;\n"
	"struct PyCodeObject { PyVarObject ob_base; const void *pad[3];\n"
	"  int co_firstlineno; PyObject *co_filename; PyObject *co_name;\n"
	"  PyObject *co_qualname; PyObject *co_linetable;\n"
	"  char co_code_adaptive[1]; };\n"
	/* firstlineno 48, filename 56, name 64, qualname 72, linetable 80,
	 * code_adaptive 88 */
	"int PyCode_Addr2Line(PyCodeObject *co) { return co->co_firstlineno; "
	"}\n";

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

/* Build the fake library with the given cc flags into the build tree;
 * "" when there is no C compiler. */
static void build_fake(const char *tag, const char *flags, char *so, size_t len)
{
	char dir[300], a[400], b[400], cmd[2048];

	if (system("command -v cc >/dev/null 2>&1") != 0) {
		so[0] = '\0';
		return;
	}
	snprintf(dir, sizeof(dir), "%s/test_pyoffsets.d", MA_BINARY_DIR);
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", dir);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
	snprintf(a, sizeof(a), "%s/ceval.c", dir);
	snprintf(b, sizeof(b), "%s/codeobject.c", dir);
	cr_assert_eq(write_file(a, fake_ceval), 0);
	cr_assert_eq(write_file(b, fake_code), 0);
	snprintf(so, len, "%s/libfake-%s.so", dir, tag);
	unlink(so);
	snprintf(cmd, sizeof(cmd),
		 "cc -shared -fPIC -O0 %s -o '%s' '%s' '%s' 2>&1", flags, so, a,
		 b);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}

static void check_fake(const char *tag, const char *flags)
{
	struct ma_py_offsets o;
	char so[400];
	int r;

	build_fake(tag, flags, so, sizeof(so));
	if (!so[0])
		cr_skip_test("no C compiler to build the synthetic library");
	r = ma_pyoffsets_from_file(so, PY(11), &o);
	cr_assert_eq(r, 0, "%s (%s): %s", so, flags, ma_errmsg());

	cr_expect_eq(o.runtime_interpreters_head, 24);
	cr_expect_eq(o.runtime_interpreters_main, 32);
	cr_expect_eq(o.runtime_gil, 160);
	cr_expect_eq(o.interp_next, 0);
	cr_expect_eq(o.interp_id, 8);
	cr_expect_eq(o.interp_threads_head, 64);
	cr_expect_eq(o.interp_gil_ptr, MA_OFF_NONE);
	cr_expect_eq(o.gil_last_holder, 8);
	cr_expect_eq(o.gil_locked, 16);
	cr_expect_eq(o.tstate_next, 8);
	cr_expect_eq(o.tstate_interp, 16);
	cr_expect_eq(o.tstate_frame, MA_OFF_NONE);
	cr_expect_eq(o.tstate_cframe, 32);
	cr_expect_eq(o.cframe_current_frame, 8);
	cr_expect_eq(o.tstate_thread_id, 40);
	cr_expect_eq(o.tstate_native_thread_id, 48);
	cr_expect_eq(o.frame_previous, 16);
	cr_expect_eq(o.frame_code, 8);
	cr_expect_eq(o.frame_instr, 24);
	cr_expect_eq(o.frame_owner, 37);
	cr_expect_eq(o.frame_is_entry, 36);
	cr_expect_eq(o.code_filename, 56);
	cr_expect_eq(o.code_name, 64);
	cr_expect_eq(o.code_qualname, 72);
	cr_expect_eq(o.code_firstlineno, 48);
	cr_expect_eq(o.code_linetable, 80);
	cr_expect_eq(o.code_code, MA_OFF_NONE);
	cr_expect_eq(o.code_code_adaptive, 88);
	cr_expect_eq(o.object_type, 8);
	cr_expect_eq(o.varobject_size, 16);
	cr_expect_eq(o.type_name, 24);
	cr_expect_eq(o.bytes_sval, 32);
	cr_expect_eq(o.unicode_length, 16);
	cr_expect_eq(o.unicode_state, 32);
	cr_expect_eq(o.unicode_ascii_size, 48);
	cr_expect_eq(o.unicode_compact_size, 72);
	cr_expect_eq(o.unicode_kind_shift, 3);
	cr_expect_eq(o.unicode_compact_bit, 6);
	cr_expect_eq(o.unicode_ascii_bit, 7);
}

Test(fake, dwarf5)
{
	check_fake("dw5", "-gdwarf-5");
}

/* GCC writes DW_AT_bit_offset (counted from the most significant bit) */
Test(fake, dwarf4)
{
	check_fake("dw4", "-gdwarf-4 -gstrict-dwarf");
}

/* DW_AT_data_member_location as a DW_OP_plus_uconst expression */
Test(fake, dwarf2_strict)
{
	check_fake("dw2", "-gdwarf-2 -gstrict-dwarf");
}

Test(fake, missing_member_is_eproto)
{
	struct ma_py_offsets o;
	char so[400];
	int r;

	build_fake("missing", "-g -DMISSING", so, sizeof(so));
	if (!so[0])
		cr_skip_test("no C compiler to build the synthetic library");
	r = ma_pyoffsets_from_file(so, PY(11), &o);
	cr_assert_eq(r, -EPROTO, "got %d: %s", r, ma_errmsg());
	cr_assert(strstr(ma_errmsg(), "native_thread_id"), "message: %s",
		  ma_errmsg());
	/* 3.10 does not need it: the same file passes as 3.10 would not
	 * (tstate_head is missing then) */
	r = ma_pyoffsets_from_file(so, PY(10), &o);
	cr_assert_eq(r, -EPROTO);
	cr_assert(strstr(ma_errmsg(), "tstate_head"), "message: %s",
		  ma_errmsg());
}

Test(fake, no_dwarf_is_enoent)
{
	struct ma_py_offsets o;
	char so[400];

	build_fake("nodebug", "-g0", so, sizeof(so));
	if (!so[0])
		cr_skip_test("no C compiler to build the synthetic library");
	cr_assert_eq(ma_pyoffsets_from_file(so, PY(11), &o), -ENOENT);
	cr_assert(strstr(ma_errmsg(), "no DWARF"), "message: %s", ma_errmsg());
}

/* ---------------------------------------------------------------------- */
/* Errors                                                                  */

Test(errors, missing_file)
{
	struct ma_py_offsets o;

	ma_err_clear();
	cr_assert_eq(ma_pyoffsets_from_file("/nonexistent/libpython3.11.so",
					    PY(11), &o),
		     -ENOENT);
	cr_assert(strstr(ma_errmsg(), "/nonexistent/libpython3.11.so"),
		  "message: %s", ma_errmsg());
}

Test(errors, file_without_dwarf)
{
	struct ma_py_offsets o;
	const char *f =
		access("/bin/true", R_OK) == 0 ? "/bin/true" : "/usr/bin/true";

	ma_err_clear();
	cr_assert_eq(ma_pyoffsets_from_file(f, PY(11), &o), -ENOENT);
	cr_assert(strstr(ma_errmsg(), "no DWARF"), "message: %s", ma_errmsg());
}

Test(errors, unsupported_version)
{
	struct ma_py_offsets o;
	char lib[512];

	pyenv_lib(11, lib, sizeof(lib));
	if (!lib[0])
		snprintf(lib, sizeof(lib), "/bin/true");
	cr_assert_eq(ma_pyoffsets_from_file(lib, PY(7), &o), -ENOTSUP);
	cr_assert_eq(ma_pyoffsets_from_file(lib, 0x02070000u, &o), -ENOTSUP);
}

/* ---------------------------------------------------------------------- */
/* Table                                                                   */

Test(table, every_supported_minor)
{
	for (int minor = 8; minor <= 13; minor++) {
		struct ma_py_offsets o;
		uint32_t hex = PY(minor) | (3u << 8); /* 3.X.3 */

		cr_assert_eq(ma_pyoffsets_from_table(hex, &o), 0, "3.%d: %s",
			     minor, ma_errmsg());
		cr_assert_eq(o.source, MA_OFFSETS_SRC_TABLE);
		cr_assert_eq(o.version_hex, hex);
		cr_assert_eq(o.abi, MA_OFFSETS_ABI);
		cr_assert_eq(o.object_type, 8);
		cr_assert_eq(SET(o.tstate_cframe), minor == 11 || minor == 12);
		cr_assert_not_null(ma_pyoffsets_table_entry(hex));
		cr_assert_eq(
			ma_py_minor(ma_pyoffsets_table_entry(hex)->version_hex),
			minor);
	}
}

Test(table, unknown_minor)
{
	struct ma_py_offsets o;

	ma_err_clear();
	cr_assert_eq(ma_pyoffsets_from_table(PY(99), &o), -ENOENT);
	cr_assert(strstr(ma_errmsg(), "3.99"), "message: %s", ma_errmsg());
	cr_assert_eq(ma_pyoffsets_from_table(PY(7), &o), -ENOENT);
	cr_assert_eq(ma_pyoffsets_from_table(0x04000000u | (11u << 16), &o),
		     -ENOENT);
	cr_assert_null(ma_pyoffsets_table_entry(PY(14)));
}

Test(table, diff_and_print)
{
	struct ma_py_offsets a, b;
	char buf[8192];
	FILE *f;

	cr_assert_eq(ma_pyoffsets_from_table(PY(12), &a), 0);
	b = a;
	b.version_hex = PY(12) | (9u << 8); /* micro is ignored */
	b.source = MA_OFFSETS_SRC_DWARF;    /* so is the source */
	cr_assert_eq(ma_pyoffsets_diff(NULL, &a, &b), 0);
	b.tstate_interp += 8;
	b.unicode_ascii_bit = 1;
	f = fmemopen(buf, sizeof(buf), "w");
	cr_assert_eq(ma_pyoffsets_diff(f, &a, &b), 2);
	fclose(f);
	cr_assert(strstr(buf, "tstate_interp"), "%s", buf);
	cr_assert(strstr(buf, "unicode_ascii_bit"), "%s", buf);
	b = a;
	b.version_hex = PY(13);
	cr_assert_eq(ma_pyoffsets_diff(NULL, &a, &b), 1);

	f = fmemopen(buf, sizeof(buf), "w");
	ma_pyoffsets_print_c(f, &a);
	fclose(f);
	cr_assert(strstr(buf, ".version_hex = 0x030c"), "%s", buf);
	cr_assert(strstr(buf, ".tstate_frame = MA_OFF_NONE,"), "%s", buf);
	cr_assert(strstr(buf, ".unicode_ascii_bit = 6,"), "%s", buf);
	f = fmemopen(buf, sizeof(buf), "w");
	ma_pyoffsets_print(f, &a);
	fclose(f);
	cr_assert(strstr(buf, "source                       table"), "%s", buf);
	cr_assert(strstr(buf, "tstate_cframe"), "%s", buf);
}

/* ---------------------------------------------------------------------- */
/* _Py_DebugOffsets                                                        */

/* _PyRuntime's initialised bytes in a 3.13 libpython, or skip */
static void *runtime_bytes(char *lib, size_t liblen, uint64_t *vaddr,
			   size_t *len)
{
	struct ma_elf *e;
	uint64_t size;
	void *buf;

	pyenv_lib(13, lib, liblen);
	if (!lib[0])
		cr_skip_test("no pyenv Python 3.13 under %s", pyenv_root());
	*len = ma_pyoffsets_debug_offsets_size();
	cr_assert_eq(*len, 584);
	cr_assert_eq(ma_elf_open(lib, &e), 0, "%s", ma_errmsg());
	cr_assert_eq(ma_elf_symbol(e, "_PyRuntime", vaddr, &size), 0);
	buf = malloc(*len);
	cr_assert_eq(ma_elf_read_vaddr(e, *vaddr, buf, *len), 0);
	ma_elf_close(e);
	return buf;
}

/* _Py_DebugOffsets says nothing of the heap census' fields: the source
 * chain takes them from the table (offsets_source.c), which
 * table::every_supported_minor checks against DWARF */
static void no_heap_fields(struct ma_py_offsets *w, uint32_t hex)
{
	for (int i = 0; i < MA_FI_COUNT; i++)
		if (ma_pyver_heap_fields(ma_pyver_of(hex)) >> i & 1)
			ma_py_field_set(w, i, MA_OFF_NONE);
}

Test(debug_offsets, file_3_13_equals_dwarf)
{
	struct ma_py_offsets d, w;
	char lib[512];
	uint64_t vaddr;
	size_t len;
	unsigned char *buf = runtime_bytes(lib, sizeof(lib), &vaddr, &len);
	uint32_t hex;
	char vstr[32];

	cr_assert_eq(ma_pyversion_from_elf(lib, &hex, vstr, sizeof(vstr)), 0);
	cr_assert_eq(ma_pyoffsets_from_debug_offsets_buf(buf, len, hex, &d), 0,
		     "%s", ma_errmsg());
	cr_assert_eq(d.source, MA_OFFSETS_SRC_DEBUG_OFFSETS);
	cr_assert_eq(ma_pyoffsets_from_file(lib, hex, &w), 0, "%s",
		     ma_errmsg());
	no_heap_fields(&w, hex);
	cr_assert_eq(ma_pyoffsets_diff(stderr, &d, &w), 0,
		     "_Py_DebugOffsets and DWARF disagree");
	/* version 0: taken from the struct */
	cr_assert_eq(ma_pyoffsets_from_debug_offsets_buf(buf, len, 0, &d), 0);
	cr_assert_eq(d.version_hex >> 16, hex >> 16);
	free(buf);
}

Test(debug_offsets, refusals)
{
	struct ma_py_offsets o;
	char lib[512];
	uint64_t vaddr, v;
	size_t len;
	unsigned char *buf = runtime_bytes(lib, sizeof(lib), &vaddr, &len);
	unsigned char *bad = malloc(len);

	/* not 3.13 */
	cr_assert_eq(ma_pyoffsets_from_debug_offsets_buf(buf, len, PY(12), &o),
		     -ENOENT);
	/* a 3.14 layout */
	memcpy(bad, buf, len);
	v = PY(14);
	memcpy(bad + 8, &v, 8);
	cr_assert_eq(ma_pyoffsets_from_debug_offsets_buf(bad, len, 0, &o),
		     -ENOTSUP);
	cr_assert_eq(ma_pyoffsets_from_debug_offsets_buf(bad, len, PY(14), &o),
		     -ENOTSUP);
	/* cookie */
	memcpy(bad, buf, len);
	bad[0] = 'X';
	cr_assert_eq(ma_pyoffsets_from_debug_offsets_buf(bad, len, PY(13), &o),
		     -ENOENT);
	/* free-threaded */
	memcpy(bad, buf, len);
	v = 1;
	memcpy(bad + 16, &v, 8);
	cr_assert_eq(ma_pyoffsets_from_debug_offsets_buf(bad, len, PY(13), &o),
		     -ENOTSUP);
	/* thread_state.next (offset 168) beyond thread_state.size (152) */
	memcpy(bad, buf, len);
	v = 1u << 16;
	memcpy(bad + 168, &v, 8);
	cr_assert_eq(ma_pyoffsets_from_debug_offsets_buf(bad, len, PY(13), &o),
		     -EPROTO);
	/* short */
	cr_assert_eq(ma_pyoffsets_from_debug_offsets_buf(buf, 100, PY(13), &o),
		     -EPROTO);
	free(bad);
	free(buf);
}

/* Load address of the file mapped at offset 0 in pid, or 0 */
static uint64_t map_base(pid_t pid, const char *path)
{
	char maps[64], line[1024];
	uint64_t base = 0;
	FILE *f;

	snprintf(maps, sizeof(maps), "/proc/%d/maps", (int)pid);
	f = fopen(maps, "r");
	if (!f)
		return 0;
	while (!base && fgets(line, sizeof(line), f)) {
		unsigned long long lo, off;
		char file[800] = "";

		if (sscanf(line, "%llx-%*x %*s %llx %*s %*s %799s", &lo, &off,
			   file) == 3 &&
		    off == 0 && !strcmp(file, path))
			base = lo;
	}
	fclose(f);
	return base;
}

Test(debug_offsets, live_3_13)
{
	struct ma_py_offsets d, w;
	char lib[512], py[600], real[PATH_MAX];
	uint64_t vaddr, base = 0;
	size_t len;
	void *buf = runtime_bytes(lib, sizeof(lib), &vaddr, &len);
	struct ma_mem *m;
	uint32_t hex;
	char vstr[32];
	pid_t pid;
	int r, st;

	free(buf);
	cr_assert_not_null(realpath(lib, real));
	snprintf(py, sizeof(py), "%s", lib);
	*strrchr(py, '/') = '\0';
	*strrchr(py, '/') = '\0';
	strcat(py, "/bin/python3.13");
	if (access(py, X_OK))
		cr_skip_test("%s absent", py);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		execl(py, py, "-c", "import time; time.sleep(60)", NULL);
		_exit(127);
	}
	for (int i = 0; i < 200 && !base; i++) {
		base = map_base(pid, real);
		if (!base)
			usleep(10000);
	}
	cr_assert_neq(base, 0, "libpython never mapped in %d", (int)pid);
	/* a shared library's first PT_LOAD is at vaddr 0: the mapping at file
	 * offset 0 is the load bias */
	cr_assert_eq(ma_mem_open(pid, &m), 0);
	cr_assert_eq(ma_pyversion_from_elf(lib, &hex, vstr, sizeof(vstr)), 0);
	r = ma_pyoffsets_from_debug_offsets(m, base + vaddr, hex, &d);
	/* and a wrong address: no cookie there */
	int r2 = ma_pyoffsets_from_debug_offsets(m, base + vaddr + 64, hex, &w);
	int r3 = ma_pyoffsets_from_debug_offsets(m, base + vaddr, PY(12), &w);

	ma_mem_close(m);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	cr_assert_eq(r, 0, "%s", ma_errmsg());
	cr_assert_eq(r2, -ENOENT);
	cr_assert_eq(r3, -ENOENT);
	cr_assert_eq(ma_pyoffsets_from_file(lib, hex, &w), 0, "%s",
		     ma_errmsg());
	no_heap_fields(&w, hex);
	cr_assert_eq(ma_pyoffsets_diff(stderr, &d, &w), 0,
		     "live _Py_DebugOffsets and DWARF disagree");
}
