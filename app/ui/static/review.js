// The review page: send a recording, draw its spectrogram and heat map, filter, listen, download.

import { downloadUrl, review } from "./api.js";
import {
  AXIS_HEIGHT, ROW_HEIGHT, SPEC_HEIGHT, cellAt, drawFrequencyAxis, drawHeatmap, drawLegend, drawRowLabels,
  drawSpectrogram, drawTimeAxis,
} from "./plot.js";
import { MAX_RECORD_S, MicRecorder } from "./recorder.js";
import { clock, el, getJSON, plainError, prob, span } from "./util.js";

const $ = (id) => document.getElementById(id);
const LABEL_WIDTH = 180;
const MAX_HEATMAP_ROWS = 60;
const MAX_TABLE_ROWS = 500;
const FORMATS = ["birdclef", "csv", "raven", "audacity", "kaleidoscope", "json"];

const state = {
  body: null, image: null, species: [], starts: [], step: 5, windowS: 5, axisS: 0, pxPerS: 1, view: null,
  focus: null, stopAt: null, audioUrl: null, recorder: null, busy: false,
};

// -- the data ---------------------------------------------------------------------------------------------
function speciesOf(body) {
  const windows = body.result.windows;
  return body.labels.map((label, index) => {
    const values = windows.map((w) => w.probabilities[label.code] ?? 0);
    return { label, index, values, max: values.length ? Math.max(...values) : 0 };
  });
}

function matches(s, query) {
  if (!query) return true;
  const l = s.label;
  return [l.code, l.common_name, l.scientific_name].some((t) => (t || "").toLowerCase().includes(query));
}

/** Species at or above the threshold and matching the search, most probable first. */
function selectRows(threshold, query) {
  return state.species
    .filter((s) => s.max >= threshold && matches(s, query))
    .sort((a, b) => b.max - a.max || a.index - b.index);
}

function currentView() {
  const threshold = Number($("threshold").value);
  const query = $("search").value.trim().toLowerCase();
  const rows = selectRows(threshold, query);
  return { threshold, query, all: rows, rows: rows.slice(0, MAX_HEATMAP_ROWS), starts: state.starts, step: state.step };
}

// -- drawing -----------------------------------------------------------------------------------------------
function plotWidth() {
  const available = Math.max(200, $("plot-scroll").clientWidth);
  return Math.round(available * Number($("zoom").value));
}

function layout() {
  if (!state.body) return;
  const width = plotWidth();
  state.pxPerS = width / state.axisS;
  drawSpectrogram($("spectrogram"), state.image, state.body.spectrogram, width, state.pxPerS);
  drawTimeAxis($("time-axis"), state.axisS, width, state.pxPerS, clock);
  drawFrequencyAxis($("frequency-axis"), state.body.spectrogram.frequencies_hz, LABEL_WIDTH);
  $("plot-inner").style.width = `${width}px`;
  redraw();
}

function redraw() {
  const view = currentView();
  state.view = view;
  const width = plotWidth();
  drawHeatmap($("heatmap"), view, width, state.pxPerS, state.focus);
  drawRowLabels($("row-labels"), view, LABEL_WIDTH);
  $("axis-spacer").style.height = `${AXIS_HEIGHT}px`;
  $("cursor").style.height = `${SPEC_HEIGHT + 6 + Math.max(ROW_HEIGHT, view.rows.length * ROW_HEIGHT)}px`;
  const more = view.all.length - view.rows.length;
  $("heatmap-note").textContent = more > 0 ? `Showing the ${view.rows.length} most probable species of ${view.all.length}; search to see others.` : "";
  $("heatmap").setAttribute("aria-label", `Heat map of ${view.rows.length} species by ${view.starts.length} windows; `
    + "arrow keys move between cells, Enter plays the window.");
  renderTable(view);
  renderDownloads(view.threshold);
  moveCursor();
}

// -- the table ---------------------------------------------------------------------------------------------
function bestWindow(s) {
  const w = s.values.indexOf(s.max);
  return { start: state.starts[w], end: state.starts[w] + state.windowS };
}

function tableRow(s, threshold) {
  const count = s.values.filter((p) => p >= threshold).length;
  const best = bestWindow(s);
  const name = s.label.common_name || s.label.code;
  const play = el("button", {
    type: "button", class: "button small",
    "aria-label": `Play the best window of ${name}, ${span(best.start, best.end)}`,
    onclick: () => playWindow(best.start, best.end),
  }, `▶ ${span(best.start, best.end)}`);
  return el("tr", { dataset: { code: s.label.code, max: String(s.max), count: String(count) } },
    el("th", { scope: "row" }, name, s.label.scientific_name ? el("span", { class: "sci" }, s.label.scientific_name) : null),
    el("td", {}, el("code", {}, s.label.code)),
    el("td", { class: "num" }, prob(s.max)),
    el("td", { class: "num" }, String(count)),
    el("td", {}, play));
}

function renderTable(view) {
  const rows = view.all.slice(0, MAX_TABLE_ROWS);
  $("species-body").replaceChildren(...rows.map((s) => tableRow(s, view.threshold)));
  const total = state.species.length;
  $("species-caption").textContent = `${view.all.length} of ${total} species reach ${prob(view.threshold)}`
    + (view.query ? ` and match “${view.query}”` : "") + ", most probable first"
    + (view.all.length > rows.length ? ` (first ${rows.length} shown)` : "") + ".";
}

function renderDownloads(threshold) {
  for (const format of FORMATS) {
    $(`download-${format}`).href = downloadUrl(state.body.result_id, format, threshold);
  }
  $("downloads-expiry").textContent = `${Math.round(state.body.expires_in_s / 60)} minutes`;
  $("downloads-threshold").textContent = prob(threshold);
}

// -- playback and the cursor ---------------------------------------------------------------------------------
function playWindow(start, end) {
  const audio = $("audio");
  state.stopAt = end;
  audio.currentTime = start;
  audio.play().catch((e) => showError({ code: "playback", detail: e.message }, "This browser cannot play this file's format; the analysis is not affected."));
}

function moveCursor() {
  const t = $("audio").currentTime || 0;
  $("cursor").style.transform = `translateX(${t * state.pxPerS}px)`;
  return t;
}

function followCursor() {
  const audio = $("audio");
  const t = moveCursor();
  if (state.stopAt !== null && t >= state.stopAt) {
    audio.pause();
    state.stopAt = null;
  }
  keepVisible(t * state.pxPerS);
  if (!audio.paused) requestAnimationFrame(followCursor);
}

function keepVisible(x) {
  const scroll = $("plot-scroll");
  if (x < scroll.scrollLeft || x > scroll.scrollLeft + scroll.clientWidth - 20) scroll.scrollLeft = Math.max(0, x - 40);
}

// -- the heat map: hover, click, keyboard --------------------------------------------------------------------
function describeCell(cell) {
  const s = state.view.rows[cell.row];
  const start = state.starts[cell.col];
  const name = s.label.common_name || s.label.code;
  return { s, start, end: start + state.windowS, name, p: s.values[cell.col] };
}

function showTooltip(event) {
  const rect = $("heatmap").getBoundingClientRect();
  const cell = cellAt(state.view, event.clientX - rect.left, event.clientY - rect.top, state.pxPerS);
  const tip = $("tooltip");
  if (!cell) { tip.hidden = true; return; }
  const d = describeCell(cell);
  tip.replaceChildren(el("strong", {}, d.name), ` (${d.s.label.code})`,
    d.s.label.scientific_name ? el("em", {}, ` ${d.s.label.scientific_name}`) : "",
    el("br"), `Window ${span(d.start, d.end)}`, el("br"), `Probability ${prob(d.p)}`,
    el("br"), el("span", { class: "muted" }, "Click to play this window"));
  tip.hidden = false;
  tip.style.left = `${Math.min(window.innerWidth - tip.offsetWidth - 8, event.clientX + 14)}px`;
  tip.style.top = `${event.clientY + 14}px`;
}

function clickCell(event) {
  const rect = $("heatmap").getBoundingClientRect();
  const cell = cellAt(state.view, event.clientX - rect.left, event.clientY - rect.top, state.pxPerS);
  if (!cell) return;
  state.focus = cell;
  redraw();
  announce(cell);
  const d = describeCell(cell);
  playWindow(d.start, d.end);
}

function announce(cell) {
  const d = describeCell(cell);
  $("cell-status").textContent = `${d.name} (${d.s.label.code}), ${span(d.start, d.end)}: probability ${prob(d.p)}`;
}

const MOVES = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };

function keyOnHeatmap(event) {
  const view = state.view;
  if (!view || !view.rows.length) return;
  const focus = state.focus || { row: 0, col: 0 };
  if (MOVES[event.key]) {
    const [dr, dc] = MOVES[event.key];
    state.focus = { row: clamp(focus.row + dr, view.rows.length), col: clamp(focus.col + dc, view.starts.length) };
  } else if (event.key === "Home" || event.key === "End") {
    state.focus = { row: focus.row, col: event.key === "Home" ? 0 : view.starts.length - 1 };
  } else if (event.key === "Enter" || event.key === " ") {
    const d = describeCell(focus);
    playWindow(d.start, d.end);
  } else if (event.key === "Escape") {
    $("audio").pause();
    return;
  } else {
    return;
  }
  event.preventDefault();
  redraw();
  announce(state.focus);
  keepVisible(state.starts[state.focus.col] * state.pxPerS);
}

function clamp(i, n) {
  return Math.max(0, Math.min(n - 1, i));
}

// -- showing a result -----------------------------------------------------------------------------------------
async function show(body, receivedAt) {
  const result = body.result;
  state.body = body;
  state.species = speciesOf(body);
  state.starts = result.windows.map((w) => w.start_s);
  state.windowS = result.windows.length ? result.windows[0].end_s - result.windows[0].start_s : 5;
  state.step = Math.min(state.windowS, state.starts.length > 1 ? state.starts[1] - state.starts[0] : state.windowS);
  const lastEnd = result.windows.length ? result.windows[result.windows.length - 1].end_s : 0;
  state.axisS = Math.max(result.audio.duration_s, lastEnd, 0.1);
  state.focus = null;
  state.expiresAt = receivedAt + 1000 * body.expires_in_s;
  const image = new Image();
  image.src = `data:image/png;base64,${body.spectrogram.png_base64}`;
  await image.decode();
  state.image = image;
  $("results").hidden = false;
  showFacts(body);
  layout();
  await new Promise((resolve) => requestAnimationFrame(() => resolve()));
  const drawMs = performance.now() - receivedAt;
  document.body.dataset.drawMs = drawMs.toFixed(1);
  $("draw-time").textContent = `Analysed in ${(result.timings.total_ms / 1000).toFixed(2)} s; drawn in ${Math.round(drawMs)} ms.`;
  $("heatmap").dataset.ready = "true";
}

function showFacts(body) {
  const r = body.result;
  const a = r.audio;
  $("result-name").textContent = body.filename;
  $("result-facts").textContent = `${clock(a.duration_s, 1)} of audio, ${a.sample_rate} Hz, ${a.channels} channel${a.channels === 1 ? "" : "s"}, `
    + `${a.windows} window${a.windows === 1 ? "" : "s"} of ${state.windowS} s (step ${state.step} s); `
    + `model ${r.model.name} v${r.model.version}.`
    + (r.postprocess && r.postprocess.applied ? ` Smoothing: ${r.postprocess.smoothing}.` : "");
  const note = $("spectrogram-note");
  note.textContent = body.spectrogram.description;
  note.classList.toggle("warn", body.spectrogram.source !== "model_frontend");
  $("spectrogram").setAttribute("aria-label", `Spectrogram, ${clock(state.axisS)} long. ${body.spectrogram.description}`);
}

// -- sending a file ------------------------------------------------------------------------------------------
async function analyse(file) {
  if (!file || state.busy) return;
  state.busy = true;
  clearError();
  $("heatmap").dataset.ready = "false";
  document.body.dataset.drawMs = "";
  if (state.audioUrl) URL.revokeObjectURL(state.audioUrl);
  state.audioUrl = URL.createObjectURL(file);
  $("audio").src = state.audioUrl;
  setProgress({ stage: "uploading", fraction: 0, text: `Sending ${file.name}…` });
  try {
    const { body, receivedAt } = await review(file, { hop: $("hop").value || null, onProgress: setProgress });
    state.busy = false;
    $("progress-box").hidden = true;
    await show(body, receivedAt);
  } catch (error) {
    $("results").hidden = true;
    showError(error);
  } finally {
    $("progress-box").hidden = true;
    state.busy = false;
  }
}

function setProgress(p) {
  if (!state.busy) return;
  $("progress-box").hidden = false;
  $("progress").value = p.fraction;
  $("progress-text").textContent = p.text;
}

function showError(error, title) {
  const plain = plainError(error);
  const box = $("error");
  box.replaceChildren(el("strong", {}, title || plain.title), plain.detail ? el("p", {}, plain.detail) : "");
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").replaceChildren();
}

// -- the microphone -----------------------------------------------------------------------------------------
async function toggleRecording() {
  const button = $("record");
  if (state.recorder) {
    const recorder = state.recorder;
    state.recorder = null;
    clearInterval(state.recordTimer);
    button.textContent = "● Record";
    button.setAttribute("aria-pressed", "false");
    $("record-status").textContent = "";
    analyse(await recorder.stop());
    return;
  }
  if (!MicRecorder.supported()) {
    showError({ code: "microphone", detail: "" }, "This browser cannot record here (recording needs https or localhost).");
    return;
  }
  const recorder = new MicRecorder();
  try {
    await recorder.start();
  } catch (e) {
    showError({ code: "microphone", detail: e.message }, "The microphone could not be opened (permission refused, or no microphone).");
    return;
  }
  state.recorder = recorder;
  button.textContent = "■ Stop and analyse";
  button.setAttribute("aria-pressed", "true");
  state.recordTimer = setInterval(() => {
    $("record-status").textContent = `Recording ${clock(recorder.seconds)}`;
    if (recorder.seconds >= MAX_RECORD_S) toggleRecording();
  }, 250);
}

// -- the model line and options ------------------------------------------------------------------------------
async function loadModel() {
  try {
    const models = await getJSON("v1/models");
    const card = models.card;
    $("model-line").textContent = `Model: ${card.name} v${card.version} (${card.architecture}, ${card.labels.length} species, `
      + `${card.frontend.input === "waveform" ? "raw-audio input" : "log-mel input"}).`;
    fillHops(card.frontend.hop_s);
  } catch (error) {
    $("model-line").textContent = `No model is ready yet: ${plainError(error).title}`;
  }
}

function fillHops(hop) {
  const choices = [...new Set([hop, hop / 2, 1].filter((h) => h >= 1 && h <= hop))];
  $("hop").replaceChildren(...choices.map((h, i) => el("option", { value: i === 0 ? "" : String(h) },
    i === 0 ? `${h} s (the model's)` : `${h} s (overlapping windows)`)));
}

// -- wiring --------------------------------------------------------------------------------------------------
function wireInput() {
  const zone = $("dropzone");
  $("file-input").addEventListener("change", (e) => analyse(e.target.files[0]));
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files.length) analyse(e.dataTransfer.files[0]);
  });
  $("record").addEventListener("click", toggleRecording);
}

function guardDownloads() {
  for (const format of FORMATS) {
    $(`download-${format}`).addEventListener("click", (e) => {
      if (performance.now() < state.expiresAt) return;
      e.preventDefault();
      showError({ code: "result_not_found", status: 404, detail: "" });
    });
  }
}

function wireResults() {
  $("threshold").addEventListener("input", () => {
    $("threshold-value").textContent = prob(Number($("threshold").value));
    if (state.body) redraw();
  });
  $("search").addEventListener("input", () => { if (state.body) redraw(); });
  $("zoom").addEventListener("change", layout);
  const heatmap = $("heatmap");
  heatmap.addEventListener("mousemove", showTooltip);
  heatmap.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
  heatmap.addEventListener("click", clickCell);
  heatmap.addEventListener("keydown", keyOnHeatmap);
  heatmap.addEventListener("focus", () => { if (!state.focus && state.view && state.view.rows.length) { state.focus = { row: 0, col: 0 }; redraw(); announce(state.focus); } });
  $("spectrogram").addEventListener("click", (e) => {
    const t = (e.clientX - $("spectrogram").getBoundingClientRect().left) / state.pxPerS;
    state.stopAt = null;
    $("audio").currentTime = t;
    $("audio").play().catch(() => {});
  });
  const audio = $("audio");
  audio.addEventListener("play", () => requestAnimationFrame(followCursor));
  audio.addEventListener("seeked", moveCursor);
  audio.addEventListener("pause", moveCursor);
  window.addEventListener("resize", layout);
}

function init() {
  drawLegend($("legend"), 160);
  wireInput();
  wireResults();
  guardDownloads();
  loadModel();
  document.body.dataset.state = "ready";
}

init();
