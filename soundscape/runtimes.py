"""Model runtimes behind one interface: ONNX Runtime (the default) and LiteRT (TFLite models).

The card's ``runtime`` picks one; :class:`~soundscape.inference.Engine` sees only :class:`Runtime`: the
model's input and output names with their shapes, and ``run``. LiteRT (``ai-edge-litert``, the ``[litert]``
extra) runs BirdNET v2.4, whose TFLite graph ONNX converters cannot take as it is (see the README).

LiteRT interpreters are not thread-safe: :class:`LiteRTRuntime` keeps a pool of interpreters, each used by
one thread at a time (as many as there were concurrent runs), resized to the batch at hand (cheap once
allocated: measured 0.2 ms). Batches are split into runs of at most ``max_batch`` rows, which bounds the
activations' memory (BirdNET: about 230 MB per interpreter at 8 windows, per-window time flat from 1 to 16).
Intermediate tensors named in ``declare`` (the engine names the card's embedding output: BirdNET's
``model/GLOBAL_AVG_POOL/Mean``) are made outputs of the model before it is loaded (:func:`declare_outputs`
rewrites the flatbuffer's subgraph outputs, 0.2 s for BirdNET's 52 MB; the verified file on disk is
unchanged), so they come out of ordinary interpreters at any batch, bit-identical. Any other intermediate
tensor can only be read from an interpreter that keeps every tensor (``experimental_preserve_all_tensors``):
such interpreters are created only when one is asked for, and run one window at a time (BirdNET: +290 MB per
window of batch).
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from model_store import ModelCard

__all__ = ["EXTRAS", "LiteRTRuntime", "OnnxRuntime", "Runtime", "RuntimeUnavailableError", "SignatureError",
           "check_signature", "declare_outputs", "open_runtime", "require"]

Shape = list[int | None]

# runtime -> (module it needs, extra that installs it)
EXTRAS: dict[str, tuple[str, str]] = {"onnxruntime": ("onnxruntime", ""), "litert": ("ai_edge_litert", "litert")}


class RuntimeUnavailableError(RuntimeError):
    """The runtime a model needs is not installed; the message names the extra."""


class SignatureError(ValueError):
    """The model's inputs or outputs do not match its card."""


class Runtime(Protocol):
    """What the engine needs from a runtime."""

    kind: str

    def input_shapes(self) -> dict[str, Shape]:
        """Input names and shapes (None: a dynamic axis)."""

    def output_shapes(self) -> dict[str, Shape]:
        """Names ``run`` can return (outputs; LiteRT: intermediate tensors too) and their shapes."""

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The named tensors for one batch."""


def require(runtime: str) -> None:
    """Raise :class:`RuntimeUnavailableError` (one line, naming the extra) when ``runtime`` is not installed."""
    module, extra = EXTRAS[runtime]
    if importlib.util.find_spec(module) is None:
        raise RuntimeUnavailableError(f"models with runtime {runtime!r} need {module}: "
                                      f"pip install 'soundscape[{extra}]'")


def open_runtime(runtime: str, data: bytes, *, threads: int = 1, inter_op_threads: int = 1,
                 declare: Sequence[str] = (), memory_arena: bool = True, memory_pattern: bool = True) -> Runtime:
    """Load a model file's bytes with the named runtime.

    ``declare``: tensors the model must give as outputs (LiteRT: intermediate tensors made outputs with
    :func:`declare_outputs`; ONNX graphs already declare theirs). ``memory_arena``: ONNX Runtime keeps its
    CPU arena (activations reused between runs, memory kept at its peak) or allocates each run's activations
    from the C allocator and frees them after it. ``memory_pattern``: ONNX Runtime plans one block for all of a
    run's activations per input shape and keeps it (with batches of varying size, one block per size).

    Raises:
        RuntimeUnavailableError: the runtime is not installed.
        Exception: whatever the runtime raises on bytes it cannot load.
    """
    require(runtime)
    if runtime == "litert":
        return LiteRTRuntime(data, threads=threads, declare=declare)
    return OnnxRuntime(data, threads=threads, inter_op_threads=inter_op_threads, memory_arena=memory_arena,
                       memory_pattern=memory_pattern)


def declare_outputs(data: bytes, names: Sequence[str]) -> bytes:
    """A TFLite model whose first subgraph also outputs the named tensors (kept in their order after the
    model's own outputs); the bytes unchanged when it already does.

    Raises:
        KeyError: a name that is no tensor of the subgraph.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    graph = model.subgraphs[0]
    index = {t.name.decode(): i for i, t in enumerate(graph.tensors)}
    outputs = [int(i) for i in graph.outputs]
    missing = [n for n in names if n not in index]
    if missing:
        raise KeyError(f"the model has no tensor {missing[0]!r}")
    added = [index[n] for n in names if index[n] not in outputs]
    if not added:
        return data
    graph.outputs = np.asarray(outputs + added, dtype=np.int32)
    builder = flatbuffers.Builder(len(data) + (1 << 16))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _shape(dims: Any) -> Shape:
    return [int(d) if isinstance(d, int | np.integer) and d >= 0 else None for d in dims]


class OnnxRuntime:
    """One ONNX Runtime session (concurrent ``run`` calls are allowed on it)."""

    kind = "onnxruntime"

    def __init__(self, data: bytes, *, threads: int = 1, inter_op_threads: int = 1, memory_arena: bool = True,
                 memory_pattern: bool = True) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.enable_cpu_mem_arena = memory_arena
        opts.enable_mem_pattern = memory_pattern
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = inter_op_threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])

    def input_shapes(self) -> dict[str, Shape]:
        return {i.name: _shape(i.shape) for i in self.session.get_inputs()}

    def output_shapes(self) -> dict[str, Shape]:
        return {o.name: _shape(o.shape) for o in self.session.get_outputs()}

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(names, feed)


@dataclass
class _Interpreter:
    interpreter: Any
    batch: int = 0


class LiteRTRuntime:
    """A TFLite model run by LiteRT, from a pool of interpreters (see the module docstring).

    Args:
        data (bytes): the ``.tflite`` file's bytes (kept: interpreters read their weights from them).
        threads (int): LiteRT threads per interpreter. (Default: ``1``)
        max_batch (int): most rows per interpreter run. (Default: ``8``)
        declare (Sequence[str]): intermediate tensors to make outputs (:func:`declare_outputs`). (Default: none)
    """

    kind = "litert"

    def __init__(self, data: bytes, *, threads: int = 1, max_batch: int = 8, declare: Sequence[str] = ()) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._make = Interpreter
        self._data = declare_outputs(data, declare) if declare else data
        self.threads = threads
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._free: dict[bool, list[_Interpreter]] = {False: [], True: []}
        probe = self._new(preserve=False)
        it = probe.interpreter
        (inp,) = it.get_input_details()
        self._input = (inp["name"], inp["index"], _shape(inp["shape_signature"]))
        self._outputs = {d["name"]: (d["index"], _shape(d["shape_signature"])) for d in it.get_output_details()}
        self._tensors = {d["name"]: (d["index"], [None, *_shape(d["shape"])[1:]]) for d in it.get_tensor_details()
                         if d["name"] and d["name"] not in self._outputs}
        self._free[False].append(probe)

    def input_shapes(self) -> dict[str, Shape]:
        name, _, shape = self._input
        return {name: shape}

    def output_shapes(self) -> dict[str, Shape]:
        return {n: s for n, (_, s) in (self._outputs | self._tensors).items()}

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = np.ascontiguousarray(feed[self._input[0]], dtype=np.float32)
        preserve = any(n not in self._outputs for n in names)
        step = 1 if preserve else self.max_batch
        parts = [self._invoke(x[a : a + step], names, preserve) for a in range(0, len(x), step)]
        return [np.concatenate([p[i] for p in parts]) for i in range(len(names))]

    def _new(self, *, preserve: bool) -> _Interpreter:
        with warnings.catch_warnings():  # preserve_all_tensors warns that it is meant for debugging
            warnings.simplefilter("ignore")
            it = self._make(model_content=self._data, num_threads=self.threads,
                            experimental_preserve_all_tensors=preserve)
        it.allocate_tensors()
        return _Interpreter(it, batch=int(it.get_input_details()[0]["shape"][0]))

    @contextlib.contextmanager
    def _interpreter(self, preserve: bool) -> Iterator[_Interpreter]:
        with self._lock:
            slot = self._free[preserve].pop() if self._free[preserve] else None
        slot = slot or self._new(preserve=preserve)
        try:
            yield slot
        finally:
            with self._lock:
                self._free[preserve].append(slot)

    def _invoke(self, x: np.ndarray, names: list[str], preserve: bool) -> list[np.ndarray]:
        _, index, shape = self._input
        with self._interpreter(preserve) as slot:
            it = slot.interpreter
            if slot.batch != len(x):
                it.resize_tensor_input(index, [len(x), *shape[1:]])
                it.allocate_tensors()
                slot.batch = len(x)
            it.set_tensor(index, x)
            it.invoke()
            return [it.get_tensor(self._index(n)) for n in names]

    def _index(self, name: str) -> int:
        return self._outputs[name][0] if name in self._outputs else self._tensors[name][0]


def check_signature(card: ModelCard, runtime: Runtime, head: Runtime | None = None) -> None:
    """Check that the model's first input and named outputs match the card (dynamic axes match any size).

    With a head (``card.head``), the model must give the embedding output and ``head`` must take it
    (``card.head.input``) and give the logits output.

    Raises:
        SignatureError: a missing input or output, or a shape that differs.
    """
    inputs, outputs = runtime.input_shapes(), runtime.output_shapes()
    spec = card.inputs[0]
    if spec.name not in inputs:
        raise SignatureError(f"the model has no input {spec.name!r} (has {list(inputs)})")
    if not _fits(inputs[spec.name], spec.shape):
        raise SignatureError(f"model input shape {inputs[spec.name]} does not match the card's {spec.shape}")
    for out in card.outputs[1:] if card.head else card.outputs:
        if out.name not in outputs:
            raise SignatureError(f"the model has no output {out.name!r} (has {list(outputs)[:5]})")
    if card.head is not None:
        outputs = _check_head(card, outputs, head)
    logits = outputs[card.outputs[0].name]
    if len(logits) != 2 or logits[1] not in (None, len(card.labels)):
        raise SignatureError(f"model output shape {logits} does not match {len(card.labels)} labels")


def _check_head(card: ModelCard, outputs: dict[str, Shape], head: Runtime | None) -> dict[str, Shape]:
    """The head's outputs, once its input is checked against the card and the backbone's embedding."""
    if head is None:
        raise SignatureError("the card has a head but no head model was given")
    emb, spec = card.outputs[1], card.head.input
    if not _fits(outputs[emb.name], emb.shape):
        raise SignatureError(f"embedding {emb.name!r} shape {outputs[emb.name]} does not match the card's {emb.shape}")
    head_inputs, head_outputs = head.input_shapes(), head.output_shapes()
    if spec.name not in head_inputs or not _fits(head_inputs[spec.name], spec.shape):
        raise SignatureError(f"the head has no input {spec.name!r} of shape {spec.shape} (has {head_inputs})")
    if card.outputs[0].name not in head_outputs:
        raise SignatureError(f"the head has no output {card.outputs[0].name!r} (has {list(head_outputs)})")
    return head_outputs


def _fits(model: Shape, card: Shape) -> bool:
    return len(model) == len(card) and all(m is None or m == c for m, c in zip(model[1:], card[1:], strict=True))

