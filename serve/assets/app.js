/*
 * app.js - the yolo-evolve dashboard. Plain browser JavaScript, no library:
 * every chart is hand-written SVG, so the page works offline and the DOM
 * holds one element per point (the browser test counts them).
 *
 * Safety: text from the database only ever enters the page through
 * textContent or attribute values (never innerHTML).
 *
 * Views (the URL hash picks one): overview, history, scatter, parcoords,
 * curves, importance, table, compare. Extra hash parameters, for links and
 * tests: run=N, gens=3,5 (candidates of the curves), pick=3,5 (compared),
 * brush=KEY:LO:HI (parallel coordinates, repeatable), sort=KEY:asc|desc,
 * filter=TEXT and status=S (the candidate table).
 */
'use strict';

const errorBox = document.getElementById('js-errors');
function recordError(text) {
	errorBox.dataset.count = String(Number(errorBox.dataset.count) + 1);
	errorBox.textContent += text + '\n';
}
window.addEventListener('error', (e) => recordError('error: ' + e.message + ' (' + e.filename + ':' + e.lineno + ')'));
window.addEventListener('unhandledrejection', (e) => recordError('unhandled rejection: ' + (e.reason && e.reason.message ? e.reason.message : String(e.reason))));

const VIEWS = [
	['overview', 'Overview'], ['history', 'Fitness'], ['scatter', 'Per-hyp scatter'],
	['parcoords', 'Parallel coordinates'], ['curves', 'Learning curves'], ['importance', 'Importance'],
	['table', 'Candidates'], ['compare', 'Compare'],
];
const POLL_MS = 2000;
const STATUS_COLOURS = { done: '#1f77b4', pruned: '#999999', failed: '#d62728', running: '#2ca02c', interrupted: '#ff7f0e', pending: '#bcbd22' };

const state = {
	view: 'overview', run: 0, runs: [], overview: null, gens: null, importance: null,
	curveGens: null, pick: [null, null], brushes: {}, sortKey: 'generation', sortDir: 1,
	filter: '', statusFilter: '', metric: 'metrics/mAP_0.5:0.95', epochs: {}, clockOffset: 0,
	updated: null, pollError: '',
};

/* ---- DOM helpers ---- */

function el(tag, attrs, ...children) {
	const node = document.createElement(tag);
	setAttrs(node, attrs);
	for (const child of children.flat())
		if (child !== null && child !== undefined)
			node.append(child instanceof Node ? child : String(child));
	return node;
}
function svgEl(tag, attrs, ...children) {
	const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
	setAttrs(node, attrs);
	for (const child of children)
		if (child !== null && child !== undefined)
			node.append(child instanceof Node ? child : String(child));
	return node;
}
function setAttrs(node, attrs) {
	for (const [key, value] of Object.entries(attrs || {})) {
		if (key.startsWith('on'))
			node.addEventListener(key.slice(2), value);
		else if (value !== null && value !== undefined && value !== false)
			node.setAttribute(key, String(value));
	}
}
function fmt(value, digits) {
	if (value === null || value === undefined || Number.isNaN(value))
		return '–';
	return Number(value).toPrecision(digits || 5).replace(/\.?0+$/, '').replace(/\.?0+e/, 'e');
}
function duration(seconds) {
	if (seconds === null || seconds === undefined)
		return '–';
	seconds = Math.max(0, Math.round(seconds));
	const d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600);
	const m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
	return (d ? d + 'd ' : '') + (d || h ? h + 'h ' : '') + (d || h || m ? m + 'm ' : '') + s + 's';
}
function api(path, params) {
	const query = new URLSearchParams(Object.assign({ run: state.run }, params || {}));
	return 'api/' + path + '?' + query.toString();
}
async function getJSON(path, params) {
	const response = await fetch(api(path, params), { cache: 'no-store' });
	if (!response.ok)
		throw new Error(path + ': HTTP ' + response.status);
	return response.json();
}

/* ---- URL hash ---- */

function readHash() {
	const parts = location.hash.replace(/^#/, '').split('&').filter(Boolean);
	state.view = 'overview';
	state.brushes = {};
	for (const part of parts) {
		const [key, value] = part.split('=');
		if (value === undefined && VIEWS.some((v) => v[0] === key))
			state.view = key;
		else if (key === 'run')
			state.run = Number(value) || 0;
		else if (key === 'gens')
			state.curveGens = value.split(',').map(Number).filter(Number.isInteger);
		else if (key === 'pick')
			state.pick = value.split(',').map(Number).slice(0, 2);
		else if (key === 'sort') {
			const [name, dir] = decodeURIComponent(value).split(':');
			state.sortKey = name;
			state.sortDir = dir === 'desc' ? -1 : 1;
		} else if (key === 'filter')
			state.filter = decodeURIComponent(value);
		else if (key === 'status')
			state.statusFilter = value;
		else if (key === 'brush') {
			const [name, lo, hi] = decodeURIComponent(value).split(':');
			state.brushes[name] = [Number(lo), Number(hi)];
		}
	}
}

/* ---- data ---- */

function byGeneration(generation) {
	return (state.gens ? state.gens.generations : []).find((g) => g.generation === generation) || null;
}
function doneGens() {
	return (state.gens ? state.gens.generations : []).filter((g) => g.status === 'done' && g.fitness !== null);
}
function bestGeneration() {
	return state.overview && state.overview.best ? state.overview.best.generation : null;
}
function defaultCurveGens() {
	if (state.curveGens)
		return state.curveGens;
	const picked = [];
	const best = bestGeneration();
	if (best !== null)
		picked.push(best);
	for (const r of state.overview ? state.overview.running : [])
		picked.push(r.generation);
	const done = doneGens();
	for (const g of done.slice(-2))
		if (!picked.includes(g.generation))
			picked.push(g.generation);
	return picked;
}

async function poll() {
	try {
		const [overview, gens] = await Promise.all([getJSON('overview'), getJSON('generations')]);
		state.overview = overview;
		state.gens = gens;
		state.clockOffset = overview.now - Date.now() / 1000;
		if (state.view === 'importance' || !state.importance)
			state.importance = await getJSON('importance');
		if (state.view === 'curves')
			await loadEpochs(defaultCurveGens());
		state.updated = new Date();
		state.pollError = '';
	} catch (e) {
		state.pollError = e.message;
	}
	render(false);
	document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
	setTimeout(poll, POLL_MS);
}

async function loadEpochs(generations) {
	for (const generation of generations) {
		const g = byGeneration(generation);
		const cached = state.epochs[generation];
		if (cached && g && g.status !== 'running' && cached.status === g.status)
			continue;
		const answer = await getJSON('epochs', { gen: generation });
		state.epochs[generation] = { rows: answer.rows, columns: answer.columns, status: g ? g.status : null };
	}
}

/* ---- frame ---- */

function render(userAction) {
	const app = document.getElementById('app');
	const active = document.activeElement;
	if (!userAction && active && app.contains(active) && /INPUT|SELECT/.test(active.tagName))
		return; /* do not pull the page from under someone typing */
	app.replaceChildren(header(), viewBody());
	document.body.dataset.view = state.view;
	if (state.gens)
		document.body.dataset.ready = '1';
}

function header() {
	const nav = el('nav', {}, VIEWS.map(([id, label]) => el('a', { href: '#' + id + (state.run ? '&run=' + state.run : ''), class: id === state.view ? 'active' : null }, label)));
	const runs = state.runs.length > 1 ? el('select', { id: 'run-select', onchange: (e) => { location.hash = state.view + '&run=' + e.target.value; } },
		state.runs.map((r) => el('option', { value: r.run, selected: r.run === state.run }, r.name))) : null;
	const o = state.overview;
	const live = el('span', { class: 'live' + (state.pollError ? ' stale' : '') },
		state.pollError ? 'cannot update: ' + state.pollError : state.updated ? 'updated ' + state.updated.toLocaleTimeString() : 'loading');
	return el('header', {}, el('h1', {}, 'yolo-evolve ', el('span', { class: 'run-name' }, o ? o.run : '')), runs, live, nav);
}

function viewBody() {
	if (!state.gens || !state.overview)
		return el('p', {}, state.pollError || 'loading…');
	const views = { overview, history: fitnessHistory, scatter, parcoords, curves, importance, table, compare };
	return el('main', { id: 'view-' + state.view }, views[state.view]());
}

/* ---- charts ---- */

function extent(values) {
	const finite = values.filter((v) => v !== null && Number.isFinite(v));
	if (!finite.length)
		return [0, 1];
	let lo = Math.min(...finite), hi = Math.max(...finite);
	if (lo === hi) {
		const pad = Math.abs(lo) * 0.1 || 1;
		lo -= pad;
		hi += pad;
	}
	return [lo, hi];
}
function ticks(lo, hi, count) {
	const step = Math.pow(10, Math.floor(Math.log10((hi - lo) / count)));
	const err = (hi - lo) / count / step;
	const nice = step * (err >= 7.5 ? 10 : err >= 3 ? 5 : err >= 1.5 ? 2 : 1);
	const out = [];
	for (let t = Math.ceil(lo / nice) * nice; t <= hi + nice * 1e-9; t += nice)
		out.push(Math.abs(t) < nice * 1e-9 ? 0 : t);
	return out;
}

/* A plot area with axes: returns {svg, x, y, layer}. */
function frame(opts) {
	const w = opts.width || 640, h = opts.height || 320, m = { l: 56, r: 12, t: opts.title ? 22 : 10, b: 36 };
	const svg = svgEl('svg', { width: w, height: h, viewBox: `0 0 ${w} ${h}`, class: 'chart ' + (opts.cls || '') });
	const x = (v) => m.l + (v - opts.x[0]) / (opts.x[1] - opts.x[0]) * (w - m.l - m.r);
	const y = (v) => h - m.b - (v - opts.y[0]) / (opts.y[1] - opts.y[0]) * (h - m.t - m.b);
	const axes = svgEl('g', { class: 'axes' });
	axes.append(svgEl('line', { x1: m.l, x2: w - m.r, y1: h - m.b, y2: h - m.b }), svgEl('line', { x1: m.l, x2: m.l, y1: m.t, y2: h - m.b }));
	for (const t of ticks(opts.x[0], opts.x[1], opts.small ? 3 : 6))
		axes.append(svgEl('text', { x: x(t), y: h - m.b + 14, 'text-anchor': 'middle' }, fmt(t, 3)));
	for (const t of ticks(opts.y[0], opts.y[1], opts.small ? 3 : 5))
		axes.append(svgEl('text', { x: m.l - 4, y: y(t) + 4, 'text-anchor': 'end' }, fmt(t, 3)));
	if (opts.xLabel)
		axes.append(svgEl('text', { x: (m.l + w - m.r) / 2, y: h - 4, 'text-anchor': 'middle', class: 'label' }, opts.xLabel));
	if (opts.yLabel)
		axes.append(svgEl('text', { x: 12, y: (m.t + h - m.b) / 2, 'text-anchor': 'middle', class: 'label', transform: `rotate(-90 12 ${(m.t + h - m.b) / 2})` }, opts.yLabel));
	if (opts.title)
		axes.append(svgEl('text', { x: (m.l + w - m.r) / 2, y: 15, 'text-anchor': 'middle', class: 'title' }, opts.title));
	svg.append(axes);
	const layer = svgEl('g', { class: 'marks' });
	svg.append(layer);
	return { svg, x, y, layer, bottom: h - m.b };
}
function point(layer, cx, cy, cls, colour, tip, onclick) {
	const c = svgEl('circle', { cx, cy, r: 4, class: 'pt ' + cls, fill: colour, onclick }, svgEl('title', {}, tip));
	layer.append(c);
	return c;
}
function viridis(t) {
	const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
	t = Math.min(1, Math.max(0, t)) * (stops.length - 1);
	const i = Math.min(stops.length - 2, Math.floor(t)), f = t - i;
	const c = stops[i].map((a, k) => Math.round(a + (stops[i + 1][k] - a) * f));
	return `rgb(${c[0]},${c[1]},${c[2]})`;
}
function pickCandidate(generation) {
	const list = defaultCurveGens().slice();
	if (!list.includes(generation))
		list.push(generation);
	state.curveGens = list;
	state.pick = [state.pick[1] !== null ? state.pick[1] : state.pick[0], generation];
	location.hash = 'table';
}

/* ---- views ---- */

function overview() {
	const o = state.overview;
	const c = o.counts;
	const finished = c.done + c.failed + c.pruned;
	const cards = [
		['candidates', `${o.candidates} of ${fmt(o.target_generations)}`], ['done', c.done], ['running', c.running],
		['pruned', c.pruned], ['failed', c.failed], ['interrupted', c.interrupted],
		['trainer epochs spent', fmt(o.trainer_epochs, 6)], ['trainer time', duration(o.trainer_seconds)],
		['ETA', o.eta_seconds === null ? '–' : duration(o.eta_seconds) + ` (${fmt(o.generations_left)} left)`],
		['evolver', o.evolver.state + (o.evolver.pid ? ' (pid ' + o.evolver.pid + ')' : '')],
	];
	const parts = [el('section', { class: 'cards', 'data-finished': finished }, cards.map(([k, v]) => el('div', { class: 'card', 'data-key': k }, el('div', { class: 'k' }, k), el('div', { class: 'v' }, String(v)))))];
	if (o.stop_reason)
		parts.push(el('section', { class: 'stop' }, el('h2', {}, 'Stopped by the circuit breaker'), el('pre', {}, o.stop_reason)));
	parts.push(bestSection(o));
	parts.push(el('section', { id: 'running' }, el('h2', {}, `Running (${o.running.length})`),
		o.running.length ? o.running.map(runningCard) : el('p', {}, 'no candidate is training now')));
	parts.push(el('section', { id: 'failures' }, el('h2', {}, 'Failures and interruptions'),
		o.failures.length ? o.failures.map((f) => el('div', { class: 'failure' },
			el('div', {}, `generation ${f.generation}: ${f.status}, exit status ${f.exit_status === null ? '–' : f.exit_status}, attempts ${f.attempts}`),
			el('pre', { class: 'log-tail' }, f.error))) : el('p', {}, 'none')));
	return parts;
}

function bestSection(o) {
	if (!o.best)
		return el('section', { id: 'best' }, el('h2', {}, 'Best so far'), el('p', {}, 'no candidate is done yet'));
	const b = o.best;
	const keys = state.gens.hyp_keys;
	return el('section', { id: 'best' },
		el('h2', {}, `Best so far: generation ${b.generation}, fitness ${fmt(b.fitness)}`),
		el('p', { class: 'judged' }, 'Judged by ' + b.judged + '. ', el('a', { href: api('best.yaml'), download: 'hyp_evolve.yaml', id: 'download-best' }, 'download hyp_evolve.yaml')),
		el('table', { class: 'kv' }, el('tr', {}, state.gens.result_keys.map((k) => el('th', {}, k))), el('tr', {}, state.gens.result_keys.map((k) => el('td', {}, fmt(b.results[k]))))),
		el('div', { class: 'hyp-grid' }, keys.map((k) => el('span', { class: b.changed_keys.includes(k) ? 'changed' : null, title: b.changed_keys.includes(k) ? 'differs from the base hyp' : 'as in the base hyp' }, `${k}: ${fmt(b.hyp[k])}`))));
}

function runningCard(r) {
	const epochs = state.overview.epochs || 1;
	const f = frame({ width: 320, height: 150, x: [0, Math.max(1, epochs - 1)], y: extent(r.curve.map((p) => p[2]).concat([0])), small: true, yLabel: 'mAP@.5:.95', cls: 'running-curve' });
	const path = r.curve.map((p) => `${f.x(p[0])},${f.y(p[2])}`).join(' ');
	f.layer.append(svgEl('polyline', { points: path, class: 'curve' }));
	for (const p of r.curve)
		point(f.layer, f.x(p[0]), f.y(p[2]), 'pt-running', STATUS_COLOURS.running, `epoch ${p[0]}: mAP@.5:.95 ${fmt(p[2])}, mAP@.5 ${fmt(p[1])}`);
	const elapsed = r.started_at === null ? null : Date.now() / 1000 + state.clockOffset - r.started_at;
	return el('div', { class: 'running-card', 'data-generation': r.generation },
		el('div', {}, `generation ${r.generation} (parent ${r.parent === null ? '–' : r.parent}), epoch ${r.epochs_done} of ${epochs}, elapsed ${duration(elapsed)}, ${r.host} ${r.device}`), f.svg);
}

function fitnessHistory() {
	const gens = state.gens.generations.filter((g) => ['done', 'pruned', 'failed'].includes(g.status));
	const fit = extent(gens.map((g) => g.fitness));
	const f = frame({ width: 900, height: 380, x: extent(state.gens.generations.map((g) => g.generation).concat([0])), y: fit, xLabel: 'generation', yLabel: 'fitness', cls: 'fitness-chart' });
	let best = null;
	const line = [];
	for (const g of gens) {
		if (g.status === 'done' && g.fitness !== null && (best === null || g.fitness > best)) {
			if (best !== null) /* a step: along at the old best, then up */
				line.push(`${f.x(g.generation)},${f.y(best)}`);
			best = g.fitness;
		}
		if (best !== null)
			line.push(`${f.x(g.generation)},${f.y(best)}`);
	}
	f.layer.append(svgEl('polyline', { points: line.join(' '), class: 'best-line' }));
	for (const g of gens) {
		const y = g.fitness === null ? f.bottom - 4 : f.y(g.fitness);
		point(f.layer, f.x(g.generation), y, 'pt-' + g.status, STATUS_COLOURS[g.status],
			`generation ${g.generation} (${g.status}): fitness ${fmt(g.fitness)}`, () => pickCandidate(g.generation));
	}
	f.svg.dataset.points = String(gens.length);
	const legend = el('p', { class: 'legend' }, ['done', 'pruned', 'failed'].map((s) => el('span', { style: null, class: 'swatch-' + s }, '● ' + s + ' ')), el('span', { class: 'swatch-best' }, '— best so far'),
		' (failed and fitness-less pruned candidates sit on the bottom edge; click a point to pick it)');
	return [el('h2', {}, 'Fitness per generation'), f.svg, legend];
}

function scatter() {
	const done = doneGens();
	const keys = state.gens.mutable_keys;
	const fit = extent(done.map((g) => g.fitness));
	const best = bestGeneration();
	const panels = keys.map((k) => {
		const f = frame({ width: 260, height: 200, x: extent(done.map((g) => g[k])), y: fit, small: true, title: `${k} = ${best === null ? '–' : fmt(byGeneration(best)[k], 3)}`, cls: 'hyp-scatter' });
		for (const g of done)
			point(f.layer, f.x(g[k]), f.y(g.fitness), g.generation === best ? 'pt-best' : 'pt-done', viridis((g.fitness - fit[0]) / (fit[1] - fit[0])),
				`generation ${g.generation}: ${k} = ${fmt(g[k])}, fitness ${fmt(g.fitness)}`, () => pickCandidate(g.generation));
		f.svg.dataset.key = k;
		f.svg.dataset.points = String(done.length);
		return f.svg;
	});
	return [el('h2', {}, 'Fitness against each mutated hyperparameter (done candidates; colour = fitness, ringed = best; click to pick)'), el('div', { class: 'panels' }, panels)];
}

function brushed(g) {
	return Object.entries(state.brushes).every(([k, [lo, hi]]) => g[k] >= Math.min(lo, hi) && g[k] <= Math.max(lo, hi));
}
function brushHash() {
	const parts = ['parcoords'];
	if (state.run)
		parts.push('run=' + state.run);
	for (const [k, [lo, hi]] of Object.entries(state.brushes))
		parts.push('brush=' + encodeURIComponent(`${k}:${lo}:${hi}`));
	return parts.join('&');
}

function parcoords() {
	const done = doneGens();
	/* keys that never changed among the done candidates would be flat axes */
	const axes = state.gens.mutable_keys.filter((k) => done.some((g) => g[k] !== done[0][k])).concat(['fitness']);
	const w = Math.max(900, axes.length * 52), h = 460, top = 70, bottom = h - 30;
	const svg = svgEl('svg', { width: w, height: h, viewBox: `0 0 ${w} ${h}`, class: 'chart parcoords' });
	const xs = axes.map((_, i) => 30 + i * (w - 60) / Math.max(1, axes.length - 1));
	const ranges = axes.map((k) => extent(done.map((g) => g[k])));
	const y = (i, v) => bottom - (v - ranges[i][0]) / (ranges[i][1] - ranges[i][0]) * (bottom - top);
	const fit = ranges[axes.length - 1];
	const lines = svgEl('g', { class: 'lines' });
	let active = 0;
	for (const g of done) {
		const on = brushed(g);
		active += on ? 1 : 0;
		const d = axes.map((k, i) => `${i ? 'L' : 'M'}${xs[i]},${y(i, g[k])}`).join('');
		lines.append(svgEl('path', { d, class: 'pc-line ' + (on ? 'active' : 'dim'), stroke: on ? viridis((g.fitness - fit[0]) / (fit[1] - fit[0])) : null, 'data-generation': g.generation, onclick: () => pickCandidate(g.generation) },
			svgEl('title', {}, `generation ${g.generation}: fitness ${fmt(g.fitness)}`)));
	}
	svg.append(lines);
	axes.forEach((k, i) => {
		const axis = svgEl('g', { class: 'pc-axis', 'data-key': k });
		axis.append(svgEl('line', { x1: xs[i], x2: xs[i], y1: top, y2: bottom }));
		axis.append(svgEl('text', { x: xs[i], y: top - 16, 'text-anchor': 'start', class: 'label', transform: `rotate(-35 ${xs[i]} ${top - 16})` }, k));
		axis.append(svgEl('text', { x: xs[i], y: bottom + 14, 'text-anchor': 'middle' }, fmt(ranges[i][0], 3)));
		axis.append(svgEl('text', { x: xs[i], y: top - 2, 'text-anchor': 'middle' }, fmt(ranges[i][1], 3)));
		const b = state.brushes[k];
		if (b)
			axis.append(svgEl('rect', { x: xs[i] - 8, width: 16, y: Math.min(y(i, b[0]), y(i, b[1])), height: Math.abs(y(i, b[0]) - y(i, b[1])), class: 'brush' }));
		const hit = svgEl('rect', { x: xs[i] - 12, width: 24, y: top, height: bottom - top, class: 'brush-target' }, svgEl('title', {}, 'drag to brush a range; click to clear'));
		hit.addEventListener('mousedown', (e) => startBrush(e, svg, k, i, y, top, bottom, ranges));
		axis.append(hit);
		svg.append(axis);
	});
	svg.dataset.lines = String(done.length);
	svg.dataset.active = String(active);
	const gensIn = done.filter(brushed).map((g) => g.generation);
	return [el('h2', {}, 'Parallel coordinates of the done candidates'),
		el('p', { id: 'brush-summary' }, `${active} of ${done.length} candidates inside the brushes`,
			Object.keys(state.brushes).length ? el('button', { onclick: () => { state.brushes = {}; location.hash = brushHash(); } }, 'clear brushes') : null,
			' — drag along an axis to brush a range, click an axis to clear it, click a line to pick its candidate.'),
		el('div', { class: 'scroll' }, svg),
		el('p', { class: 'brushed-list' }, gensIn.length < done.length ? 'brushed generations: ' + gensIn.slice(0, 60).join(', ') + (gensIn.length > 60 ? ' …' : '') : '')];
}

function startBrush(e, svg, key, index, y, top, bottom, ranges) {
	e.preventDefault();
	const toValue = (clientY) => {
		const box = svg.getBoundingClientRect();
		const py = Math.min(bottom, Math.max(top, (clientY - box.top) * svg.viewBox.baseVal.height / box.height));
		return ranges[index][0] + (bottom - py) / (bottom - top) * (ranges[index][1] - ranges[index][0]);
	};
	const start = toValue(e.clientY);
	let moved = false;
	const move = (ev) => {
		moved = true;
		state.brushes[key] = [start, toValue(ev.clientY)];
		render(true);
	};
	const up = () => {
		window.removeEventListener('mousemove', move);
		window.removeEventListener('mouseup', up);
		if (!moved)
			delete state.brushes[key];
		window.history.replaceState(null, '', '#' + brushHash());
		render(true);
	};
	window.addEventListener('mousemove', move);
	window.addEventListener('mouseup', up);
}

const CURVE_COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];

function curves() {
	const chosen = defaultCurveGens();
	const missing = chosen.filter((g) => !state.epochs[g]);
	if (missing.length)
		loadEpochs(missing).then(() => render(false)).catch((e) => { state.pollError = e.message; });
	const columns = (state.epochs[chosen.find((g) => state.epochs[g])] || {}).columns || [];
	const col = Math.max(1, columns.indexOf(state.metric));
	const series = chosen.filter((g) => state.epochs[g]).map((g) => ({ generation: g, rows: state.epochs[g].rows }));
	const all = series.flatMap((s) => s.rows);
	const f = frame({ width: 900, height: 380, x: extent(all.map((r) => r[0]).concat([0])), y: extent(all.map((r) => r[col])), xLabel: 'epoch', yLabel: state.metric, cls: 'curves-chart' });
	series.forEach((s, i) => {
		const colour = CURVE_COLOURS[i % CURVE_COLOURS.length];
		f.layer.append(svgEl('polyline', { points: s.rows.map((r) => `${f.x(r[0])},${f.y(r[col])}`).join(' '), class: 'curve', stroke: colour }));
		for (const r of s.rows)
			point(f.layer, f.x(r[0]), f.y(r[col]), 'pt-epoch', colour, `generation ${s.generation}, epoch ${r[0]}: ${fmt(r[col])}`);
	});
	f.svg.dataset.points = String(all.length);
	f.svg.dataset.series = String(series.length);
	const select = el('select', { id: 'metric', onchange: (e) => { state.metric = e.target.value; e.target.blur(); render(true); } },
		columns.slice(1).map((c) => el('option', { value: c, selected: c === state.metric }, c)));
	const add = el('input', { id: 'add-gen', type: 'number', min: 0, placeholder: 'generation' });
	const addButton = el('button', { onclick: () => { const n = Number(add.value); if (Number.isInteger(n) && byGeneration(n) && !chosen.includes(n)) state.curveGens = chosen.concat([n]); add.blur(); render(true); } }, 'add');
	const chips = series.map((s, i) => el('span', { class: 'chip', style: null }, el('span', { class: 'dot', 'data-colour': CURVE_COLOURS[i % CURVE_COLOURS.length] }, '■ '), `generation ${s.generation} (${(byGeneration(s.generation) || {}).status || '?'}) `,
		el('button', { onclick: () => { state.curveGens = chosen.filter((g) => g !== s.generation); render(true); } }, '×')));
	for (const dot of chips.map((c) => c.firstChild))
		dot.style.color = dot.dataset.colour;
	return [el('h2', {}, 'Learning curves (the epochs table)'), el('p', {}, 'metric ', select, ' — add a candidate ', add, addButton), el('p', { class: 'chips' }, chips), f.svg];
}

function importance() {
	const imp = state.importance;
	if (!imp)
		return el('p', {}, 'loading…');
	const rows = imp.importance;
	const w = 700, rowH = 20, h = 20 + rows.length * rowH, left = 140;
	const svg = svgEl('svg', { width: w, height: h, viewBox: `0 0 ${w} ${h}`, class: 'chart importance-chart' });
	const max = Math.max(1e-9, ...rows.map((r) => r.importance));
	rows.forEach((r, i) => {
		const y = 10 + i * rowH;
		svg.append(svgEl('text', { x: left - 6, y: y + 13, 'text-anchor': 'end' }, r.key));
		svg.append(svgEl('rect', { x: left, y: y + 2, height: rowH - 6, width: Math.max(1, (w - left - 70) * r.importance / max), class: 'imp-bar', 'data-key': r.key }, svgEl('title', {}, `${r.key}: ${fmt(r.importance, 3)}`)));
		svg.append(svgEl('text', { x: left + (w - left - 70) * r.importance / max + 6, y: y + 13 }, fmt(r.importance, 3)));
	});
	svg.dataset.bars = String(rows.length);
	return [el('h2', {}, 'Hyperparameter importance'), el('p', { class: 'explain' }, imp.explain + ` (${imp.candidates} done candidates; computed by yolo-evolve in C.)`), svg];
}

const TABLE_FIXED = ['generation', 'parent', 'status', 'fitness'];

function filterRows() {
	const rows = state.gens.generations.filter((g) => !state.statusFilter || g.status === state.statusFilter);
	const text = state.filter.trim();
	const m = text.match(/^(\w+)\s*(<=|>=|<|>|=)\s*(-?[\d.]+(?:e-?\d+)?)$/);
	if (m) {
		const [, key, op, value] = m;
		const v = Number(value);
		const test = { '<': (a) => a < v, '>': (a) => a > v, '<=': (a) => a <= v, '>=': (a) => a >= v, '=': (a) => a === v }[op];
		return rows.filter((g) => g[key] !== null && g[key] !== undefined && test(g[key]));
	}
	if (!text)
		return rows;
	return rows.filter((g) => `${g.generation} ${g.status} ${g.error}`.toLowerCase().includes(text.toLowerCase()));
}

function tableRows(columns) {
	const rows = filterRows().slice().sort((a, b) => {
		const x = a[state.sortKey], y = b[state.sortKey];
		if (x === y)
			return a.generation - b.generation;
		if (x === null || x === undefined)
			return 1;
		if (y === null || y === undefined)
			return -1;
		return (x < y ? -1 : 1) * state.sortDir;
	});
	return rows.map((g) => el('tr', { class: 'row-' + g.status, 'data-generation': g.generation },
		el('td', {}, el('input', { type: 'checkbox', class: 'pick', checked: state.pick.includes(g.generation), title: 'compare (two at most)', onchange: (e) => {
			state.pick = e.target.checked ? [state.pick[1], g.generation] : state.pick.map((p) => (p === g.generation ? null : p));
			e.target.blur();
			render(true);
		} })),
		el('td', {}, el('a', { href: api('hyp.yaml', { gen: g.generation }), download: `hyp_gen${g.generation}.yaml` }, 'yaml')),
		columns.map((k) => el('td', { class: typeof g[k] === 'number' ? 'num' : null }, typeof g[k] === 'number' ? fmt(g[k]) : g[k] === null ? '–' : g[k]))));
}

function table() {
	const columns = TABLE_FIXED.concat(state.gens.result_keys, ['epochs_done', 'seconds'], state.gens.hyp_keys);
	const body = el('tbody', {}, tableRows(columns));
	const count = el('span', { id: 'row-count' }, `${body.children.length} of ${state.gens.generations.length} candidates`);
	const refill = () => {
		body.replaceChildren(...tableRows(columns));
		count.textContent = `${body.children.length} of ${state.gens.generations.length} candidates`;
	};
	const head = el('tr', {}, el('th', {}, 'cmp'), el('th', {}, 'hyp'), columns.map((k) => el('th', { class: 'sortable' + (k === state.sortKey ? (state.sortDir > 0 ? ' asc' : ' desc') : ''), onclick: () => {
		state.sortDir = state.sortKey === k ? -state.sortDir : (k === 'generation' ? 1 : -1);
		state.sortKey = k;
		render(true);
	} }, k)));
	const statuses = ['', 'done', 'running', 'pruned', 'failed', 'interrupted', 'pending'];
	const controls = el('p', { class: 'controls' },
		'status ', el('select', { id: 'status-filter', onchange: (e) => { state.statusFilter = e.target.value; refill(); } }, statuses.map((s) => el('option', { value: s, selected: s === state.statusFilter }, s || 'any'))),
		' filter ', el('input', { id: 'filter', value: state.filter, placeholder: 'text, or e.g. lr0<0.01, fitness>=0.1', oninput: (e) => { state.filter = e.target.value; refill(); } }),
		' ', count, ' ', el('a', { href: '#compare' }, `compare ${state.pick.filter((p) => p !== null).join(' and ') || '(tick two)'}`));
	return [el('h2', {}, 'Candidates (click a header to sort)'), controls, el('div', { class: 'scroll' }, el('table', { class: 'candidates' }, el('thead', {}, head), body))];
}

function compare() {
	const gens = state.gens.generations;
	let pick = state.pick.filter((p) => p !== null && byGeneration(p));
	if (pick.length < 2) {
		const best = bestGeneration();
		const fallback = [best, best !== null && byGeneration(best).parent !== null ? byGeneration(best).parent : null, gens.length ? gens[gens.length - 1].generation : null];
		for (const g of fallback)
			if (g !== null && !pick.includes(g) && pick.length < 2)
				pick.push(g);
	}
	const [a, b] = pick.map(byGeneration);
	const chooser = (i) => el('select', { class: 'pick-select', onchange: (e) => { const p = pick.slice(); p[i] = Number(e.target.value); state.pick = p; e.target.blur(); render(true); } },
		gens.map((g) => el('option', { value: g.generation, selected: pick[i] === g.generation }, `generation ${g.generation} (${g.status}, ${fmt(g.fitness)})`)));
	if (!a || !b)
		return [el('h2', {}, 'Compare two candidates'), el('p', {}, 'two candidates are needed')];
	const keys = ['status', 'parent', 'fitness'].concat(state.gens.result_keys, ['seconds', 'epochs_done'], state.gens.hyp_keys);
	const rows = keys.map((k) => el('tr', { class: a[k] !== b[k] ? 'differs' : null }, el('th', {}, k), el('td', {}, typeof a[k] === 'number' ? fmt(a[k]) : String(a[k] === null ? '–' : a[k])), el('td', {}, typeof b[k] === 'number' ? fmt(b[k]) : String(b[k] === null ? '–' : b[k]))));
	return [el('h2', {}, 'Compare two candidates (differences highlighted)'),
		el('table', { class: 'compare' }, el('thead', {}, el('tr', {}, el('th', {}, ''), el('th', {}, chooser(0), ' ', el('a', { href: api('hyp.yaml', { gen: a.generation }), download: `hyp_gen${a.generation}.yaml` }, 'hyp.yaml')),
			el('th', {}, chooser(1), ' ', el('a', { href: api('hyp.yaml', { gen: b.generation }), download: `hyp_gen${b.generation}.yaml` }, 'hyp.yaml')))), el('tbody', {}, rows))];
}

/* ---- start ---- */

window.addEventListener('hashchange', () => {
	const run = state.run;
	readHash();
	if (run !== state.run) {
		state.epochs = {};
		state.importance = null;
		state.overview = null;
		state.gens = null;
	}
	render(true);
	if (state.view === 'curves' || state.view === 'importance' || !state.gens)
		refreshNow();
});
async function refreshNow() {
	try {
		const [overview, gens, imp] = await Promise.all([getJSON('overview'), getJSON('generations'), getJSON('importance')]);
		Object.assign(state, { overview, gens, importance: imp });
		render(true);
	} catch (e) {
		state.pollError = e.message;
	}
}
async function start() {
	readHash();
	try {
		state.runs = (await (await fetch('api/runs', { cache: 'no-store' })).json()).runs;
	} catch (e) {
		state.pollError = e.message;
	}
	poll();
}
start();
