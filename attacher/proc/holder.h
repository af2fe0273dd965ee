/* SPDX-License-Identifier: MIT */
/*
 * Who tracks a process now: the memattach that maps the ring of the
 * payload's current session.  A tracking memattach maps that memfd (it
 * drains it) and no other process does, so the holder is found by the
 * ring's inode in the other processes' /proc/PID/maps, without anything
 * the payload must keep.  The session's start comes from the ring header
 * (CLOCK_MONOTONIC when the payload started tracking).
 */
#ifndef MA_HOLDER_H
#define MA_HOLDER_H

#include <sys/types.h>
#include <time.h>

struct ma_holder {
	pid_t pid;     /* the memattach holding the ring, in our PID ns */
	char comm[64]; /* its /proc/PID/comm */
	time_t since;  /* wall clock when its session started, 0 unknown */
	char since_text[16]; /* "12:01:33" local time, "" when unknown */
};

/*
 * The process, other than pid itself and memattach, that maps the memfd
 * behind descriptor ring_fd of process pid.  0 and *h filled, -ENOENT when
 * no process maps it (the memattach that did was killed: the payload
 * notices by itself), other negative errno when /proc cannot say.
 * Processes whose maps we may not read are passed over.
 */
int ma_ring_holder(pid_t pid, int ring_fd, struct ma_holder *h);

/* The same for a process whose maps show a ring mapped (a session
 * running), without its descriptor number: for `memattach ps`.  -ENOENT
 * when no ring is mapped or no other process maps it. */
struct ma_maps;
int ma_ring_holder_by_maps(pid_t pid, const struct ma_maps *maps,
			   struct ma_holder *h);

/*
 * The memattach, other than this one, that has the file at path open: a
 * session still writing its capture.  0 and h->pid, h->comm filled;
 * -ENOENT when none (or when /proc cannot say).
 */
int ma_file_writer(const char *path, struct ma_holder *h);

/* Parse one /proc/PID/maps text: 1 when a mapping has this device and
 * inode (exposed for unit tests) */
int ma_maps_has_inode(const char *maps, unsigned int dev_major,
		      unsigned int dev_minor, unsigned long inode);

#endif
