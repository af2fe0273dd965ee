/* SPDX-License-Identifier: MIT */
/* /proc/PID: memory maps, status, threads, executable. */
#ifndef MA_PROCFS_H
#define MA_PROCFS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ma_map {
	uint64_t start, end, offset;
	char perms[5]; /* "r-xp" */
	unsigned long inode;
	char path[4096]; /* "" for anonymous, "[heap]" etc. for special */
};

struct ma_maps {
	size_t n;
	struct ma_map *v;
};

/* Parse the text of a maps file (exposed for unit tests) */
int ma_maps_parse(const char *text, struct ma_maps *out);
int ma_maps_read(pid_t pid, struct ma_maps *out);
void ma_maps_free(struct ma_maps *m);
/* The mapping with file offset 0 of the file whose path ends with suffix,
 * or whose basename starts with prefix (NULL to ignore) */
const struct ma_map *ma_maps_find_file(const struct ma_maps *m,
				       const char *path);

/*
 * The start of the first mapping with file offset 0 whose path contains
 * needle, read from /proc/PID/maps a piece at a time and no further than
 * it: 0 and *start set, -ENOENT when none, or -errno.  For a freeze: a full
 * ma_maps_read of a process with a hundred libraries takes milliseconds.
 */
int ma_maps_find_start(pid_t pid, const char *needle, uint64_t *start);

struct ma_status {
	char name[64]; /* Name: (comm) */
	char state;    /* 'R', 'S', 'D', 'Z', 't', ... */
	pid_t tgid;
	pid_t tracer; /* TracerPid: 0 when none */
	uid_t uid, euid;
	unsigned long vm_rss_kb, vm_hwm_kb, vm_size_kb;
	int threads;
};

/* Parse the text of /proc/PID/status (exposed for unit tests) */
int ma_status_parse(const char *text, struct ma_status *out);
/* -ESRCH when the process does not exist */
int ma_status_read(pid_t pid, struct ma_status *out);
/* 1 when pid has ended: gone, or a zombie (Z) or dead (X) */
int ma_proc_ended(pid_t pid);

/*
 * 1 when the process is stopped by a signal (SIGSTOP, SIGTSTP, Ctrl-Z):
 * state T in /proc/PID/stat with no tracer, and with all_threads, every
 * thread of it (a group stop reaches the threads one by one).  0 when not,
 * or gone.  A debugger's stop is another state (t, "tracing stop").
 */
int ma_proc_job_stopped(pid_t pid, int all_threads);

/* The tracer other than us (gdb, strace) that holds pid in a tracing stop
 * (state t), its name (comm) in name, "?" when unreadable; 0 when none */
pid_t ma_proc_held_by_tracer(pid_t pid, char *name, size_t len);

/* 1 when pid has ended (ma_proc_ended) or is ending: its main thread's
 * PF_EXITING, set before its memory goes */
int ma_proc_exiting(pid_t pid);

/* The AT_RANDOM entry of /proc/PID/auxv, where the kernel put the random
 * bytes of the process's last exec: new at every exec.  0 when it cannot
 * be read (gone, or the new image's auxv not written yet) */
uint64_t ma_proc_exec_sig(pid_t pid);

/*
 * The exit status of a process that has exited and is not reaped yet (a
 * zombie), as waitpid() gives it: the exit_code field of /proc/PID/stat
 * (Linux 3.5+), once no thread of it is left.  Only the parent can wait
 * for it; anyone with ptrace access can read it until then.  0 and
 * *status, -ESRCH (reaped, or not a zombie), -EAGAIN (its main thread is,
 * other threads are not gone yet) or -EACCES (no access: the kernel shows
 * 0 then).
 */
int ma_proc_exit_status(pid_t pid, int *status);

/*
 * The thread IDs of /proc/PID/task, sorted; -ESRCH when gone.  While
 * threads end, a listing can miss some: it stops at a thread released as
 * it is listed, before showing it, and the threads after it are left out
 * without a sign.  The freeze checks the kernel's count of threads.
 */
int ma_tasks_read(pid_t pid, pid_t **tids, size_t *n);

/* The children of every thread of pid (/proc/PID/task/TID/children, in
 * this PID namespace's numbers), *n of them in *out (free it); -ESRCH when
 * gone */
int ma_proc_children(pid_t pid, pid_t **out, size_t *n);

/* readlink /proc/PID/exe; -ENOENT for kernel threads */
int ma_proc_exe(pid_t pid, char *buf, size_t len);
/* /proc/PID/task/TID/comm without the newline */
int ma_proc_comm(pid_t pid, pid_t tid, char *buf, size_t len);
/* The command line, NULs turned into spaces */
int ma_proc_cmdline(pid_t pid, char *buf, size_t len);

/* Read a whole small /proc file into a malloc'd NUL-terminated buffer */
int ma_proc_slurp(const char *path, char **out, size_t *len);

/* A path as the target sees it, reachable from here even when the target
 * lives in another mount namespace: /proc/PID/root/<path> */
void ma_proc_target_path(pid_t pid, const char *path, char *buf, size_t len);

/* The same for a path of the target's maps, which the kernel writes from
 * the root of the reader, not the target's: one under the target's root
 * (a chroot, as the reader sees it) is taken relative to that root.  A
 * file deleted since it was mapped (" (deleted)": replaced by an upgrade)
 * is reached through /proc/PID/exe or /proc/PID/map_files, never through
 * the file now at its path. */
void ma_proc_map_path(pid_t pid, const char *path, char *buf, size_t len);
/* Why a mapped library (basename prefix lib) cannot be read: it was
 * deleted since it was mapped and /proc/PID/map_files is closed to us.
 * A parenthesised note to append to a message; "" when not so */
const char *ma_proc_deleted_note(pid_t pid, const char *lib, char *buf,
				 size_t len);

/* The ID of thread tid (as we see it) in the PID namespace of its process,
 * the last number of NSpid in /proc/PID/task/TID/status: what the process
 * itself calls it (gettid(), native_thread_id).  *nstid = tid when the
 * kernel shows no NSpid (before Linux 4.1). */
int ma_proc_nstid(pid_t pid, pid_t tid, pid_t *nstid);
/* The last number of an NSpid line in a status text, 0 when none (exposed
 * for unit tests) */
pid_t ma_status_nspid(const char *text);

/* 1 when pid lives in memattach's own PID namespace (a PID we pass it means
 * the same process there), 0 when not or unknown */
int ma_proc_same_pidns(pid_t pid);

/*
 * Open the target's descriptor fd as /proc/PID/fd/FD does (flags: O_RDONLY,
 * O_WRONLY or O_RDWR; the result is O_CLOEXEC).  /proc/PID/fd is mode 0500
 * of the target's user: another user with CAP_SYS_PTRACE alone (least
 * privilege, docs/memattach.md) is refused there, so on EACCES it takes a
 * copy of the descriptor with pidfd_getfd(2), which needs only ptrace
 * access.  That copy shares the target's file offset: use pread/pwrite.
 * A descriptor, or -errno.
 */
int ma_proc_open_fd(pid_t pid, int fd, int flags);

/*
 * The numbers of the target's open descriptors, at most max: from
 * /proc/PID/fd, or /proc/PID/fdinfo (which needs only ptrace access) when
 * the former is refused.  Their count, or -errno.
 */
int ma_proc_fds(pid_t pid, int *fds, int max);

/*
 * The soft limit named (as in /proc/PID/limits: "Max open files", "Max
 * address space") into *soft; UINT64_MAX when unlimited.  0 or -errno.
 */
int ma_proc_soft_limit(pid_t pid, const char *name, uint64_t *soft);

/*
 * The room left below the memory limits of pid's memory cgroup (v1 or v2,
 * its own and every ancestor's: the least of them) into *room, and the
 * cgroup whose limit is nearest into where; *room is UINT64_MAX when no
 * limit binds.  0, or -errno when it cannot be told (no memory cgroup
 * mounted here, or the target's outside this process's view of it).
 */
int ma_proc_memcg_room(pid_t pid, uint64_t *room, char *where, size_t len);

/* MemAvailable of /proc/meminfo, in bytes; 0 when unknown.
 * MEMATTACH_TEST_MEMAVAIL_MIB stands in for it (tests only) */
uint64_t ma_proc_mem_available(void);

/* 1 when pid's cgroup is frozen (or freezing) by the cgroup freezer (v1's
 * freezer.state, v2's cgroup.events), the cgroup in where; else 0 */
int ma_proc_cgroup_frozen(pid_t pid, char *where, size_t len);

/* What the target's descriptor fd names ("/memfd:x (deleted)", a path):
 * its length, or -errno.  Falls back like ma_proc_open_fd. */
int ma_proc_fd_link(pid_t pid, int fd, char *buf, size_t len);

#endif
