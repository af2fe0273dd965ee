/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "procfs.h"
#include "symbols.h"

/* A symbol only .symtab has: static, so not exported */
static __attribute__((noinline, used)) int ma_test_local_function(int x)
{
	return x * 3 + 1;
}

int ma_test_global_variable = 42;

static uint64_t self_bias(void)
{
	struct ma_elf *e;
	struct ma_maps m;
	char exe[4096];
	uint64_t off, first, bias = 0;

	cr_assert_eq(ma_proc_exe(getpid(), exe, sizeof(exe)), 0);
	cr_assert_eq(ma_elf_open(exe, &e), 0);
	first = ma_elf_first_load(e, &off);
	cr_assert_eq(ma_maps_read(getpid(), &m), 0);
	for (size_t i = 0; i < m.n; i++)
		if (!strcmp(m.v[i].path, exe) && m.v[i].offset == off) {
			bias = m.v[i].start - first;
			break;
		}
	ma_maps_free(&m);
	ma_elf_close(e);
	return bias;
}

/* The link-time address from the file plus the load bias from maps must be
 * where the function really is: this checks symbol lookup, the first
 * PT_LOAD computation and the maps parser together. */
Test(symbols, own_symbols_match_runtime_addresses)
{
	struct ma_elf *e;
	char exe[4096];
	uint64_t v, sz, bias = self_bias();

	cr_assert_eq(ma_proc_exe(getpid(), exe, sizeof(exe)), 0);
	cr_assert_eq(ma_elf_open(exe, &e), 0);
	cr_assert_eq(ma_elf_symbol(e, "ma_test_local_function", &v, &sz), 0);
	cr_expect_eq(v + bias, (uint64_t)(uintptr_t)&ma_test_local_function);
	cr_expect_gt(sz, 0);
	cr_assert_eq(ma_elf_symbol(e, "ma_test_global_variable", &v, &sz), 0);
	cr_expect_eq(v + bias, (uint64_t)(uintptr_t)&ma_test_global_variable);
	cr_expect_eq(sz, sizeof(int));
	cr_expect_eq(ma_elf_is_pie(e), 1);
	cr_expect_eq(ma_elf_symbol(e, "no_such_symbol_here", &v, &sz), -ENOENT);
	ma_elf_close(e);
}

/* Reading bytes at a link-time address gives what the loaded copy holds */
Test(symbols, read_vaddr_matches_memory)
{
	static const char marker[] = "memattach-read-vaddr-marker";
	struct ma_elf *e;
	char exe[4096], buf[sizeof(marker)];
	uint64_t bias = self_bias();

	cr_assert_eq(ma_proc_exe(getpid(), exe, sizeof(exe)), 0);
	cr_assert_eq(ma_elf_open(exe, &e), 0);
	cr_assert_eq(ma_elf_read_vaddr(e, (uint64_t)(uintptr_t)marker - bias,
				       buf, sizeof(buf)),
		     0);
	cr_expect_str_eq(buf, marker);
	cr_expect_eq(ma_elf_read_vaddr(e, 0x7fffffff0000ull, buf, 8), -EFAULT);
	ma_elf_close(e);
}

/* Versioned dynamic symbols: libc's "malloc@@GLIBC_2.2.5" is found as
 * "malloc", at the address the dynamic loader resolved. */
Test(symbols, versioned_dynsym_in_libc)
{
	Dl_info info;
	struct ma_elf *e;
	uint64_t v;
	/* libc's own malloc: under ASan, RTLD_DEFAULT finds the sanitizer's */
	void *libc = dlopen("libc.so.6", RTLD_NOLOAD | RTLD_LAZY);
	void *fn = libc ? dlsym(libc, "malloc") : NULL;

	cr_assert_not_null(fn);
	cr_assert(dladdr(fn, &info));
	cr_assert_eq(ma_elf_open(info.dli_fname, &e), 0);
	cr_assert_eq(ma_elf_symbol(e, "malloc", &v, NULL), 0);
	cr_expect_eq(v + (uint64_t)(uintptr_t)info.dli_fbase,
		     (uint64_t)(uintptr_t)fn);
	cr_expect_eq(ma_elf_is_pie(e), 1, "libc has an interpreter entry");
	cr_expect_neq(strlen(ma_elf_build_id(e)), 0);
	ma_elf_close(e);
}

Test(symbols, errors_name_the_file)
{
	struct ma_elf *e;

	cr_expect_eq(ma_elf_open("/nonexistent/file", &e), -ENOENT);
	cr_expect_eq(ma_elf_open("/proc/self/status", &e), -ENOEXEC);
}

/* Debian's python is a non-PIE executable with _PyRuntime in .dynsym */
Test(symbols, debian_python_is_non_pie)
{
	struct ma_elf *e;
	uint64_t v;

	if (access("/usr/bin/python3.11", R_OK))
		cr_skip_test("/usr/bin/python3.11 is not installed");
	cr_assert_eq(ma_elf_open("/usr/bin/python3.11", &e), 0);
	cr_expect_eq(ma_elf_is_pie(e), 0);
	cr_expect_eq(ma_elf_is_dyn(e), 0);
	cr_expect_eq(ma_elf_symbol(e, "_PyRuntime", &v, NULL), 0);
	cr_expect_eq(ma_elf_first_load(e, NULL), 0x400000);
	ma_elf_close(e);
}
