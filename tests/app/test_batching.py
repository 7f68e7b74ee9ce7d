"""In-process tests of the dynamic batcher: batching, splitting, limits, errors, cancellation, close."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from app.batching import BatcherClosedError, DynamicBatcher, QueueFullError
from app.metrics import Metrics


class Recorder:
    """run_fn that records batch sizes and returns each row's first value times 2."""

    def __init__(self, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.sizes: list[int] = []
        self.seen: list[float] = []
        self.gate = gate
        self.fail = fail

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.gate is not None:
            self.gate.wait(10)
        self.sizes.append(len(x))
        self.seen.extend(x[:, 0].tolist())
        if self.fail:
            raise RuntimeError("model exploded")
        return x[:, :1] * 2


def rows(start: int, n: int) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.float32)[:, None].repeat(3, axis=1)


def test_concurrent_requests_share_a_run():
    async def main():
        rec = Recorder()
        b = DynamicBatcher(rec, max_batch_size=64, max_wait_ms=50, max_queue_windows=1000, metrics=Metrics())
        b.start()
        outs = await asyncio.gather(*(b.submit(rows(10 * i, 3)) for i in range(5)))
        await b.close()
        return rec, outs

    rec, outs = asyncio.run(main())
    assert rec.sizes == [15]
    for i, out in enumerate(outs):
        assert out[:, 0].tolist() == [2 * v for v in range(10 * i, 10 * i + 3)]


def test_large_request_is_split_and_reassembled_in_order():
    async def main():
        rec = Recorder()
        b = DynamicBatcher(rec, max_batch_size=32, max_wait_ms=0, max_queue_windows=1000)
        b.start()
        out = await b.submit(rows(0, 70))
        await b.close()
        return rec, out

    rec, out = asyncio.run(main())
    assert rec.sizes == [32, 32, 6]
    assert out[:, 0].tolist() == [2 * v for v in range(70)]


def test_batch_never_exceeds_max_size():
    async def main():
        gate = threading.Event()
        rec = Recorder(gate)
        b = DynamicBatcher(rec, max_batch_size=8, max_wait_ms=20, max_queue_windows=1000)
        b.start()
        tasks = [asyncio.ensure_future(b.submit(rows(i * 5, 5))) for i in range(6)]
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(*tasks)
        await b.close()
        return rec

    rec = asyncio.run(main())
    assert max(rec.sizes) <= 8 and sum(rec.sizes) == 30


def test_queue_full_is_immediate():
    async def main():
        gate = threading.Event()
        b = DynamicBatcher(Recorder(gate), max_batch_size=4, max_wait_ms=0, max_queue_windows=6)
        b.start()
        first = asyncio.ensure_future(b.submit(rows(0, 4)))   # taken by the run, which blocks on the gate
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(b.submit(rows(4, 5)))  # queued
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFullError):
            await b.submit(rows(9, 2))                          # 5 + 2 > 6
        gate.set()
        await asyncio.gather(first, second)
        await b.close()

    asyncio.run(main())


def test_errors_reach_every_caller_and_the_loop_survives():
    async def main():
        rec = Recorder(fail=True)
        b = DynamicBatcher(rec, max_batch_size=16, max_wait_ms=30, max_queue_windows=100)
        b.start()
        results = await asyncio.gather(b.submit(rows(0, 2)), b.submit(rows(2, 2)), return_exceptions=True)
        rec.fail = False
        after = await b.submit(rows(0, 1))
        await b.close()
        return results, after

    results, after = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) and "exploded" in str(r) for r in results)
    assert after[:, 0].tolist() == [0.0]


def test_cancelled_request_is_dropped_before_its_run():
    async def main():
        gate = threading.Event()
        rec = Recorder(gate)
        b = DynamicBatcher(rec, max_batch_size=4, max_wait_ms=0, max_queue_windows=100)
        b.start()
        busy = asyncio.ensure_future(b.submit(rows(0, 4)))
        await asyncio.sleep(0.05)
        doomed = asyncio.ensure_future(b.submit(rows(100, 2)))
        await asyncio.sleep(0.01)
        doomed.cancel()
        kept = asyncio.ensure_future(b.submit(rows(200, 2)))
        await asyncio.sleep(0.01)
        gate.set()
        await asyncio.gather(busy, kept)
        await b.close()
        return rec, b

    rec, b = asyncio.run(main())
    assert 100.0 not in rec.seen and 200.0 in rec.seen
    assert b.queued_windows == 0


def test_close_drains_then_refuses():
    async def main():
        b = DynamicBatcher(Recorder(), max_batch_size=4, max_wait_ms=5, max_queue_windows=100)
        b.start()
        pending = [asyncio.ensure_future(b.submit(rows(i, 3))) for i in range(5)]
        await asyncio.sleep(0)
        await b.close()
        done = await asyncio.gather(*pending)
        with pytest.raises(BatcherClosedError):
            await b.submit(rows(0, 1))
        return done

    assert len(asyncio.run(main())) == 5


@pytest.mark.parametrize("kwargs", [{"max_batch_size": 0}, {"max_wait_ms": -1}, {"max_queue_windows": 0},
                                    {"max_concurrent_batches": 0}])
def test_bad_limits_raise_value_error(kwargs):
    params = {"max_batch_size": 4, "max_wait_ms": 1, "max_queue_windows": 10, **kwargs}
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        DynamicBatcher(Recorder(), **params)


def test_inputs_of_any_trailing_shape_are_batched_by_their_first_axis():
    """Waveform models submit (windows, model windows, samples): rows are windows whatever the shape."""
    seen: list[tuple[int, ...]] = []

    def run(x: np.ndarray) -> np.ndarray:
        seen.append(x.shape)
        return x.max(axis=(1, 2))[:, None]

    async def main():
        b = DynamicBatcher(run, max_batch_size=8, max_wait_ms=50, max_queue_windows=1000)
        b.start()
        x = [np.arange(n * 3 * 5, dtype=np.float32).reshape(n, 3, 5) + 1000 * i for i, n in enumerate((2, 3, 5))]
        outs = await asyncio.gather(*(b.submit(xi) for xi in x))
        await b.close()
        return x, outs

    x, outs = asyncio.run(main())
    assert all(shape[1:] == (3, 5) for shape in seen) and sum(s[0] for s in seen) == 10
    for xi, out in zip(x, outs, strict=True):
        np.testing.assert_array_equal(out[:, 0], xi.max(axis=(1, 2)))


def test_a_client_gone_drops_its_queued_windows_at_once():
    """until_disconnect: the client disconnects while its windows wait; they leave the queue (and its gauge) now."""
    from starlette.requests import ClientDisconnect

    from app.clients import until_disconnect

    class GoneRequest:
        async def receive(self):
            await asyncio.sleep(0.05)
            return {"type": "http.disconnect"}

    async def main():
        metrics = Metrics()
        batcher = DynamicBatcher(Recorder(), max_batch_size=4, max_wait_ms=1, max_queue_windows=64, metrics=metrics)
        # not started: nothing takes the windows off the queue
        with pytest.raises(ClientDisconnect):
            await until_disconnect(GoneRequest(), batcher.submit(rows(0, 10)))
        assert batcher.queued_windows == 0
        assert metrics.queue_depth._value.get() == 0
        await batcher.close(timeout_s=1)

    asyncio.run(main())
