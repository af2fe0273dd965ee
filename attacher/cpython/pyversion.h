/* SPDX-License-Identifier: MIT */
/*
 * The CPython version of a binary, read from the binary itself: the exported
 * constant Py_Version (3.11+), else the PY_VERSION string literal found in its
 * read-only data ("3.10.13"), checked against the minor version that the
 * file name suggests.
 */
#ifndef MA_PYVERSION_H
#define MA_PYVERSION_H

#include <stddef.h>
#include <stdint.h>

/* path: an ELF executable or libpython.  On success fills *hex
 * (PY_VERSION_HEX layout) and str ("3.11.2").  -ENOENT when no version is
 * found (not a CPython binary), -errno on I/O/ELF errors (message set). */
int ma_pyversion_from_elf(const char *path, uint32_t *hex, char *str,
			  size_t len);

/* "3.11.2" / "3.13.0rc1" -> PY_VERSION_HEX; -EINVAL when not parseable */
int ma_pyversion_parse(const char *s, uint32_t *hex);

#endif
