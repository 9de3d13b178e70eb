/*
 * ga.c - YOLOv5's population genetic algorithm: schedules, seeds, the
 * initial population, tournament selection, crossover and mutation (ga.h).
 */
#include "ga.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void ev_ga_defaults(struct ev_ga_params *p)
{
	p->pop_size = 50;
	p->populations = 0;
	p->mutation_min = 0.01;
	p->mutation_max = 0.5;
	p->crossover_min = 0.5;
	p->crossover_max = 1.0;
	p->step = 0.1;
	p->elite_min = 2;
	p->elite_max = 5;
	p->tournament_min = 2;
	p->tournament_max = 10;
}

static int rate_range_ok(double lo, double hi)
{
	return lo >= 0 && hi <= 1 && lo <= hi;
}

int ev_ga_check(const struct ev_ga_params *p, const struct meta_table *table, struct ut_err *err)
{
	if (p->pop_size < 2 || p->pop_size > EV_GA_POP_MAX)
		return ut_err_set(err, "GA population size %ld: must be 2 .. %ld", p->pop_size,
				  EV_GA_POP_MAX);
	if (p->populations < 1)
		return ut_err_set(err, "GA populations %ld: must be >= 1", p->populations);
	if (!rate_range_ok(p->mutation_min, p->mutation_max))
		return ut_err_set(err, "GA mutation rate %g .. %g: need 0 <= min <= max <= 1",
				  p->mutation_min, p->mutation_max);
	if (!rate_range_ok(p->crossover_min, p->crossover_max))
		return ut_err_set(err, "GA crossover rate %g .. %g: need 0 <= min <= max <= 1",
				  p->crossover_min, p->crossover_max);
	if (!isfinite(p->step) || p->step < 0)
		return ut_err_set(err, "GA mutation step %g: must be finite and >= 0", p->step);
	if (p->elite_min < 0 || p->elite_min > p->elite_max || p->elite_max > p->pop_size)
		return ut_err_set(err,
				  "GA elite size %ld .. %ld: need 0 <= min <= max <= population "
				  "size %ld",
				  p->elite_min, p->elite_max, p->pop_size);
	long smallest = p->tournament_min > 2 ? p->tournament_min : 2;
	if (smallest > p->pop_size || p->tournament_min > p->tournament_max)
		return ut_err_set(
		    err,
		    "GA tournament size %ld .. %ld: need min <= max and max(2, min) <= "
		    "population size %ld",
		    p->tournament_min, p->tournament_max, p->pop_size);
	int genes[META_COUNT];
	if (ev_ga_genes(table, genes) == 0)
		return ut_err_set(err, "no hyperparameter can evolve: every gain is 0");
	return 0;
}

/* k / populations as YOLOv5 computes it (true division). */
static double progress(const struct ev_ga_params *p, long k)
{
	return (double)k / (double)p->populations;
}

long ev_ga_elite_size(const struct ev_ga_params *p, long k)
{
	return p->elite_min + (long)((double)(p->elite_max - p->elite_min) * progress(p, k));
}

long ev_ga_tournament_size(const struct ev_ga_params *p, long k)
{
	long floor_size = p->tournament_min > 2 ? p->tournament_min : 2;
	long cap = p->tournament_max < p->pop_size ? p->tournament_max : p->pop_size;
	double shrinking = (double)cap - (double)k / ((double)p->populations / 10.0);
	long size = (long)shrinking; /* truncation toward zero, as Python's int() */
	return size > floor_size ? size : floor_size;
}

double ev_ga_crossover_rate(const struct ev_ga_params *p, long k)
{
	return fmax(p->crossover_min, fmin(p->crossover_max, p->crossover_max - progress(p, k)));
}

double ev_ga_mutation_rate(const struct ev_ga_params *p, long k)
{
	return fmax(p->mutation_min, fmin(p->mutation_max, p->mutation_max - progress(p, k)));
}

int ev_ga_genes(const struct meta_table *table, int genes[META_COUNT])
{
	int n = 0;
	for (int k = 0; k < META_COUNT; k++)
		if (table->k[k].gain > 0)
			genes[n++] = k;
	return n;
}

static int has_yaml_suffix(const char *name)
{
	size_t len = strlen(name);
	return len >= 5 && strcmp(name + len - 5, ".yaml") == 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* The *.yaml names of dir, sorted, malloc'ed. */
static int list_yaml(const char *dir, char ***out, size_t *n, struct ut_err *err)
{
	DIR *folder = opendir(dir);
	if (folder == NULL)
		return ut_err_set(err, "%s: %s", dir, strerror(errno));
	char **names = NULL;
	size_t count = 0, cap = 0;
	int rc = 0;
	for (;;) {
		errno = 0;
		struct dirent *entry = readdir(folder);
		if (entry == NULL) {
			if (errno != 0)
				rc = ut_err_set(err, "%s: %s", dir, strerror(errno));
			break;
		}
		if (!has_yaml_suffix(entry->d_name))
			continue;
		if (count == cap) {
			size_t grown = cap ? 2 * cap : 16;
			char **bigger = realloc(names, grown * sizeof(*names));
			if (bigger == NULL) {
				rc = ut_err_set(err, "%s: out of memory", dir);
				break;
			}
			names = bigger;
			cap = grown;
		}
		names[count] = strdup(entry->d_name);
		if (names[count] == NULL) {
			rc = ut_err_set(err, "%s: out of memory", dir);
			break;
		}
		count++;
	}
	closedir(folder);
	if (rc != 0) {
		free_names(names, count);
		return rc;
	}
	if (count > 0)
		qsort(names, count, sizeof(*names), by_name);
	*out = names;
	*n = count;
	return 0;
}

int ev_ga_load_seeds(const char *dir, const struct meta_table *table, struct meta_hyp **out,
		     size_t *n, struct ut_err *err)
{
	*out = NULL;
	*n = 0;
	char **names = NULL;
	size_t count = 0;
	if (list_yaml(dir, &names, &count, err) != 0)
		return -1;
	if (count == 0) {
		free(names);
		return 0;
	}
	struct meta_hyp *hyps = malloc(count * sizeof(*hyps));
	if (hyps == NULL) {
		free_names(names, count);
		return ut_err_set(err, "%s: out of memory", dir);
	}
	int rc = 0;
	for (size_t i = 0; i < count && rc == 0; i++) {
		struct ut_buf path = {0};
		if (ut_buf_printf(&path, "%s/%s", dir, names[i]) != 0)
			rc = ut_err_set(err, "%s: out of memory", dir);
		else
			rc = meta_hyp_read(path.data, table, &hyps[i], err);
		ut_buf_free(&path);
	}
	free_names(names, count);
	if (rc != 0) {
		free(hyps);
		return -1;
	}
	*out = hyps;
	*n = count;
	return 0;
}

/* Uniform in [lower, upper], as Python's random.uniform (clamped for rounding). */
static double uniform_between(struct ut_pcg *rng, double lower, double upper)
{
	double value = lower + (upper - lower) * ut_pcg_uniform(rng);
	return fmin(fmax(value, lower), upper);
}

int ev_ga_initial(const struct ev_ga_params *p, const struct meta_table *table,
		  const struct meta_hyp *base, const struct meta_hyp *seeds, size_t n_seeds,
		  uint64_t seed, struct meta_hyp *out, struct ut_err *err)
{
	if (ev_ga_check(p, table, err) != 0)
		return -1;
	if (n_seeds > (size_t)p->pop_size)
		return ut_err_set(err, "%zu seed hyps do not fit a GA population of %ld", n_seeds,
				  p->pop_size);
	int genes[META_COUNT];
	int ngenes = ev_ga_genes(table, genes);
	for (size_t i = 0; i < n_seeds; i++) {
		struct meta_hyp *individual = &out[i];
		*individual = *base;
		for (int g = 0; g < ngenes; g++)
			individual->v[genes[g]] = seeds[n_seeds - 1 - i].v[genes[g]];
	}
	struct ut_pcg rng;
	ut_pcg_stream(&rng, seed, 0, UT_PCG_GA);
	for (size_t i = n_seeds; i < (size_t)p->pop_size; i++) {
		out[i] = *base;
		for (int g = 0; g < ngenes; g++) {
			const struct meta_bound *bound = &table->k[genes[g]];
			out[i].v[genes[g]] = uniform_between(&rng, bound->lower, bound->upper);
		}
	}
	return 0;
}

/* Strictly better fitness; NaN (failed) is worse than any number. */
static int fitter(double a, double b)
{
	if (isnan(a))
		return 0;
	return isnan(b) || a > b;
}

/* One tournament over `size` distinct indices; order[] is scratch of pop_size. */
static long tournament(struct ut_pcg *rng, const double *fitness, long pop_size, long size,
		       long *order)
{
	for (long i = 0; i < pop_size; i++)
		order[i] = i;
	long winner = -1;
	for (long i = 0; i < size; i++) {
		/* partial Fisher-Yates: order[i] is the i-th contestant drawn */
		long j = i + (long)ut_pcg_below(rng, (uint32_t)(pop_size - i));
		long contestant = order[j];
		order[j] = order[i];
		order[i] = contestant;
		if (winner < 0 || fitter(fitness[contestant], fitness[winner]))
			winner = contestant;
	}
	return winner;
}

/* Mark the `size` best individuals in is_elite[] (ties: lower index). */
static void mark_elite(const double *fitness, long pop_size, long size, unsigned char *is_elite)
{
	memset(is_elite, 0, (size_t)pop_size);
	for (long e = 0; e < size; e++) {
		long best = -1;
		for (long i = 0; i < pop_size; i++)
			if (!is_elite[i] && (best < 0 || fitter(fitness[i], fitness[best])))
				best = i;
		if (best < 0)
			break; /* size > pop_size: ev_ga_check rules it out */
		is_elite[best] = 1;
	}
}

int ev_ga_select(const struct ev_ga_params *p, long k, const double *fitness, struct ut_pcg *rng,
		 long *selected, struct ut_err *err)
{
	long pop_size = p->pop_size;
	long elite = ev_ga_elite_size(p, k);
	long size = ev_ga_tournament_size(p, k);
	long *order = malloc((size_t)pop_size * sizeof(*order));
	unsigned char *is_elite = malloc((size_t)pop_size);
	if (order == NULL || is_elite == NULL) {
		free(order);
		free(is_elite);
		return ut_err_set(err, "GA selection: out of memory");
	}
	long n = 0;
	while (n < pop_size - elite)
		selected[n++] = tournament(rng, fitness, pop_size, size, order);
	/*
	 * Exactly `elite` individuals. YOLOv5 keeps every index whose fitness
	 * is among the `elite` best values, more than `elite` on ties; its
	 * parent draws never reach past pop_size entries anyway.
	 */
	mark_elite(fitness, pop_size, elite, is_elite);
	for (long i = 0; i < pop_size; i++)
		if (is_elite[i])
			selected[n++] = i;
	free(order);
	free(is_elite);
	return 0;
}

/* One child of the selected list: parents, crossover, mutation. */
static void breed_child(const struct ev_ga_params *p, const struct meta_table *table,
			const int *genes, int ngenes, double crossover_rate, double mutation_rate,
			const struct meta_hyp *pop, const long *selected, struct ut_pcg *rng,
			struct meta_hyp *child)
{
	uint32_t count = (uint32_t)p->pop_size;
	const struct meta_hyp *parent1 = &pop[selected[ut_pcg_below(rng, count)]];
	const struct meta_hyp *parent2 = &pop[selected[ut_pcg_below(rng, count)]];
	*child = *parent1;
	/* a single gene has no crossover point; the draw is made all the same */
	if (ut_pcg_uniform(rng) < crossover_rate && ngenes >= 2) {
		int point = 1 + (int)ut_pcg_below(rng, (uint32_t)(ngenes - 1));
		for (int g = point; g < ngenes; g++)
			child->v[genes[g]] = parent2->v[genes[g]];
	}
	for (int g = 0; g < ngenes; g++) {
		if (ut_pcg_uniform(rng) < mutation_rate) {
			const struct meta_bound *bound = &table->k[genes[g]];
			double moved = child->v[genes[g]] + uniform_between(rng, -p->step, p->step);
			child->v[genes[g]] = fmin(fmax(moved, bound->lower), bound->upper);
		}
	}
}

int ev_ga_next(const struct ev_ga_params *p, const struct meta_table *table, long k,
	       const struct meta_hyp *pop, const double *fitness, uint64_t seed,
	       struct meta_hyp *next, struct ut_err *err)
{
	if (ev_ga_check(p, table, err) != 0)
		return -1;
	if (k < 0 || k >= p->populations)
		return ut_err_set(err, "GA population %ld: must be 0 .. %ld", k,
				  p->populations - 1);
	long *selected = malloc((size_t)p->pop_size * sizeof(*selected));
	if (selected == NULL)
		return ut_err_set(err, "GA breeding: out of memory");
	struct ut_pcg rng;
	ut_pcg_stream(&rng, seed, k + 1, UT_PCG_GA);
	if (ev_ga_select(p, k, fitness, &rng, selected, err) != 0) {
		free(selected);
		return -1;
	}
	int genes[META_COUNT];
	int ngenes = ev_ga_genes(table, genes);
	double crossover_rate = ev_ga_crossover_rate(p, k);
	double mutation_rate = ev_ga_mutation_rate(p, k);
	for (long i = 0; i < p->pop_size; i++)
		breed_child(p, table, genes, ngenes, crossover_rate, mutation_rate, pop, selected,
			    &rng, &next[i]);
	free(selected);
	return 0;
}
