"""The Persons service over a real retriever process: enrol, identify with calibrated
decisions, rename, merge, split, label, forget (dry run and hard delete), bad input.

People are random directions in 64-d and their faces noisy copies, so a different person's
cosine is exactly distributed as 2 * Beta(31.5, 31.5) - 1; the calibration is fitted on draws
of that, as the real one is fitted on real impostor pairs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import persons_pb2 as ppb
from facesearch_contract.v1 import persons_service_pb2_grpc as ppb_grpc
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.embedder.calibration.fit import fit_tail
from facesearch_server.runtime.calibration_proto import calibration_to_proto
from facesearch_server.runtime.open_set import QualityBand, ScoreCalibration
from harness.service_process import ServiceProcess, start_service
from tests.retriever.conftest import MODEL, Client, point, retriever_env, write_keys

D = 64


def synthetic_calibration() -> ppb.IdentificationSettings:
    rng = np.random.default_rng(0)
    n = 2_000_000
    scores = 2 * rng.beta((D - 1) / 2, (D - 1) / 2, n) - 1
    edges = np.arange(-1.0, 1.0 + 1e-3, 1e-3)
    tail = fit_tail(np.histogram(scores, bins=edges)[0], edges, scores[scores > 0.15], n)
    genuine = tuple(float(v) for v in np.linspace(0.7, 0.99, 99))
    cal = ScoreCalibration(MODEL, (QualityBand(0.0, 1.0, tail, genuine, 1000, 100),))
    return ppb.IdentificationSettings(calibration=calibration_to_proto(cal))


class People:
    def __init__(self, seed: int = 1) -> None:
        self.rng = np.random.default_rng(seed)
        self.centres: dict[str, np.ndarray] = {}

    def face(self, who: str, noise: float = 0.25) -> np.ndarray:
        if who not in self.centres:
            c = self.rng.standard_normal(D)
            self.centres[who] = c / np.linalg.norm(c)
        v = self.centres[who] + noise * self.rng.standard_normal(D) / np.sqrt(D)
        return (v / np.linalg.norm(v)).astype(np.float32)


class Persons:
    def __init__(self, channel: grpc.Channel, key: str) -> None:
        self.stub = ppb_grpc.PersonsStub(channel)
        self.md = (("x-api-key", key),)

    def __getattr__(self, method: str):  # type: ignore[no-untyped-def]
        fn = getattr(self.stub, method)
        return lambda request, timeout=30.0: fn(request, metadata=self.md, timeout=timeout)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, Path]]:
    base = tmp_path_factory.mktemp("persons")
    keys = write_keys(base / "keys.yaml")
    svc = start_service("retriever", retriever_env(base / "data", keys))
    yield svc, base
    svc.stop()


@pytest.fixture(scope="module")
def world(service: tuple[ServiceProcess, Path]):  # type: ignore[no-untyped-def]
    """Collection "people": 30 enrolled persons p00..p29 (one reference each, r-pNN), two more
    labelled faces each (f-pNN-1/2), and unlabelled faces of p07 (u-p07-*) and of strangers."""
    svc, _ = service
    alpha, persons, people = Client(svc.channel(), "key-alpha"), None, People()
    persons = Persons(svc.channel(), "key-alpha")
    alpha.create("people", dim=D)
    pts = []
    for i in range(30):
        who = f"p{i:02d}"
        pts.append(point(f"r-{who}", people.face(who), quality=0.9))
        pts += [point(f"f-{who}-{j}", people.face(who), quality=0.8) for j in (1, 2)]
    pts += [point(f"u-p07-{j}", people.face("p07"), quality=0.9) for j in range(3)]
    pts += [point(f"u-x{j}", people.face(f"x{j}"), quality=0.9) for j in range(20)]
    alpha.upsert("people", pts)
    return alpha, persons, people


def enrol(persons: Persons, who: str, refs: list[str], **kw) -> ppb.Person:  # type: ignore[no-untyped-def]
    person = ppb.Person(person_id=who, reference_ids=refs, **kw)
    return persons.EnrollPerson(ppb.EnrollPersonRequest(collection="people", person=person)).person


def code(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code()  # type: ignore[attr-defined]


def identify(  # type: ignore[no-untyped-def]
    persons: Persons, vectors: list[np.ndarray], quality: float = 0.9, model: str = MODEL
):
    faces = [
        ppb.FaceProbe(
            vector=cpb.Vector(values=v.tolist()), quality=quality, ref=f"q{i}", model_id=model
        )
        for i, v in enumerate(vectors)
    ]
    return persons.Identify(ppb.IdentifyRequest(collection="people", faces=faces)).faces


def labels(alpha: Client, ids: list[str]) -> dict[str, str]:
    got = alpha.Get(pb.GetRequest(collection="people", ids=ids)).points
    return {p.id: p.metadata["person_id"].string_value for p in got}


def test_identification_needs_the_calibration_first(world) -> None:  # type: ignore[no-untyped-def]
    alpha, persons, people = world
    assert (
        code(lambda: identify(persons, [people.face("p00")])) == grpc.StatusCode.FAILED_PRECONDITION
    )
    assert code(lambda: enrol(persons, "p00", ["r-p00"])) == grpc.StatusCode.FAILED_PRECONDITION
    wrong = synthetic_calibration()
    wrong.calibration.model_id = "another-model"
    req = ppb.ConfigureIdentificationRequest(collection="people", settings=wrong)
    assert code(lambda: persons.ConfigureIdentification(req)) == grpc.StatusCode.FAILED_PRECONDITION
    bad = synthetic_calibration()
    bad.operating_points.match_fpir = 0.5
    bad.operating_points.possible_fpir = 0.1
    req = ppb.ConfigureIdentificationRequest(collection="people", settings=bad)
    assert code(lambda: persons.ConfigureIdentification(req)) == grpc.StatusCode.INVALID_ARGUMENT
    req = ppb.ConfigureIdentificationRequest(collection="people", settings=synthetic_calibration())
    stored = persons.ConfigureIdentification(req).settings
    assert stored.vector_field == "face" and stored.operating_points.match_fpir == 1e-3
    for i in range(30):
        who = f"p{i:02d}"
        person = enrol(persons, who, [f"r-{who}"], display_name=f"Person {i}")
        assert person.reference_ids == [f"r-{who}"] and person.labelled_faces == 1
    assert labels(alpha, ["r-p03"]) == {"r-p03": "p03"}


def test_known_faces_match_and_strangers_are_unknown(world) -> None:  # type: ignore[no-untyped-def]
    _, persons, people = world
    known = identify(persons, [people.face(f"p{i:02d}") for i in range(30)])
    assert [f.candidates[0].person_id for f in known] == [f"p{i:02d}" for i in range(30)]
    assert all(f.decision == ppb.DECISION_MATCH for f in known)
    assert known[3].candidates[0].display_name == "Person 3"
    strangers = identify(persons, [people.face(f"stranger{i}") for i in range(60)])
    assert not [f for f in strangers if f.decision == ppb.DECISION_MATCH]
    top = strangers[0].candidates[0]
    assert top.estimated_fpir > known[0].candidates[0].estimated_fpir
    assert strangers[0].match_threshold > strangers[0].possible_threshold
    # A tiny or blurred face (quality under the floor) cannot be a match, whatever its score.
    poor = identify(persons, [people.face("p04")], quality=0.05)
    assert poor[0].candidates[0].person_id == "p04" and poor[0].decision == ppb.DECISION_POSSIBLE


def test_a_probe_of_another_model_or_of_no_model_is_refused(world) -> None:  # type: ignore[no-untyped-def]
    # A vector of another encoder would be scored against the references as if comparable
    # (a probe embedded just before an alias moved to a re-embedded collection).
    _, persons, people = world
    for model in ("another-model", ""):
        with pytest.raises(grpc.RpcError) as err:
            identify(persons, [people.face("p00")], model=model)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert "faces[0].model_id" in err.value.details()  # type: ignore[attr-defined]
        assert MODEL in err.value.details()  # type: ignore[attr-defined]


def test_unlabelled_faces_cluster_into_candidate_persons(world) -> None:  # type: ignore[no-untyped-def]
    _, persons, _ = world
    reply = persons.ListClusters(ppb.ListClustersRequest(collection="people"))
    # Unlabelled now: two faces of each of 30 persons, three more of p07, 20 strangers alone.
    assert reply.unlabelled_faces == 30 * 2 + 3 + 20 and not reply.truncated
    groups = [sorted(c.face_ids) for c in reply.clusters]
    assert groups[0] == sorted(["f-p07-1", "f-p07-2", "u-p07-0", "u-p07-1", "u-p07-2"])
    assert len(groups) == 30 and all(len(g) == 2 for g in groups[1:])
    for g in groups:  # one person per cluster: the person tag in every face id agrees
        assert len({face.split("-")[1] for face in g}) == 1, g
    assert reply.clusters[0].representative_id == reply.clusters[0].face_ids[0]
    again = persons.ListClusters(ppb.ListClustersRequest(collection="people", max_clusters=3))
    assert [c.cluster_id for c in again.clusters] == [c.cluster_id for c in reply.clusters[:3]]
    bad = ppb.ListClustersRequest(collection="people", min_size=1)
    assert code(lambda: persons.ListClusters(bad)) == grpc.StatusCode.INVALID_ARGUMENT


def test_enrolment_refusals_change_nothing(world) -> None:  # type: ignore[no-untyped-def]
    _, persons, _ = world
    before = persons.ListPersons(ppb.ListPersonsRequest(collection="people")).total
    assert code(lambda: enrol(persons, "p01", ["f-p01-1"])) == grpc.StatusCode.ALREADY_EXISTS
    assert code(lambda: enrol(persons, "new", ["nope"])) == grpc.StatusCode.NOT_FOUND
    assert code(lambda: enrol(persons, "new", ["r-p02"])) == grpc.StatusCode.FAILED_PRECONDITION
    assert code(lambda: enrol(persons, "bad id!", ["u-x0"])) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(lambda: enrol(persons, "new", [])) == grpc.StatusCode.INVALID_ARGUMENT
    assert persons.ListPersons(ppb.ListPersonsRequest(collection="people")).total == before


def test_rename_list_and_pages(world) -> None:  # type: ignore[no-untyped-def]
    _, persons, _ = world
    req = ppb.UpdatePersonRequest(collection="people", person_id="p10", display_name="Ten")
    assert persons.UpdatePerson(req).person.display_name == "Ten"
    page = persons.ListPersons(ppb.ListPersonsRequest(collection="people", page_size=7))
    assert len(page.persons) == 7 and page.next_page_token
    rest = persons.ListPersons(
        ppb.ListPersonsRequest(collection="people", page_size=1000, page_token=page.next_page_token)
    )
    ids = [p.person_id for p in page.persons] + [p.person_id for p in rest.persons]
    assert ids == sorted(ids) and len(ids) == page.total
    bad = ppb.ListPersonsRequest(collection="people", page_token="garbage!")
    assert code(lambda: persons.ListPersons(bad)) == grpc.StatusCode.INVALID_ARGUMENT


def test_label_merge_and_split_keep_every_label_consistent(world) -> None:  # type: ignore[no-untyped-def]
    alpha, persons, _ = world
    req = ppb.LabelFacesRequest(
        collection="people", person_id="p20", face_ids=["f-p20-1", "f-p20-2"]
    )
    assert persons.LabelFaces(req).labelled == 2
    clash = ppb.LabelFacesRequest(collection="people", person_id="p21", face_ids=["f-p20-1"])
    assert code(lambda: persons.LabelFaces(clash)) == grpc.StatusCode.FAILED_PRECONDITION
    itself = ppb.MergePersonsRequest(
        collection="people", source_person_id="p20", target_person_id="p20"
    )
    assert code(lambda: persons.MergePersons(itself)) == grpc.StatusCode.INVALID_ARGUMENT
    merge = ppb.MergePersonsRequest(
        collection="people", source_person_id="p20", target_person_id="p21"
    )
    merged = persons.MergePersons(merge)
    assert merged.relabelled_faces == 3 and sorted(merged.person.reference_ids) == [
        "r-p20",
        "r-p21",
    ]
    assert set(labels(alpha, ["r-p20", "f-p20-1", "f-p20-2", "r-p21"]).values()) == {"p21"}
    gone = ppb.GetPersonRequest(collection="people", person_id="p20")
    assert code(lambda: persons.GetPerson(gone)) == grpc.StatusCode.NOT_FOUND
    split = ppb.SplitPersonRequest(
        collection="people",
        person_id="p21",
        new_person=ppb.Person(person_id="p20b", display_name="Twenty again"),
        face_ids=["r-p20", "f-p20-1", "f-p20-2"],
    )
    out = persons.SplitPerson(split)
    assert out.moved_faces == 3 and out.new_person.reference_ids == ["r-p20"]
    assert out.person.reference_ids == ["r-p21"]
    assert set(labels(alpha, ["r-p20", "f-p20-1", "f-p20-2"]).values()) == {"p20b"}


def test_forget_lists_first_then_hard_deletes(world) -> None:  # type: ignore[no-untyped-def]
    alpha, persons, _ = world
    persons.LabelFaces(
        ppb.LabelFacesRequest(collection="people", person_id="p07", face_ids=["f-p07-1"])
    )
    dry = persons.ForgetPerson(
        ppb.ForgetPersonRequest(
            collection="people", person_id="p07", include_unlabelled_matches=True, dry_run=True
        )
    )
    # Labelled: the reference and f-p07-1; unlabelled matches: f-p07-2 and the three u-p07-*.
    assert dry.dry_run and dry.labelled_faces == 2 and dry.unlabelled_matches == 4
    mine = {"r-p07", "f-p07-1", "f-p07-2", "u-p07-0", "u-p07-1", "u-p07-2"}
    assert set(dry.face_ids) == mine
    assert len(labels(alpha, list(dry.face_ids))) == 6  # nothing deleted yet
    done = persons.ForgetPerson(
        ppb.ForgetPersonRequest(
            collection="people", person_id="p07", include_unlabelled_matches=True
        )
    )
    assert not done.dry_run and set(done.face_ids) == set(dry.face_ids)
    assert labels(alpha, list(dry.face_ids)) == {}
    # Strangers' faces and other persons' are untouched.
    assert labels(alpha, ["u-x0", "f-p08-1", "r-p08"]) == {
        "u-x0": "",
        "f-p08-1": "",
        "r-p08": "p08",
    }
    gone = ppb.GetPersonRequest(collection="people", person_id="p07")
    assert code(lambda: persons.GetPerson(gone)) == grpc.StatusCode.NOT_FOUND


def test_persons_and_deletes_survive_a_restart(world, service) -> None:  # type: ignore[no-untyped-def]
    svc, base = service
    svc.stop()
    again = start_service("retriever", retriever_env(base / "data", base / "keys.yaml"))
    try:
        persons = Persons(again.channel(), "key-alpha")
        alpha = Client(again.channel(), "key-alpha")
        got = persons.GetPerson(ppb.GetPersonRequest(collection="people", person_id="p10"))
        assert got.person.display_name == "Ten"
        assert labels(alpha, ["r-p07", "u-p07-0"]) == {}
        # Another tenant sees none of it.
        beta = Persons(again.channel(), "key-beta")
        req = ppb.ListPersonsRequest(collection="people")
        assert code(lambda: beta.ListPersons(req)) == grpc.StatusCode.NOT_FOUND
    finally:
        again.stop()
