/*
 * fuzz_data_yaml.c - libFuzzer target for tr_data_yaml_parse.
 *
 * Any input must give 0 or -1 with a one-line message, never a crash or a
 * leak; an accepted input must have train, val and nc >= 1 named classes.
 * Seeds: corpus/data_yaml.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tr_data_yaml yaml;
	struct ut_err err;
	if (tr_data_yaml_parse((const char *)data, size, "/fuzz/data.yaml", &yaml, &err) != 0) {
		if (strchr(err.msg, '\n') != NULL && strchr(err.msg, '\n')[1] != '\0')
			abort();
		return 0;
	}
	if (yaml.n_train < 1 || yaml.n_val < 1 || yaml.nc < 1 || yaml.root == NULL)
		abort();
	for (int i = 0; i < yaml.nc; i++)
		if (yaml.names[i] == NULL)
			abort();
	tr_data_yaml_free(&yaml);
	return 0;
}
