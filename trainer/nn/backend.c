/*
 * backend.c - the backend a --device names (see ops.h): "" or "cpu" is the
 * CPU backend; GPU ids ("0", "0,1") are the CUDA backend in a build with
 * CUDA (TR_HAVE_CUDA), which first checks that the GPUs can be used (one
 * line naming CUDA and the cause when not), and are refused in a build
 * without it; either way before anything is written.
 */
#include <stdlib.h>
#include <string.h>

#include "ops.h"

#if defined(TR_HAVE_CUDA)
#include "tr_cuda.h"

/* Check every id of a list such as "0,1" with the CUDA runtime. */
static int check_gpus(const char *device, struct ut_err *err)
{
	char q[UT_QUOTE_LEN];
	const char *id = device;
	for (;;) {
		char *end = NULL;
		long gpu = strtol(id, &end, 10);
		if (end == id || gpu > 1024 || (*end != ',' && *end != '\0'))
			return ut_err_set(err,
					  "--device '%s': give cpu or GPU ids such as 0 or 0,1",
					  ut_quote(device, q, sizeof(q)));
		struct ut_err cause = {{0}};
		if (tr_cuda_device_check((int)gpu, &cause) != 0)
			return ut_err_set(err, "--device %s: %s", ut_quote(device, q, sizeof(q)),
					  cause.msg);
		if (*end == '\0')
			return 0;
		id = end + 1;
	}
}
#endif

int tr_backend_check_device(const char *device, struct ut_err *err)
{
	if (device == NULL || device[0] == '\0' || strcmp(device, "cpu") == 0)
		return 0;
	char q[UT_QUOTE_LEN];
	if (strspn(device, "0123456789,") != strlen(device))
		return ut_err_set(err, "--device '%s': give cpu or GPU ids such as 0 or 0,1",
				  ut_quote(device, q, sizeof(q)));
#if defined(TR_HAVE_CUDA)
	return check_gpus(device, err);
#else
	return ut_err_set(err, "--device %s: this build has no CUDA backend; use --device cpu",
			  ut_quote(device, q, sizeof(q)));
#endif
}

int tr_backend_create(const char *device, int threads, struct tr_backend **out, struct ut_err *err)
{
	*out = NULL;
	if (tr_backend_check_device(device, err) != 0)
		return -1;
	if (device == NULL || device[0] == '\0' || strcmp(device, "cpu") == 0)
		return tr_cpu_backend_create(threads, out, err);
#if defined(TR_HAVE_CUDA)
	/*
	 * The first GPU of the list: its backend holds model memory on the
	 * device and runs every op (several GPUs are DDP's, one backend a rank).
	 */
	char q[UT_QUOTE_LEN];
	struct ut_err cause = {{0}};
	if (tr_cuda_backend_create(atoi(device), out, &cause) != 0)
		return ut_err_set(err, "--device %s: %s", ut_quote(device, q, sizeof(q)),
				  cause.msg);
	return 0;
#else
	return -1; /* not reached: tr_backend_check_device refused the ids */
#endif
}
