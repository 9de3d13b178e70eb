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

/*
 * Rows left `running` (or `pending`) by an evolver that is gone run no
 * more: show them as what --resume will find them to be, interrupted, with
 * that reason in error. writer is st_writer_alive's answer (only 0 changes
 * anything). Only this copy changes; the database is never written from
 * here. Returns the number of rows changed.
 */
size_t rp_show_stale_as_interrupted(struct st_generation *gens, size_t n, int writer);

#endif
