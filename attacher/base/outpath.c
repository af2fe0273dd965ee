/* SPDX-License-Identifier: MIT */
#include "outpath.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

int ma_outpath_check(const char *path, const char **why)
{
	size_t len = strlen(path);
	struct stat st;

	*why = "";
	if (!len || path[len - 1] == '/') {
		*why = "names a directory";
		return -EISDIR;
	}
	if (lstat(path, &st))
		return 0;
	if (S_ISLNK(st.st_mode)) {
		*why = "it is a symbolic link; memattach never writes through "
		       "one nor replaces it: choose another path";
		return -ELOOP;
	}
	if (S_ISDIR(st.st_mode)) {
		*why = "it is a directory";
		return -EISDIR;
	}
	if (!S_ISREG(st.st_mode)) {
		*why = "it exists and is not a regular file";
		return -EEXIST;
	}
	return 0;
}
