"""Message building (facesearch.messages): pure functions, no server needed."""

from __future__ import annotations

import datetime as dt

import pytest

from facesearch import messages
from facesearch.errors import CollectionMismatch
from facesearch_contract.v1 import common_pb2, embedder_pb2, personalizer_pb2, retriever_pb2


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("p1", "string_value"),
        (True, "bool_value"),
        (7, "int_value"),
        (0.5, "double_value"),
        (["a", "b"], "string_list_value"),
        (dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC), "time_value"),
    ],
)
def test_metadata_values_round_trip_with_their_kind(value: object, kind: str) -> None:
    proto = messages.metadata_value(value)  # type: ignore[arg-type]
    assert proto.WhichOneof("kind") == kind
    assert messages.python_value(proto) == value


def test_unsupported_metadata_value_is_refused_with_a_hint() -> None:
    with pytest.raises(TypeError, match="use str, bool, int"):
        messages.metadata_value({"nested": 1})  # type: ignore[arg-type]


def test_filter_from_mapping_ands_equalities_and_in_sets() -> None:
    flt = messages.filter_from({"person_id": "p1", "source": ["a", "b"]})
    assert flt is not None
    by_field = {c.field: c for c in flt.must}
    assert by_field["person_id"].equals.string_value == "p1"
    assert [v.string_value for v in by_field["source"].in_set.values] == ["a", "b"]
    ready = common_pb2.Filter()
    assert messages.filter_from(ready) is ready
    assert messages.filter_from(None) is None


def test_parse_where() -> None:
    assert messages.parse_where(["person_id=Ann", "frame=3", "source=a,b"]) == {
        "person_id": "Ann",
        "frame": 3,
        "source": ["a", "b"],
    }
    with pytest.raises(ValueError, match="key=value"):
        messages.parse_where(["oops"])


def test_point_ids_are_stable_and_within_the_retriever_limit() -> None:
    assert messages.point_id("lfw/Ann/Ann_0001.jpg", 2) == "lfw/Ann/Ann_0001.jpg#2"
    long = "x" * 300
    pid = messages.point_id(long, 0)
    assert len(pid.encode()) <= messages.MAX_POINT_ID_BYTES
    assert pid == messages.point_id(long, 0) != messages.point_id(long + "y", 0)


def face(x: float, w: float, score: float = 0.9, values=(1.0, 0.0)) -> embedder_pb2.Face:
    return embedder_pb2.Face(
        box=common_pb2.BoundingBox(x=x, y=0, width=w, height=w),
        detection_score=score,
        embedding=common_pb2.Vector(values=list(values)),
        model_id="sface-test",
        quality=embedder_pb2.FaceQuality(score=0.7),
    )


def test_largest_face_picks_the_biggest_box() -> None:
    result = embedder_pb2.ImageResult(faces=[face(0, 20), face(50, 80, 0.6), face(200, 40)])
    assert messages.largest_face(result).box.x == 50
    assert messages.largest_face(embedder_pb2.ImageResult()) is None


def test_face_points_carry_vector_model_and_metadata() -> None:
    result = embedder_pb2.ImageResult(media_id="a/b.jpg", faces=[face(0, 20), face(5, 30)])
    caption = (common_pb2.Vector(values=[0.0, 1.0, 0.0]), "minilm-test")
    points = messages.face_points(
        result, metadata={"person_id": "Ann"}, text_vectors={"caption": caption}
    )
    assert [p.id for p in points] == ["a/b.jpg#0", "a/b.jpg#1"]
    second = points[1]
    assert list(second.vectors["face"].values) == [1.0, 0.0]
    assert second.model_ids["face"] == "sface-test"
    assert second.model_ids["caption"] == "minilm-test"
    meta = messages.python_metadata(second.metadata)
    assert meta["person_id"] == "Ann"
    assert meta["media_id"] == "a/b.jpg"
    assert meta["face_index"] == 1
    assert meta["box_w"] == 30.0


def collection(*fields: tuple[str, str]) -> retriever_pb2.CollectionInfo:
    return retriever_pb2.CollectionInfo(
        name="c",
        vector_fields=[retriever_pb2.VectorFieldSpec(name=n, model_id=m) for n, m in fields],
    )


def test_collection_fields_find_the_text_field() -> None:
    fields = messages.CollectionFields.of(collection(("face", "sface"), ("caption", "minilm")))
    assert (fields.face, fields.face_model) == ("face", "sface")
    assert fields.text_field() == ("caption", "minilm")
    with pytest.raises(CollectionMismatch, match="no text field 'tags'"):
        fields.text_field("tags")
    face_only = messages.CollectionFields.of(collection(("face", "sface")))
    with pytest.raises(CollectionMismatch, match="caption field"):
        face_only.text_field()
    with pytest.raises(CollectionMismatch, match="no vector field"):
        messages.CollectionFields.of(collection())


def test_create_collection_request_uses_the_models_dimensions() -> None:
    face_model = embedder_pb2.ModelInfo(model_id="sface", dimension=128)
    text_model = embedder_pb2.ModelInfo(model_id="minilm", dimension=384)
    request = messages.create_collection_request("faces", face_model, text_model, shards=2)
    assert [(f.name, f.dimension, f.model_id) for f in request.vector_fields] == [
        ("face", 128, "sface"),
        ("caption", 384, "minilm"),
    ]
    assert request.shard_count == 2
    assert len(messages.create_collection_request("f", face_model).vector_fields) == 1


def test_default_model_prefers_the_flagged_default() -> None:
    face_kind = embedder_pb2.MODEL_KIND_FACE_ENCODER
    models = [
        embedder_pb2.ModelInfo(model_id="a", kind=face_kind),
        embedder_pb2.ModelInfo(model_id="b", kind=face_kind, is_default=True),
        embedder_pb2.ModelInfo(model_id="t", kind=embedder_pb2.MODEL_KIND_TEXT_ENCODER),
    ]
    assert messages.default_model(models, face_kind).model_id == "b"
    assert messages.default_model(models, embedder_pb2.MODEL_KIND_TEXT_ENCODER).model_id == "t"
    assert messages.default_model(models, embedder_pb2.MODEL_KIND_FACE_DETECTOR) is None


def test_search_request_builds_one_query_with_filter_and_exclusions() -> None:
    term = messages.vector_term("face", face(0, 10), weight=2.0)
    request = messages.search_request(
        "faces", [term], k=5, where={"person_id": "Ann"}, exclude_ids=["x#0"]
    )
    (query,) = request.queries
    assert query.k == 5
    assert query.terms[0].model_id == "sface-test"
    assert query.terms[0].weight == 2.0
    assert query.filter.must[0].field == "person_id"
    assert list(query.exclude_ids) == ["x#0"]
    person = messages.person_term("face", "Ann", person_collection="enrolled")
    assert person.WhichOneof("source") == "person_id"
    assert person.person_collection == "enrolled"


def test_hits_convert_metadata() -> None:
    result = retriever_pb2.QueryResult(
        hits=[retriever_pb2.ScoredPoint(id="a#0", score=0.9, term_scores=[0.9])]
    )
    result.hits[0].metadata["person_id"].string_value = "Ann"
    (hit,) = messages.hits(result)
    assert hit.id == "a#0"
    assert hit.score == pytest.approx(0.9)
    assert hit.metadata == {"person_id": "Ann"}


def test_parse_labels_marks_unlabelled_candidates_dissimilar() -> None:
    labels = messages.parse_labels("1s, 3f", ["a", "b", "c"])
    assert [(f.id, f.label) for f in labels] == [
        ("a", personalizer_pb2.FEEDBACK_LABEL_SIMILAR),
        ("b", personalizer_pb2.FEEDBACK_LABEL_DISSIMILAR),
        ("c", personalizer_pb2.FEEDBACK_LABEL_FOUND),
    ]


@pytest.mark.parametrize(
    ("line", "why"), [("4s", "candidates 1 to 3"), ("1x", "s \\(similar\\)"), ("", "no labels")]
)
def test_parse_labels_refuses_bad_input(line: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        messages.parse_labels(line, ["a", "b", "c"])


def test_seeds() -> None:
    assert messages.seed_from() is None
    assert messages.seed_from(text="a man with glasses").text == "a man with glasses"
    assert messages.seed_from(image=b"\xff\xd8").image == b"\xff\xd8"
    with pytest.raises(ValueError, match="one seed"):
        messages.seed_from(text="x", person_id="p")
    request = messages.start_session_request(
        "u", "faces", k=4, seed=messages.seed_from(person_id="Ann"), where={"source": "tv"}
    )
    assert request.seed.person_id == "Ann"
    assert request.filter.must[0].field == "source"
