/* SPDX-License-Identifier: MIT */
#include "holder.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "ma_ring.h"
#include "procfs.h"

int ma_maps_has_inode(const char *maps, unsigned int dev_major,
		      unsigned int dev_minor, unsigned long inode)
{
	for (const char *p = maps; p && *p;) {
		const char *nl = strchr(p, '\n');
		unsigned int maj, min;
		unsigned long ino;

		/* start-end perms offset maj:min inode path */
		if (sscanf(p, "%*x-%*x %*4s %*x %x:%x %lu", &maj, &min, &ino) ==
			    3 &&
		    ino == inode && maj == dev_major && min == dev_minor)
			return 1;
		p = nl ? nl + 1 : NULL;
	}
	return 0;
}

/* When the session of the ring behind fd started: its header's start_ns is
 * CLOCK_MONOTONIC, the same clock here (one boot, no time namespace), so
 * the wall clock is now minus the age */
static time_t session_start(int fd)
{
	struct ma_ring_hdr hdr;
	struct timespec mono, real;

	if (pread(fd, &hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) ||
	    hdr.magic != MA_RING_MAGIC || !hdr.start_ns ||
	    clock_gettime(CLOCK_MONOTONIC, &mono) ||
	    clock_gettime(CLOCK_REALTIME, &real))
		return 0;
	uint64_t now =
		(uint64_t)mono.tv_sec * 1000000000ull + (uint64_t)mono.tv_nsec;
	uint64_t wall =
		(uint64_t)real.tv_sec * 1000000000ull + (uint64_t)real.tv_nsec;

	/* in nanoseconds, then the second: whole seconds of each would
	 * give the start one second later for part of every second */
	if (hdr.start_ns > now || now - hdr.start_ns > wall)
		return 0;
	return (time_t)((wall - (now - hdr.start_ns)) / 1000000000ull);
}

/* The process other than pid and us that maps dev:ino and holds no
 * payload (the memattach draining that ring) */
static int find_mapper(pid_t pid, dev_t dev, ino_t ino, struct ma_holder *h)
{
	struct dirent *de;
	DIR *d = opendir("/proc");

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char path[64], *text;
		pid_t p;
		int hit;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		p = (pid_t)atoi(de->d_name);
		if (p == pid || p == getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%d/maps", (int)p);
		/* kernel threads have empty maps; others may be unreadable */
		if (ma_proc_slurp(path, &text, NULL))
			continue;
		/* a process that holds a payload too is not a memattach: a
		 * child the target forked keeps both mappings */
		hit = ma_maps_has_inode(text, major(dev), minor(dev),
					(unsigned long)ino) &&
		      !strstr(text, "/memfd:memattach-payload");
		free(text);
		if (hit) {
			h->pid = p;
			if (ma_proc_comm(p, p, h->comm, sizeof(h->comm)))
				snprintf(h->comm, sizeof(h->comm), "?");
			closedir(d);
			return 0;
		}
	}
	closedir(d);
	return -ENOENT;
}

static void set_since(struct ma_holder *h, int ring)
{
	struct tm tm;

	h->since = session_start(ring);
	if (h->since && localtime_r(&h->since, &tm))
		strftime(h->since_text, sizeof(h->since_text), "%H:%M:%S", &tm);
}

int ma_ring_holder(pid_t pid, int ring_fd, struct ma_holder *h)
{
	struct stat st;
	int fd, err;

	memset(h, 0, sizeof(*h));
	if (ring_fd < 0)
		return -ENOENT;
	fd = ma_proc_open_fd(pid, ring_fd, O_RDONLY);
	if (fd < 0)
		return fd;
	err = fstat(fd, &st) ? -errno
			     : find_mapper(pid, st.st_dev, st.st_ino, h);
	if (!err)
		set_since(h, fd);
	close(fd);
	return err;
}

int ma_ring_holder_by_maps(pid_t pid, const struct ma_maps *maps,
			   struct ma_holder *h)
{
	memset(h, 0, sizeof(*h));
	for (size_t i = 0; i < maps->n; i++) {
		const struct ma_map *m = &maps->v[i];
		char path[96];
		struct stat st;
		int fd, err;

		if (!strstr(m->path, "/memfd:" MA_RING_MEMFD_NAME))
			continue;
		/* the mapping itself, through map_files when we may, else
		 * only its inode is known and the start time is not */
		snprintf(path, sizeof(path), "/proc/%d/map_files/%lx-%lx",
			 (int)pid, (unsigned long)m->start,
			 (unsigned long)m->end);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0 && !fstat(fd, &st))
			err = find_mapper(pid, st.st_dev, st.st_ino, h);
		else
			err = -ENOENT;
		if (!err)
			set_since(h, fd);
		if (fd >= 0)
			close(fd);
		return err;
	}
	return -ENOENT;
}

/* Whether descriptor fd of process p is open for writing (its fdinfo's
 * flags); a reader (another memattach report of the same capture) is not */
static bool fd_writes(pid_t p, const char *fd)
{
	char fp[96], buf[256];
	const char *fl;
	unsigned int flags;
	ssize_t n;
	int f;

	snprintf(fp, sizeof(fp), "/proc/%d/fdinfo/%s", (int)p, fd);
	f = open(fp, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return true; /* cannot say: as before, a writer */
	n = read(f, buf, sizeof(buf) - 1);
	close(f);
	if (n <= 0)
		return true;
	buf[n] = '\0';
	fl = strstr(buf, "flags:");
	if (!fl || sscanf(fl + 6, "%o", &flags) != 1)
		return true;
	return (flags & O_ACCMODE) != O_RDONLY;
}

int ma_file_writer(const char *path, struct ma_holder *h)
{
	struct dirent *de;
	struct stat want;
	DIR *d;

	memset(h, 0, sizeof(*h));
	if (stat(path, &want) || !(d = opendir("/proc")))
		return -ENOENT;
	while ((de = readdir(d))) {
		char dir[64], comm[64];
		struct dirent *fe;
		DIR *fds;
		pid_t p;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		p = (pid_t)atoi(de->d_name);
		/* memattach processes only: their descriptors are few */
		if (p == getpid() || ma_proc_comm(p, p, comm, sizeof(comm)) ||
		    strcmp(comm, "memattach"))
			continue;
		snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)p);
		fds = opendir(dir);
		if (!fds)
			continue;
		while ((fe = readdir(fds))) {
			char fp[96];
			struct stat st;

			if (!isdigit((unsigned char)fe->d_name[0]))
				continue;
			snprintf(fp, sizeof(fp), "%s/%s", dir, fe->d_name);
			if (stat(fp, &st) == 0 && st.st_dev == want.st_dev &&
			    st.st_ino == want.st_ino &&
			    fd_writes(p, fe->d_name)) {
				h->pid = p;
				snprintf(h->comm, sizeof(h->comm), "%s", comm);
				closedir(fds);
				closedir(d);
				return 0;
			}
		}
		closedir(fds);
	}
	closedir(d);
	return -ENOENT;
}
