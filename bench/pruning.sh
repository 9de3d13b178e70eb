#!/usr/bin/env bash
# What median pruning buys and risks, on fixture-trainer evolutions whose
# learning curves cross (FIXTURE_CROSSING: a large lr0 learns fast early,
# the final result does not care). For each seed: an evolution without
# pruning and one with --prune median --prune-warmup W; prints trainer
# epochs and seconds saved, the best fitness of each, and whether the rule
# would have pruned the best generation of the unpruned run.
#   bench/pruning.sh [BUILD_DIR] [GENERATIONS] [SEEDS]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
generations=${2:-60}
seeds=${3:-5}
epochs=10 warmup=3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export FIXTURE_CROSSING=1 FIXTURE_EPOCH_MS=5
trainer="$build/tests/fixture_trainer --hyp {hyp} --epochs {epochs} --save-dir {save_dir}"
run() { # name seed [options]
	local name=$1 seed=$2
	shift 2
	"$build/evolve/yolo-evolve" --generations "$generations" --epochs "$epochs" --seed "$seed" \
		--data none --quiet --report-every 0 --project "$work" --name "$name" --trainer "$trainer" "$@" >/dev/null
}
q() { sqlite3 -batch "$work/$1/evolve.db" "$2"; }

# would the median rule (reference: generations before it, P = 1) prune generation $2 of run $1?
would_prune() {
	q "$1" "WITH cand AS (SELECT epoch, 0.1 * map50 + 0.9 * map AS f FROM epochs WHERE generation = $2),
	            refs AS (SELECT e.epoch, 0.1 * e.map50 + 0.9 * e.map AS f,
	                            row_number() OVER (PARTITION BY e.epoch ORDER BY 0.1 * e.map50 + 0.9 * e.map) AS r,
	                            count(*) OVER (PARTITION BY e.epoch) AS n
	                     FROM epochs e JOIN generations g USING (generation)
	                     WHERE e.generation < $2 AND g.status IN ('done', 'pruned')),
	            med AS (SELECT epoch, avg(f) AS m FROM refs
	                    WHERE n >= 3 AND r IN ((n + 1) / 2, (n + 2) / 2) GROUP BY epoch)
	       SELECT count(*) FROM cand JOIN med USING (epoch) WHERE cand.epoch >= $warmup AND cand.f < med.m"
}

printf '%5s %12s %12s %10s %10s %12s %12s %18s\n' seed epochs_full epochs_pruned saved secs_full secs_pruned best_full/pruned best_would_be_pruned
total_full=0 total_pruned=0 hits=0
for seed in $(seq 1 "$seeds"); do
	run "full$seed" "$seed"
	run "pruned$seed" "$seed" --prune median --prune-warmup "$warmup"
	ef=$(q "full$seed" "SELECT sum(epochs_done) FROM generations")
	ep=$(q "pruned$seed" "SELECT sum(epochs_done) FROM generations")
	sf=$(q "full$seed" "SELECT round(sum(seconds), 1) FROM generations")
	sp=$(q "pruned$seed" "SELECT round(sum(seconds), 1) FROM generations")
	bf=$(q "full$seed" "SELECT round(max(fitness), 4) FROM generations WHERE status = 'done'")
	bp=$(q "pruned$seed" "SELECT round(max(fitness), 4) FROM generations WHERE status = 'done'")
	best=$(q "full$seed" "SELECT generation FROM best LIMIT 1")
	wp=$(would_prune "full$seed" "$best")
	[ "$wp" -gt 0 ] && hits=$((hits + 1))
	total_full=$((total_full + ef))
	total_pruned=$((total_pruned + ep))
	printf '%5d %12d %12d %9.1f%% %10s %12s %18s %18s\n' "$seed" "$ef" "$ep" \
		"$(echo "100 * (1 - $ep / $ef)" | bc -l)" "$sf" "$sp" "$bf/$bp" "$([ "$wp" -gt 0 ] && echo yes || echo no)"
done
printf 'all seeds: trainer epochs saved %.1f%%; the best unpruned generation would have been pruned in %d of %d runs\n' \
	"$(echo "100 * (1 - $total_pruned / $total_full)" | bc -l)" "$hits" "$seeds"
