/* SPDX-License-Identifier: MIT */
/*
 * Where the RSS goes, by kind of mapping (/proc/PID/smaps): the brk heap,
 * anonymous mappings (pymalloc's arenas, malloc's large blocks and thread
 * arenas, numpy's data), thread stacks (the anonymous mappings holding a
 * thread's stack pointer, and [stack]), files (code, shared libraries,
 * mapped data), and the rest ([vdso], shared memory).
 */
#include "heap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "procfs.h"

static int has_sp(uint64_t lo, uint64_t hi, const uint64_t *sps, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (sps[i] >= lo && sps[i] < hi)
			return 1;
	return 0;
}

int ma_heap_rss(pid_t pid, struct ma_hrss *r, const uint64_t *sps, size_t nsps)
{
	char path[64], *text = NULL, *line, *save = NULL;
	struct ma_status st;
	size_t len;
	uint64_t *bucket = NULL;
	int err;

	memset(r, 0, sizeof(*r));
	err = ma_status_read(pid, &st);
	if (err)
		return err;
	r->rss = (uint64_t)st.vm_rss_kb << 10;
	r->hwm = (uint64_t)st.vm_hwm_kb << 10;
	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	err = ma_proc_slurp(path, &text, &len);
	if (err)
		return err;
	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		unsigned long long lo, hi, kb;
		char perms[8], name[512] = "";
		int off = 0;

		if (sscanf(line, "%llx-%llx %7s %*s %*s %*s%n", &lo, &hi, perms,
			   &off) == 3) {
			const char *p = line + off;

			while (*p == ' ')
				p++;
			snprintf(name, sizeof(name), "%s", p);
			if (!strcmp(name, "[heap]"))
				bucket = &r->heap;
			else if (!strcmp(name, "[stack]") ||
				 (!name[0] && has_sp(lo, hi, sps, nsps)))
				bucket = &r->stacks;
			else if (!name[0])
				bucket = &r->anon;
			else if (name[0] == '/' &&
				 strncmp(name, "/memfd:", 7) &&
				 strncmp(name, "/dev/", 5))
				bucket = &r->files;
			else
				bucket = &r->other;
			continue;
		}
		if (sscanf(line, "Rss: %llu kB", &kb) == 1 && bucket)
			*bucket += (uint64_t)kb << 10;
		else if (sscanf(line, "Swap: %llu kB", &kb) == 1)
			r->swap += (uint64_t)kb << 10;
	}
	free(text);
	return 0;
}
