/*
 * assets.h - the dashboard's files (serve/assets), embedded in the binary
 * by embed.c at build time. Internal to serve/.
 */
#ifndef SV_ASSETS_H
#define SV_ASSETS_H

#include <stddef.h>

struct sv_asset {
	const char *path; /* "/index.html" */
	const char *type; /* Content-Type */
	const unsigned char *data;
	size_t len;
};

extern const struct sv_asset sv_assets[];
extern const size_t sv_asset_count;

#endif
