/* SPDX-License-Identifier: MIT */
/*
 * What an output path (a capture, a report, a heap snapshot) may hold
 * already: nothing, or a regular file, which the new one replaces.  The
 * one rule for every command that writes a file.
 */
#ifndef MA_OUTPATH_H
#define MA_OUTPATH_H

/*
 * 0 when path is free or a regular file; else -ELOOP (a symbolic link:
 * root writing into /tmp must not write through a link another user
 * planted, and replacing the link would surprise whoever made it),
 * -EISDIR (a directory, or a path ending in '/') or -EEXIST (a FIFO, a
 * device, a socket), with *why saying so in words for the message.
 */
int ma_outpath_check(const char *path, const char **why);

#endif
