/* SPDX-License-Identifier: MIT */
#include "procfs.h"
#include "textfit.h"

#include <ctype.h>
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int ma_proc_slurp(const char *path, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t cap = 4096, n = 0;
	char *buf;

	if (fd < 0)
		return -errno;
	buf = malloc(cap);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	for (;;) {
		if (n + 1 >= cap) {
			char *nb = realloc(buf, cap * 2);

			if (!nb) {
				free(buf);
				close(fd);
				return -ENOMEM;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + n, cap - n - 1);

		if (r < 0) {
			int err = -errno;

			if (err == -EINTR)
				continue;
			free(buf);
			close(fd);
			return err;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	*out = buf;
	if (len)
		*len = n;
	return 0;
}

/* /proc/PID gone, or never was: ENOENT from open means ESRCH here */
static int proc_errno(int err)
{
	return err == -ENOENT ? -ESRCH : err;
}

int ma_maps_parse(const char *text, struct ma_maps *out)
{
	size_t cap = 0;
	const char *line = text;

	out->n = 0;
	out->v = NULL;
	while (line && *line) {
		const char *nl = strchr(line, '\n');
		struct ma_map mp = { 0 };
		char dev[16], buf[4096 + 128];
		int pathpos = 0;
		size_t ll = nl ? (size_t)(nl - line) : strlen(line);

		/* One line at a time: a scanf white-space directive would run
		 * past the newline of a mapping without a path. */
		if (ll >= sizeof(buf))
			ll = sizeof(buf) - 1;
		memcpy(buf, line, ll);
		buf[ll] = '\0';
		if (sscanf(buf,
			   "%" SCNx64 "-%" SCNx64 " %4s %" SCNx64
			   " %15s %lu %n",
			   &mp.start, &mp.end, mp.perms, &mp.offset, dev,
			   &mp.inode, &pathpos) >= 6) {
			if (pathpos > 0) {
				const char *p = buf + pathpos;
				size_t l = strlen(p);

				while (l && (*p == ' ')) {
					p++;
					l--;
				}
				if (l >= sizeof(mp.path))
					l = sizeof(mp.path) - 1;
				memcpy(mp.path, p, l);
				mp.path[l] = '\0';
			}
			if (out->n == cap) {
				size_t ncap = cap ? cap * 2 : 64;
				struct ma_map *nv =
					realloc(out->v, ncap * sizeof(*nv));

				if (!nv) {
					ma_maps_free(out);
					return -ENOMEM;
				}
				out->v = nv;
				cap = ncap;
			}
			out->v[out->n++] = mp;
		}
		line = nl ? nl + 1 : NULL;
	}
	return 0;
}

int ma_maps_read(pid_t pid, struct ma_maps *out)
{
	char path[64], *text;
	int err;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	err = ma_proc_slurp(path, &text, NULL);
	if (err)
		return proc_errno(err);
	err = ma_maps_parse(text, out);
	free(text);
	return err;
}

int ma_maps_find_start(pid_t pid, const char *needle, uint64_t *start)
{
	char path[64], buf[16384 + 1];
	size_t have = 0;
	int fd, err = -ENOENT;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return proc_errno(-errno);
	for (;;) {
		ssize_t r = read(fd, buf + have, sizeof(buf) - 1 - have);
		char *line = buf, *nl;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err = proc_errno(-errno);
			break;
		}
		have += (size_t)r;
		buf[have] = '\0';
		/* whole lines only; a line longer than the buffer (a path of
		 * 16 KiB) is skipped */
		while ((nl = strchr(line, '\n'))) {
			uint64_t a, off;

			*nl = '\0';
			if (strstr(line, needle) &&
			    sscanf(line, "%" SCNx64 "-%*[0-9a-f] %*4s %" SCNx64,
				   &a, &off) == 2 &&
			    off == 0) {
				*start = a;
				close(fd);
				return 0;
			}
			line = nl + 1;
		}
		if (r == 0)
			break;
		have -= (size_t)(line - buf);
		if (have == sizeof(buf) - 1)
			have = 0;
		memmove(buf, line, have);
	}
	close(fd);
	return err;
}

void ma_maps_free(struct ma_maps *m)
{
	free(m->v);
	m->v = NULL;
	m->n = 0;
}

const struct ma_map *ma_maps_find_file(const struct ma_maps *m,
				       const char *path)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].offset == 0 && !strcmp(m->v[i].path, path))
			return &m->v[i];
	return NULL;
}

int ma_status_parse(const char *text, struct ma_status *out)
{
	const char *line = text;

	memset(out, 0, sizeof(*out));
	while (line && *line) {
		const char *nl = strchr(line, '\n');
		unsigned long a, b;

		if (!strncmp(line, "Name:\t", 6)) {
			size_t l =
				nl ? (size_t)(nl - line - 6) : strlen(line + 6);

			if (l >= sizeof(out->name))
				l = sizeof(out->name) - 1;
			memcpy(out->name, line + 6, l);
			out->name[l] = '\0';
		} else if (sscanf(line, "State:\t%c", &out->state) == 1) {
		} else if (sscanf(line, "Tgid:\t%lu", &a) == 1) {
			out->tgid = (pid_t)a;
		} else if (sscanf(line, "TracerPid:\t%lu", &a) == 1) {
			out->tracer = (pid_t)a;
		} else if (sscanf(line, "Uid:\t%lu\t%lu", &a, &b) == 2) {
			out->uid = (uid_t)a;
			out->euid = (uid_t)b;
		} else if (sscanf(line, "VmRSS:\t%lu", &a) == 1) {
			out->vm_rss_kb = a;
		} else if (sscanf(line, "VmHWM:\t%lu", &a) == 1) {
			out->vm_hwm_kb = a;
		} else if (sscanf(line, "VmSize:\t%lu", &a) == 1) {
			out->vm_size_kb = a;
		} else if (sscanf(line, "Threads:\t%lu", &a) == 1) {
			out->threads = (int)a;
		}
		line = nl ? nl + 1 : NULL;
	}
	return out->state ? 0 : -EINVAL;
}

int ma_status_read(pid_t pid, struct ma_status *out)
{
	char path[64], *text;
	int err;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	err = ma_proc_slurp(path, &text, NULL);
	if (err)
		return proc_errno(err);
	err = ma_status_parse(text, out);
	free(text);
	return err;
}

int ma_proc_ended(pid_t pid)
{
	struct ma_status st;

	return ma_status_read(pid, &st) || st.state == 'Z' || st.state == 'X';
}

/* The fields of /proc/PID[/task/TID]/stat after the command's ")": the
 * state first; NULL when gone.  *text is the caller's to free. */
static const char *stat_fields(const char *path, char **text)
{
	const char *p;

	if (ma_proc_slurp(path, text, NULL))
		return NULL;
	/* the command may hold ")" itself: its last one ends it */
	p = strrchr(*text, ')');
	if (!p || p[1] != ' ' || !p[2])
		return NULL;
	return p + 2;
}

static int task_state_is(pid_t pid, pid_t tid, char state)
{
	char path[96], *text = NULL;
	const char *f;
	int ret;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid,
		 (int)tid);
	f = stat_fields(path, &text);
	ret = f && f[0] == state;
	free(text);
	return ret;
}

int ma_proc_job_stopped(pid_t pid, int all_threads)
{
	struct ma_status st;
	pid_t *tids;
	size_t n;
	int ret = 1;

	if (ma_status_read(pid, &st) || st.state != 'T' || st.tracer)
		return 0;
	if (!all_threads)
		return 1;
	if (ma_tasks_read(pid, &tids, &n))
		return 0;
	for (size_t i = 0; i < n && ret; i++)
		ret = task_state_is(pid, tids[i], 'T');
	free(tids);
	return ret;
}

pid_t ma_proc_held_by_tracer(pid_t pid, char *name, size_t len)
{
	struct ma_status st, tr;

	if (ma_status_read(pid, &st) || st.state != 't' || !st.tracer ||
	    st.tracer == getpid())
		return 0;
	snprintf(name, len, "%s",
		 ma_status_read(st.tracer, &tr) ? "?" : tr.name);
	return st.tracer;
}

int ma_proc_exiting(pid_t pid)
{
	char path[64], *text = NULL;
	const char *f;
	unsigned long flags = 0;
	int ret;

	if (ma_proc_ended(pid))
		return 1;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = stat_fields(path, &text);
	/* state ppid pgrp session tty_nr tpgid flags: PF_EXITING is 0x4 */
	ret = f && sscanf(f, "%*c %*d %*d %*d %*d %*d %lu", &flags) == 1 &&
	      (flags & 0x4);
	free(text);
	return ret;
}

uint64_t ma_proc_exec_sig(pid_t pid)
{
	char path[64], *text = NULL;
	uint64_t sig = 0, av[2];
	size_t len = 0;

	snprintf(path, sizeof(path), "/proc/%d/auxv", (int)pid);
	if (ma_proc_slurp(path, &text, &len) < 0)
		return 0;
	/* (type, value) pairs of words */
	for (size_t k = 0; k + sizeof(av) <= len; k += sizeof(av)) {
		memcpy(av, text + k, sizeof(av));
		if (av[0] == AT_RANDOM)
			sig = av[1];
	}
	free(text);
	return sig;
}

int ma_proc_exit_status(pid_t pid, int *status)
{
	struct ma_status st;
	char path[64], *text = NULL;
	const char *f;
	int ret = -ESRCH;

	/* A main thread that ended alone (pthread_exit) is a zombie with its
	 * own exit code, 0, while the process runs on, and may end later with
	 * another: only a process with no thread left has its status there.
	 * Its other threads leave a moment after it on an exit or a kill. */
	if (ma_status_read(pid, &st) || st.state != 'Z')
		return -ESRCH;
	if (st.threads != 1)
		return -EAGAIN;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = stat_fields(path, &text);
	if (f && f[0] == 'Z') {
		/* exit_code is the last field, the 52nd (f is the 3rd) */
		const char *last = strrchr(f, ' ');
		int fields = 3;

		for (const char *c = f; *c; c++)
			fields += *c == ' ';
		if (last && fields >= 52) {
			*status = atoi(last + 1);
			ret = 0;
		}
	}
	free(text);
	/* The kernel writes 0 there for a reader without ptrace access:
	 * a 0 is an exit status only for one that has it, which
	 * /proc/PID/personality (ptrace attach access) shows */
	if (!ret && !*status) {
		char *pers = NULL;

		snprintf(path, sizeof(path), "/proc/%d/personality", (int)pid);
		if (ma_proc_slurp(path, &pers, NULL))
			ret = -EACCES;
		free(pers);
	}
	return ret;
}

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return (x > y) - (x < y);
}

int ma_tasks_read(pid_t pid, pid_t **tids, size_t *n)
{
	char path[64];
	DIR *d;
	struct dirent *de;
	size_t cap = 16, cnt = 0;
	pid_t *v;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return proc_errno(-errno);
	v = malloc(cap * sizeof(*v));
	if (!v) {
		closedir(d);
		return -ENOMEM;
	}
	while ((de = readdir(d))) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		if (cnt == cap) {
			pid_t *nv = realloc(v, cap * 2 * sizeof(*v));

			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
			cap *= 2;
		}
		v[cnt++] = (pid_t)atoi(de->d_name);
	}
	closedir(d);
	qsort(v, cnt, sizeof(*v), cmp_pid);
	*tids = v;
	*n = cnt;
	return 0;
}

int ma_proc_children(pid_t pid, pid_t **out, size_t *n)
{
	char path[96], *text = NULL;
	pid_t *tids, *v = NULL;
	size_t nt, cnt = 0, cap = 0;
	int err = ma_tasks_read(pid, &tids, &nt);

	if (err)
		return err;
	for (size_t i = 0; i < nt && !err; i++) {
		char *p, *end;

		snprintf(path, sizeof(path), "/proc/%d/task/%d/children",
			 (int)pid, (int)tids[i]);
		if (ma_proc_slurp(path, &text, NULL))
			continue;
		for (p = text;; p = end) {
			long c = strtol(p, &end, 10);

			if (end == p)
				break;
			if (c <= 0)
				continue;
			if (cnt == cap) {
				size_t nc = cap ? cap * 2 : 16;
				pid_t *nv = realloc(v, nc * sizeof(*v));

				if (!nv) {
					err = -ENOMEM;
					break;
				}
				v = nv;
				cap = nc;
			}
			v[cnt++] = (pid_t)c;
		}
		free(text);
		text = NULL;
	}
	free(tids);
	if (err) {
		free(v);
		return err;
	}
	*out = v;
	*n = cnt;
	return 0;
}

int ma_proc_exe(pid_t pid, char *buf, size_t len)
{
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	n = readlink(path, buf, len - 1);
	if (n < 0)
		return proc_errno(-errno);
	buf[n] = '\0';
	return 0;
}

int ma_proc_comm(pid_t pid, pid_t tid, char *buf, size_t len)
{
	char path[96], *text;
	int err;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/comm", (int)pid,
		 (int)tid);
	err = ma_proc_slurp(path, &text, NULL);
	if (err)
		return proc_errno(err);
	text[strcspn(text, "\n")] = '\0';
	/* the program sets it (prctl PR_SET_NAME): printed everywhere, so
	 * made harmless to a terminal here (ma_ctl_sanitize) */
	ma_ctl_sanitize(text, strlen(text));
	snprintf(buf, len, "%s", text);
	free(text);
	return 0;
}

int ma_proc_cmdline(pid_t pid, char *buf, size_t len)
{
	char path[64], *text;
	size_t n;
	int err;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	err = ma_proc_slurp(path, &text, &n);
	if (err)
		return proc_errno(err);
	while (n && text[n - 1] == '\0')
		n--;
	for (size_t i = 0; i < n; i++)
		if (text[i] == '\0')
			text[i] = ' ';
	text[n] = '\0';
	snprintf(buf, len, "%s", text);
	free(text);
	return 0;
}

void ma_proc_target_path(pid_t pid, const char *path, char *buf, size_t len)
{
	snprintf(buf, len, "/proc/%d/root%s", (int)pid, path);
}

/*
 * A mapped file deleted since it was mapped (its maps path ends in
 * " (deleted)"): a python, a libpython or a libc that a package upgrade
 * replaced under a process running for weeks.  The path names another
 * file now, or none: the file the process maps is reached through
 * /proc/PID/exe (the executable: ptrace access is enough) or
 * /proc/PID/map_files/START-END (any mapping of it: that takes
 * CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE).  0, or -ENOENT when the path
 * is not such a file or no mapping of it is found.
 */
static int deleted_map_path(pid_t pid, const char *path, char *buf, size_t len)
{
	static const char del[] = " (deleted)";
	size_t pl = strlen(path), dl = sizeof(del) - 1;
	char link[64], exe[PATH_MAX];
	const struct ma_map *mp;
	struct ma_maps m;
	ssize_t n;
	int found;

	if (pl <= dl || strcmp(path + pl - dl, del))
		return -ENOENT;
	snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
	n = readlink(link, exe, sizeof(exe) - 1);
	if (n > 0 && (exe[n] = '\0', !strcmp(exe, path))) {
		snprintf(buf, len, "%s", link);
		return 0;
	}
	if (ma_maps_read(pid, &m))
		return -ENOENT;
	mp = ma_maps_find_file(&m, path);
	found = mp != NULL;
	if (found)
		snprintf(buf, len, "/proc/%d/map_files/%llx-%llx", (int)pid,
			 (unsigned long long)mp->start,
			 (unsigned long long)mp->end);
	ma_maps_free(&m);
	return found ? 0 : -ENOENT;
}

const char *ma_proc_deleted_note(pid_t pid, const char *lib, char *buf,
				 size_t len)
{
	struct ma_maps m;
	char local[PATH_MAX + 64];

	buf[0] = '\0';
	if (ma_maps_read(pid, &m))
		return buf;
	for (size_t i = 0; i < m.n && !buf[0]; i++) {
		const char *path = m.v[i].path, *b = strrchr(path, '/');
		int fd;

		if (!b || strncmp(b + 1, lib, strlen(lib)) ||
		    deleted_map_path(pid, path, local, sizeof(local)))
			continue;
		fd = open(local, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			close(fd);
			continue;
		}
		snprintf(buf, len,
			 " (it maps %s: deleted since it was mapped, replaced "
			 "by an upgrade maybe; memattach reads such a file "
			 "through /proc/%d/map_files, which takes "
			 "CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE: run it as "
			 "root)",
			 path, (int)pid);
	}
	ma_maps_free(&m);
	return buf;
}

void ma_proc_map_path(pid_t pid, const char *path, char *buf, size_t len)
{
	char link[64], root[PATH_MAX];
	ssize_t n;

	if (!deleted_map_path(pid, path, buf, len))
		return;

	/* the kernel writes a mapped file's path from the root of the
	 * reader (or of the target's mount namespace, when the reader's
	 * root is not in it), not the target's: a chrooted target's
	 * /usr/bin/python3 is /srv/c/usr/bin/python3 in its maps, and
	 * its root is /srv/c, read the same way */
	snprintf(link, sizeof(link), "/proc/%d/root", (int)pid);
	n = readlink(link, root, sizeof(root) - 1);
	if (n > 1 && root[0] == '/') {
		root[n] = '\0';
		if (!strncmp(path, root, (size_t)n) && path[n] == '/')
			path += n;
	}
	ma_proc_target_path(pid, path, buf, len);
}

pid_t ma_status_nspid(const char *text)
{
	const char *p = strstr(text, "\nNSpid:");
	pid_t last = 0;

	if (!p)
		return 0;
	p += 7;
	for (;;) {
		char *end;
		long v;

		while (*p == ' ' || *p == '\t')
			p++;
		v = strtol(p, &end, 10);
		if (end == p || v <= 0)
			break;
		last = (pid_t)v;
		p = end;
	}
	return last;
}

int ma_proc_nstid(pid_t pid, pid_t tid, pid_t *nstid)
{
	char path[96], *text;
	int err;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid,
		 (int)tid);
	err = ma_proc_slurp(path, &text, NULL);
	if (err)
		return proc_errno(err);
	*nstid = ma_status_nspid(text);
	if (!*nstid)
		*nstid = tid;
	free(text);
	return 0;
}

int ma_proc_same_pidns(pid_t pid)
{
	char path[64];
	struct stat a, b;

	snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)pid);
	if (stat("/proc/self/ns/pid", &a) || stat(path, &b))
		return 0;
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* pidfd_getfd(2), Linux 5.6: a copy of another process's descriptor, for
 * whoever may ptrace it (PTRACE_MODE_ATTACH_REALCREDS) */
static int getfd(pid_t pid, int fd)
{
#if defined(SYS_pidfd_open) && defined(SYS_pidfd_getfd)
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	int nfd, e;

	if (pfd < 0)
		return -errno;
	nfd = (int)syscall(SYS_pidfd_getfd, pfd, fd, 0);
	e = errno;
	close(pfd);
	return nfd < 0 ? -e : nfd;
#else
	(void)pid;
	(void)fd;
	return -ENOSYS;
#endif
}

int ma_proc_open_fd(pid_t pid, int fd, int flags)
{
	char path[64];
	int nfd, e, acc;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
	nfd = open(path, flags | O_CLOEXEC);
	if (nfd >= 0)
		return nfd;
	e = errno;
	if (e != EACCES && e != EPERM)
		return -e;
	nfd = getfd(pid, fd);
	if (nfd < 0)
		return -e; /* the first refusal says more */
	/* the copy has the target's access mode: it must allow ours */
	acc = fcntl(nfd, F_GETFL);
	if (acc < 0 || ((acc & O_ACCMODE) != O_RDWR &&
			(acc & O_ACCMODE) != (flags & O_ACCMODE))) {
		close(nfd);
		return -e;
	}
	return nfd;
}

int ma_proc_fds(pid_t pid, int *fds, int max)
{
	char dir[64];
	struct dirent *d;
	DIR *dp;
	int n = 0;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	dp = opendir(dir);
	if (!dp && (errno == EACCES || errno == EPERM)) {
		snprintf(dir, sizeof(dir), "/proc/%d/fdinfo", (int)pid);
		dp = opendir(dir);
	}
	if (!dp)
		return -errno;
	while ((d = readdir(dp)) && n < max) {
		if (d->d_name[0] < '0' || d->d_name[0] > '9')
			continue;
		fds[n++] = atoi(d->d_name);
	}
	closedir(dp);
	return n;
}

int ma_proc_fd_link(pid_t pid, int fd, char *buf, size_t len)
{
	char path[64];
	ssize_t n;
	int e, nfd;

	if (len < 2)
		return -EINVAL;
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
	n = readlink(path, buf, len - 1);
	if (n < 0 && (errno == EACCES || errno == EPERM)) {
		e = errno;
		nfd = getfd(pid, fd);
		if (nfd < 0)
			return -e;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", nfd);
		n = readlink(path, buf, len - 1);
		e = errno;
		close(nfd);
		if (n < 0)
			return -e;
	}
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return (int)n;
}

int ma_proc_soft_limit(pid_t pid, const char *name, uint64_t *soft)
{
	char path[64], *text = NULL;
	const char *p;
	size_t n = strlen(name);
	int ret = -ENOENT;

	snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
	if (ma_proc_slurp(path, &text, NULL))
		return -ESRCH;
	for (p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, name, n) || p[n] != ' ')
			continue;
		p += n;
		while (*p == ' ')
			p++;
		if (!strncmp(p, "unlimited", 9))
			*soft = UINT64_MAX;
		else
			*soft = strtoull(p, NULL, 10);
		ret = 0;
		break;
	}
	free(text);
	return ret;
}

/* Whether the comma-separated list has the word */
static int has_word(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = list; p && *p;
	     p = strchr(p, ','), p = p ? p + 1 : NULL)
		if (!strncmp(p, word, n) && (p[n] == ',' || !p[n]))
			return 1;
	return 0;
}

/* Whether the cgroup path cg lies under root (a mount's root in its
 * hierarchy); its length in *rl ("/" counts as 0) */
static int cg_under(const char *cg, const char *root, size_t *rl)
{
	*rl = strcmp(root, "/") ? strlen(root) : 0;
	return !*rl ||
	       (!strncmp(cg, root, *rl) && (!cg[*rl] || cg[*rl] == '/'));
}

/* The mount point of the cgroup hierarchy that holds controller ctl (v1:
 * a "cgroup" mount with that option; v2: the "cgroup2" mount), as this
 * process sees it, whose root (in mount) holds the cgroup path cg and
 * that no later mount hides (one over it or over a directory above it: a
 * container's cgroup bound over /sys/fs/cgroup/memory), and the cgroup
 * path its root stands for.  0 or -ENOENT */
static int cg_mount(int v2, const char *ctl, const char *cg, char *mnt,
		    size_t mlen, char *root, size_t rlen)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096];
	int err = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char r[1024], m[1024], type[64], opts[1024];
		const char *dash = strstr(line, " - ");
		size_t ml, rl;

		if (!dash ||
		    sscanf(line, "%*s %*s %*s %1023s %1023s", r, m) != 2 ||
		    sscanf(dash + 3, "%63s %*s %1023s", type, opts) != 2)
			continue;
		ml = strlen(m);
		if (!err && !strncmp(mnt, m, ml) &&
		    (!mnt[ml] || mnt[ml] == '/'))
			err = -ENOENT; /* hidden by this later mount */
		if (!err ||
		    (v2 ? strcmp(type, "cgroup2") != 0
			: strcmp(type, "cgroup") != 0 ||
				     !has_word(opts, ctl)) ||
		    !cg_under(cg, r, &rl))
			continue;
		snprintf(mnt, mlen, "%s", m);
		snprintf(root, rlen, "%s", r);
		err = 0;
	}
	fclose(f);
	return err;
}

/*
 * The directory of pid's cgroup for controller ctl, as this process sees
 * it (v1's hierarchy of that controller, else v2's unified one) into dir;
 * *base: where the hierarchy's root ends in dir (its ancestors are dir
 * cut at each '/' after it); *v2 which one.  0, or -ENOENT when it cannot
 * be told (not mounted here, or pid's cgroup outside this process's view:
 * another cgroup namespace).
 */
static int cgroup_dir(pid_t pid, const char *ctl, char *dir, size_t len,
		      size_t *base, int *v2)
{
	char path[64], *text = NULL, cg[PATH_MAX], mnt[1024], root[1024];
	const char *p;
	int found = 0;
	size_t rl;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	if (ma_proc_slurp(path, &text, NULL))
		return -ESRCH;
	/* "ID:controllers:path": v1's line of ctl, else v2's "0::path" */
	for (p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		const char *c = strchr(p, ':'),
			   *d = c ? strchr(c + 1, ':') : NULL;
		const char *e = d ? strchrnul(d, '\n') : NULL;
		char ctls[256];

		if (!d || (size_t)(d - c - 1) >= sizeof(ctls) ||
		    (size_t)(e - d - 1) >= sizeof(cg))
			continue;
		memcpy(ctls, c + 1, (size_t)(d - c - 1));
		ctls[d - c - 1] = '\0';
		if (has_word(ctls, ctl) || (!ctls[0] && !found)) {
			memcpy(cg, d + 1, (size_t)(e - d - 1));
			cg[e - d - 1] = '\0';
			*v2 = !ctls[0];
			found = 1;
			if (!*v2)
				break;
		}
	}
	free(text);
	/* the mount shows the hierarchy from its root (a container's
	 * cgroup namespace, a bind mount): the target's path must lie
	 * under it */
	if (!found ||
	    cg_mount(*v2, ctl, cg, mnt, sizeof(mnt), root, sizeof(root)))
		return -ENOENT;
	cg_under(cg, root, &rl);
	*base = strlen(mnt);
	snprintf(dir, len, "%s%s", mnt, cg + rl);
	return 0;
}

/* A number in a cgroup file; UINT64_MAX for "max" and for cgroup v1's
 * "unlimited" (2^63 rounded down to a page); -ENOENT when unreadable */
static int memcg_value(const char *dir, const char *file, uint64_t *v)
{
	char path[PATH_MAX + 64], *text = NULL;
	int err;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	err = ma_proc_slurp(path, &text, NULL);
	if (err)
		return err;
	if (!strncmp(text, "max", 3))
		*v = UINT64_MAX;
	else
		*v = strtoull(text, NULL, 10);
	if (*v >= (1ull << 62))
		*v = UINT64_MAX;
	free(text);
	return 0;
}

/* The page cache of the cgroup that the kernel reclaims before it
 * charges a new page over the limit (v1: memory.stat's
 * total_inactive_file, its descendants' included; v2: inactive_file,
 * hierarchical there), as the kubelet's working set leaves it out; 0 when
 * unreadable */
static uint64_t memcg_inactive_file(const char *dir, int v2)
{
	char path[PATH_MAX + 64], *text = NULL;
	const char *key = v2 ? "inactive_file " : "total_inactive_file ";
	size_t n = strlen(key);
	uint64_t v = 0;

	snprintf(path, sizeof(path), "%s/memory.stat", dir);
	if (ma_proc_slurp(path, &text, NULL))
		return 0;
	for (const char *p = text; p && *p;
	     p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, key, n)) {
			v = strtoull(p + n, NULL, 10);
			break;
		}
	free(text);
	return v;
}

/* MemAvailable, in bytes (0: unknown).  MEMATTACH_TEST_MEMAVAIL_MIB
 * stands in for it in the tests (test_errors, test_attach_oom) */
uint64_t ma_proc_mem_available(void)
{
	char line[256];
	unsigned long long kb = 0;
	const char *test = getenv("MEMATTACH_TEST_MEMAVAIL_MIB");
	FILE *f;

	if (test)
		return strtoull(test, NULL, 10) << 20;
	f = fopen("/proc/meminfo", "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return (uint64_t)kb << 10;
}

int ma_proc_memcg_room(pid_t pid, uint64_t *room, char *where, size_t len)
{
	char dir[PATH_MAX + 1024];
	const char *lim_file, *use_file;
	size_t base;
	int v2 = 0, err;

	*room = UINT64_MAX;
	if (len)
		where[0] = '\0';
	err = cgroup_dir(pid, "memory", dir, sizeof(dir), &base, &v2);
	if (err)
		return err;
	lim_file = v2 ? "memory.max" : "memory.limit_in_bytes";
	use_file = v2 ? "memory.current" : "memory.usage_in_bytes";
	/* every level from the target's cgroup up: an ancestor's limit
	 * binds its descendants too */
	for (;;) {
		uint64_t lim, use;
		char *slash;

		if (!memcg_value(dir, lim_file, &lim) && lim != UINT64_MAX &&
		    !memcg_value(dir, use_file, &use)) {
			uint64_t r, cache = memcg_inactive_file(dir, v2);

			/* usage counts the page cache, which makes room
			 * for new pages rather than an OOM kill: a
			 * worker that reads files sits at its limit */
			use = use > cache ? use - cache : 0;
			r = lim > use ? lim - use : 0;

			if (r < *room) {
				*room = r;
				if (len)
					snprintf(where, len, "%s",
						 dir[base] ? dir + base : "/");
			}
		}
		/* up to the mount's root, which is a container's own
		 * cgroup where it shows one (its cgroup namespace, or its
		 * cgroup bound there), and the hierarchy's root, with no
		 * limit, otherwise */
		slash = strrchr(dir + base, '/');
		if (!slash)
			break;
		*slash = '\0';
	}
	return 0;
}

int ma_proc_cgroup_frozen(pid_t pid, char *where, size_t len)
{
	char dir[PATH_MAX + 1024], file[PATH_MAX + 1100], *text = NULL;
	size_t base;
	int v2 = 0, frozen = 0;

	if (cgroup_dir(pid, "freezer", dir, sizeof(dir), &base, &v2))
		return 0;
	/* v1: the state of the cgroup itself (FROZEN, or FREEZING while
	 * it gets there, an ancestor's included); v2: its cgroup.events */
	snprintf(file, sizeof(file), "%s/%s", dir,
		 v2 ? "cgroup.events" : "freezer.state");
	if (ma_proc_slurp(file, &text, NULL))
		return 0;
	frozen = v2 ? strstr(text, "frozen 1") != NULL
		    : !strncmp(text, "FROZEN", 6) ||
				 !strncmp(text, "FREEZING", 8);
	free(text);
	if (frozen && len)
		snprintf(where, len, "%s", dir[base] ? dir + base : "/");
	return frozen;
}
