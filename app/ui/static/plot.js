// Drawing: the spectrogram, the species x window heat map and their axes, on one time scale.

export const ROW_HEIGHT = 18;
export const SPEC_HEIGHT = 168;
export const AXIS_HEIGHT = 26;
const INK = "#1d1d1f";
const MUTED = "#4a4a4f";
const FOCUS = "#c2410c";

/** Size a canvas in CSS pixels (sharp on high-density screens); returns its 2D context in CSS units. */
export function fitCanvas(canvas, width, height) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(width * ratio));
  canvas.height = Math.max(1, Math.round(height * ratio));
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return ctx;
}

// A sequential blue scale (light to dark), readable on white, for probabilities 0..1.
const BLUES = [[247, 251, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107]];

export function blues(p) {
  const x = Math.min(1, Math.max(0, p)) * (BLUES.length - 1);
  const i = Math.min(BLUES.length - 2, Math.floor(x));
  const t = x - i;
  return BLUES[i].map((c, k) => Math.round(c + t * (BLUES[i + 1][k] - c)));
}

function cellColour(p, threshold) {
  const [r, g, b] = blues(p);
  if (p >= threshold) return `rgb(${r},${g},${b})`;
  const fade = (c) => Math.round(c + 0.8 * (255 - c)); // under the threshold: mostly white
  return `rgb(${fade(r)},${fade(g)},${fade(b)})`;
}

/** The spectrogram image over [0, its duration] at pxPerS. */
export function drawSpectrogram(canvas, image, spec, width, pxPerS) {
  const ctx = fitCanvas(canvas, width, SPEC_HEIGHT);
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, width, SPEC_HEIGHT);
  ctx.imageSmoothingEnabled = spec.width > width;
  ctx.drawImage(image, 0, 0, spec.duration_s * pxPerS, SPEC_HEIGHT);
}

/** Heat map cells: rows are species, columns windows (drawn over their hop from the window's start). */
export function drawHeatmap(canvas, view, width, pxPerS, focus) {
  const height = Math.max(ROW_HEIGHT, view.rows.length * ROW_HEIGHT);
  const ctx = fitCanvas(canvas, width, height);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, width, height);
  const cellW = Math.max(1, view.step * pxPerS);
  view.rows.forEach((row, r) => {
    row.values.forEach((p, w) => {
      ctx.fillStyle = cellColour(p, view.threshold);
      ctx.fillRect(view.starts[w] * pxPerS, r * ROW_HEIGHT, cellW - (cellW > 4 ? 1 : 0), ROW_HEIGHT - 1);
    });
  });
  if (focus && focus.row < view.rows.length) {
    ctx.strokeStyle = FOCUS;
    ctx.lineWidth = 2;
    ctx.strokeRect(view.starts[focus.col] * pxPerS + 1, focus.row * ROW_HEIGHT + 1, cellW - 2, ROW_HEIGHT - 3);
  }
  if (!view.rows.length) {
    ctx.fillStyle = MUTED;
    ctx.font = "13px system-ui, sans-serif";
    ctx.fillText("No species reaches the threshold.", 8, 13);
  }
}

/** The cell under (x, y) CSS pixels of the heat map, or null. */
export function cellAt(view, x, y, pxPerS) {
  const row = Math.floor(y / ROW_HEIGHT);
  if (row < 0 || row >= view.rows.length) return null;
  const t = x / pxPerS;
  for (let w = view.starts.length - 1; w >= 0; w -= 1) {
    if (t >= view.starts[w] && t < view.starts[w] + view.step) return { row, col: w };
  }
  return null;
}

function niceStep(pxPerS, minPx) {
  const steps = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
  return steps.find((s) => s * pxPerS >= minPx) || 7200;
}

/** Time ticks under the plots. */
export function drawTimeAxis(canvas, axisS, width, pxPerS, clock) {
  const ctx = fitCanvas(canvas, width, AXIS_HEIGHT);
  const step = niceStep(pxPerS, 64);
  ctx.strokeStyle = MUTED;
  ctx.fillStyle = INK;
  ctx.font = "12px system-ui, sans-serif";
  ctx.textBaseline = "top";
  for (let t = 0; t <= axisS + 1e-9; t += step) {
    const x = Math.round(t * pxPerS) + 0.5;
    ctx.beginPath();
    ctx.moveTo(x, 0);
    ctx.lineTo(x, 5);
    ctx.stroke();
    ctx.textAlign = x < 20 ? "left" : x > width - 20 ? "right" : "center";
    ctx.fillText(clock(t, step < 1 ? 1 : 0), x, 8);
  }
}

/** Frequency ticks beside the spectrogram (rows are mel bands: ticks follow their centre frequencies). */
export function drawFrequencyAxis(canvas, frequencies, width) {
  const ctx = fitCanvas(canvas, width, SPEC_HEIGHT);
  ctx.fillStyle = INK;
  ctx.strokeStyle = MUTED;
  ctx.font = "12px system-ui, sans-serif";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  const n = frequencies.length;
  for (const f of [250, 500, 1000, 2000, 4000, 8000, 16000, 32000]) {
    if (f < frequencies[0] || f > frequencies[n - 1]) continue;
    let i = frequencies.findIndex((v) => v >= f);
    i = Math.max(1, i);
    const row = i - 1 + (f - frequencies[i - 1]) / (frequencies[i] - frequencies[i - 1]);
    const y = SPEC_HEIGHT - ((row + 0.5) / n) * SPEC_HEIGHT;
    if (y < 8 || y > SPEC_HEIGHT - 6) continue;
    ctx.beginPath();
    ctx.moveTo(width - 5, y);
    ctx.lineTo(width, y);
    ctx.stroke();
    ctx.fillText(f >= 1000 ? `${f / 1000} kHz` : `${f} Hz`, width - 8, y);
  }
}

/** Species names beside the heat map rows. */
export function drawRowLabels(canvas, view, width) {
  const height = Math.max(ROW_HEIGHT, view.rows.length * ROW_HEIGHT);
  const ctx = fitCanvas(canvas, width, height);
  ctx.fillStyle = INK;
  ctx.font = "12px system-ui, sans-serif";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  view.rows.forEach((row, r) => {
    let name = row.label.common_name || row.label.code;
    while (name.length > 4 && ctx.measureText(name).width > width - 10) name = `${name.slice(0, -2)}…`;
    ctx.fillText(name, width - 8, r * ROW_HEIGHT + ROW_HEIGHT / 2);
  });
}

/** A colour legend for the heat map: 0 to 1. */
export function drawLegend(canvas, width) {
  const ctx = fitCanvas(canvas, width, 12);
  for (let x = 0; x < width; x += 1) {
    const [r, g, b] = blues(x / (width - 1));
    ctx.fillStyle = `rgb(${r},${g},${b})`;
    ctx.fillRect(x, 0, 1, 12);
  }
  ctx.strokeStyle = MUTED;
  ctx.strokeRect(0.5, 0.5, width - 1, 11);
}
