/* SPDX-License-Identifier: MIT */
/*
 * ELF files through libelf: symbol lookup (.dynsym first, then .symtab),
 * reading bytes at a virtual address, and the facts discovery needs (PIE or
 * not, the first PT_LOAD, sections by name).
 */
#ifndef MA_SYMBOLS_H
#define MA_SYMBOLS_H

#include <stddef.h>
#include <stdint.h>

struct ma_elf;

/* 0, or -errno with a message naming the path (and elf_errmsg) */
int ma_elf_open(const char *path, struct ma_elf **out);
void ma_elf_close(struct ma_elf *e);

/* Look a symbol up by name in .dynsym, then .symtab (a stripped binary has
 * only the former).  Versioned names ("dlopen@GLIBC_2.34") match the bare
 * name.  -ENOENT when absent.  value is the link-time address. */
int ma_elf_symbol(struct ma_elf *e, const char *name, uint64_t *value,
		  uint64_t *size);

/* Copy len bytes at link-time address vaddr out of the file (from the
 * PT_LOAD segment holding it); -EFAULT when not backed by file bytes. */
int ma_elf_read_vaddr(struct ma_elf *e, uint64_t vaddr, void *buf, size_t len);

/* The raw bytes of a section, or NULL (size 0) when absent */
const void *ma_elf_section(struct ma_elf *e, const char *name, size_t *size,
			   uint64_t *addr);

int ma_elf_is_pie(const struct ma_elf *e); /* ET_DYN with an interpreter */
int ma_elf_is_dyn(const struct ma_elf *e); /* ET_DYN */
/* Lowest p_vaddr of the PT_LOAD segments, aligned down to the page, and the
 * file offset of that segment: together with /proc/PID/maps they give the
 * load bias. */
uint64_t ma_elf_first_load(const struct ma_elf *e, uint64_t *offset);
const char *ma_elf_path(const struct ma_elf *e);
/* Build ID as hex, or "" */
const char *ma_elf_build_id(const struct ma_elf *e);
/* 1 when the file carries .debug_info itself */
int ma_elf_has_debuginfo(struct ma_elf *e);

#endif
