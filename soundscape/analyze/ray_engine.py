"""The Ray engine: the same per-file work as the local engine, as a Ray Data pipeline.

The file list becomes a dataset (``from_items``); ``map_batches`` runs :class:`RayAnalyzer` actors (one
ONNX session each, 1 CPU each) that decode, infer and write each file's outputs, and stream one record
per file back to the driver, which journals it. Inputs and ``OUT`` must therefore be on a filesystem
every node sees (NFS, a mounted bucket) under the same path. Ray is imported only in this module.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

from model_store import VerifiedModel

from .settings import AnalyzeSettings
from .worker import FileProcessor

__all__ = ["RayAnalyzer", "run_ray"]

log = logging.getLogger(__name__)


class RayAnalyzer:
    """A Ray Data actor: builds its ONNX session once, then analyses one file per row.

    Args:
        model (VerifiedModel): the verified model (shipped to each actor once).
        settings (AnalyzeSettings): the run's settings.
    """

    def __init__(self, model: VerifiedModel, settings: AnalyzeSettings) -> None:
        logging.basicConfig(level=logging.WARNING)
        self.processor = FileProcessor(model, settings)

    def __call__(self, batch: dict) -> dict:
        """``{"path", "rel", "key", "size", "mtime_ns"}`` columns in, one JSON journal record per row out."""
        columns = zip(batch["path"], batch["rel"], batch["key"], batch["size"], batch["mtime_ns"], strict=True)
        records = [self.processor({"path": str(p), "rel": str(r), "key": str(k), "size": int(n), "mtime_ns": int(m)})
                   for p, r, k, n, m in columns]
        return {"record": [json.dumps(rec) for rec in records]}


def run_ray(model: VerifiedModel, settings: AnalyzeSettings, tasks: list[dict]) -> Iterator[dict]:
    """Analyse ``tasks`` on a Ray cluster (``settings.address``) or on a local Ray it starts.

    Yields:
        dict: one journal record per task, as the actors finish them.
    """
    if not tasks:
        return
    import ray

    started = False
    if not ray.is_initialized():
        if settings.address:
            ray.init(address=settings.address, log_to_driver=False)
        else:
            ray.init(num_cpus=settings.num_cpus or settings.workers, include_dashboard=False,
                     log_to_driver=False)
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the driver's tqdm bar counts files
        ctx.print_on_execution_start = False
        n_actors = min(settings.workers, len(tasks))
        ds = ray.data.from_items(tasks, override_num_blocks=len(tasks)).map_batches(
            RayAnalyzer,
            fn_constructor_kwargs={"model": model, "settings": settings},
            batch_size=1,
            num_cpus=1,
            compute=ray.data.ActorPoolStrategy(size=n_actors),
        )
        for row in ds.iter_rows():
            yield json.loads(row["record"])
    finally:
        if started:
            ray.shutdown()
