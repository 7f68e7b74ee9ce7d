"""The ``soundscape`` command: one verb per job.

Each verb lives in the package that does the work and exposes ``add_arguments(parser)`` and
``run(args) -> int``; this module only dispatches. Verb modules keep heavy imports (torch, onnxruntime)
inside ``run`` so ``--help`` is instant and ``serve`` never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from soundscape import __version__
from soundscape.extras import missing_extra

# verb -> (module, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "serve": ("app.cli", "Run the HTTP inference service (uvicorn) on the production model."),
    "analyze": ("soundscape.analyze.cli", "Analyse folders of recordings into detection files (resumable)."),
    "train": ("training.cli_train", "Fine-tune a timm model on BirdCLEF-layout clips (--backbone: train a head on "
                                    "a frozen model's embeddings)."),
    "export": ("training.cli_export", "Export a training checkpoint to ONNX and register it in the store."),
    "retrain": ("training.cli_retrain", "Train a challenger, compare with production, promote if better."),
    "build-default-model": ("training.cli_default", "Rebuild the bundled default model from demo data."),
    "models": ("model_store.cli", "List, inspect, verify, promote, roll back and import models in the store."),
    "demo-data": ("soundscape.demo.cli", "Generate the synthetic demo bird-sound dataset."),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults and keeps description line breaks."""


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soundscape",
        description="Bird species presence in field recordings: serve, analyse, train, export, retrain.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"soundscape {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="Logging level.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (module, help_text) in VERBS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        if name == verb:  # only import the module of the verb being run
            importlib.import_module(module).add_arguments(sp)
    return parser


def _verb_of(argv: Sequence[str]) -> str | None:
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--log-level":
            skip = True
            continue
        if not arg.startswith("-"):
            return arg
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb. Returns its exit code; 2 (one line on stderr) when the verb needs an extra that is not
    installed (:mod:`soundscape.extras`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = _verb_of(argv)
    if verb not in VERBS:
        verb = None
    try:
        return _run(argv, verb)
    except ModuleNotFoundError as exc:
        err = missing_extra(exc, f"soundscape {verb}")
        if err is None:
            raise
        print(err, file=sys.stderr)
        return 2


def _run(argv: list[str], verb: str | None) -> int:
    parser = build_parser(verb)
    args = parser.parse_args(argv)
    if not args.verb:
        parser.print_help()
        return 2
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(VERBS[args.verb][0])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        logging.getLogger("soundscape").warning("interrupted")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
