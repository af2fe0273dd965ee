/* SPDX-License-Identifier: MIT */
#include "pyversion.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "symbols.h"

int ma_pyversion_parse(const char *s, uint32_t *hex)
{
	unsigned maj, min, mic = 0, serial = 0, level = 0xf;
	int n = 0;
	char rest[8] = "";

	if (sscanf(s, "%u.%u%n", &maj, &min, &n) < 2)
		return -EINVAL;
	s += n;
	if (*s == '.') {
		if (sscanf(s, ".%u%n", &mic, &n) < 1)
			return -EINVAL;
		s += n;
	}
	if (*s && *s != '+') {
		if (sscanf(s, "%7[a-z]%u", rest, &serial) < 2)
			return -EINVAL;
		if (!strcmp(rest, "a"))
			level = 0xa;
		else if (!strcmp(rest, "b"))
			level = 0xb;
		else if (!strcmp(rest, "rc"))
			level = 0xc;
		else
			return -EINVAL;
	}
	if (maj > 255 || min > 255 || mic > 255 || serial > 15)
		return -EINVAL;
	*hex = maj << 24 | min << 16 | mic << 8 | level << 4 | serial;
	return 0;
}

static void format_hex(uint32_t hex, char *str, size_t len)
{
	unsigned level = (hex >> 4) & 0xf, serial = hex & 0xf;
	const char *lv = level == 0xa	? "a"
			 : level == 0xb ? "b"
			 : level == 0xc ? "rc"
					: "";

	if (level == 0xf)
		snprintf(str, len, "%u.%u.%u", hex >> 24, (hex >> 16) & 0xff,
			 (hex >> 8) & 0xff);
	else
		snprintf(str, len, "%u.%u.%u%s%u", hex >> 24,
			 (hex >> 16) & 0xff, (hex >> 8) & 0xff, lv, serial);
}

/* The minor version a file name suggests: python3.11, libpython3.11.so.1.0 */
static int minor_from_name(const char *path)
{
	const char *base = strrchr(path, '/');
	const char *p;

	base = base ? base + 1 : path;
	p = strstr(base, "python3.");
	if (!p)
		return -1;
	p += strlen("python3.");
	return isdigit((unsigned char)*p) ? atoi(p) : -1;
}

/* Is s (NUL-terminated inside the section) exactly a PY_VERSION literal? */
static int looks_like_version(const char *s, size_t max)
{
	size_t i = 0;
	int dots = 0;

	if (max < 5 || s[0] != '3' || s[1] != '.')
		return 0;
	for (i = 0; i < max && s[i]; i++) {
		char c = s[i];

		if (c == '.')
			dots++;
		else if (!isdigit((unsigned char)c) &&
			 !islower((unsigned char)c) && c != '+')
			return 0;
		if (i > 16)
			return 0;
	}
	return i < max && dots == 2 && isdigit((unsigned char)s[i - 1])
		       ? 1
		       : (i < max && dots == 2 && s[i - 1] == '+');
}

int ma_pyversion_from_elf(const char *path, uint32_t *hex, char *str,
			  size_t len)
{
	struct ma_elf *e;
	uint64_t addr, size;
	int err, want_minor = minor_from_name(path);

	err = ma_elf_open(path, &e);
	if (err)
		return err;

	/* 3.11+: `const unsigned long Py_Version = PY_VERSION_HEX;` */
	if (ma_elf_symbol(e, "Py_Version", &addr, &size) == 0) {
		uint64_t v = 0;

		if (ma_elf_read_vaddr(e, addr, &v, size == 4 ? 4 : 8) == 0 &&
		    (v >> 24) == 3) {
			*hex = (uint32_t)v;
			format_hex(*hex, str, len);
			ma_elf_close(e);
			return 0;
		}
	}

	/* Older: the PY_VERSION literal, e.g. "3.10.13", in .rodata, which
	 * Py_GetVersion() formats at run time.  The linker may merge it into the
	 * tail of a longer string (".../versions/3.10.13"), so a candidate is
	 * any "3.X.Y" that ends a string and does not continue a number or a
	 * word.  Prefer the candidate whose minor matches the file name; without
	 * a name hint, take it only when all candidates agree. */
	size_t sz;
	const char *ro = ma_elf_section(e, ".rodata", &sz, NULL);
	const char *best = NULL;
	int ncand = 0, disagree = 0;
	uint32_t first = 0;

	for (size_t i = 0; ro && i + 5 < sz; i++) {
		if (i && (isalnum((unsigned char)ro[i - 1]) ||
			  ro[i - 1] == '.' || ro[i - 1] == '_'))
			continue;
		if (!looks_like_version(ro + i, sz - i))
			continue;
		uint32_t h;

		if (ma_pyversion_parse(ro + i, &h))
			continue;
		if (ncand++ == 0)
			first = h;
		else if ((h & 0xffff0000) != (first & 0xffff0000))
			disagree = 1;
		if ((int)((h >> 16) & 0xff) == want_minor) {
			best = ro + i;
			break;
		}
		if (!best)
			best = ro + i;
	}
	if (best && ma_pyversion_parse(best, hex) == 0 &&
	    ((want_minor < 0 && !disagree) ||
	     (int)((*hex >> 16) & 0xff) == want_minor)) {
		snprintf(str, len, "%s", best);
		ma_elf_close(e);
		return 0;
	}
	ma_elf_close(e);
	return ma_err(-ENOENT,
		      "%s: no CPython version found (no Py_Version "
		      "symbol, no PY_VERSION string)",
		      path);
}
