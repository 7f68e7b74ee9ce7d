// The model page: the served model's card, its metrics and their validation, training curves, labels, license.

import { el, getJSON, plainError } from "./util.js";

const $ = (id) => document.getElementById(id);
const COLOURS = ["#0b5cad", "#c2410c", "#1b7a4b", "#6b3fa0", "#8a5a00", "#b0125b"];
const NOT_PLOTTED = new Set(["lr", "samples_per_s", "epoch_s", "round"]);
const PROJECT_LICENSE = "Apache-2.0 (the project's license: the card records no other)";

function fact(dl, term, ...value) {
  dl.append(el("dt", {}, term), el("dd", {}, ...value));
}

function renderFacts(card, served) {
  const fe = card.frontend;
  const dl = $("facts");
  dl.replaceChildren();
  fact(dl, "Name", card.name);
  const roles = [served.served ? "served now" : "", served.production ? "the store's production version" : ""];
  fact(dl, "Version", [String(card.version), ...roles.filter(Boolean)].join(" · "));
  fact(dl, "Architecture", `${card.architecture}, ${card.precision}, run by ${card.runtime}`);
  fact(dl, "Input", fe.input === "waveform"
    ? `raw audio at ${fe.sample_rate} Hz, ${fe.model_window_s || fe.window_s}-s model windows in ${fe.window_s}-s report windows`
    : `log-mel, ${fe.n_mels} bands ${fe.fmin}-${fe.fmax} Hz at ${fe.sample_rate} Hz, ${fe.window_s}-s windows`);
  fact(dl, "Species", `${card.labels.length}`);
  fact(dl, "Created", new Date(card.created_at).toISOString().slice(0, 16).replace("T", " ") + " UTC");
  if (card.parent_version) fact(dl, "Fine-tuned from", `version ${card.parent_version}`);
  if (card.data && card.data.train_clips) {
    fact(dl, "Training data", `${card.data.train_clips} clips, ${card.data.val_clips} held-out clips, `
      + `${card.data.val_soundscapes} labelled soundscapes`);
  }
  if (card.postprocess) fact(dl, "Temporal smoothing", card.postprocess.smoothing);
  $("notes").textContent = card.notes || "";
}

function renderValidation(card) {
  const v = card.validation || {};
  const text = v.metrics_from
    ? `These metrics were computed on ${v.metrics_from}; the checkpoint was chosen by ${v.selected_by || "(not recorded)"}`
      + (v.monitor ? ` on ${v.monitor}` : "") + "."
    : "The card does not say which validation produced these metrics: treat them with care.";
  $("validation").textContent = text;
  $("validation-sets").replaceChildren(...Object.entries(v.sets || {}).map(([name, how]) =>
    el("li", {}, el("strong", {}, name), `: ${how}`)));
  const metrics = Object.entries(card.metrics || {});
  $("metrics-body").replaceChildren(...(metrics.length ? metrics.map(([name, value]) =>
    el("tr", {}, el("th", { scope: "row" }, name), el("td", { class: "num" }, value.toFixed(4))))
    : [el("tr", {}, el("td", { colspan: 2 }, "No metrics recorded."))]));
}

function renderLabels(card) {
  const clips = (card.data && card.data.clips_per_label) || {};
  const ap = card.per_species_ap || {};
  $("labels-caption").textContent = `${card.labels.length} labels, in the model's output order.`;
  $("labels-body").replaceChildren(...card.labels.map((l) => el("tr", {},
    el("td", {}, el("code", {}, l.code)), el("th", { scope: "row" }, l.common_name || "—"),
    el("td", {}, l.scientific_name ? el("em", {}, l.scientific_name) : "—"),
    el("td", { class: "num" }, l.code in clips ? String(clips[l.code]) : "—"),
    el("td", { class: "num" }, l.code in ap ? ap[l.code].toFixed(3) : "—"))));
}

function renderLicense(card) {
  const dl = $("license");
  dl.replaceChildren();
  fact(dl, "License", card.license || PROJECT_LICENSE);
  const src = card.source || {};
  fact(dl, "Source", src.origin || "trained with this project");
  if (src.file) fact(dl, "File", el("code", {}, src.file));
  fact(dl, "sha256", el("code", {}, card.sha256 || "—"));
}

// -- training curves: small SVG line charts, with the numbers in a table for screen readers ---------------
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  node.append(...children);
  return node;
}

function chart(title, xs, series) {
  const W = 520; const H = 240; const L = 52; const B = 34; const T = 10; const R = 12;
  const values = series.flatMap((s) => s.values.filter((v) => v !== null));
  let lo = Math.min(...values); let hi = Math.max(...values);
  if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
  const x0 = Math.min(...xs); const x1 = Math.max(...xs);
  const sx = (x) => L + ((x - x0) / Math.max(1e-9, x1 - x0)) * (W - L - R);
  const sy = (y) => T + (1 - (y - lo) / (hi - lo)) * (H - T - B);
  const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title} by epoch`, width: "100%" });
  g.append(svg("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "#fff", stroke: "#c9c9cf" }));
  for (let i = 0; i <= 4; i += 1) {
    const y = lo + (i / 4) * (hi - lo);
    g.append(svg("text", { x: L - 6, y: sy(y) + 4, "text-anchor": "end", "font-size": 11, fill: "#1d1d1f" }, y.toPrecision(3)));
  }
  for (const x of [x0, Math.round((x0 + x1) / 2), x1]) {
    g.append(svg("text", { x: sx(x), y: H - B + 16, "text-anchor": "middle", "font-size": 11, fill: "#1d1d1f" }, String(x)));
  }
  g.append(svg("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", "font-size": 11, fill: "#4a4a4f" }, "epoch"));
  series.forEach((s, i) => {
    const points = xs.map((x, k) => (s.values[k] === null ? null : `${sx(x)},${sy(s.values[k])}`)).filter(Boolean);
    g.append(svg("polyline", { points: points.join(" "), fill: "none", stroke: COLOURS[i % COLOURS.length], "stroke-width": 2 }));
  });
  const legend = el("div", { class: "chart-legend" }, ...series.map((s, i) =>
    el("span", {}, el("span", { class: "swatch", "aria-hidden": "true" }), s.name)));
  legend.querySelectorAll(".swatch").forEach((sw, i) => { sw.style.background = COLOURS[i % COLOURS.length]; });
  return el("figure", {}, el("figcaption", {}, title), g, legend, dataTable(title, xs, series));
}

function dataTable(title, xs, series) {
  const fmt = (v) => (v === null ? "—" : v.toPrecision(4));
  return el("details", {}, el("summary", {}, "The numbers"), el("table", {},
    el("caption", {}, `${title} by epoch`),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "epoch"), ...series.map((s) => el("th", { scope: "col", class: "num" }, s.name)))),
    el("tbody", {}, ...xs.map((x, k) => el("tr", {}, el("th", { scope: "row" }, String(x)),
      ...series.map((s) => el("td", { class: "num" }, fmt(s.values[k]))))))));
}

async function renderCurves(version) {
  const status = $("curves-status");
  $("charts").replaceChildren();
  let curves;
  try {
    curves = await getJSON(`v1/models/${version}/curves`);
  } catch (error) {
    status.textContent = error.code === "no_curves"
      ? "This version keeps no training curves (an imported model, or trained elsewhere)." : plainError(error).title;
    return;
  }
  const xs = curves.series[curves.x];
  const named = Object.entries(curves.series).filter(([n]) => n !== curves.x && !NOT_PLOTTED.has(n))
    .map(([name, values]) => ({ name, values })).filter((s) => s.values.some((v) => v !== null));
  const losses = named.filter((s) => s.name.includes("loss"));
  const scores = named.filter((s) => !s.name.includes("loss"));
  status.textContent = `${xs.length} epochs, from the run's metrics.csv.`;
  if (losses.length) $("charts").append(chart("Losses", xs, losses));
  if (scores.length) $("charts").append(chart("Validation scores", xs, scores));
}

// -- the page ----------------------------------------------------------------------------------------------
async function show(version) {
  try {
    const body = version ? await getJSON(`v1/models/${version}`) : null;
    const card = body ? body.card : state.models.card;
    const flags = body ? body : { served: true, production: state.models.production_version === card.version };
    $("model-title").textContent = `The model: ${card.name} v${card.version}`;
    $("card-link").href = `v1/models/${card.version}`;
    $("card-link").textContent = `v1/models/${card.version}`;
    renderFacts(card, flags);
    renderValidation(card);
    renderLabels(card);
    renderLicense(card);
    await renderCurves(card.version);
    document.body.dataset.ready = "true";
  } catch (error) {
    showError(error);
  }
}

function showError(error) {
  const plain = plainError(error);
  $("error").replaceChildren(el("strong", {}, plain.title), plain.detail ? el("p", {}, plain.detail) : "");
  $("error").hidden = false;
}

const state = { models: null };

async function init() {
  try {
    state.models = await getJSON("v1/models");
  } catch (error) {
    showError(error);
    return;
  }
  const served = state.models.served.version;
  $("version").replaceChildren(...state.models.versions.map((v) => el("option", { value: v, selected: v === served },
    `v${v}${v === served ? " (served)" : ""}${v === state.models.production_version ? " (production)" : ""}`)));
  $("version").addEventListener("change", (e) => show(Number(e.target.value)));
  await show(null);
}

init();
