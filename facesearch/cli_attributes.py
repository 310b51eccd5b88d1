"""``facesearch search ... --show-attributes``: per hit, the attributes stored with the face
(the attribute model's probabilities, read back from its attributes vector), most probable
first; faces without them (not back-filled) say so."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from facesearch import flows, messages
from facesearch.client import FacesearchClient

# Attributes shown per hit in text output (JSON has them all).
SHOWN = 5


def stored(
    client: FacesearchClient, collection: str, hits: Sequence[messages.Hit]
) -> dict[str, dict[str, float]]:
    return flows.stored_attributes(client, collection, [h.id for h in hits])


def format_block(hits: Sequence[messages.Hit], attributes: dict[str, dict[str, float]]) -> str:
    """The hits' stored attributes, in the order of the hits above (rank, id)."""
    lines = [f"attributes stored with each face (probability; the {SHOWN} most probable):"]
    for rank, hit in enumerate(hits, 1):
        probs = attributes.get(hit.id)
        shown = (
            ", ".join(f"{name} {p:.2f}" for name, p in list(probs.items())[:SHOWN])
            if probs
            else f"none stored (fill them: facesearch backfill COLLECTION --field "
            f"{messages.ATTRIBUTE_FIELD})"
        )
        lines.append(f"{rank:>3}  {hit.id:<34} {shown}")
    return "\n".join(lines)


def add_to_json(text: str, attributes: dict[str, dict[str, float]]) -> str:
    """The search's JSON with an "attributes" object (name -> probability, every attribute; null
    when none is stored) in each hit, wherever the hits are in it."""

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "id" in node and "score" in node:
                node["attributes"] = attributes.get(str(node["id"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    payload = json.loads(text)
    walk(payload)
    return json.dumps(payload, default=str, indent=2)
