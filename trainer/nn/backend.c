/*
 * backend.c - the backend a --device names (see ops.h): "" or "cpu" is the
 * CPU backend; GPU ids ("0", "0,1") would be the CUDA backend, which this
 * build does not have yet, so they are refused before anything is written.
 */
#include <string.h>

#include "ops.h"

int tr_backend_check_device(const char *device, struct ut_err *err)
{
	if (device == NULL || device[0] == '\0' || strcmp(device, "cpu") == 0)
		return 0;
	char q[UT_QUOTE_LEN];
	if (strspn(device, "0123456789,") != strlen(device))
		return ut_err_set(err, "--device '%s': give cpu or GPU ids such as 0 or 0,1",
				  ut_quote(device, q, sizeof(q)));
	return ut_err_set(err, "--device %s: this build has no CUDA backend; use --device cpu",
			  ut_quote(device, q, sizeof(q)));
}

int tr_backend_create(const char *device, int threads, struct tr_backend **out, struct ut_err *err)
{
	*out = NULL;
	if (tr_backend_check_device(device, err) != 0)
		return -1;
	return tr_cpu_backend_create(threads, out, err);
}
