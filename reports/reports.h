/*
 * reports.h - what the evolution looks like to a person: the terminal
 * summary at the end of a run and `yolo-evolve status`.
 */
#ifndef RP_REPORTS_H
#define RP_REPORTS_H

#include <stdio.h>

#include "store.h"

/* Counts, the top 5 generations and total trainer time. 0 ok, -1 error. */
int rp_print_summary(struct st_db *db, FILE *out);
/* The summary plus running candidates and the latest failures. */
int rp_print_status(struct st_db *db, FILE *out);

#endif
