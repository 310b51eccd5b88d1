"""``index_folder(..., person_from_dir=True)``: a folder names a person, the evidence names the
face (facesearch.person_evidence). Photos are grouped by folder as they are embedded; each
folder's faces are labelled only where the evidence singles one out, the summary counts what
was left unlabelled and why, and at the end each newly named person is enrolled with its best
labelled faces as references, so ``identify`` knows them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from facesearch import messages
from facesearch.async_client import AsyncFacesearchClient
from facesearch.errors import FacesearchError
from facesearch.person_evidence import Outcome, label_folder
from facesearch_contract.calibration import score_at_fmr
from facesearch_contract.v1 import calibration_pb2, embedder_pb2, persons_pb2, retriever_pb2

# Two faces are "the same person" for labelling when they verify at this 1:1 false-match rate,
# judged in the poorer face's quality band: strict, because a folder compares many pairs.
LABEL_FMR = 1e-4


@dataclass
class FolderLabelling:
    calibration: calibration_pb2.ScoreCalibration
    outcomes: Counter[str] = field(default_factory=Counter)
    # person id -> point ids of its best labelled faces (references for enrolment)
    references: dict[str, list[str]] = field(default_factory=dict)

    def threshold(self, qa: float, qb: float) -> float:
        return score_at_fmr(self.calibration, LABEL_FMR, min(qa, qb))

    def label(
        self,
        person: str,
        results: list[embedder_pb2.ImageResult],
        known: np.ndarray | None,
    ) -> list[list[str | None]]:
        """Per image, per face: the person id for the faces the evidence names, else None."""
        embeddings = [
            np.array([f.embedding.values for f in r.faces], np.float32).reshape(len(r.faces), -1)
            for r in results
        ]
        qualities = [np.array([f.quality.score for f in r.faces], np.float32) for r in results]
        out = label_folder(embeddings, qualities, self.threshold, references=known)
        for photo in out.outcomes:
            for o in photo:
                self.outcomes[o.value] += 1
        if out.references and known is None:
            self.references[person] = [
                messages.point_id(results[p].media_id, f) for p, f in out.references
            ]
        return [
            [person if o is Outcome.LABELLED else None for o in photo] for photo in out.outcomes
        ]


def folder_of(media_id: str, by_media: dict[str, Path], root: Path) -> str | None:
    path = by_media.get(media_id)
    return None if path is None or path.parent == root else path.parent.name


async def start(client: AsyncFacesearchClient, face_model: str) -> FolderLabelling:
    models = (await client.embedder.ListModels(embedder_pb2.ListModelsRequest())).models
    model = next((m for m in models if m.model_id == face_model), None)
    if model is None or not model.calibration.bands:
        raise FacesearchError(
            f"--person-from-dir needs the calibration of {face_model!r} (its model card) to tell "
            "the folder's person from bystanders, and the embedder has none"
        )
    return FolderLabelling(model.calibration)


async def known_references(
    client: AsyncFacesearchClient, collection: str, person: str, face_field: str
) -> np.ndarray | None:
    """The reference vectors of an already enrolled person, or None."""
    try:
        got = await client.persons.GetPerson(
            persons_pb2.GetPersonRequest(collection=collection, person_id=person)
        )
    except grpc.RpcError as err:
        code = err.code()  # type: ignore[attr-defined]
        if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
            return None
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            why = err.details()  # type: ignore[attr-defined]
            raise FacesearchError(f"folder {person!r} is not a valid person id: {why}") from err
        raise
    refs = await client.retriever.Get(
        retriever_pb2.GetRequest(
            collection=collection, ids=list(got.person.reference_ids), with_vectors=True
        )
    )
    vectors = [p.vectors[face_field].values for p in refs.points if face_field in p.vectors]
    return np.array(vectors, np.float32) if vectors else None


async def enrol_new_persons(
    client: AsyncFacesearchClient, collection: str, labelling: FolderLabelling
) -> int:
    """Enrol every person the run named for the first time; returns how many."""
    from facesearch.core.persons import ensure_identification

    if not labelling.references:
        return 0
    await ensure_identification(client, collection)
    enrolled = 0
    for person, refs in labelling.references.items():
        try:
            await client.persons.EnrollPerson(
                persons_pb2.EnrollPersonRequest(
                    collection=collection,
                    person=persons_pb2.Person(person_id=person, reference_ids=refs),
                )
            )
            enrolled += 1
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.ALREADY_EXISTS:  # type: ignore[attr-defined]
                raise
    return enrolled
