/* SPDX-License-Identifier: MIT */
#include "outpath.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errors.h"
#include "textfit.h"

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

ssize_t ma_inpath_head(const char *path, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	ssize_t n = -1;

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		n = read(fd, buf, len);
	close(fd);
	return n;
}

int ma_diff_programs_differ(const struct ma_diff_side *a,
			    const struct ma_diff_side *b)
{
	char *ca = ma_escape_ctl(a->cmd ? a->cmd : ""),
	     *cb = ma_escape_ctl(b->cmd ? b->cmd : "");

	ma_err(-EINVAL,
	       "--diff: %s and %s come from different programs (%s: '%s'; "
	       "%s: '%s'); --force compares them anyway",
	       a->path, b->path, a->who, ca ? ca : "?", b->who, cb ? cb : "?");
	free(ca);
	free(cb);
	ma_err_set_exit(MA_EXIT_USAGE);
	return -EINVAL;
}
