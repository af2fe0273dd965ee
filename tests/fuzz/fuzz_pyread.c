/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the walk of a hostile target's Python state
 * (attacher/cpython/pyread.c: interpreters, thread states, the GIL,
 * frames, code objects, str and bytes objects, line tables; what `memattach
 * stacks` and the attach's offset check do) over memory the fuzzer
 * provides.  Reads go through tests/fuzz/fuzz_memread.c, linked in place of
 * attacher/proc/memread.c.  Whatever the memory holds, the walk must end
 * (bounded loops, cycles detected), with a clean error or a truncated
 * snapshot: never a crash, undefined behaviour, a leak or a hang.
 *
 * Input: byte 0 picks the built-in offsets of one Python version (3.8 to
 * 3.13, modulo the table's length); bytes 1-2 the offset of _PyRuntime in
 * the memory (little-endian); the rest is the memory, mapped at MEM_BASE.
 *
 * Seeds in tests/fuzz/corpus/pyread/: one image per version, a runtime
 * with one interpreter, its GIL, one thread, two or three frames (a C-stack
 * shim on 3.12+), a code object, its type ("code"), an ASCII and a
 * two-byte str and a line table, laid out with the table's offsets.
 * Written by this harness when MA_FUZZ_PYREAD_SEEDS names a folder.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "fuzz_memread.h"
#include "ma_pyver.h"
#include "offsets_table.h"
#include "pyread.h"

#define MEM_BASE 0x7f3a12340000ull

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static void put64(uint8_t *m, size_t at, uint64_t v)
{
	memcpy(m + at, &v, 8);
}

static void put32(uint8_t *m, size_t at, uint32_t v)
{
	memcpy(m + at, &v, 4);
}

/* a compact str at `at`: kind 1 ASCII or kind 2 */
static void put_str(uint8_t *m, size_t at, const struct ma_py_offsets *o,
		    const char *s, int kind)
{
	size_t len = strlen(s);
	uint32_t state = (uint32_t)kind << o->unicode_kind_shift |
			 1u << o->unicode_compact_bit |
			 (kind == 1 ? 1u << o->unicode_ascii_bit : 0);

	put64(m, at + (size_t)o->unicode_length, len);
	put32(m, at + (size_t)o->unicode_state, state);
	for (size_t i = 0; i < len; i++) {
		if (kind == 1) {
			m[at + (size_t)o->unicode_ascii_size + i] =
				(uint8_t)s[i];
		} else {
			uint16_t c =
				(uint8_t)s[i] == '~' ? 0xe9 : (uint8_t)s[i];

			memcpy(m + at + (size_t)o->unicode_compact_size + 2 * i,
			       &c, 2);
		}
	}
}

/* One plausible process image for the offsets o; returns its length */
static size_t seed_image(const struct ma_py_offsets *o, uint8_t *m)
{
	const struct ma_pyver *v = ma_pyver_of(o->version_hex);
	const struct ma_py_layout *L = &ma_py_layouts[v->layout];
	const uint64_t B = MEM_BASE;
	/* where each object lies in the image */
	enum {
		RT = 0x0000,
		INTERP = 0x1000,
		TSTATE = 0x4000,
		CFRAME = 0x5000,
		FRAME1 = 0x5100,
		SHIM = 0x5300,
		FRAME2 = 0x5500,
		GIL = 0x5800,
		CODE = 0x6000,
		TYPE = 0x7000,
		TNAME = 0x7400,
		TABLE = 0x7800,
		NAME = 0x8000,
		QUAL = 0x8100,
		FILE_ = 0x8200,
		END = 0x8400,
	};
	static const uint8_t tables[][8] = {
		{ 0, 1, 4, 1, 6, 1 },		 /* co_lnotab */
		{ 4, 1, 4, 1, 6, 1 },		 /* 3.10 co_linetable */
		{ 0x80, 0, 0xd8, 4, 0x8, 0xd9 }, /* location table */
	};
	int minor = ma_py_minor(o->version_hex);
	const uint8_t *table = tables[minor <= 9 ? 0 : minor == 10 ? 1 : 2];

	memset(m, 0, END);
	put64(m, RT + o->runtime_interpreters_head, B + INTERP);
	if (o->runtime_gil >= 0 && o->interp_gil_ptr < 0) {
		put32(m, RT + o->runtime_gil + o->gil_locked, 1);
		put64(m, RT + o->runtime_gil + o->gil_last_holder, B + TSTATE);
	}
	put64(m, INTERP + o->interp_threads_head, B + TSTATE);
	if (o->interp_id >= 0)
		put64(m, INTERP + o->interp_id, 0);
	if (o->interp_gil_ptr >= 0) {
		put64(m, INTERP + o->interp_gil_ptr, B + GIL);
		put32(m, GIL + o->gil_locked, 1);
		put64(m, GIL + o->gil_last_holder, B + TSTATE);
	}
	put64(m, TSTATE + o->tstate_interp, B + INTERP);
	put64(m, TSTATE + o->tstate_thread_id, 0x7f3a00001000);
	if (o->tstate_native_thread_id >= 0)
		put64(m, TSTATE + o->tstate_native_thread_id, 4242);
	if (L->top_in_cframe) {
		put64(m, TSTATE + o->tstate_cframe, B + CFRAME);
		put64(m, CFRAME + o->cframe_current_frame, B + FRAME1);
	} else {
		put64(m, TSTATE + o->tstate_frame, B + FRAME1);
	}
	/* frame 1 -> (shim ->) frame 2, both running the code object */
	uint64_t after1 = L->cstack_owner >= 0 ? B + SHIM : B + FRAME2;

	put64(m, FRAME1 + o->frame_previous, after1);
	put64(m, FRAME2 + o->frame_previous, 0);
	if (L->cstack_owner >= 0) {
		put64(m, SHIM + o->frame_previous, B + FRAME2);
		m[SHIM + o->frame_owner] = (uint8_t)L->cstack_owner;
	}
	for (size_t f = FRAME1; f <= FRAME2; f += FRAME2 - FRAME1) {
		put64(m, f + o->frame_code, B + CODE);
		if (L->lasti_scale)
			put32(m, f + o->frame_instr, 2);
		else
			put64(m, f + o->frame_instr,
			      B + CODE + o->code_code_adaptive + 4);
		if (o->frame_is_entry >= 0)
			m[f + o->frame_is_entry] = f == FRAME2;
	}
	put64(m, CODE + o->object_type, B + TYPE);
	put64(m, CODE + o->code_name, B + NAME);
	if (o->code_qualname >= 0)
		put64(m, CODE + o->code_qualname, B + QUAL);
	put64(m, CODE + o->code_filename, B + FILE_);
	put32(m, CODE + o->code_firstlineno, 10);
	put64(m, CODE + o->code_linetable, B + TABLE);
	put64(m, TYPE + o->type_name, B + TNAME);
	memcpy(m + TNAME, "code", 5);
	put64(m, TABLE + o->varobject_size, 6);
	memcpy(m + TABLE + o->bytes_sval, table, 6);
	put_str(m, NAME, o, "main", 1);
	put_str(m, QUAL, o, "Cl~ss.main", 2);
	put_str(m, FILE_, o, "/srv/app.py", 1);
	return END;
}

static void write_seeds(const char *dir)
{
	static uint8_t img[3 + 0x8400];

	for (size_t i = 0; i < ma_offsets_table_len; i++) {
		const struct ma_py_offsets *o = &ma_offsets_table[i];
		char path[512];
		size_t len;
		FILE *f;

		if (!ma_pyver_of(o->version_hex))
			continue;
		img[0] = (uint8_t)i;
		img[1] = img[2] = 0; /* _PyRuntime at MEM_BASE */
		len = seed_image(o, img + 3);
		snprintf(path, sizeof(path), "%s/py3%d.seed", dir,
			 ma_py_minor(o->version_hex));
		f = fopen(path, "wb");
		if (!f || fwrite(img, 1, 3 + len, f) != 3 + len)
			abort();
		fclose(f);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("MA_FUZZ_PYREAD_SEEDS");

	(void)argc;
	(void)argv;
	if (dir) {
		write_seeds(dir);
		exit(0);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	const struct ma_py_offsets *o;
	struct ma_pyreader *r = NULL;
	struct ma_py_snapshot s;
	struct ma_mem *m;
	uint8_t *mem;
	uint64_t runtime;
	char buf[64];
	static int print = -1;

	if (print < 0)
		print = getenv("MA_FUZZ_PYREAD_PRINT") != NULL;
	if (n < 3 || !ma_offsets_table_len)
		return 0;
	o = &ma_offsets_table[d[0] % ma_offsets_table_len];
	runtime = MEM_BASE + (uint64_t)(d[1] | d[2] << 8);
	/* memory is mapped by whole pages: the input, then zeroes to the end
	 * of its last page (a copy of that size, so ASan sees any read past
	 * it through the harness's own mistakes) */
	size_t len = (n - 3 + 4095) & ~(size_t)4095;

	mem = calloc(1, len ? len : 1);
	if (!mem)
		return 0;
	memcpy(mem, d + 3, n - 3);
	fuzz_mem_set(MEM_BASE, mem, len);
	if (ma_mem_open(4242, &m) < 0)
		abort();
	if (ma_pyreader_new(m, o, runtime, &r) == 0) {
		/* what the attach and `stacks` do: check, then walk twice
		 * (the second through the code object cache) */
		if (ma_pyreader_validate(r) < 0 && print)
			printf("validate: %s\n", ma_errmsg());
		for (int i = 0; i < 2; i++) {
			if (ma_pyreader_snapshot(r, &s) == 0) {
				for (int t = 0; t < s.nthreads; t++)
					for (int f = 0;
					     f < s.threads[t].nframes; f++) {
						const struct ma_py_frame *fr =
							&s.threads[t].frames[f];

						/* the strings are usable;
						 * MA_FUZZ_PYREAD_PRINT=1
						 * shows them (a seed's
						 * check) */
						if (print)
							printf("thread %d: %s "
							       "%s:%d%s\n",
							       t, fr->func,
							       fr->file,
							       fr->line,
							       fr->is_entry
								       ? " entr"
									 "y"
								       : "");
						else if (
							strlen(fr->func) +
								strlen(fr->file) ==
							(size_t)-1)
							abort();
					}
				ma_py_snapshot_free(&s);
			}
		}
		ma_pyreader_free(r);
	}
	/* a str anywhere: the reader without a page cache */
	ma_pyread_unicode(m, o, runtime, buf, sizeof(buf));
	ma_mem_close(m);
	free(mem);
	ma_err_clear();
	return 0;
}
