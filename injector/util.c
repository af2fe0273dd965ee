/* SPDX-License-Identifier: MIT */
/*
 * Small utilities for the payload: a formatter that never allocates (libc's
 * printf family may), memory from mmap, sleeps and futexes through raw
 * syscalls (not cancellation points: we may be inside a hook).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

void ma_spin_lock(int *l)
{
	unsigned int n = 0;

	while (!ma_spin_trylock(l)) {
		if (++n < 128)
			__builtin_ia32_pause();
		else if (n < 256)
			sched_yield();
		else
			ma_sleep_ns(50000);
	}
}

struct out {
	char *buf;
	size_t len, pos;
};

static void put(struct out *o, char c)
{
	if (o->pos + 1 < o->len)
		o->buf[o->pos] = c;
	o->pos++;
}

static void put_str(struct out *o, const char *s)
{
	if (!s)
		s = "(null)";
	while (*s)
		put(o, *s++);
}

static void put_num(struct out *o, unsigned long long v, unsigned int base,
		    int neg)
{
	char tmp[24];
	int n = 0;

	if (neg)
		put(o, '-');
	do {
		tmp[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (n)
		put(o, tmp[--n]);
}

int ma_vfmt(char *buf, size_t len, const char *fmt, va_list ap)
{
	struct out o = { buf, len, 0 };

	for (; *fmt; fmt++) {
		int l = 0, z = 0;

		if (*fmt != '%') {
			put(&o, *fmt);
			continue;
		}
		fmt++;
		while (*fmt == 'l') {
			l++;
			fmt++;
		}
		if (*fmt == 'z') {
			z = 1;
			fmt++;
		}
		switch (*fmt) {
		case 's':
			put_str(&o, va_arg(ap, const char *));
			break;
		case 'd': {
			long long v = l >= 2 ? va_arg(ap, long long)
				      : l    ? va_arg(ap, long)
					     : va_arg(ap, int);

			put_num(&o,
				v < 0 ? -(unsigned long long)v
				      : (unsigned long long)v,
				10, v < 0);
			break;
		}
		case 'u':
		case 'x': {
			unsigned long long v =
				z	 ? va_arg(ap, size_t)
				: l >= 2 ? va_arg(ap, unsigned long long)
				: l	 ? va_arg(ap, unsigned long)
					 : va_arg(ap, unsigned int);

			put_num(&o, v, *fmt == 'x' ? 16 : 10, 0);
			break;
		}
		case 'p':
			put_str(&o, "0x");
			put_num(&o, (uintptr_t)va_arg(ap, void *), 16, 0);
			break;
		case '%':
			put(&o, '%');
			break;
		case '\0':
			fmt--;
			break;
		default:
			put(&o, '?');
			break;
		}
	}
	if (len)
		buf[o.pos < len ? o.pos : len - 1] = '\0';
	return (int)o.pos;
}

int ma_fmt(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = ma_vfmt(buf, len, fmt, ap);
	va_end(ap);
	return n;
}

void *ma_map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

void ma_unmap(void *p, size_t len)
{
	if (p)
		munmap(p, len);
}

size_t ma_page_round(size_t len)
{
	/* glibc answers from the auxiliary vector: no system call */
	long pg = sysconf(_SC_PAGESIZE);
	size_t page = pg > 0 ? (size_t)pg : 4096;

	return (len + page - 1) & ~(page - 1);
}

void ma_parts_map(struct ma_parts *m, size_t len)
{
	len = ma_page_round(len);
	m->next = len ? ma_map(len) : NULL;
	m->left = m->next ? len : 0;
}

void *ma_parts_take(struct ma_parts *m, size_t len)
{
	size_t r = ma_page_round(len);
	void *p;

	if (!m || !r || m->left < r)
		return ma_map(len);
	p = m->next;
	m->next += r;
	m->left -= r;
	return p;
}

void ma_parts_drop(struct ma_parts *m)
{
	if (m->left)
		ma_unmap(m->next, m->left);
	m->next = NULL;
	m->left = 0;
}

/* The floor: MA_FD_FLOOR, or half the descriptor limit when that is lower
 * (F_DUPFD fails at or above it), but never among 0-2 */
static int fd_floor(void)
{
	struct rlimit rl;
	int floor = MA_FD_FLOOR;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / 2 < (rlim_t)floor)
		floor = (int)(rl.rlim_cur / 2);
	return floor < 3 ? 3 : floor;
}

int ma_fd_park(int fd, struct ma_fd_id *id)
{
	struct stat st;
	int hi;

	if (fd >= 0 && fd < MA_FD_FLOOR) {
		hi = fcntl(fd, F_DUPFD_CLOEXEC, fd_floor());
		/* every number above the floor taken: one above 2 at least */
		if (hi < 0 && fd < 3)
			hi = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		if (hi >= 0) {
			close(fd);
			fd = hi;
		}
	}
	id->dev = id->ino = 0;
	if (fd >= 0 && fstat(fd, &st) == 0) {
		id->dev = st.st_dev;
		id->ino = st.st_ino;
	}
	return fd;
}

void ma_fd_close_own(int fd, const struct ma_fd_id *id)
{
	struct stat st;

	if (fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == id->dev &&
	    st.st_ino == id->ino)
		close(fd);
}

void ma_sleep_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ull),
			       (long)(ns % 1000000000ull) };

	syscall(SYS_nanosleep, &ts, NULL);
}

void ma_futex_wait(uint32_t *word, uint32_t val, uint64_t timeout_ns)
{
	struct timespec ts = { (time_t)(timeout_ns / 1000000000ull),
			       (long)(timeout_ns % 1000000000ull) };

	syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, &ts, NULL, 0);
}

void ma_futex_wake(uint32_t *word)
{
	__atomic_fetch_add(word, 1, __ATOMIC_RELEASE);
	syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

pid_t ma_gettid(void)
{
	return (pid_t)syscall(SYS_gettid);
}
