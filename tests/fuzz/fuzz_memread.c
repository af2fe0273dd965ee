/* SPDX-License-Identifier: MIT */
/*
 * The fuzz build's attacher/proc/memread.c: the same interface, serving
 * reads from one buffer the fuzzer provides, mapped at a plausible user
 * space address (fuzz_mem_set).  A link-time seam: the fuzzers link this
 * file instead of memread.c, so the real build reads through
 * process_vm_readv with no hook and no cost.  Reads outside the buffer
 * fail with -EFAULT, as unmapped memory does; a read is all or nothing, as
 * with process_vm_readv on one iovec.
 */
#include "fuzz_memread.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct ma_mem {
	pid_t pid;
	uint64_t nreads;
};

static const uint8_t *fz_buf;
static uint64_t fz_base;
static size_t fz_len;

void fuzz_mem_set(uint64_t base, const uint8_t *buf, size_t len)
{
	fz_base = base;
	fz_buf = buf;
	fz_len = len;
}

int ma_mem_open(pid_t pid, struct ma_mem **out)
{
	struct ma_mem *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	m->pid = pid;
	*out = m;
	return 0;
}

void ma_mem_close(struct ma_mem *m)
{
	free(m);
}

pid_t ma_mem_pid(const struct ma_mem *m)
{
	return m->pid;
}

uint64_t ma_mem_nreads(const struct ma_mem *m)
{
	return m->nreads;
}

int ma_mem_read(struct ma_mem *m, uint64_t addr, void *buf, size_t len)
{
	m->nreads++;
	if (len == 0)
		return 0;
	if (addr == 0 || addr + len < addr)
		return -EFAULT;
	if (addr < fz_base || addr - fz_base > fz_len ||
	    len > fz_len - (addr - fz_base))
		return -EFAULT;
	memcpy(buf, fz_buf + (addr - fz_base), len);
	return 0;
}

int ma_mem_read_u64(struct ma_mem *m, uint64_t addr, uint64_t *out)
{
	return ma_mem_read(m, addr, out, sizeof(*out));
}

int ma_mem_read_u32(struct ma_mem *m, uint64_t addr, uint32_t *out)
{
	return ma_mem_read(m, addr, out, sizeof(*out));
}

int ma_mem_read_cstr(struct ma_mem *m, uint64_t addr, char *buf, size_t len)
{
	size_t got = 0;

	if (len == 0)
		return -EINVAL;
	/* byte by byte: the real one reads page-sized chunks, what matters
	 * here is what the callers do with the result */
	while (got < len - 1) {
		int err = ma_mem_read(m, addr + got, buf + got, 1);

		if (err < 0) {
			buf[got] = '\0';
			return err;
		}
		if (!buf[got])
			return (int)got;
		got++;
	}
	buf[len - 1] = '\0';
	return (int)(len - 1);
}
