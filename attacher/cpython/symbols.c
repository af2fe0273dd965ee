/* SPDX-License-Identifier: MIT */
#include "symbols.h"

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errors.h"

struct ma_elf {
	int fd;
	Elf *elf;
	GElf_Ehdr ehdr;
	int has_interp;
	uint64_t first_vaddr, first_offset;
	char path[4096];
	char build_id[64];
};

static void read_build_id(struct ma_elf *e)
{
	Elf_Scn *scn = NULL;

	while ((scn = elf_nextscn(e->elf, scn))) {
		GElf_Shdr sh;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_NOTE)
			continue;
		Elf_Data *d = elf_getdata(scn, NULL);
		size_t off = 0, noff, doff;
		GElf_Nhdr nh;

		while (d && (off = gelf_getnote(d, off, &nh, &noff, &doff))) {
			if (nh.n_type != NT_GNU_BUILD_ID || nh.n_namesz != 4 ||
			    memcmp((char *)d->d_buf + noff, "GNU", 4) ||
			    nh.n_descsz > 31)
				continue;
			const unsigned char *p =
				(const unsigned char *)d->d_buf + doff;

			for (size_t i = 0; i < nh.n_descsz; i++)
				snprintf(e->build_id + 2 * i, 3, "%02x", p[i]);
			return;
		}
	}
}

int ma_elf_open(const char *path, struct ma_elf **out)
{
	struct ma_elf *e;
	size_t nph;

	elf_version(EV_CURRENT);
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	snprintf(e->path, sizeof(e->path), "%s", path);
	e->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (e->fd < 0) {
		int err = -errno;

		free(e);
		return ma_err(err, "open %s: %s", path, strerror(-err));
	}
	e->elf = elf_begin(e->fd, ELF_C_READ_MMAP, NULL);
	if (!e->elf || elf_kind(e->elf) != ELF_K_ELF ||
	    !gelf_getehdr(e->elf, &e->ehdr) || elf_getphdrnum(e->elf, &nph)) {
		/* libelf's reason only when it has one: a file of another
		 * kind (text, an archive) is no libelf error, and
		 * elf_errmsg(-1) said "no error" */
		int eerr = elf_errno();

		ma_err(-ENOEXEC, "%s: not an ELF file%s%s", path,
		       eerr ? ": " : "", eerr ? elf_errmsg(eerr) : "");
		ma_elf_close(e);
		return -ENOEXEC;
	}
	e->first_vaddr = UINT64_MAX;
	for (size_t i = 0; i < nph; i++) {
		GElf_Phdr ph;

		if (!gelf_getphdr(e->elf, (int)i, &ph))
			continue;
		if (ph.p_type == PT_INTERP)
			e->has_interp = 1;
		if (ph.p_type == PT_LOAD && ph.p_vaddr < e->first_vaddr) {
			uint64_t align = ph.p_align > 1 ? ph.p_align : 4096;

			/* Align down the way the kernel/ld.so map it */
			e->first_vaddr = ph.p_vaddr & ~(align - 1);
			e->first_offset = ph.p_offset & ~(align - 1);
		}
	}
	if (e->first_vaddr == UINT64_MAX)
		e->first_vaddr = 0;
	read_build_id(e);
	*out = e;
	return 0;
}

void ma_elf_close(struct ma_elf *e)
{
	if (!e)
		return;
	if (e->elf)
		elf_end(e->elf);
	if (e->fd >= 0)
		close(e->fd);
	free(e);
}

static int lookup_in(struct ma_elf *e, Elf64_Word type, const char *name,
		     uint64_t *value, uint64_t *size)
{
	Elf_Scn *scn = NULL;
	size_t nlen = strlen(name);

	while ((scn = elf_nextscn(e->elf, scn))) {
		GElf_Shdr sh;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != type ||
		    !sh.sh_entsize)
			continue;
		Elf_Data *d = elf_getdata(scn, NULL);
		size_t n = sh.sh_size / sh.sh_entsize;

		for (size_t i = 1; d && i < n; i++) {
			GElf_Sym sym;

			if (!gelf_getsym(d, (int)i, &sym) ||
			    sym.st_shndx == SHN_UNDEF)
				continue;
			const char *s =
				elf_strptr(e->elf, sh.sh_link, sym.st_name);

			if (!s || strncmp(s, name, nlen) ||
			    (s[nlen] != '\0' && s[nlen] != '@'))
				continue;
			*value = sym.st_value;
			if (size)
				*size = sym.st_size;
			return 0;
		}
	}
	return -ENOENT;
}

int ma_elf_symbol(struct ma_elf *e, const char *name, uint64_t *value,
		  uint64_t *size)
{
	if (lookup_in(e, SHT_DYNSYM, name, value, size) == 0)
		return 0;
	return lookup_in(e, SHT_SYMTAB, name, value, size);
}

int ma_elf_read_vaddr(struct ma_elf *e, uint64_t vaddr, void *buf, size_t len)
{
	size_t nph;

	if (elf_getphdrnum(e->elf, &nph))
		return -EFAULT;
	for (size_t i = 0; i < nph; i++) {
		GElf_Phdr ph;

		if (!gelf_getphdr(e->elf, (int)i, &ph) || ph.p_type != PT_LOAD)
			continue;
		if (vaddr < ph.p_vaddr ||
		    vaddr + len > ph.p_vaddr + ph.p_filesz)
			continue;
		ssize_t n = pread(e->fd, buf, len,
				  (off_t)(ph.p_offset + (vaddr - ph.p_vaddr)));

		return n == (ssize_t)len ? 0 : -EFAULT;
	}
	return -EFAULT;
}

const void *ma_elf_section(struct ma_elf *e, const char *name, size_t *size,
			   uint64_t *addr)
{
	Elf_Scn *scn = NULL;
	size_t shstrndx;

	*size = 0;
	if (elf_getshdrstrndx(e->elf, &shstrndx))
		return NULL;
	while ((scn = elf_nextscn(e->elf, scn))) {
		GElf_Shdr sh;

		if (!gelf_getshdr(scn, &sh))
			continue;
		const char *s = elf_strptr(e->elf, shstrndx, sh.sh_name);

		if (!s || strcmp(s, name) || sh.sh_type == SHT_NOBITS)
			continue;
		Elf_Data *d = elf_getdata(scn, NULL);

		if (!d)
			return NULL;
		*size = d->d_size;
		if (addr)
			*addr = sh.sh_addr;
		return d->d_buf;
	}
	return NULL;
}

int ma_elf_is_dyn(const struct ma_elf *e)
{
	return e->ehdr.e_type == ET_DYN;
}

int ma_elf_is_pie(const struct ma_elf *e)
{
	return e->ehdr.e_type == ET_DYN && e->has_interp;
}

uint64_t ma_elf_first_load(const struct ma_elf *e, uint64_t *offset)
{
	if (offset)
		*offset = e->first_offset;
	return e->first_vaddr;
}

const char *ma_elf_path(const struct ma_elf *e)
{
	return e->path;
}

const char *ma_elf_build_id(const struct ma_elf *e)
{
	return e->build_id;
}

int ma_elf_has_debuginfo(struct ma_elf *e)
{
	size_t sz;

	return ma_elf_section(e, ".debug_info", &sz, NULL) != NULL && sz > 0;
}
