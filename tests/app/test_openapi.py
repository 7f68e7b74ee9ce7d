"""The OpenAPI document is the API reference: every field and parameter has a description and an example, and
every error answer is documented with the error schema the service really sends."""

from __future__ import annotations

import json

from app.core.config import Settings
from app.main import create_app
from app.openapi import missing_docs
from model_store import ModelStore, default_store_path


def spec() -> dict:
    return create_app(Settings()).openapi()


def test_every_field_and_parameter_has_a_description_and_an_example():
    assert missing_docs(spec()) == []


def test_errors_are_documented_with_the_error_schema_not_fastapis_default():
    doc = spec()
    assert "HTTPValidationError" not in json.dumps(doc) and "ValidationError" not in doc["components"]["schemas"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, answer in op["responses"].items():
                if status.startswith(("4", "5")):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, status)
            if op.get("parameters"):
                assert "422" in op["responses"], (method, path)
    assert set(doc["components"]["schemas"]["ErrorResponse"]["properties"]) == {"error", "detail"}


def test_card_examples_come_from_the_bundled_card():
    store = ModelStore(default_store_path())
    card = store.card("birds", store.production("birds")).model_dump(mode="json")
    props = spec()["components"]["schemas"]["ModelCard"]["properties"]
    assert props["labels"]["examples"] == [card["labels"]]
    assert props["frontend"]["examples"][0]["n_mels"] == card["frontend"]["n_mels"]


def test_the_served_document_is_the_complete_one(server):
    served = server.client.get("/openapi.json").json()
    assert missing_docs(served) == []
    assert "kaleidoscope" in json.dumps(served["paths"]["/v1/predict"]["post"]["parameters"])


def test_species_in_examples_are_the_bundled_models():
    store = ModelStore(default_store_path())
    card = store.card("birds", store.production("birds"))
    known = {c for lab in card.labels for c in (lab.code, lab.common_name)}
    doc = spec()
    schemas = doc["components"]["schemas"]
    assert schemas["Label"]["properties"]["code"]["examples"] == [card.labels[0].code]
    assert set(schemas["WindowResult"]["properties"]["probabilities"]["examples"][0]) <= known
    species = next(p for p in doc["paths"]["/v1/predict"]["post"]["parameters"] if p["name"] == "species")
    assert set(species.get("examples", species["schema"].get("examples", [[]]))[0]) <= known
