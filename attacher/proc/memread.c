/* SPDX-License-Identifier: MIT */
#include "memread.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

struct ma_mem {
	pid_t pid;
	int memfd;	 /* /proc/PID/mem, opened lazily on first fallback */
	int use_procmem; /* process_vm_readv refused once: stop trying */
	uint64_t nreads;
};

int ma_mem_open(pid_t pid, struct ma_mem **out)
{
	struct ma_mem *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	m->pid = pid;
	m->memfd = -1;
	*out = m;
	return 0;
}

void ma_mem_close(struct ma_mem *m)
{
	if (!m)
		return;
	if (m->memfd >= 0)
		close(m->memfd);
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

static int read_procmem(struct ma_mem *m, uint64_t addr, void *buf, size_t len)
{
	if (m->memfd < 0) {
		char path[64];

		snprintf(path, sizeof(path), "/proc/%d/mem", (int)m->pid);
		m->memfd = open(path, O_RDONLY | O_CLOEXEC);
		if (m->memfd < 0)
			return -errno;
	}
	/* pread with an offset above 2^63 fails: addresses here are user
	 * space, below 2^47, so the cast is safe. */
	ssize_t n = pread(m->memfd, buf, len, (off_t)addr);

	if (n < 0)
		return errno == EIO ? -EFAULT : -errno;
	return (size_t)n == len ? 0 : -EFAULT;
}

int ma_mem_read(struct ma_mem *m, uint64_t addr, void *buf, size_t len)
{
	m->nreads++;
	if (len == 0)
		return 0;
	if (addr == 0 || addr + len < addr)
		return -EFAULT;
	if (!m->use_procmem) {
		struct iovec local = { .iov_base = buf, .iov_len = len };
		struct iovec remote = { .iov_base = (void *)(uintptr_t)addr,
					.iov_len = len };
		ssize_t n = process_vm_readv(m->pid, &local, 1, &remote, 1, 0);

		if (n == (ssize_t)len)
			return 0;
		if (n >= 0 || errno == EFAULT)
			return -EFAULT;
		if (errno == ESRCH)
			return -ESRCH;
		/* ENOSYS (old kernel), EPERM (seccomp, or a different
		 * security policy for the syscall than for /proc/PID/mem):
		 * fall back for good. */
		m->use_procmem = 1;
	}
	return read_procmem(m, addr, buf, len);
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
	/* Read in chunks that never cross a page boundary, so that a string
	 * ending just before an unmapped page is still read. */
	while (got < len - 1) {
		uint64_t a = addr + got;
		size_t chunk = 4096 - (a & 4095);

		if (chunk > len - 1 - got)
			chunk = len - 1 - got;
		int err = ma_mem_read(m, a, buf + got, chunk);

		if (err < 0) {
			buf[got] = '\0';
			return err;
		}
		char *nul = memchr(buf + got, '\0', chunk);

		if (nul)
			return (int)(nul - buf);
		got += chunk;
	}
	buf[len - 1] = '\0';
	return (int)(len - 1);
}
