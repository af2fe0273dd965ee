/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pyversion.h"

Test(pyversion, parse)
{
	uint32_t h;

	cr_assert_eq(ma_pyversion_parse("3.11.2", &h), 0);
	cr_expect_eq(h, 0x030b02f0);
	cr_assert_eq(ma_pyversion_parse("3.13.0rc1", &h), 0);
	cr_expect_eq(h, 0x030d00c1);
	cr_assert_eq(ma_pyversion_parse("3.12.0a7", &h), 0);
	cr_expect_eq(h, 0x030c00a7);
	cr_assert_eq(ma_pyversion_parse("3.10.13+", &h), 0);
	cr_expect_eq(h, 0x030a0df0);
	cr_expect_eq(ma_pyversion_parse("python", &h), -EINVAL);
	cr_expect_eq(ma_pyversion_parse("3.11.2zz9", &h), -EINVAL);
}

/* The version read from the binary equals what the interpreter itself says
 * (sys.hexversion), for every interpreter on this machine. */
static void check_against_interpreter(const char *binary, const char *exe)
{
	char cmd[8192], out[64] = "", str[32];
	uint32_t h;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "%s -c 'import sys; print(sys.hexversion)'",
		 exe);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	cr_assert_not_null(fgets(out, sizeof(out), p));
	pclose(p);
	cr_assert_eq(ma_pyversion_from_elf(binary, &h, str, sizeof(str)), 0,
		     "%s", binary);
	cr_expect_eq(h, (uint32_t)strtoul(out, NULL, 10), "%s: %#x vs %s",
		     binary, h, out);
}

Test(pyversion, debian_python)
{
	if (access("/usr/bin/python3.11", X_OK))
		cr_skip_test("/usr/bin/python3.11 is not installed");
	check_against_interpreter("/usr/bin/python3.11", "/usr/bin/python3.11");
}

Test(pyversion, pyenv_libpythons)
{
	const char *root = getenv("PYENV_ROOT");
	char dir[4096];
	DIR *d;
	struct dirent *de;
	int n = 0;

	snprintf(dir, sizeof(dir), "%s/versions", root ? root : "/root/.pyenv");
	d = opendir(dir);
	if (!d)
		cr_skip_test("no pyenv interpreters in %s", dir);
	while ((de = readdir(d))) {
		int maj, min;
		char lib[8192], exe[8192];

		if (sscanf(de->d_name, "%d.%d", &maj, &min) != 2 || maj != 3 ||
		    min < 8)
			continue;
		snprintf(lib, sizeof(lib), "%s/%s/lib/libpython%d.%d.so.1.0",
			 dir, de->d_name, maj, min);
		snprintf(exe, sizeof(exe), "%s/%s/bin/python3", dir,
			 de->d_name);
		if (access(lib, R_OK) || access(exe, X_OK))
			continue;
		check_against_interpreter(lib, exe);
		n++;
	}
	closedir(d);
	if (!n)
		cr_skip_test("no pyenv 3.8+ with a shared libpython in %s",
			     dir);
}

Test(pyversion, not_python)
{
	uint32_t h;
	char str[32];

	cr_expect_eq(ma_pyversion_from_elf("/bin/sh", &h, str, sizeof(str)),
		     -ENOENT);
}
