// The page's calls to the service: POST /v1/review (with upload progress), its progress endpoint, downloads.

import { serviceError } from "./util.js";

function token() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Array.from({ length: 4 }, () => Math.random().toString(36).slice(2, 10)).join("-");
}

/**
 * Send one recording to POST /v1/review.
 * onProgress({stage, fraction, text}) is called while it uploads and while the service analyses it.
 * Resolves to {body, receivedAt}: receivedAt is performance.now() when the whole answer had arrived.
 */
export function review(file, { hop = null, onProgress = () => {} } = {}) {
  const progressToken = token();
  const query = new URLSearchParams({ progress: progressToken });
  if (hop) query.set("hop_s", hop);
  const xhr = new XMLHttpRequest();
  const poller = progressPoller(progressToken, onProgress);
  return new Promise((resolve, reject) => {
    xhr.open("POST", `v1/review?${query}`);
    xhr.responseType = "text";
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress({ stage: "uploading", fraction: e.loaded / e.total, text: uploadText(e) });
    };
    xhr.upload.onload = () => poller.start();
    xhr.onload = () => {
      poller.stop();
      const receivedAt = performance.now();
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { body = null; }
      if (xhr.status === 200 && body) resolve({ body, receivedAt });
      else reject(serviceError(xhr.status, body));
    };
    xhr.onerror = () => { poller.stop(); reject(Object.assign(new Error("network"), { code: "network" })); };
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

function uploadText(e) {
  const mb = (n) => (n / 1048576).toFixed(1);
  return `Uploading: ${mb(e.loaded)} of ${mb(e.total)} MB`;
}

/** Polls GET /v1/review/progress/{token} every 300 ms between start() and stop(). */
function progressPoller(progressToken, onProgress) {
  let timer = null;
  let stopped = false;
  async function tick() {
    try {
      const r = await fetch(`v1/review/progress/${progressToken}`);
      if (r.ok && !stopped) onProgress(progressView(await r.json()));
    } catch { /* the answer itself will tell */ }
    if (!stopped) timer = setTimeout(tick, 300);
  }
  return {
    start() { if (!stopped && timer === null) timer = setTimeout(tick, 0); },
    stop() { stopped = true; clearTimeout(timer); },
  };
}

function progressView(p) {
  const total = p.windows_total;
  const text = {
    receiving: "Receiving the upload…",
    analysing: total ? `Analysing: ${p.windows_done} of ${total} windows` : "Analysing…",
    rendering: "Drawing the spectrogram…",
    done: "Done",
    failed: "Failed",
  }[p.stage];
  return { stage: p.stage, fraction: p.fraction, text };
}

/** The URL of a kept result in one of soundscape analyze's formats. */
export function downloadUrl(resultId, format, threshold) {
  const query = new URLSearchParams({ format });
  if (format !== "birdclef" && threshold > 0) query.set("threshold", String(threshold));
  return `v1/review/${encodeURIComponent(resultId)}/download?${query}`;
}
