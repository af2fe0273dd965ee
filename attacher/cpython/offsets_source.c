/* SPDX-License-Identifier: MIT */
/*
 * The source chain (docs/offsets.md, "Fallback order"): DWARF (through the
 * cache), _Py_DebugOffsets for the versions that have it, the built-in
 * table; each result validated against the live process before it is used.
 */
#include "pyoffsets.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ma_pyver.h"
#include "errors.h"
#include "offsets_internal.h"
#include "pyread.h"

const char *ma_debian_dbg_package(const char *path, uint32_t version_hex,
				  char *buf, size_t len)
{
	int minor = ma_py_minor(version_hex);
	char exe[64], lib[96];

	snprintf(exe, sizeof(exe), "/usr/bin/python3.%d", minor);
	snprintf(lib, sizeof(lib), "/usr/lib/x86_64-linux-gnu/libpython3.%d.so",
		 minor);
	if (strcmp(path, exe) && strncmp(path, lib, strlen(lib)))
		return NULL;
	snprintf(buf, len, "python3.%d-dbg", minor);
	return buf;
}

struct chain {
	const struct ma_offsets_query *q;
	struct ma_py_offsets *off;
	char *origin, *notes;
	size_t origin_len, notes_len;
	int checked, no_interp; /* sources validated; found no interpreter */
};

static void note(struct chain *c, const char *fmt, const char *what)
{
	size_t l = strlen(c->notes);

	snprintf(c->notes + l, c->notes_len - l, "%s%s: %s", l ? "; " : "", fmt,
		 what);
}

/* Offsets that pass the checks against the live process, or an error */
static int check_offsets(struct chain *c)
{
	struct ma_pyreader *r;
	int err;

	if (c->q->no_validate)
		return 0;
	err = ma_pyreader_new(c->q->mem, c->off, c->q->runtime_addr, &r);
	if (err)
		return err;
	err = ma_pyreader_validate(r);
	ma_pyreader_free(r);
	c->checked++;
	c->no_interp += err == -ENODATA;
	return err;
}

/* _Py_DebugOffsets says nothing of the collector, frames' locals or the
 * containers the heap census sizes: those come from the built-in table of
 * the same minor, whose layouts hold for every build of it */
static void heap_fields_from_table(struct ma_py_offsets *off)
{
	const struct ma_py_offsets *t =
		ma_pyoffsets_table_entry(off->version_hex);
	const struct ma_pyver *v = ma_pyver_of(off->version_hex);

	if (!t || !v)
		return;
	for (int i = 0; i < MA_FI_COUNT; i++)
		if ((ma_pyver_heap_fields(v) >> i & 1) &&
		    ma_py_field_get(off, i) == MA_OFF_NONE)
			ma_py_field_set(off, i, ma_py_field_get(t, i));
}

int ma_offsets_find(const struct ma_offsets_query *q, struct ma_py_offsets *off,
		    char *origin, size_t origin_len, char *notes,
		    size_t notes_len)
{
	struct chain c = { q, off, origin, notes, origin_len, notes_len, 0, 0 };
	enum ma_offsets_pref p = q->pref;
	int minor = ma_py_minor(q->version_hex);
	int err;
	char pkg[64];
	const char *dbg = ma_debian_dbg_package(q->mod_path, q->version_hex,
						pkg, sizeof(pkg));

	if (p == MA_PREF_AUTO || p == MA_PREF_DWARF) {
		if (ma_offsets_cache_load(q->pid, q->build_id, q->version_hex,
					  off, origin, origin_len) == 0 &&
		    check_offsets(&c) == 0)
			return 0;
		err = ma_pyoffsets_from_dwarf(q->mod, q->version_hex, off);
		if (!err) {
			const char *mainfile = NULL, *debugfile = NULL;

			dwfl_module_info(q->mod, NULL, NULL, NULL, NULL, NULL,
					 &mainfile, &debugfile);
			snprintf(origin, origin_len, "DWARF (%s)",
				 debugfile  ? debugfile
				 : mainfile ? mainfile
					    : q->mod_path);
			err = check_offsets(&c);
			if (!err) {
				ma_offsets_cache_store(q->build_id, off,
						       debugfile ? debugfile
						       : mainfile
							       ? mainfile
							       : q->mod_local);
				return 0;
			}
			note(&c, "DWARF offsets rejected", ma_errmsg());
		} else if (err == -ENOENT) {
			char why[256];

			snprintf(why, sizeof(why), "no DWARF for %s%s%s%s",
				 q->mod_path, dbg ? " (install " : "",
				 dbg ? dbg : "", dbg ? ")" : "");
			note(&c, "DWARF", why);
		} else {
			note(&c, "DWARF unusable", ma_errmsg());
		}
		if (p == MA_PREF_DWARF)
			goto none;
	}
	if ((p == MA_PREF_AUTO &&
	     ma_pyver_nearest(q->version_hex)->debug_offsets) ||
	    p == MA_PREF_DEBUG_OFFSETS) {
		err = ma_pyoffsets_from_debug_offsets(q->mem, q->runtime_addr,
						      q->version_hex, off);
		if (!err) {
			heap_fields_from_table(off);
			snprintf(origin, origin_len,
				 "_Py_DebugOffsets (in _PyRuntime)");
			err = check_offsets(&c);
			if (!err)
				return 0;
		}
		note(&c, "_Py_DebugOffsets", ma_errmsg());
		if (p == MA_PREF_DEBUG_OFFSETS)
			goto none;
	}
	if (p == MA_PREF_AUTO || p == MA_PREF_TABLE) {
		err = ma_pyoffsets_from_table(q->version_hex, off);
		if (!err) {
			snprintf(origin, origin_len, "built-in table for 3.%d",
				 minor);
			err = check_offsets(&c);
			if (!err)
				return 0;
		}
		note(&c, "built-in table", ma_errmsg());
	}
none:
	/* every source read the same: no interpreter to read (libpython
	 * loaded by a program that has not called Py_Initialize yet, or has
	 * called Py_Finalize); no debug package would change that */
	if (c.checked && c.no_interp == c.checked) {
		ma_err_set_exit(MA_EXIT_NOTPY);
		return ma_err(-ENODATA,
			      "process %d (Python %s, %s): its Python runtime "
			      "is not initialized: no interpreter (before "
			      "Py_Initialize, or after Py_Finalize), nothing "
			      "to read",
			      (int)q->pid, q->version, q->mod_path);
	}
	ma_err_set_exit(MA_EXIT_NODEBUG);
	/* a source asked for that is not DWARF: DWARF was not looked at,
	 * so neither its package nor a rebuild is the remedy */
	if (p == MA_PREF_DEBUG_OFFSETS || p == MA_PREF_TABLE)
		return ma_err(-ENOENT,
			      "process %d (Python %s, %s): no usable struct "
			      "offsets from the source asked for, %s (%s); "
			      "auto also tries DWARF",
			      (int)q->pid, q->version, q->mod_path,
			      p == MA_PREF_TABLE ? "table" : "debug-offsets",
			      notes);
	if (dbg)
		return ma_err(-ENOENT,
			      "process %d (Python %s, %s): no usable struct "
			      "offsets: install the Debian package %s for "
			      "DWARF (%s)",
			      (int)q->pid, q->version, q->mod_path, dbg, notes);
	return ma_err(-ENOENT,
		      "process %d (Python %s, %s): no usable struct offsets: "
		      "this build has no DWARF (rebuild with -g, install its "
		      "debug symbols, or set DEBUGINFOD_URLS) (%s)",
		      (int)q->pid, q->version, q->mod_path, notes);
}
