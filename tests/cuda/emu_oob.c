/*
 * tests/cuda/emu_oob.c - a kernel that writes one int past the end of its
 * heap array, run on the CUDA emulation: under AddressSanitizer the
 * program must die with a heap-buffer-overflow (the test 'cuda_emu_oob',
 * registered only in sanitized builds, expects the failure).
 */
#include <stdio.h>
#include <stdlib.h>

#include "emu_kernels.h"

int main(void)
{
	enum { THREADS = 64 };
	int *out = calloc(THREADS, sizeof(*out));
	if (out == NULL)
		return 2;
	int rc = emu_write_past_end(1, out, THREADS);
	printf("launch returned %d; AddressSanitizer should have stopped it\n", rc);
	free(out);
	return 0;
}
