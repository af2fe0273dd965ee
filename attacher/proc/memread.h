/* SPDX-License-Identifier: MIT */
/*
 * Reading the target's memory: process_vm_readv(2), falling back to
 * /proc/PID/mem when the kernel or a seccomp policy refuses it.
 */
#ifndef MA_MEMREAD_H
#define MA_MEMREAD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ma_mem;

int ma_mem_open(pid_t pid, struct ma_mem **out);
void ma_mem_close(struct ma_mem *m);
pid_t ma_mem_pid(const struct ma_mem *m);

/* Read exactly len bytes at addr: 0, or -EFAULT (unmapped/partial), -ESRCH,
 * -EPERM.  Does not set an error message (callers know what they read). */
int ma_mem_read(struct ma_mem *m, uint64_t addr, void *buf, size_t len);

/* Convenience readers for the common sizes (little-endian x86_64 target) */
int ma_mem_read_u64(struct ma_mem *m, uint64_t addr, uint64_t *out);
int ma_mem_read_u32(struct ma_mem *m, uint64_t addr, uint32_t *out);

/* Read up to len-1 bytes of a NUL-terminated string; always terminates buf.
 * Returns the string length or a negative errno. */
int ma_mem_read_cstr(struct ma_mem *m, uint64_t addr, char *buf, size_t len);

/* Number of reads done (for the freeze benchmark) */
uint64_t ma_mem_nreads(const struct ma_mem *m);

#endif
