// Recording from the microphone: raw samples through an AudioWorklet, saved as a 16-bit mono WAV file
// (a format the service reads everywhere, unlike the WebM that MediaRecorder makes).

export const MAX_RECORD_S = 600;

export class MicRecorder {
  constructor() {
    this.chunks = [];
    this.length = 0;
    this.context = null;
    this.stream = null;
  }

  static supported() {
    return Boolean(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.AudioWorkletNode);
  }

  get seconds() {
    return this.context ? this.length / this.context.sampleRate : 0;
  }

  async start() {
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    this.context = new AudioContext();
    await this.context.audioWorklet.addModule("static/ui/recorder-worklet.js");
    const source = this.context.createMediaStreamSource(this.stream);
    this.node = new AudioWorkletNode(this.context, "recorder-processor");
    this.node.port.onmessage = (e) => {
      this.chunks.push(e.data);
      this.length += e.data.length;
    };
    source.connect(this.node);
  }

  /** Stops and returns the recording as a File (WAV). */
  async stop() {
    const rate = this.context.sampleRate;
    this.node.port.onmessage = null;
    this.stream.getTracks().forEach((t) => t.stop());
    await this.context.close();
    const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
    return new File([encodeWav(this.chunks, this.length, rate)], `recording-${stamp}.wav`, { type: "audio/wav" });
  }
}

/** 16-bit PCM mono WAV bytes of Float32 chunks. */
export function encodeWav(chunks, length, rate) {
  const buffer = new ArrayBuffer(44 + 2 * length);
  const view = new DataView(buffer);
  const text = (offset, s) => [...s].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, 36 + 2 * length, true);
  text(8, "WAVEfmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, 2 * rate, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  text(36, "data");
  view.setUint32(40, 2 * length, true);
  let offset = 44;
  for (const chunk of chunks) {
    for (let i = 0; i < chunk.length; i += 1, offset += 2) {
      const s = Math.max(-1, Math.min(1, chunk[i]));
      view.setInt16(offset, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    }
  }
  return buffer;
}
