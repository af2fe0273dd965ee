/* SPDX-License-Identifier: MIT */
/*
 * Cache of DWARF offsets by build ID.  Reading the DWARF of Debian's
 * stripped python3.11 means inflating its compressed debug file (~60 ms);
 * the offsets of one build never change, so later runs take them from
 * $XDG_CACHE_HOME/memattach (or ~/.cache/memattach).  An entry is used only
 * while the debug file it came from is still there, unchanged, and is
 * validated against the live process like any other source
 * (offsets_source.c).  Set MEMATTACH_NO_CACHE=1 to bypass it; it is also
 * bypassed when MEMATTACH_DEBUGINFO_PATH changes where DWARF is looked for.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "offsets_internal.h"
#include "procfs.h"

#define MA_CACHE_MAGIC 0x32434f414dull /* "MAOC2" */

/*
 * A debug file read through a target's root (/proc/PID/root/usr/lib/...:
 * a process in another mount namespace) is kept by its path in that root,
 * in_root set: the next target of the same build is in a root of its own,
 * and the PID of the first may be gone, or be another process.
 */
struct offsets_cache {
	uint64_t magic;
	uint32_t abi, size;
	struct ma_py_offsets off;
	uint64_t dbg_size, dbg_mtime;
	uint32_t in_root, _pad;
	char dbg_path[PATH_MAX];
};

/* The part of path after "/proc/N/root", or NULL */
static const char *root_relative(const char *path)
{
	const char *p = path;

	if (strncmp(p, "/proc/", 6))
		return NULL;
	p += 6;
	if (*p < '0' || *p > '9')
		return NULL;
	while (*p >= '0' && *p <= '9')
		p++;
	if (strncmp(p, "/root/", 6))
		return NULL;
	return p + 5;
}

static int cache_path(const char *build_id, uint32_t version_hex, char *buf,
		      size_t len)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");

	if (getenv("MEMATTACH_NO_CACHE") ||
	    getenv("MEMATTACH_DEBUGINFO_PATH") || !build_id[0])
		return -ENOENT;
	if (xdg && xdg[0] == '/')
		snprintf(buf, len, "%s/memattach/offsets-%s-%08x", xdg,
			 build_id, version_hex);
	else if (home && home[0] == '/')
		snprintf(buf, len, "%s/.cache/memattach/offsets-%s-%08x", home,
			 build_id, version_hex);
	else
		return -ENOENT;
	return 0;
}

int ma_offsets_cache_load(pid_t pid, const char *build_id, uint32_t version_hex,
			  struct ma_py_offsets *off, char *origin,
			  size_t origin_len)
{
	struct offsets_cache c;
	struct stat st;
	char path[PATH_MAX + 128], dbg[PATH_MAX + 64];
	FILE *f;
	size_t n;

	if (cache_path(build_id, version_hex, path, sizeof(path)))
		return -ENOENT;
	f = fopen(path, "rb");
	if (!f)
		return -ENOENT;
	n = fread(&c, 1, sizeof(c), f);
	fclose(f);
	c.dbg_path[sizeof(c.dbg_path) - 1] = '\0';
	if (n != sizeof(c) || c.magic != MA_CACHE_MAGIC ||
	    c.abi != MA_OFFSETS_ABI || c.size != sizeof(c.off) ||
	    c.off.version_hex != version_hex)
		return -ENOENT;
	if (c.in_root)
		ma_proc_target_path(pid, c.dbg_path, dbg, sizeof(dbg));
	else
		snprintf(dbg, sizeof(dbg), "%s", c.dbg_path);
	if (stat(dbg, &st) || (uint64_t)st.st_size != c.dbg_size ||
	    (uint64_t)st.st_mtime != c.dbg_mtime)
		return -ENOENT;
	*off = c.off;
	snprintf(origin, origin_len, "DWARF (%s, cached)", dbg);
	return 0;
}

void ma_offsets_cache_store(const char *build_id,
			    const struct ma_py_offsets *off,
			    const char *dbg_path)
{
	struct offsets_cache c = { .magic = MA_CACHE_MAGIC,
				   .abi = MA_OFFSETS_ABI,
				   .size = sizeof(c.off),
				   .off = *off };
	struct stat st;
	char path[PATH_MAX + 128], tmp[PATH_MAX + 160];
	FILE *f;

	if (cache_path(build_id, off->version_hex, path, sizeof(path)) ||
	    stat(dbg_path, &st))
		return;
	c.dbg_size = (uint64_t)st.st_size;
	c.dbg_mtime = (uint64_t)st.st_mtime;
	c.in_root = root_relative(dbg_path) != NULL;
	snprintf(c.dbg_path, sizeof(c.dbg_path), "%s",
		 c.in_root ? root_relative(dbg_path) : dbg_path);
	/* mkdir -p of the two last levels; failures just mean no cache */
	char *slash = strrchr(path, '/');

	*slash = '\0';
	char *parent = strrchr(path, '/');

	*parent = '\0';
	mkdir(path, 0700);
	*parent = '/';
	mkdir(path, 0700);
	*slash = '/';
	snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
	f = fopen(tmp, "wb");
	if (!f)
		return;
	if (fwrite(&c, sizeof(c), 1, f) != 1) {
		fclose(f);
		unlink(tmp);
		return;
	}
	if (fclose(f) || rename(tmp, path))
		unlink(tmp);
}
