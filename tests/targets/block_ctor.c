/* SPDX-License-Identifier: MIT */
/* dlopen()ing this library blocks the calling thread inside the dynamic
 * loader (which holds its lock) for $MA_BLOCK_SECONDS seconds. */
#include <stdlib.h>
#include <unistd.h>

__attribute__((constructor)) static void block_in_loader(void)
{
	const char *s = getenv("MA_BLOCK_SECONDS");

	sleep(s ? (unsigned int)atoi(s) : 3);
}

int ma_block_ctor_loaded(void)
{
	return 1;
}
