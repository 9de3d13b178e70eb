#!/usr/bin/env bash
# serve.sh - issue 17: `yolo-evolve serve`, the live dashboard.
#  - the API against a database made by a real evolution (fixture trainer,
#    with failed and pruned candidates): every candidate, status, fitness,
#    result and hyp column as sqlite3 reads them; downloads; importance;
#  - security: 4xx for traversal, other methods, bodies, long or malformed
#    requests, bad numbers and foreign Host headers; database strings
#    escaped in JSON and in the page; the database bytes unchanged;
#  - a real browser (headless Chromium): each view's DOM holds the right
#    number of points, lines and bars, no JavaScript error; screenshots of
#    every view kept in $YE_BUILD_ROOT/serve-screenshots;
#  - live: an evolution running while the server polls it, running
#    candidates with growing curves, then a wrk load test (bounded: 2 x 3 s)
#    of >= 1000 requests/s with no error while the evolver writes, and the
#    evolution still ends well.
source "$(dirname "$0")/lib.sh"

for tool in chromium wrk python3 curl; do
	if ! command -v "$tool" >/dev/null; then
		echo "SKIP: $tool is not installed (scripts/install-deps.sh)"
		exit 77
	fi
done
export no_proxy='*' NO_PROXY='*'
SHOTS=${YE_BUILD_ROOT:-$WORK}/serve-screenshots
mkdir -p "$SHOTS"

# start_server LOG ARGS...: start `serve --port 0` in the background, set URL and SERVER_PID.
start_server() {
	local log=$1 port= i
	shift
	: >"$log"
	"$YE" serve --port 0 "$@" >"$log" 2>&1 &
	SERVER_PID=$!
	BG_PIDS+=("$SERVER_PID")
	for ((i = 0; i < 200; i++)); do
		port=$(sed -n 's|.*http://[^ ]*:\([0-9][0-9]*\)/.*|\1|p' "$log")
		[[ -n "$port" ]] && break
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.05
	done
	URL=http://127.0.0.1:$port
	[[ -n "$port" ]]
}

# code [CURL ARGS...]: the HTTP status of a request (000 if none came back).
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" || true; }

# json FILE PYTHON-EXPRESSION: evaluate with the parsed file as `d`.
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

# dom VIEW-HASH OUT: the page's DOM after its scripts ran (Chromium, virtual time).
dom() {
	timeout 60 chromium --headless --no-sandbox --disable-gpu --no-proxy-server --user-data-dir="$WORK/chrome" \
		--virtual-time-budget=6000 --dump-dom "$URL/#$1" >"$2" 2>"$WORK/chrome.log" || true
}
shot() {
	timeout 60 chromium --headless --no-sandbox --disable-gpu --no-proxy-server --user-data-dir="$WORK/chrome" \
		--hide-scrollbars --window-size=1280,900 --virtual-time-budget=6000 --screenshot="$SHOTS/$2.png" \
		"$URL/#$1" >/dev/null 2>&1 || true
}
# count PATTERN FILE: occurrences of an extended regex.
count() { grep -oE "$1" "$2" | wc -l | tr -d ' '; }
# attr NAME FILE [CONTEXT]: value of data-NAME on the first element whose tag text matches CONTEXT.
attr() { grep -oE "${3:-}[^>]*data-$1=\"[0-9]+\"" "$2" | head -1 | sed -E "s/.*data-$1=\"([0-9]+)\"/\1/"; }

section "a finished evolution with done, pruned and failed candidates"
FIXTURE_MODE=fail FIXTURE_FAIL_IF='lr0>0.0108' evolve runs hist --generations 30 --epochs 6 --seed 7 \
	--prune median --prune-warmup 2
check_eq "evolution exit status" 0 "$RC"
DB=runs/hist/evolve.db
n_all=$(sql "$DB" "SELECT count(*) FROM generations")
n_done=$(sql "$DB" "SELECT count(*) FROM generations WHERE status='done'")
n_failed=$(sql "$DB" "SELECT count(*) FROM generations WHERE status='failed'")
n_pruned=$(sql "$DB" "SELECT count(*) FROM generations WHERE status='pruned'")
note "$n_all candidates: $n_done done, $n_failed failed, $n_pruned pruned"
check "some failed and some done" test "$n_failed" -gt 0 -a "$n_done" -gt 2
# a trainer log tail that tries to become markup and break out of JSON
EVIL='<img src=x onerror="document.title=1"></pre><script>window.pwned=1</script> "q" \ end'
first_failed=$(sql "$DB" "SELECT min(generation) FROM generations WHERE status='failed'")
sqlite3 "$DB" "UPDATE generations SET error = '$EVIL' || char(10) || 'second line' || char(1) WHERE generation = $first_failed"
sum_before=$(sha256sum "$DB" | cut -d' ' -f1)

start_server "$WORK/serve1.log" --db "$DB"
check "serve prints its URL and listens on 127.0.0.1" test -n "${URL##*:}"

section "API"
curl -s "$URL/api/generations" >gens.json
curl -s "$URL/api/overview" >overview.json
curl -s "$URL/api/importance" >importance.json
check_eq "/api/generations: every candidate" "$n_all" "$(json gens.json 'len(d["generations"])')"
check_eq "each with generation, status, fitness, 7 results, 29 hyp columns" "$n_all" \
	"$(json gens.json 'sum(all(k in g for k in ["generation","status","fitness"]+d["result_keys"]+d["hyp_keys"]) and len(d["hyp_keys"])==29 and len(d["result_keys"])==7 for g in d["generations"])')"
api_rows=$(json gens.json '"\n".join("%d,%s,%s,%s" % (g["generation"], g["status"], "%.6g" % g["fitness"] if g["fitness"] is not None else "", "%.6g" % g["lr0"]) for g in d["generations"])')
db_rows=$(sqlite3 -separator , "$DB" "SELECT generation, status, CASE WHEN fitness IS NULL OR status IN ('failed') THEN '' ELSE printf('%.6g', fitness) END, printf('%.6g', lr0) FROM generations ORDER BY generation")
check_eq "generation, status, fitness and lr0 as sqlite3 reads them" "$db_rows" "$api_rows"
check_eq "the log tail with markup and quotes survives JSON escaping exactly" \
	"$(sql "$DB" "SELECT hex(error) FROM generations WHERE generation = $first_failed")" \
	"$(json gens.json "[g for g in d['generations'] if g['generation'] == $first_failed][0]['error'].encode().hex().upper()")"
check "no raw control character or unescaped tag-breaking quote in the JSON" bash -c "! grep -qP '[\x00-\x1f]' gens.json"
for s in done failed pruned; do
	check_eq "overview counts $s" "$(sql "$DB" "SELECT count(*) FROM generations WHERE status='$s'")" "$(json overview.json "d['counts']['$s']")"
done
best=$(sql "$DB" "SELECT generation FROM generations WHERE status='done' ORDER BY fitness DESC, generation LIMIT 1")
check_eq "overview: the best candidate" "$best" "$(json overview.json 'd["best"]["generation"]')"
check_eq "overview: trainer epochs spent" "$(sql "$DB" "SELECT sum(epochs_done) FROM generations")" \
	"$(json overview.json 'int(d["trainer_epochs"])')"
check_eq "overview: the evolver is gone" gone "$(json overview.json 'd["evolver"]["state"]')"
check "importance: keys with values in [0, 1] and a one-line explanation" \
	test "$(json importance.json 'len(d["importance"]) > 3 and all(0 <= k["importance"] <= 1 for k in d["importance"]) and len(d["explain"]) > 40')" = True
"$YE" export --db "$DB" --best - >best_export.yaml 2>/dev/null
curl -s "$URL/api/best.yaml" >best_api.yaml
check "best.yaml is what export --best writes" cmp -s best_export.yaml best_api.yaml
curl -s "$URL/api/hyp.yaml?gen=$best" >hyp_best.yaml
check_eq "hyp.yaml of a candidate holds its lr0" "$(sql "$DB" "SELECT lr0 FROM generations WHERE generation=$best")" \
	"$(yaml_value hyp_best.yaml lr0)"
check "hyp.yaml is a download" bash -c "curl -sD - -o /dev/null '$URL/api/hyp.yaml?gen=0' | grep -q 'attachment; filename=\"hyp_gen0.yaml\"'"
epochs_api=$(curl -s "$URL/api/epochs?gen=$best" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["rows"]))')
check_eq "epochs of a candidate as the epochs table has them" "$(sql "$DB" "SELECT count(*) FROM epochs WHERE generation=$best")" "$epochs_api"

section "security: 4xx for what is not a plain GET of a known thing"
check_eq "path traversal" 404 "$(code --path-as-is "$URL/../../../../etc/passwd")"
check_eq "encoded traversal" 404 "$(code --path-as-is "$URL/%2e%2e/%2e%2e/etc/passwd")"
check_eq "traversal under /api" 404 "$(code --path-as-is "$URL/api/../../evolve.db")"
check_eq "no file serving" 404 "$(code "$URL/evolve.db")"
check_eq "POST" 405 "$(code -X POST -d x=1 "$URL/api/generations")"
check_eq "DELETE" 405 "$(code -X DELETE "$URL/")"
check_eq "GET with a body" 413 "$(code -X GET --data-binary @gens.json "$URL/api/runs")"
check_eq "path over 512 bytes" 414 "$(code "$URL/$(printf 'a%.0s' {1..600})")"
huge=$(code -H "X-Big: $(printf 'b%.0s' {1..40000})" "$URL/api/runs")
check "headers over the memory limit: 4xx (got $huge)" test "${huge:0:1}" = 4
check_eq "gen not a number" 400 "$(code "$URL/api/hyp.yaml?gen=1%3BDROP%20TABLE%20generations")"
check_eq "run out of range" 400 "$(code "$URL/api/overview?run=7")"
check_eq "no such generation" 404 "$(code "$URL/api/hyp.yaml?gen=100000")"
check_eq "a foreign Host header (DNS rebinding)" 403 "$(code -H 'Host: attacker.example' "$URL/api/runs")"
exec 3<>"/dev/tcp/127.0.0.1/${URL##*:}"
printf 'GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nthis is no header\r\n\r\n' >&3
malformed=$(timeout 5 head -1 <&3 | tr -d '\r' || true)
exec 3<&-
check "a malformed header line: 400 (got '$malformed')" test "${malformed#HTTP/1.1 }" != "$malformed" -a "${malformed:9:1}" = 4
check_eq "the server still answers" 200 "$(code "$URL/api/runs")"

curl -s "$URL/" "$URL/app.js" "$URL/app.css" >assets.txt
check "the page needs no network (no URL but the SVG namespace)" \
	bash -c "! grep -oE '(https?:)?//[a-z0-9.-]+\.[a-z]+' assets.txt | grep -v '//www.w3.org' | grep -q ."

section "the page in headless Chromium"
views=(overview history scatter parcoords curves importance table compare)
for view in "${views[@]}"; do
	dom "$view" "dom_$view.html"
	shot "$view" "$view"
	check_eq "$view: no JavaScript error" 'data-count="0"' "$(grep -oE 'id="js-errors" data-count="[0-9]+"' "dom_$view.html" | grep -oE 'data-count="[0-9]+"')"
	check "$view: rendered with data" grep -q 'data-ready="1"' "dom_$view.html"
	check "$view: screenshot kept" test -s "$SHOTS/$view.png"
done
finished=$((n_done + n_failed + n_pruned))
check_eq "fitness chart: one point per finished candidate" "$finished" "$(attr points dom_history.html 'class="chart fitness-chart"')"
check_eq "fitness chart: done points" "$n_done" "$(count 'class="pt pt-done"' dom_history.html)"
check_eq "fitness chart: failed points" "$n_failed" "$(count 'class="pt pt-failed"' dom_history.html)"
check_eq "fitness chart: pruned points" "$n_pruned" "$(count 'class="pt pt-pruned"' dom_history.html)"
check_eq "fitness chart: a best-so-far line" 1 "$(count 'class="best-line"' dom_history.html)"
n_keys=$(json gens.json 'len(d["mutable_keys"])')
check_eq "scatter: one panel per mutated key" "$n_keys" "$(count 'class="chart hyp-scatter"' dom_scatter.html)"
check_eq "scatter: every done candidate in every panel" "$((n_keys * n_done))" "$(count 'class="pt pt-(done|best)"' dom_scatter.html)"
check_eq "scatter: the best ringed in every panel" "$n_keys" "$(count 'class="pt pt-best"' dom_scatter.html)"
check_eq "parallel coordinates: one line per done candidate" "$n_done" "$(count 'class="pc-line ' dom_parcoords.html)"
check "the evil log tail is text, not markup" grep -qF '&lt;img src=x onerror=' dom_overview.html
check_eq "no element injected from the database" 1 "$(count '<script' dom_overview.html)"
check "and no <img> element" bash -c "! grep -q '<img' dom_overview.html"
check "overview names the best candidate" grep -q "Best so far: generation $best," dom_overview.html
check_eq "table: one row per candidate" "$n_all" "$(count '<tr class="row-' dom_table.html)"
n_small=$(sql "$DB" "SELECT count(*) FROM generations WHERE lr0 < 0.0105")
dom "table&sort=fitness:desc&filter=lr0%3C0.0105" dom_table_sorted.html
check_eq "table filtered by lr0<0.0105: rows" "$n_small" "$(count '<tr class="row-' dom_table_sorted.html)"
top=$(sql "$DB" "SELECT generation FROM generations WHERE lr0 < 0.0105 AND fitness IS NOT NULL AND status != 'failed' ORDER BY fitness DESC, generation LIMIT 1")
check_eq "table sorted by fitness, descending: the first row" "$top" \
	"$(grep -oE '<tr class="row-[a-z]+" data-generation="[0-9]+"' dom_table_sorted.html | head -1 | grep -oE '[0-9]+"$' | tr -d '"')"
dom "table&status=failed" dom_table_failed.html
check_eq "table with status failed: rows" "$n_failed" "$(count '<tr class="row-failed"' dom_table_failed.html)"
check_eq "importance: one bar per key in the API" "$(json importance.json 'len(d["importance"])')" "$(count 'class="imp-bar"' dom_importance.html)"
# brushing, through the hash parameters the page also writes while dragging
lo=$(sql "$DB" "SELECT lr0 FROM generations WHERE status='done' ORDER BY lr0 LIMIT 1 OFFSET 1")
hi=$(sql "$DB" "SELECT lr0 FROM generations WHERE status='done' ORDER BY lr0 DESC LIMIT 1 OFFSET 1")
in_brush=$(sql "$DB" "SELECT count(*) FROM generations WHERE status='done' AND lr0 BETWEEN $lo AND $hi")
dom "parcoords&brush=lr0:$lo:$hi" dom_brush.html
shot "parcoords&brush=lr0:$lo:$hi" parcoords_brushed
check_eq "brushing lr0 in [$lo, $hi]: lines inside" "$in_brush" "$(count 'class="pc-line active"' dom_brush.html)"
check_eq "brushing: the rest dimmed" "$((n_done - in_brush))" "$(count 'class="pc-line dim"' dom_brush.html)"
two=$(sql "$DB" "SELECT group_concat(generation) FROM (SELECT generation FROM generations WHERE status='done' ORDER BY generation LIMIT 2)")
rows_two=$(sql "$DB" "SELECT count(*) FROM epochs WHERE generation IN ($two)")
dom "curves&gens=$two" dom_curves2.html
shot "curves&gens=$two" curves_two
check_eq "learning curves of generations $two: one point per epoch row" "$rows_two" "$(attr points dom_curves2.html 'class="chart curves-chart"')"
dom "compare&pick=$two" dom_compare2.html
check_eq "compare: two columns of 41 rows" 41 "$(count '<tr( class="differs")?><th>[a-z]' dom_compare2.html)"
check "compare: hyp.yaml links of both" test "$(count 'download="hyp_gen' dom_compare2.html)" -eq 2
kill "$SERVER_PID"
wait_pid_exit 10 "$SERVER_PID" || true
check_eq "SIGTERM stops the server cleanly" 0 "${RC:-x}"
check_eq "the database bytes are unchanged" "$sum_before" "$(sha256sum "$DB" | cut -d' ' -f1)"

section "live: serving a folder of runs while an evolution writes one"
FIXTURE_EPOCH_MS=120 "$YE" --project runs --name live --data none --trainer "$TRAINER" --quiet \
	--generations 14 --epochs 8 --parallel 2 --seed 3 >live.log 2>&1 &
EVOLVER=$!
BG_PIDS+=("$EVOLVER")
check "the evolver started a candidate" wait_sql 30 runs/live/evolve.db "SELECT count(*) FROM epochs"
# a run whose folder name is markup: shown as text, never as an element
mkdir -p 'runs/<b onmouseover=alert(1)>x'
cp "$DB" 'runs/<b onmouseover=alert(1)>x/evolve.db'
start_server "$WORK/serve2.log" --db runs --refresh-ms 200
check_eq "a folder of runs: all three served" '["<b onmouseover=alert(1)>x", "hist", "live"]' "$(curl -s "$URL/api/runs" | python3 -c 'import json,sys; print(json.dumps([r["name"] for r in json.load(sys.stdin)["runs"]]))')"
dom "overview&run=0" dom_evil_run.html
check "a run name with markup is text in the page" grep -qF '&lt;b onmouseover=alert(1)&gt;x' dom_evil_run.html
check "and no element" bash -c "! grep -q '<b ' dom_evil_run.html"
curl -s "$URL/api/overview?run=2" >live1.json
sleep 1
for try in 1 2 3 4 5; do # not between two candidates or before a first epoch
	curl -s "$URL/api/overview?run=2" >live2.json
	[[ "$(json live2.json 'sum(len(r["curve"]) for r in d["running"]) > 0')" == True ]] && break
	sleep 0.3
done
check_eq "the evolver is seen running" running "$(json live1.json 'd["evolver"]["state"]')"
check "running candidates with live curves, one point per epoch row (try $try)" test \
	"$(json live2.json 'len(d["running"]) > 0 and sum(len(r["curve"]) for r in d["running"]) > 0 and all(len(r["curve"]) in (r["epochs_done"], r["epochs_done"] + 1) for r in d["running"])')" = True
check "elapsed time of the running candidates" test "$(json live2.json 'all(r["elapsed"] is not None and r["elapsed"] >= 0 for r in d["running"])')" = True
check "more candidates a second later" test "$(json live2.json 'd["candidates"]')" -ge "$(json live1.json 'd["candidates"]')"
check "an ETA while it runs" test "$(json live2.json 'd["eta_seconds"] is not None or d["counts"]["done"] == 0')" = True
# a candidate may be between epochs 0 and 1 (no point yet) at the moment the page loads: a few tries
for try in 1 2 3 4 5; do
	dom "overview&run=2" dom_live.html
	grep -q 'class="pt pt-running"' dom_live.html && break
done
shot "overview&run=2" overview_live
check "the page shows running candidates with curve points (try $try)" grep -q 'class="pt pt-running"' dom_live.html
check_eq "live page: no JavaScript error" 1 "$(count 'id="js-errors" data-count="0"' dom_live.html)"
check "the page updates itself without a reload (polled $(attr polls dom_live.html) times)" test "$(attr polls dom_live.html)" -ge 2

for path in "api/generations?run=2" "api/overview?run=2"; do
	wrk -t2 -c16 -d3s --timeout 2s "$URL/$path" >wrk.out 2>&1 || true
	rate=$(awk '/^Requests\/sec:/ { printf "%d", $2 }' wrk.out)
	note "wrk /$path: ${rate:-?} requests/s"
	check "load on /$path: >= 1000 requests/s while the evolver writes" test "${rate:-0}" -ge 1000
	check "load on /$path: no error" bash -c "! grep -qE 'Non-2xx|Socket errors' wrk.out"
done
check "the evolution ends well under the load" wait_pid_exit 120 "$EVOLVER"
check_eq "evolution exit status" 0 "${RC:-x}"
check_eq "all 14 done" 14 "$(sql runs/live/evolve.db "SELECT count(*) FROM generations WHERE status='done'")"
check_eq "integrity" ok "$(sql runs/live/evolve.db "PRAGMA integrity_check")"
sleep 0.3
check_eq "the server sees it finished" gone "$(curl -s "$URL/api/overview?run=2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["evolver"]["state"])')"

section "command line"
run_ye serve_nodb.log serve
check_eq "serve without --db: exit 1" 1 "$RC"
run_ye serve_missing.log serve --db "$WORK/nothing.db"
check_eq "a missing database: exit 2" 2 "$RC"
check "naming it" grep -q nothing.db serve_missing.log
run_ye serve_port.log serve --db "$DB" --port 70000
check_eq "a bad port: exit 2" 2 "$RC"
run_ye serve_help.log serve --help
check "--help shows ssh port forwarding" grep -q 'ssh -L 8080:127.0.0.1:8080' serve_help.log

ye_finish
