"""``soundscape models``: list, show, verify, promote and roll back models in a store."""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import DEFAULT_MODEL_NAME, ModelStore, StoreError, default_store_path

STORE_ENV = "SOUNDSCAPE_STORE_PATH"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "show", "verify", "promote", "rollback", "cleanup"],
                        help="What to do.")
    parser.add_argument("version", nargs="?", type=int, help="Version for show/verify/promote.")
    parser.add_argument("--store", default=os.environ.get(STORE_ENV, str(default_store_path())),
                        help=f"Model store folder (env {STORE_ENV}).")
    parser.add_argument("--name", default=DEFAULT_MODEL_NAME, help="Model name in the store.")


def run(args: argparse.Namespace) -> int:
    store = ModelStore(args.store)
    try:
        if args.action == "list":
            prod = store.production(args.name) if store.versions(args.name) else None
            for name in store.names():
                for v in store.versions(name):
                    card = store.card(name, v)
                    mark = "*" if name == args.name and v == prod else " "
                    metrics = " ".join(f"{k}={val:.3f}" for k, val in sorted(card.metrics.items()))
                    print(f"{mark} {name} v{v}  {card.architecture} {card.precision}  "
                          f"{len(card.labels)} labels  {metrics}")
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
