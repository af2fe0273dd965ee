/* SPDX-License-Identifier: MIT */
/*
 * Filling struct ma_py_offsets for one CPython build, from one of three
 * sources (docs/offsets.md), one file each:
 *   1. DWARF of the running binary (exact), through libdw: offsets_dwarf.c;
 *   2. CPython's own _Py_DebugOffsets, 3.13+, read from the target's memory:
 *      offsets_debugoffsets.c;
 *   3. the built-in table per minor version (offsets_table.c, generated from
 *      DWARF by tools/gen-offsets-table), looked up in offsets.c;
 * and the chain that tries them in turn, validating each result against the
 * live process (offsets_source.c), with DWARF results cached by build ID
 * (offsets_cache.c).  Which fields a version has: common/ma_pyver.h.
 */
#ifndef MA_PYOFFSETS_H
#define MA_PYOFFSETS_H

#include <elfutils/libdwfl.h>
#include <stdio.h>
#include <stdint.h>
#include <sys/types.h>

#include "ma_offsets.h"

struct ma_mem;

/* Which sources the chain may use */
enum ma_offsets_pref {
	MA_PREF_AUTO = 0, /* DWARF, then _Py_DebugOffsets, then the table */
	MA_PREF_DWARF,
	MA_PREF_DEBUG_OFFSETS,
	MA_PREF_TABLE,
};

/* What the source chain needs to know of the target */
struct ma_offsets_query {
	pid_t pid;
	const char *version; /* "3.11.2", for messages */
	uint32_t version_hex;
	const char
		*mod_path; /* module with _PyRuntime, as the target sees it */
	const char *mod_local; /* the same file, reachable from here */
	const char *build_id;  /* of that module, hex ("": none): cache key */
	Dwfl_Module *mod;
	struct ma_mem *mem;
	uint64_t runtime_addr;
	enum ma_offsets_pref pref;
	int no_validate; /* developer: take the first result unchecked */
};

/*
 * The source chain: DWARF (cached by build ID), _Py_DebugOffsets, the
 * table, as far as q->pref allows, each result validated against the live
 * process.  0 with *off, origin (where they came from) and notes (why
 * earlier sources were passed over) filled; else an error with exit code
 * MA_EXIT_NODEBUG whose message names the Debian package with the DWARF
 * when there is one.
 */
int ma_offsets_find(const struct ma_offsets_query *q, struct ma_py_offsets *off,
		    char *origin, size_t origin_len, char *notes,
		    size_t notes_len);

/* The Debian package that carries the DWARF of a Python binary
 * ("python3.11-dbg"), or NULL when the path is not Debian's */
const char *ma_debian_dbg_package(const char *path, uint32_t version_hex,
				  char *buf, size_t len);

/*
 * From the DWARF of mod (an executable or libpython with _PyRuntime).  The
 * version decides which fields must exist.  Returns 0, -ENOENT when the module
 * has no DWARF at all (message names what was looked for), -EPROTO when DWARF
 * is there but a needed type/member is missing (message names it).
 */
int ma_pyoffsets_from_dwarf(Dwfl_Module *mod, uint32_t version_hex,
			    struct ma_py_offsets *out);

/* The same for a file on disk (an executable or libpython), opened with
 * libdwfl offline; its DWARF may be separate (/usr/lib/debug/.build-id/).
 * -ENOENT also when the file does not exist. */
int ma_pyoffsets_from_file(const char *path, uint32_t version_hex,
			   struct ma_py_offsets *out);

/*
 * From _Py_DebugOffsets at the start of _PyRuntime in the target (3.13+).
 * -ENOENT when the version has none or the cookie "xdebugpy" is absent,
 * -ENOTSUP for a layout other than 3.13's (3.14+) or a free-threaded build,
 * -EPROTO when the values are implausible or the version disagrees.
 */
int ma_pyoffsets_from_debug_offsets(struct ma_mem *m, uint64_t runtime_addr,
				    uint32_t version_hex,
				    struct ma_py_offsets *out);

/* The same from bytes already read (e.g. the start of the .PyRuntime section
 * of the file on disk, which holds the initialised struct).  len should be
 * at least ma_pyoffsets_debug_offsets_size().  version_hex 0: take the
 * version found in the struct.  -ENOTSUP for a layout other than 3.13's
 * (3.14+) and for free-threaded builds. */
int ma_pyoffsets_from_debug_offsets_buf(const void *buf, size_t len,
					uint32_t version_hex,
					struct ma_py_offsets *out);
size_t ma_pyoffsets_debug_offsets_size(void);

/* From the built-in table: -ENOENT when the minor version is not in it. */
int ma_pyoffsets_from_table(uint32_t version_hex, struct ma_py_offsets *out);

/* The table entry itself (its version_hex is the release it was generated
 * from), or NULL. */
const struct ma_py_offsets *ma_pyoffsets_table_entry(uint32_t version_hex);

/* Print offsets as a C designated initializer (used by the table generator
 * and by `memattach offsets`), or as "name value" lines. */
void ma_pyoffsets_print_c(FILE *f, const struct ma_py_offsets *o);
void ma_pyoffsets_print(FILE *f, const struct ma_py_offsets *o);

/* Compare two sets, ignoring source/version micro; returns the number of
 * fields that differ and prints each to f (when f is not NULL). */
int ma_pyoffsets_diff(FILE *f, const struct ma_py_offsets *a,
		      const struct ma_py_offsets *b);

const char *ma_offsets_source_name(enum ma_offsets_source s);

#endif
