/* SPDX-License-Identifier: MIT */
/*
 * pyread against fake CPython structures built in this very process (read
 * back through process_vm_readv on our own PID), so that the cases no live
 * interpreter shows on demand can be tested: shims, incomplete frames,
 * cycles, bad pointers, objects of the wrong type, code objects freed and
 * their address reused, strings of each kind.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memread.h"
#include "pyread.h"

/* A made-up layout: what matters is that the reader only uses the offsets */
static struct ma_py_offsets layout(int minor)
{
	struct ma_py_offsets o;

	memset(&o, 0xff, sizeof(o)); /* every field MA_OFF_NONE */
	o.abi = MA_OFFSETS_ABI;
	o.version_hex = 0x030000f0u | (uint32_t)minor << 16;
	o.runtime_interpreters_head = 8;
	o.runtime_interpreters_main = 16;
	o.interp_next = 0;
	o.interp_id = 8;
	o.interp_threads_head = 5000; /* far into the struct, like 3.13 */
	o.gil_last_holder = 0;
	o.gil_locked = 8;
	if (minor <= 11)
		o.runtime_gil = 32;
	else
		o.interp_gil_ptr = 24;
	o.tstate_next = 0;
	o.tstate_interp = 8;
	if (minor == 11 || minor == 12) {
		o.tstate_cframe = 24;
		o.cframe_current_frame = 8;
	} else {
		o.tstate_frame = 16;
	}
	o.tstate_thread_id = 32;
	if (minor >= 11)
		o.tstate_native_thread_id = 40;
	o.frame_previous = 0;
	o.frame_code = 8;
	o.frame_instr = 16;
	if (minor >= 11)
		o.frame_owner = 25;
	if (minor == 11)
		o.frame_is_entry = 24;
	o.code_filename = 16;
	o.code_name = 24;
	if (minor >= 11) {
		o.code_qualname = 32;
		o.code_code_adaptive = 64;
	}
	o.code_firstlineno = 40;
	o.code_linetable = 48;
	o.object_type = 8;
	o.varobject_size = 16;
	o.type_name = 24;
	o.bytes_sval = 32;
	o.unicode_length = 16;
	o.unicode_state = 32;
	o.unicode_ascii_size = 40;
	o.unicode_compact_size = 56;
	o.unicode_kind_shift = 2;
	o.unicode_compact_bit = 5;
	o.unicode_ascii_bit = 6;
	o._pad2 = 0;
	return o;
}

/* Everything allocated for a fake process, freed at the end of a test */
static void *allocs[16384];
static int nallocs;

static uint8_t *obj(size_t size)
{
	uint8_t *p = aligned_alloc(16, (size + 15) & ~(size_t)15);

	cr_assert(p);
	memset(p, 0, size);
	allocs[nallocs++] = p;
	return p;
}

static void fini(void)
{
	while (nallocs)
		free(allocs[--nallocs]);
}

static uint64_t A(const void *p)
{
	return (uint64_t)(uintptr_t)p;
}

static void put64(uint8_t *b, int32_t off, uint64_t v)
{
	memcpy(b + off, &v, 8);
}

static void put32(uint8_t *b, int32_t off, uint32_t v)
{
	memcpy(b + off, &v, 4);
}

/* A compact str of the given kind; ascii when kind 1 and all < 128 */
static uint64_t str_obj(const struct ma_py_offsets *o, const uint32_t *cps,
			size_t n, int kind)
{
	int ascii = kind == 1;

	for (size_t i = 0; i < n; i++)
		if (cps[i] >= 128)
			ascii = 0;
	size_t hdr = ascii ? o->unicode_ascii_size : o->unicode_compact_size;
	uint8_t *b = obj(hdr + (n + 1) * kind);

	put64(b, o->unicode_length, n);
	put32(b, o->unicode_state,
	      (uint32_t)kind << o->unicode_kind_shift |
		      1u << o->unicode_compact_bit |
		      (uint32_t)ascii << o->unicode_ascii_bit);
	for (size_t i = 0; i < n; i++) {
		if (kind == 1)
			b[hdr + i] = (uint8_t)cps[i];
		else if (kind == 2) {
			uint16_t c = (uint16_t)cps[i];

			memcpy(b + hdr + 2 * i, &c, 2);
		} else
			memcpy(b + hdr + 4 * i, &cps[i], 4);
	}
	return A(b);
}

static uint64_t ascii_obj(const struct ma_py_offsets *o, const char *s)
{
	uint32_t cps[256];
	size_t n = strlen(s);

	for (size_t i = 0; i < n; i++)
		cps[i] = (unsigned char)s[i];
	return str_obj(o, cps, n, 1);
}

static uint64_t type_obj(const struct ma_py_offsets *o, const char *name)
{
	uint8_t *t = obj(64);

	put64(t, o->type_name, A(name));
	return A(t);
}

static uint64_t code_type, other_type;

static uint64_t bytes_obj(const struct ma_py_offsets *o, const uint8_t *d,
			  size_t n)
{
	uint8_t *b = obj(o->bytes_sval + n + 1);

	put64(b, o->varobject_size, n);
	memcpy(b + o->bytes_sval, d, n);
	return A(b);
}

/* A code object: 3.10 table one line per 2 bytes from firstlineno, or the
 * 3.11+ location table "one-line +1" per code unit */
static uint8_t *code_obj(const struct ma_py_offsets *o, const char *name,
			 const char *file, int firstlineno, int ninstr)
{
	int minor = ma_py_minor(o->version_hex);
	uint8_t *c = obj(256 + 2 * ninstr);
	uint8_t table[512];
	size_t n = 0;

	for (int i = 0; i < ninstr; i++) {
		if (minor <= 9) {
			table[n++] = 2, table[n++] = 1; /* +2 bytes, +1 line */
		} else if (minor == 10) {
			table[n++] = 2, table[n++] = i ? 1 : 0;
		} else {
			table[n++] = 0x80 | 11 << 3 | 0; /* one-line +1 */
			table[n++] = 0, table[n++] = 1;
		}
	}
	put64(c, o->object_type, code_type);
	put64(c, o->code_name, ascii_obj(o, name));
	if (o->code_qualname >= 0) {
		char q[128];

		snprintf(q, sizeof(q), "Q.%s", name);
		put64(c, o->code_qualname, ascii_obj(o, q));
	}
	put64(c, o->code_filename, ascii_obj(o, file));
	put32(c, o->code_firstlineno, (uint32_t)firstlineno);
	put64(c, o->code_linetable, bytes_obj(o, table, n));
	return c;
}

/* Instruction index i of code c as the frame stores it */
static void set_instr(const struct ma_py_offsets *o, uint8_t *f,
		      const uint8_t *c, int i)
{
	int minor = ma_py_minor(o->version_hex);

	if (minor <= 9)
		put32(f, o->frame_instr, (uint32_t)(2 * i));
	else if (minor == 10)
		put32(f, o->frame_instr, (uint32_t)i);
	else if (minor == 11 || minor == 12) /* prev_instr: last executed */
		put64(f, o->frame_instr, A(c) + o->code_code_adaptive + 2 * i);
	else
		put64(f, o->frame_instr, A(c) + o->code_code_adaptive + 2 * i);
}

static uint8_t *frame_obj(const struct ma_py_offsets *o, uint8_t *code,
			  int instr, void *prev)
{
	uint8_t *f = obj(128);

	put64(f, o->frame_previous, A(prev));
	put64(f, o->frame_code, A(code));
	if (code)
		set_instr(o, f, code, instr);
	return f;
}

struct fake {
	struct ma_py_offsets o;
	uint8_t *runtime, *interp, *tstate, *gil;
	struct ma_mem *m;
	struct ma_pyreader *r;
};

/* One interpreter, one thread whose innermost frame is `top` */
static void fake_new(struct fake *f, int minor)
{
	static const char code_name[] = "code", fn_name[] = "function";

	memset(f, 0, sizeof(*f));
	f->o = layout(minor);
	code_type = type_obj(&f->o, code_name);
	other_type = type_obj(&f->o, fn_name);
	f->runtime = obj(128);
	f->interp = obj(8192); /* 3.13's sys.modules is 7656 in */
	f->tstate = obj(128);
	f->gil = obj(64);
	put64(f->runtime, f->o.runtime_interpreters_head, A(f->interp));
	put64(f->interp, f->o.interp_threads_head, A(f->tstate));
	put64(f->tstate, f->o.tstate_interp, A(f->interp));
	put64(f->tstate, f->o.tstate_thread_id, 0x1234);
	if (f->o.tstate_native_thread_id >= 0)
		put64(f->tstate, f->o.tstate_native_thread_id, 77);
	if (minor <= 11) {
		/* the runtime embeds its GIL at runtime_gil */
		f->gil = f->runtime + f->o.runtime_gil;
	} else {
		put64(f->interp, f->o.interp_gil_ptr, A(f->gil));
	}
	cr_assert_eq(ma_mem_open(getpid(), &f->m), 0);
	cr_assert_eq(ma_pyreader_new(f->m, &f->o, A(f->runtime), &f->r), 0);
}

static void fake_set_top(struct fake *f, void *top)
{
	if (f->o.tstate_cframe >= 0) {
		uint8_t *cf = obj(32);

		put64(cf, f->o.cframe_current_frame, A(top));
		put64(f->tstate, f->o.tstate_cframe, A(cf));
	} else {
		put64(f->tstate, f->o.tstate_frame, A(top));
	}
}

static void fake_free(struct fake *f)
{
	ma_pyreader_free(f->r);
	ma_mem_close(f->m);
	fini();
}

static const char *expect_name(int minor, const char *n, char *buf)
{
	if (minor < 11)
		return n;
	sprintf(buf, "Q.%s", n);
	return buf;
}

static void basic(int minor)
{
	struct fake f;
	struct ma_py_snapshot s;
	char q[64];

	fake_new(&f, minor);
	uint8_t *c1 = code_obj(&f.o, "outer", "a.py", 10, 8);
	uint8_t *c2 = code_obj(&f.o, "inner", "b.py", 100, 8);
	uint8_t *f1 = frame_obj(&f.o, c1, 3, NULL);
	uint8_t *f2 = frame_obj(&f.o, c2, 5, f1);

	fake_set_top(&f, f2);
	put32(f.gil, f.o.gil_locked, 1);
	put64(f.gil, f.o.gil_last_holder, A(f.tstate));
	cr_assert_eq(ma_pyreader_validate(f.r), 0, "validate 3.%d", minor);
	cr_assert_eq(ma_pyreader_snapshot(f.r, &s), 0);
	cr_assert_eq(s.nthreads, 1);
	cr_assert_eq(s.truncated, 0);
	const struct ma_py_thread *t = &s.threads[0];

	cr_assert_eq(t->nframes, 2);
	cr_assert_eq(t->truncated, 0);
	cr_assert_eq(t->holds_gil, 1);
	cr_assert_eq(t->thread_id, 0x1234);
	cr_assert_eq(t->native_tid, minor >= 11 ? 77 : 0);
	cr_assert_str_eq(t->frames[0].func, expect_name(minor, "inner", q));
	cr_assert_str_eq(t->frames[0].file, "b.py");
	/* 3.8-3.10 tables: line = first + index; 3.11+: first + index + 1 */
	cr_assert_eq(t->frames[0].line, minor >= 11 ? 106 : 105, "3.%d: %d",
		     minor, t->frames[0].line);
	cr_assert_str_eq(t->frames[1].func, expect_name(minor, "outer", q));
	cr_assert_eq(t->frames[1].line, minor >= 11 ? 14 : 13);
	cr_assert_eq(t->frames[1].frame_addr, A(f1));
	cr_assert_eq(t->frames[1].code_addr, A(c1));
	ma_py_snapshot_free(&s);

	/* GIL held by someone else, then released */
	put64(f.gil, f.o.gil_last_holder, A(f.tstate) + 8);
	cr_assert_eq(ma_pyreader_snapshot(f.r, &s), 0);
	cr_assert_eq(s.threads[0].holds_gil, 0);
	ma_py_snapshot_free(&s);
	put64(f.gil, f.o.gil_last_holder, A(f.tstate));
	put32(f.gil, f.o.gil_locked, 0);
	cr_assert_eq(ma_pyreader_snapshot(f.r, &s), 0);
	cr_assert_eq(s.threads[0].holds_gil, 0);
	ma_py_snapshot_free(&s);
	fake_free(&f);
}

Test(pyread, basic_each_version)
{
	for (int minor = 8; minor <= 13; minor++)
		basic(minor);
}

Test(pyread, not_started_frame_is_first_line)
{
	for (int minor = 8; minor <= 10; minor++) {
		struct fake f;
		struct ma_py_snapshot s;

		fake_new(&f, minor);
		uint8_t *c = code_obj(&f.o, "g", "g.py", 42, 4);
		uint8_t *fr = frame_obj(&f.o, c, 0, NULL);

		put32(fr, f.o.frame_instr, (uint32_t)-1);
		fake_set_top(&f, fr);
		cr_assert_eq(ma_pyreader_snapshot(f.r, &s), 0);
		cr_assert_eq(s.threads[0].nframes, 1);
		cr_assert_eq(s.threads[0].frames[0].line, 42);
		ma_py_snapshot_free(&s);
		fake_free(&f);
	}
}

Test(pyread, incomplete_frames_skipped_311_312)
{
	for (int minor = 11; minor <= 12; minor++) {
		struct fake f;
		struct ma_py_snapshot s;

		fake_new(&f, minor);
		uint8_t *c1 = code_obj(&f.o, "caller", "a.py", 10, 4);
		uint8_t *c2 = code_obj(&f.o, "callee", "a.py", 20, 4);
		uint8_t *f1 = frame_obj(&f.o, c1, 1, NULL);
		uint8_t *f2 = frame_obj(&f.o, c2, 0, f1);

		/* pushed, first instruction not run: prev_instr = code - 1 */
		put64(f2, f.o.frame_instr, A(c2) + f.o.code_code_adaptive - 2);
		fake_set_top(&f, f2);
		cr_assert_eq(ma_pyreader_snapshot(f.r, &s), 0);
		cr_assert_eq(s.threads[0].nframes, 1, "3.%d", minor);
		cr_assert_str_eq(s.threads[0].frames[0].func, "Q.caller");
		ma_py_snapshot_free(&s);
		fake_free(&f);
	}
}

Test(pyread, entry_frames)
{
	/* 3.11: the is_entry byte */
	struct fake f;
	struct ma_py_snapshot s;

	fake_new(&f, 11);
	uint8_t *c = code_obj(&f.o, "x", "x.py", 1, 4);
	uint8_t *f1 = frame_obj(&f.o, c, 1, NULL);
	uint8_t *f2 = frame_obj(&f.o, c, 1, f1);
	uint8_t *f3 = frame_obj(&f.o, c, 1, f2);

	f1[f.o.frame_is_entry] = 1;
	f3[f.o.frame_is_entry] = 1;
	fake_set_top(&f, f3);
	cr_assert_eq(ma_pyreader_snapshot(f.r, &s), 0);
	cr_assert_eq(s.threads[0].nframes, 3);
	cr_assert_eq(s.threads[0].frames[0].is_entry, 1);
	cr_assert_eq(s.threads[0].frames[1].is_entry, 0);
	cr_assert_eq(s.threads[0].frames[2].is_entry, 1);
	ma_py_snapshot_free(&s);
	fake_free(&f);

	/* 3.12/3.13: C-stack shims are skipped, the frame above is entry */
	for (int minor = 12; minor <= 13; minor++) {
		fake_new(&f, minor);
		c = code_obj(&f.o, "x", "x.py", 1, 4);
		uint8_t *shim0 = frame_obj(&f.o, NULL, 0, NULL);
		uint8_t *g1 = frame_obj(&f.o, c, 1, shim0);
		uint8_t *g2 = frame_obj(&f.o, c, 1, g1);
		uint8_t *shim1 = frame_obj(&f.o, NULL, 0, g2);
		uint8_t *g3 = frame_obj(&f.o, c, 1, shim1);

		shim0[f.o.frame_owner] = MA_FRAME_OWNED_BY_CSTACK;
		shim1[f.o.frame_owner] = MA_FRAME_OWNED_BY_CSTACK;
		/* a shim's f_code is garbage here: must not be read */
		put64(shim1, f.o.frame_code, 0x10);
		fake_set_top(&f, g3);
		cr_assert_eq(ma_pyreader_snapshot(f.r, &s), 0);
		const struct ma_py_thread *t = &s.threads[0];

		cr_assert_eq(t->nframes, 3, "3.%d: %d frames", minor,
			     t->nframes);
		cr_assert_eq(t->truncated, 0);
		cr_assert_eq(t->frames[0].frame_addr, A(g3));
		cr_assert_eq(t->frames[0].is_entry, 1);
		cr_assert_eq(t->frames[1].is_entry, 0);
		cr_assert_eq(t->frames[2].is_entry, 1);
		ma_py_snapshot_free(&s);
		fake_free(&f);
	}
}

Test(pyread, frame_cycle_and_bad_pointer_truncate)
{
	struct fake f;
	struct ma_py_snapshot s;

	fake_new(&f, 12);
	uint8_t *c = code_obj(&f.o, "x", "x.py", 1, 4);
	uint8_t *f1 = frame_obj(&f.o, c, 1, NULL);
	uint8_t *f2 = frame_obj(&f.o, c, 1, f1);
	uint8_t *f3 = frame_obj(&f.o, c, 1, f2);

	put64(f1, f.o.frame_previous, A(f3)); /* f3 -> f2 -> f1 -> f3 */
	fake_set_top(&f, f3);
	cr_assert_eq(ma_pyreader_snapshot(f.r, &s), 0);
	cr_assert_eq(s.threads[0].truncated, 1);
	cr_assert_leq(s.threads[0].nframes, 8);
	ma_py_snapshot_free(&s);

	put64(f1, f.o.frame_previous, 0x10); /* unmapped */
	cr_assert_eq(ma_pyreader_snapshot(f.r, &s), 0);
	cr_assert_eq(s.threads[0].truncated, 1);
	cr_assert_eq(s.threads[0].nframes, 3);
	ma_py_snapshot_free(&s);
	fake_free(&f);
}

Test(pyread, frame_limit)
{
	struct fake f;
	struct ma_py_snapshot s;
	uint8_t *prev = NULL;

	fake_new(&f, 10);
	uint8_t *c = code_obj(&f.o, "deep", "d.py", 1, 4);

	for (int i = 0; i < 5000; i++)
		prev = frame_obj(&f.o, c, 1, prev);
	fake_set_top(&f, prev);
	cr_assert_eq(ma_pyreader_snapshot(f.r, &s), 0);
	cr_assert_eq(s.threads[0].nframes, 4096);
	cr_assert_eq(s.threads[0].truncated, MA_PY_CUT_DEEP);
	ma_py_snapshot_free(&s);
	fake_free(&f);
}

Test(pyread, thread_and_interp_cycles)
{
	struct fake f;
	struct ma_py_snapshot s;

	fake_new(&f, 13);
	put64(f.tstate, f.o.tstate_next, A(f.tstate));
	cr_assert_eq(ma_pyreader_snapshot(f.r, &s), 0);
	cr_assert_eq(s.nthreads, 1);
	cr_assert_eq(s.truncated, 1);
	ma_py_snapshot_free(&s);

	put64(f.tstate, f.o.tstate_next, 0);
	put64(f.interp, f.o.interp_next, A(f.interp));
	cr_assert_eq(ma_pyreader_snapshot(f.r, &s), 0);
	cr_assert_eq(s.truncated, 1);
	cr_assert_leq(s.nthreads, 4);
	ma_py_snapshot_free(&s);

	/* the second thread state is unreadable: first one kept */
	put64(f.interp, f.o.interp_next, 0);
	put64(f.tstate, f.o.tstate_next, 0x20);
	cr_assert_eq(ma_pyreader_snapshot(f.r, &s), 0);
	cr_assert_eq(s.nthreads, 1);
	cr_assert_eq(s.truncated, 1);
	ma_py_snapshot_free(&s);
	fake_free(&f);
}

Test(pyread, wrong_type_code)
{
	for (int minor = 12; minor <= 13; minor++) {
		struct fake f;
		struct ma_py_snapshot s;

		fake_new(&f, minor);
		uint8_t *c = code_obj(&f.o, "x", "x.py", 1, 4);
		uint8_t *notcode = code_obj(&f.o, "y", "y.py", 1, 4);
		uint8_t *f1 = frame_obj(&f.o, c, 1, NULL);
		uint8_t *f2 = frame_obj(&f.o, notcode, 1, f1);

		put64(notcode, f.o.object_type, other_type);
		fake_set_top(&f, f2);
		cr_assert_eq(ma_pyreader_snapshot(f.r, &s), 0);
		const struct ma_py_thread *t = &s.threads[0];

		if (minor == 13) {
			/* 3.13 may run non-code executables: skipped */
			cr_assert_eq(t->nframes, 1);
			cr_assert_str_eq(t->frames[0].func, "Q.x");
		} else {
			cr_assert_eq(t->nframes, 2);
			cr_assert_str_eq(t->frames[0].func, "<unreadable>");
			cr_assert_eq(t->frames[0].line, -1);
		}
		ma_py_snapshot_free(&s);
		fake_free(&f);
	}
}

Test(pyread, code_address_reused)
{
	struct fake f;
	struct ma_py_snapshot s;

	fake_new(&f, 11);
	uint8_t *c = code_obj(&f.o, "before", "x.py", 1, 4);
	uint8_t *fr = frame_obj(&f.o, c, 1, NULL);

	fake_set_top(&f, fr);
	cr_assert_eq(ma_pyreader_snapshot(f.r, &s), 0);
	cr_assert_str_eq(s.threads[0].frames[0].func, "Q.before");
	ma_py_snapshot_free(&s);
	/* another code object now lives at the same address */
	put64(c, f.o.code_qualname, ascii_obj(&f.o, "after"));
	put32(c, f.o.code_firstlineno, 50);
	cr_assert_eq(ma_pyreader_snapshot(f.r, &s), 0);
	cr_assert_str_eq(s.threads[0].frames[0].func, "after");
	cr_assert_eq(s.threads[0].frames[0].line, 52);
	ma_py_snapshot_free(&s);
	fake_free(&f);
}

Test(pyread, validate_rejects_bad_offsets)
{
	struct fake f;

	fake_new(&f, 12);
	uint8_t *c = code_obj(&f.o, "x", "x.py", 1, 4);

	fake_set_top(&f, frame_obj(&f.o, c, 1, NULL));
	cr_assert_eq(ma_pyreader_validate(f.r), 0);
	put64(f.tstate, f.o.tstate_interp, A(f.interp) + 64);
	cr_assert_eq(ma_pyreader_validate(f.r), -EPROTO);
	put64(f.tstate, f.o.tstate_interp, A(f.interp));
	put64(c, f.o.object_type, other_type);
	cr_assert_eq(ma_pyreader_validate(f.r), -EPROTO);
	/* no interpreter at all: a runtime not initialized (or finalized),
	 * not offsets that are wrong */
	put64(f.runtime, f.o.runtime_interpreters_head, 0);
	cr_assert_eq(ma_pyreader_validate(f.r), -ENODATA);
	fake_free(&f);
}

Test(pyread, new_rejects_missing_fields)
{
	struct ma_py_offsets o = layout(11);
	struct ma_pyreader *r;

	o.frame_is_entry = MA_OFF_NONE;
	cr_assert_eq(ma_pyreader_new(NULL, &o, 0x1000, &r), -EINVAL);
	o = layout(14);
	cr_assert_eq(ma_pyreader_new(NULL, &o, 0x1000, &r), -ENOTSUP);
}

Test(pyread, unicode_kinds)
{
	struct ma_py_offsets o = layout(12);
	struct ma_mem *m;
	char buf[64];
	static const uint32_t latin1[] = { 'c', 0xe9, 'l' }; /* "cél" */
	static const uint32_t ucs2[] = { 0x51fd, 0x6570 };   /* 函数 */
	static const uint32_t ucs4[] = { 'a', 0x1f40d };     /* a🐍 */

	cr_assert_eq(ma_mem_open(getpid(), &m), 0);
	cr_assert_eq(ma_pyread_unicode(m, &o, ascii_obj(&o, "hello"), buf,
				       sizeof(buf)),
		     5);
	cr_assert_str_eq(buf, "hello");
	cr_assert_eq(ma_pyread_unicode(m, &o, str_obj(&o, latin1, 3, 1), buf,
				       sizeof(buf)),
		     4);
	cr_assert_str_eq(buf, "c\xc3\xa9l");
	ma_pyread_unicode(m, &o, str_obj(&o, ucs2, 2, 2), buf, sizeof(buf));
	cr_assert_str_eq(buf, "\xe5\x87\xbd\xe6\x95\xb0");
	ma_pyread_unicode(m, &o, str_obj(&o, ucs4, 2, 4), buf, sizeof(buf));
	cr_assert_str_eq(buf, "a\xf0\x9f\x90\x8d");
	/* too small a buffer: cut at a character boundary, terminated */
	cr_assert_eq(ma_pyread_unicode(m, &o, str_obj(&o, ucs2, 2, 2), buf, 5),
		     3);
	cr_assert_str_eq(buf, "\xe5\x87\xbd");
	cr_assert_eq(ma_pyread_unicode(m, &o, ascii_obj(&o, "hello"), buf, 3),
		     2);
	cr_assert_str_eq(buf, "he");
	/* not compact (legacy string): refused */
	uint64_t legacy = ascii_obj(&o, "x");

	put32((uint8_t *)(uintptr_t)legacy, o.unicode_state,
	      1u << o.unicode_kind_shift);
	cr_assert_eq(ma_pyread_unicode(m, &o, legacy, buf, sizeof(buf)),
		     -EPROTO);
	cr_assert_lt(ma_pyread_unicode(m, &o, 0x30, buf, sizeof(buf)), 0);
	ma_mem_close(m);
	fini();
}

/* ------------------------------------------------------------------ */
/* Thread names: sys.modules['threading']._active[ident]._name          */

/* Where CPython keeps sys.modules in PyInterpreterState, per minor (the
 * facts of pyread.c's table, from the pyenv builds' DWARF) */
static const int32_t modules_at[] = { 56, 856, 856, 888, 944, 7656 };

static uint64_t dict_type_, module_type_, int_type_, str_type_;

/* The test's objects: ob_type at o->object_type, as the fake layout says */
static uint8_t *pyobj(const struct ma_py_offsets *o, size_t size, uint64_t type)
{
	uint8_t *b = obj(size);

	put64(b, o->object_type, type);
	return b;
}

static uint64_t name_str(const struct ma_py_offsets *o, const char *s)
{
	uint64_t a = ascii_obj(o, s);

	put64((uint8_t *)(uintptr_t)a, o->object_type, str_type_);
	return a;
}

static uint64_t int_obj(const struct ma_py_offsets *o, int minor, uint64_t v)
{
	uint8_t *b = pyobj(o, 48, int_type_);
	int nd = 0;

	for (uint64_t x = v; x; x >>= 30)
		put32(b, 24 + 4 * nd++, (uint32_t)(x & 0x3fffffff));
	/* 3.12+: lv_tag = digits << 3 (sign 0: positive, 1: zero) */
	put64(b, o->varobject_size,
	      minor >= 12 ? (uint64_t)nd << 3 | (nd ? 0 : 1) : (uint64_t)nd);
	return A(b);
}

/*
 * A dict's keys object with n entries (8 slots): 3.8-3.10 dk_size and
 * {hash, key, value} entries; 3.11+ dk_log2_size, dk_kind (general: with
 * hash; unicode and split: {key, value})
 */
static uint64_t keys_obj(int minor, int kind, const uint64_t *k,
			 const uint64_t *v, int n)
{
	uint8_t *b = obj(40 + 8 + 8 * 24);
	int esize = minor >= 11 && kind ? 16 : 24;
	uint8_t *e;

	if (minor >= 11) {
		b[8] = 3; /* 8 slots */
		b[9] = 3; /* 8 bytes of indices */
		b[10] = (uint8_t)kind;
		put64(b, 24, (uint64_t)n);
		e = b + 32 + 8;
	} else {
		put64(b, 8, 8);
		put64(b, 32, (uint64_t)n);
		e = b + 40 + 8;
	}
	for (int i = 0; i < n; i++) {
		uint8_t *x = e + i * esize;

		if (esize == 24) {
			put64(x, 0, 0x5555 + (uint64_t)i);
			put64(x, 8, k[i]);
			put64(x, 16, v ? v[i] : 0);
		} else {
			put64(x, 0, k[i]);
			put64(x, 8, v ? v[i] : 0);
		}
	}
	return A(b);
}

static uint64_t dict_obj(const struct ma_py_offsets *o, int minor, int kind,
			 const uint64_t *k, const uint64_t *v, int n)
{
	uint8_t *d = pyobj(o, 48, dict_type_);

	put64(d, 16, (uint64_t)n);
	put64(d, 32, keys_obj(minor, kind, k, v, n));
	return A(d);
}

static uint64_t module_obj(const struct ma_py_offsets *o, uint64_t dict)
{
	uint8_t *m = pyobj(o, 48, module_type_);

	put64(m, 16, dict); /* md_dict */
	return A(m);
}

/*
 * A Thread instance named name, native id nid, its attributes kept as the
 * version does: a __dict__ at tp_dictoffset (<= 3.10), values before the
 * object without a dict (3.11, 3.12), values inline after it (3.13), or,
 * materialized, a dict in the managed slot (as_dict, 3.11+)
 */
static uint64_t thread_obj(const struct ma_py_offsets *o, int minor,
			   const char *name, uint64_t nid, int as_dict)
{
	uint64_t keys[2] = { name_str(o, "_name"), name_str(o, "_native_id") };
	uint64_t vals[2] = { name_str(o, name), int_obj(o, minor, nid) };
	uint8_t *type = pyobj(o, 1024, 0);
	uint8_t *pre = obj(32 + 64 + 32); /* 4 words, the object, values */
	uint8_t *self = pre + 32;

	put64(self, o->object_type, A(type));
	if (minor <= 10) {
		put64(type, 288, 40); /* tp_dictoffset */
		put64(self, 40, dict_obj(o, minor, 1, keys, vals, 2));
		return A(self);
	}
	put64(type, 168, minor >= 13 ? 1 << 4 | 1 << 2 : 1 << 4);
	put64(type, 32, 64); /* tp_basicsize */
	put64(type, minor >= 12 ? 880 : 872, keys_obj(minor, 2, keys, NULL, 2));
	if (as_dict) {
		put64(pre, 8, dict_obj(o, minor, 1, keys, vals, 2));
		return A(self);
	}
	uint8_t *values = minor >= 13 ? self + 64 : obj(32);

	if (minor >= 13) {
		values[0] = 4; /* capacity */
		values[1] = 2; /* size */
		values[3] = 1; /* valid */
		put64(values, 8, vals[0]);
		put64(values, 16, vals[1]);
	} else {
		put64(values, 0, vals[0]);
		put64(values, 8, vals[1]);
		if (minor == 11)
			put64(pre, 0, A(values));
		else
			put64(pre, 8, A(values) - 1);
	}
	return A(self);
}

/* The fake interpreter's sys.modules with threading._active holding the
 * fake's thread (ident 0x1234, native id 77) and another one */
static void fake_threading(struct fake *f, int minor, int32_t at, int as_dict)
{
	static const char dict_n[] = "dict", mod_n[] = "module",
			  int_n[] = "int", str_n[] = "str";
	const struct ma_py_offsets *o = &f->o;

	dict_type_ = type_obj(o, dict_n);
	module_type_ = type_obj(o, mod_n);
	int_type_ = type_obj(o, int_n);
	str_type_ = type_obj(o, str_n);
	uint64_t idents[2] = { int_obj(o, minor, 0x7f00aabbccdd0123ull),
			       int_obj(o, minor, 0x1234) };
	uint64_t threads[2] = {
		thread_obj(o, minor, "other", 78, 0),
		thread_obj(o, minor, "pool #2 (db)", 77, as_dict),
	};
	uint64_t active = dict_obj(o, minor, 0, idents, threads, 2);
	uint64_t tk[2] = { name_str(o, "Thread"), name_str(o, "_active") };
	uint64_t tv[2] = { name_str(o, "class, not a dict"), active };
	uint64_t threading = module_obj(o, dict_obj(o, minor, 1, tk, tv, 2));
	uint64_t sys_mod = module_obj(o, dict_obj(o, minor, 1, NULL, NULL, 0));
	uint64_t mk[3] = { name_str(o, "sys"), name_str(o, "os"),
			   name_str(o, "threading") };
	uint64_t mv[3] = { sys_mod, module_obj(o, 0), threading };

	put64(f->interp, at, dict_obj(o, minor, 1, mk, mv, 3));
}

static void names(int minor, int shift, int as_dict)
{
	struct fake f;
	struct ma_py_snapshot s;
	struct ma_py_tname *v;
	size_t n;

	fake_new(&f, minor);
	uint8_t *c = code_obj(&f.o, "run", "threading.py", 10, 4);

	fake_set_top(&f, frame_obj(&f.o, c, 1, NULL));
	fake_threading(&f, minor, modules_at[minor - 8] + shift, as_dict);
	cr_assert_eq(ma_pyreader_snapshot(f.r, &s), 0);
	cr_assert_eq(s.nthreads, 1);
	cr_assert(s.threads[0].name, "3.%d: no name", minor);
	cr_assert_str_eq(s.threads[0].name, "pool #2 (db)", "3.%d", minor);
	ma_py_snapshot_free(&s);
	cr_assert_eq(ma_pyreader_thread_names(f.r, &v, &n), 0);
	cr_assert_eq(n, 2, "3.%d: %zu names", minor, n);
	cr_assert_eq(v[0].ident, 0x7f00aabbccdd0123ull);
	cr_assert_str_eq(v[0].name, "other");
	cr_assert_eq(v[0].native_id, 78);
	cr_assert_eq(v[1].ident, 0x1234);
	cr_assert_eq(v[1].native_id, 77);
	cr_assert_str_eq(v[1].name, "pool #2 (db)");
	free(v);
	fake_free(&f);
}

Test(pyread, thread_names_each_version)
{
	for (int minor = 8; minor <= 13; minor++) {
		names(minor, 0, 0);
		if (minor >= 11)
			names(minor, 0, 1); /* a materialized __dict__ */
	}
}

Test(pyread, thread_names_modules_found_near_the_table_offset)
{
	for (int minor = 8; minor <= 13; minor++) {
		names(minor, 40, 0);
		if (modules_at[minor - 8] >= 512)
			names(minor, -504, 0);
	}
}

/* The same thread's ident with another native id is another thread: a
 * pthread_t is reused as soon as a thread is joined */
Test(pyread, thread_names_need_the_native_id_too)
{
	struct fake f;
	struct ma_py_snapshot s;

	fake_new(&f, 12);
	fake_set_top(&f, frame_obj(&f.o, code_obj(&f.o, "r", "t.py", 1, 4), 1,
				   NULL));
	fake_threading(&f, 12, modules_at[4], 0);
	put64(f.tstate, f.o.tstate_native_thread_id, 99);
	cr_assert_eq(ma_pyreader_snapshot(f.r, &s), 0);
	cr_assert_null(s.threads[0].name);
	ma_py_snapshot_free(&s);
	fake_free(&f);
}

/* Garbage where a dict should be: no names, nothing read out of bounds */
Test(pyread, thread_names_garbage_gives_none)
{
	struct fake f;
	struct ma_py_snapshot s;
	struct ma_py_tname *v;
	size_t n;

	for (int minor = 8; minor <= 13; minor++) {
		fake_new(&f, minor);
		fake_set_top(&f,
			     frame_obj(&f.o, code_obj(&f.o, "r", "t.py", 1, 4),
				       1, NULL));
		fake_threading(&f, minor, modules_at[minor - 8], 0);
		uint64_t d;

		memcpy(&d, f.interp + modules_at[minor - 8], 8);
		uint8_t *keys;

		memcpy(&keys, (uint8_t *)(uintptr_t)d + 32, 8);
		/* a size that is no power of two, then a huge count */
		if (minor >= 11)
			keys[8] = 61;
		else
			put64(keys, 8, 12);
		cr_assert_eq(ma_pyreader_snapshot(f.r, &s), 0);
		cr_assert_null(s.threads[0].name);
		ma_py_snapshot_free(&s);
		cr_assert_eq(ma_pyreader_thread_names(f.r, &v, &n), 0);
		cr_assert_eq(n, 0);
		free(v);
		if (minor >= 11) {
			keys[8] = 3;
			put64(keys, 24, 1ull << 40);
		} else {
			put64(keys, 8, 8);
			put64(keys, 32, 1ull << 40);
		}
		cr_assert_eq(ma_pyreader_snapshot(f.r, &s), 0);
		cr_assert_null(s.threads[0].name);
		ma_py_snapshot_free(&s);
		fake_free(&f);
	}
}
