/* SPDX-License-Identifier: MIT */
/*
 * What an output path (a capture, a report, a heap snapshot) may hold
 * already: nothing, or a regular file, which the new one replaces.  The
 * one rule for every command that writes a file; and the first bytes of an
 * input, by which a command tells what kind of file it was given.
 */
#ifndef MA_OUTPATH_H
#define MA_OUTPATH_H

#include <stddef.h>
#include <sys/types.h>

/*
 * 0 when path is free or a regular file; else -ELOOP (a symbolic link:
 * root writing into /tmp must not write through a link another user
 * planted, and replacing the link would surprise whoever made it),
 * -EISDIR (a directory, or a path ending in '/') or -EEXIST (a FIFO, a
 * device, a socket), with *why saying so in words for the message.
 */
int ma_outpath_check(const char *path, const char **why);

/*
 * Up to len first bytes of the regular file at path into buf: how many, or
 * -1 when it cannot be opened or is no regular file (a FIFO is opened
 * without blocking and left unread: its bytes are its writer's to give)
 */
ssize_t ma_inpath_head(const char *path, void *buf, size_t len);

/* One side of a --diff: its file, who it is ("pid 12", "pid 12, Python
 * 3.11.2") and its program's command line */
struct ma_diff_side {
	const char *path, *who, *cmd;
};

/*
 * --diff of two inputs (captures, heap snapshots) that come from different
 * programs compares nothing that means anything, every row "growing" from
 * nothing: refused unless --force.  The caller tells that they differ;
 * this says so, naming both (their command lines escaped), and returns
 * -EINVAL with exit MA_EXIT_USAGE.
 */
int ma_diff_programs_differ(const struct ma_diff_side *a,
			    const struct ma_diff_side *b);

#endif
