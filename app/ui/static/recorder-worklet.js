// AudioWorklet processor: hands the first input channel's samples to the page, block by block.
class RecorderProcessor extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel && channel.length) this.port.postMessage(channel.slice(0));
    return true;
  }
}

registerProcessor("recorder-processor", RecorderProcessor);
