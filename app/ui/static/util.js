// Small helpers shared by the pages: DOM building, number and time formats, errors in plain words.

/** An element with attributes and children (strings become text nodes: data is never parsed as HTML). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Seconds as m:ss (or m:ss.s with decimals). */
export function clock(seconds, decimals = 0) {
  const s = Math.max(0, seconds);
  const m = Math.floor(s / 60);
  const rest = (s - 60 * m).toFixed(decimals).padStart(decimals ? 3 + decimals : 2, "0");
  return `${m}:${rest}`;
}

/** A time range in seconds, e.g. "15.0–20.0 s". */
export function span(start, end) {
  return `${start.toFixed(1)}–${end.toFixed(1)} s`;
}

export function prob(p) {
  return p.toFixed(3);
}

/** JSON of a URL, or an Error carrying the service's {error, detail} and the HTTP status. */
export async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw serviceError(response.status, body);
  return body;
}

export function serviceError(status, body) {
  const error = new Error((body && body.detail) || `HTTP ${status}`);
  error.status = status;
  error.code = (body && body.error) || "http_error";
  error.detail = (body && body.detail) || "";
  return error;
}

// The service's error codes, said for people; the service's own detail is shown under it.
const PLAIN = {
  unsupported_media_type: "This file is not a recording the service can read. It takes WAV, FLAC, OGG/Vorbis, Opus and MP3.",
  not_audio: "This file is not audio. Choose a WAV, FLAC, OGG/Vorbis, Opus or MP3 recording.",
  unsupported_format: "This audio format is not supported. Convert it to WAV or FLAC and try again.",
  empty_audio: "The recording is empty: there is no sound in it to analyse.",
  truncated_audio: "The file is cut short (incomplete upload or copy). Try the original file.",
  corrupt_audio: "The file is damaged and cannot be decoded.",
  non_finite_samples: "The file holds invalid sample values and cannot be analysed.",
  audio_too_long: "The recording is longer than this service accepts. Split it into shorter files.",
  no_channels: "The file has no audio channels.",
  unsupported_sample_rate: "The recording's sample rate is outside what the service accepts (8–384 kHz).",
  upload_too_large: "The file is larger than this service accepts. Split or compress it (FLAC, Opus) and try again.",
  payload_too_large: "The file is larger than this service accepts.",
  too_many_files: "Send one file at a time.",
  missing_file: "No file arrived. Choose the file again.",
  bad_multipart: "The upload arrived damaged. Try again.",
  invalid_option: "The service refused an analysis option.",
  invalid_request: "The service refused an analysis option.",
  unknown_species: "A species asked for is not one the model knows.",
  too_busy: "The service is busy right now. Try again in a few seconds.",
  queue_full: "The service is busy right now. Try again in a few seconds.",
  model_unavailable: "The model is being swapped. Try again in a few seconds.",
  no_model: "No model is loaded yet. Try again in a few seconds.",
  result_not_found: "This result has expired. Analyse the file again to download it.",
  network: "The service could not be reached. Check that it is running and try again.",
  internal_error: "The service failed unexpectedly. The service log has the details.",
};

/** {title, detail} for an Error made by serviceError (or a network failure). */
export function plainError(error) {
  const title = PLAIN[error.code] || "The service could not analyse this file.";
  const status = error.status ? `, HTTP ${error.status}` : "";
  const detail = error.detail ? `The service said: “${error.detail}” (${error.code}${status}).` : "";
  return { title, detail };
}
