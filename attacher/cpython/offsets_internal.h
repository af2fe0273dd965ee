/* SPDX-License-Identifier: MIT */
/*
 * Shared by the offsets_*.c files only; the public API is pyoffsets.h.
 */
#ifndef MA_OFFSETS_INTERNAL_H
#define MA_OFFSETS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "ma_offsets.h"

/* Every field MA_OFF_NONE, header set: the starting point of each source,
 * so that a field nobody fills can never read as offset 0 (offsets.c) */
void ma_pyoffsets_init(struct ma_py_offsets *o, uint32_t version_hex,
		       enum ma_offsets_source src);

/*
 * The cache of DWARF offsets by build ID (offsets_cache.c).  load: 0 and
 * *off, origin ("DWARF (FILE, cached)") filled, or -ENOENT; pid is the
 * target, through whose root a debug file of its own is found again.
 * store: after a validated DWARF result read from dbg_path; failures mean
 * no cache.
 */
int ma_offsets_cache_load(pid_t pid, const char *build_id, uint32_t version_hex,
			  struct ma_py_offsets *off, char *origin,
			  size_t origin_len);
void ma_offsets_cache_store(const char *build_id,
			    const struct ma_py_offsets *off,
			    const char *dbg_path);

#endif
