"""Limits are declared once, on their fields in the contract (the ``(facesearch.v1.limits)``
option), documented beside the field, and read from there by the services and the SDK.

- every limit a service enforces is declared, with the value the proto comment states;
- the services' and the SDK's constants are the declared values;
- a real service refuses one over the limit with a message quoting that limit;
- no numeric literal equal to a declared limit is left in the services' request checks next to
  the name of a field that declares it (a copied number instead of a read one).
"""

from __future__ import annotations

import ast
import re
import uuid
from collections.abc import Callable

import grpc
import pytest
from google.protobuf.message import Message

from facesearch import messages as sdk_messages
from facesearch_contract import limits
from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import embedder_pb2 as epb
from facesearch_contract.v1 import personalizer_pb2 as ppb
from facesearch_contract.v1 import retriever_pb2 as rpb
from facesearch_contract.v1.embedder_service_pb2_grpc import EmbedderStub
from facesearch_contract.v1.personalizer_service_pb2_grpc import PersonalizerStub
from facesearch_contract.v1.retriever_service_pb2_grpc import RetrieverStub
from facesearch_server.embedder import servicer as es
from facesearch_server.embedder import text_encoding
from facesearch_server.personalizer import servicer as ps
from facesearch_server.personalizer import sessions
from facesearch_server.retriever import filters
from facesearch_server.retriever import media_roots as retriever_media_roots
from facesearch_server.retriever import servicer as retriever_servicer
from facesearch_server.retriever import validation as rv
from facesearch_server.retriever.collection import Limits
from harness.service_process import REPO_ROOT, ServiceProcess

# (message, field, kind, value): kind is max_items, max_bytes, max_total_bytes or max_value
# (the top of a min_value..max_value range).
DECLARED: list[tuple[type[Message], str, str, int]] = [
    (cpb.MetadataValue, "string_value", "max_bytes", 4096),
    (cpb.StringList, "values", "max_bytes", 4096),
    (cpb.MetadataValueList, "values", "max_items", 1024),
    (cpb.PageRequest, "page_size", "max_value", 1000),
    (rpb.IndexParams, "nlist", "max_value", 65536),
    (rpb.VectorFieldSpec, "dimension", "max_value", 4096),
    (rpb.MetadataFieldSpec, "name", "max_bytes", 64),
    (rpb.CreateCollectionRequest, "shard_count", "max_value", 256),
    (rpb.Point, "id", "max_bytes", 128),
    (rpb.Point, "metadata", "max_items", 64),
    (rpb.Point, "metadata", "max_total_bytes", 16384),
    (rpb.UpsertRequest, "points", "max_items", 10000),
    (rpb.GetRequest, "ids", "max_items", 1024),
    (rpb.GetRequest, "ids", "max_bytes", 128),
    (rpb.IdList, "ids", "max_items", 10000),
    (rpb.IdList, "ids", "max_bytes", 128),
    (rpb.QueryTerm, "point_id", "max_bytes", 128),
    (rpb.SearchParams, "rescore_top", "max_value", 10000),
    (rpb.Query, "terms", "max_items", 8),
    (rpb.Query, "k", "max_value", 10000),
    (rpb.Query, "exclude_ids", "max_items", 10000),
    (rpb.Query, "exclude_ids", "max_bytes", 128),
    (rpb.SearchRequest, "queries", "max_items", 1024),
    (rpb.CreateCollectionRequest, "media_roots", "max_items", 256),
    (rpb.CreateCollectionRequest, "media_roots", "max_bytes", 4096),
    (rpb.AddMediaRootsRequest, "media_roots", "max_items", 256),
    (rpb.AddMediaRootsRequest, "media_roots", "max_bytes", 4096),
    (epb.DetectionOptions, "max_faces", "max_value", 1024),
    (epb.EmbedImagesRequest, "images", "max_items", 1024),
    (epb.EmbedFacesRequest, "crops", "max_items", 1024),
    (epb.EmbedTextRequest, "texts", "max_items", 1024),
    (epb.EmbedTextRequest, "texts", "max_bytes", 16384),
    (ppb.StartSessionRequest, "user_id", "max_bytes", 256),
    (ppb.StartSessionRequest, "k", "max_value", 64),
    (ppb.SubmitFeedbackRequest, "feedback", "max_items", 256),
    (ppb.SubmitFeedbackRequest, "k", "max_value", 64),
    (ppb.ResetUserRequest, "user_id", "max_bytes", 256),
    (ppb.DescribeUserRequest, "user_id", "max_bytes", 256),
]


def declared(message: type[Message], field: str, kind: str) -> int:
    if kind == "max_value":
        return limits.value_range(message, field)[1]
    return getattr(limits, kind)(message, field)


def _id(case: tuple[type[Message], str, str, int]) -> str:
    return f"{case[0].DESCRIPTOR.name}.{case[1]}:{case[2]}"


def field_comment(message: type[Message], field: str) -> str:
    """The comment lines right above ``field`` in ``message``'s .proto source."""
    lines = (REPO_ROOT / "protos" / message.DESCRIPTOR.file.name).read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"message {message.__name__} {{"))
    decl = re.compile(rf"^\s+[\w.<>, ]+\s{field} = \d+")
    at = next(i for i in range(start, len(lines)) if decl.match(lines[i]))
    comment = []
    for line in reversed(lines[start:at]):
        if not line.strip().startswith("//"):
            break
        comment.append(line.strip().lstrip("/ "))
    return " ".join(reversed(comment))


def quotes(text: str, value: int) -> bool:
    """Whether ``text`` names ``value`` as a number, plain (4096) or grouped (4,096)."""
    return any(
        re.search(rf"(?<!\d)(?<!\d,){re.escape(form)}(?!\d)(?!,\d)", text)
        for form in {str(value), f"{value:,}"}
    )


@pytest.mark.parametrize("case", DECLARED, ids=_id)
def test_limit_is_declared_and_stated_in_the_comment(
    case: tuple[type[Message], str, str, int],
) -> None:
    message, field, kind, value = case
    assert declared(message, field, kind) == value
    comment = field_comment(message, field)
    assert quotes(comment, value), f"the comment of {_id(case)} does not state {value}: {comment}"


# What each service (and the SDK) enforces, and the declaration it must equal.
READ_FROM_CONTRACT: list[tuple[str, int, type[Message], str, str]] = [
    ("retriever MAX_DIM", rv.MAX_DIM, rpb.VectorFieldSpec, "dimension", "max_value"),
    ("retriever MAX_NLIST", rv.MAX_NLIST, rpb.IndexParams, "nlist", "max_value"),
    (
        "retriever MAX_SHARDS",
        rv.MAX_SHARDS,
        rpb.CreateCollectionRequest,
        "shard_count",
        "max_value",
    ),
    ("retriever MAX_ID_BYTES", rv.MAX_ID_BYTES, rpb.Point, "id", "max_bytes"),
    ("retriever MAX_KEY_BYTES", rv.MAX_KEY_BYTES, rpb.MetadataFieldSpec, "name", "max_bytes"),
    ("retriever MAX_META_KEYS", rv.MAX_META_KEYS, rpb.Point, "metadata", "max_items"),
    ("retriever MAX_META_BYTES", rv.MAX_META_BYTES, rpb.Point, "metadata", "max_total_bytes"),
    (
        "retriever MAX_STRING_BYTES",
        rv.MAX_STRING_BYTES,
        cpb.MetadataValue,
        "string_value",
        "max_bytes",
    ),
    (
        "retriever MAX_LIST_STRING_BYTES",
        rv.MAX_LIST_STRING_BYTES,
        cpb.StringList,
        "values",
        "max_bytes",
    ),
    ("retriever MAX_TERMS", rv.MAX_TERMS, rpb.Query, "terms", "max_items"),
    ("retriever MAX_EXCLUDE", rv.MAX_EXCLUDE, rpb.Query, "exclude_ids", "max_items"),
    (
        "retriever MAX_EXCLUDE_ID_BYTES",
        rv.MAX_EXCLUDE_ID_BYTES,
        rpb.Query,
        "exclude_ids",
        "max_bytes",
    ),
    ("retriever MAX_POINT_ID_BYTES", rv.MAX_POINT_ID_BYTES, rpb.QueryTerm, "point_id", "max_bytes"),
    ("retriever MAX_RESCORE", rv.MAX_RESCORE, rpb.SearchParams, "rescore_top", "max_value"),
    ("retriever MAX_DELETE_IDS", rv.MAX_DELETE_IDS, rpb.IdList, "ids", "max_items"),
    ("retriever MAX_DELETE_ID_BYTES", rv.MAX_DELETE_ID_BYTES, rpb.IdList, "ids", "max_bytes"),
    ("retriever MAX_GET_IDS", rv.MAX_GET_IDS, rpb.GetRequest, "ids", "max_items"),
    ("retriever MAX_GET_ID_BYTES", rv.MAX_GET_ID_BYTES, rpb.GetRequest, "ids", "max_bytes"),
    ("retriever CEILING_K", rv.CEILING_K, rpb.Query, "k", "max_value"),
    (
        "retriever CEILING_UPSERT_BATCH",
        rv.CEILING_UPSERT_BATCH,
        rpb.UpsertRequest,
        "points",
        "max_items",
    ),
    (
        "retriever CEILING_SEARCH_BATCH",
        rv.CEILING_SEARCH_BATCH,
        rpb.SearchRequest,
        "queries",
        "max_items",
    ),
    ("retriever MAX_IN_SET", filters.MAX_IN_SET, cpb.MetadataValueList, "values", "max_items"),
    ("retriever MAX_PAGE", retriever_servicer.MAX_PAGE, cpb.PageRequest, "page_size", "max_value"),
    (
        "retriever MAX_ROOTS",
        retriever_media_roots.MAX_ROOTS,
        rpb.CreateCollectionRequest,
        "media_roots",
        "max_items",
    ),
    (
        "retriever MAX_ROOT_BYTES",
        retriever_media_roots.MAX_ROOT_BYTES,
        rpb.CreateCollectionRequest,
        "media_roots",
        "max_bytes",
    ),
    ("embedder CEILING_BATCH", es.CEILING_BATCH, epb.EmbedImagesRequest, "images", "max_items"),
    ("embedder CEILING_CROPS", es.CEILING_CROPS, epb.EmbedFacesRequest, "crops", "max_items"),
    (
        "embedder CEILING_TEXT_BATCH",
        es.CEILING_TEXT_BATCH,
        epb.EmbedTextRequest,
        "texts",
        "max_items",
    ),
    ("embedder CEILING_FACES", es.CEILING_FACES, epb.DetectionOptions, "max_faces", "max_value"),
    (
        "embedder MAX_TEXT_BYTES",
        text_encoding.MAX_TEXT_BYTES,
        epb.EmbedTextRequest,
        "texts",
        "max_bytes",
    ),
    ("personalizer K_RANGE", ps.K_RANGE[1], ppb.StartSessionRequest, "k", "max_value"),
    (
        "personalizer FEEDBACK_K_RANGE",
        ps.FEEDBACK_K_RANGE[1],
        ppb.SubmitFeedbackRequest,
        "k",
        "max_value",
    ),
    (
        "personalizer MAX_FEEDBACK",
        ps.MAX_FEEDBACK,
        ppb.SubmitFeedbackRequest,
        "feedback",
        "max_items",
    ),
    ("personalizer MAX_EXCLUDED", sessions.MAX_EXCLUDED, rpb.Query, "exclude_ids", "max_items"),
    ("sdk MAX_POINT_ID_BYTES", sdk_messages.MAX_POINT_ID_BYTES, rpb.Point, "id", "max_bytes"),
]


@pytest.mark.parametrize(
    ("name", "value", "message", "field", "kind"),
    READ_FROM_CONTRACT,
    ids=[name for name, *_ in READ_FROM_CONTRACT],
)
def test_service_constant_is_the_declared_limit(
    name: str, value: int, message: type[Message], field: str, kind: str
) -> None:
    assert value == declared(message, field, kind), name
    assert (message, field, kind, value) in DECLARED, f"{name}: add it to DECLARED"


def test_operator_settings_stay_under_the_contract_ceilings() -> None:
    Limits()  # the defaults fit
    for setting in ("max_k", "max_upsert_batch", "max_search_batch"):
        with pytest.raises(ValueError, match=setting):
            Limits(**{setting: 1_000_000})
    with pytest.raises(ValueError, match="max_text_batch"):
        es.EmbedderServicer(None, None, None, max_text_batch=1_000_000)  # type: ignore[arg-type]


# ---------------------------------------------------------------- one over, at a real service

Call = Callable[[dict[str, grpc.Channel], str], object]
INVALID, EXHAUSTED = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED
LONG_ID = "i" * 129


def _vec() -> cpb.Vector:
    return cpb.Vector(values=[0.5, 0.5, 0.5, 0.5])


def _point(pid: str = "p1", **meta: cpb.MetadataValue) -> rpb.Point:
    return rpb.Point(id=pid, vectors={"face": _vec()}, model_ids={"face": "m"}, metadata=meta)


def _upsert(ch: dict[str, grpc.Channel], coll: str, point: rpb.Point) -> object:
    request = rpb.UpsertRequest(collection=coll, points=[point])
    return RetrieverStub(ch["retriever"]).Upsert(request, timeout=10)


def _search(ch: dict[str, grpc.Channel], coll: str, params=None, **query) -> object:  # type: ignore[no-untyped-def]
    query.setdefault("terms", [rpb.QueryTerm(vector=_vec(), model_id="m")])
    query.setdefault("k", 1)
    request = rpb.SearchRequest(collection=coll, queries=[rpb.Query(**query)], params=params)
    return RetrieverStub(ch["retriever"]).Search(request, timeout=10)


def _create(ch: dict[str, grpc.Channel], **kw) -> object:  # type: ignore[no-untyped-def]
    fields = [rpb.VectorFieldSpec(name="face", dimension=kw.pop("dimension", 4), model_id="m")]
    if "index" in kw:
        fields[0].index.CopyFrom(kw.pop("index"))
        fields[0].dimension = 8
    request = rpb.CreateCollectionRequest(name=f"c{uuid.uuid4().hex[:12]}", vector_fields=fields)
    for key, value in kw.items():
        if key == "metadata_fields":
            request.metadata_fields.extend(value)
        else:
            setattr(request, key, value)
    return RetrieverStub(ch["retriever"]).CreateCollection(request, timeout=10)


def _text(n: int) -> cpb.MetadataValue:
    return cpb.MetadataValue(string_value="s" * n)


OVER: list[tuple[str, grpc.StatusCode, int, Call]] = [
    # personalizer
    (
        "StartSession.k",
        INVALID,
        64,
        lambda ch, c: PersonalizerStub(ch["personalizer"]).StartSession(
            ppb.StartSessionRequest(user_id="u", collection=c, k=65), timeout=10
        ),
    ),
    (
        "StartSession.user_id",
        INVALID,
        256,
        lambda ch, c: PersonalizerStub(ch["personalizer"]).StartSession(
            ppb.StartSessionRequest(user_id="u" * 257, collection=c), timeout=10
        ),
    ),
    (
        "SubmitFeedback.feedback",
        EXHAUSTED,
        256,
        lambda ch, c: PersonalizerStub(ch["personalizer"]).SubmitFeedback(
            ppb.SubmitFeedbackRequest(session_id="s", feedback=[ppb.Feedback(id="a")] * 257),
            timeout=10,
        ),
    ),
    (
        "SubmitFeedback.k",
        INVALID,
        64,
        lambda ch, c: PersonalizerStub(ch["personalizer"]).SubmitFeedback(
            ppb.SubmitFeedbackRequest(session_id="s", feedback=[ppb.Feedback(id="a")], k=65),
            timeout=10,
        ),
    ),
    (
        "ResetUser.user_id",
        INVALID,
        256,
        lambda ch, c: PersonalizerStub(ch["personalizer"]).ResetUser(
            ppb.ResetUserRequest(user_id="u" * 257), timeout=10
        ),
    ),
    (
        "DescribeUser.user_id",
        INVALID,
        256,
        lambda ch, c: PersonalizerStub(ch["personalizer"]).DescribeUser(
            ppb.DescribeUserRequest(user_id="u" * 257), timeout=10
        ),
    ),
    # embedder
    (
        "EmbedText.texts bytes",
        INVALID,
        16384,
        lambda ch, c: EmbedderStub(ch["embedder"]).EmbedText(
            epb.EmbedTextRequest(texts=["é" * 8193]), timeout=10
        ),
    ),
    # retriever: collections
    ("CreateCollection.shard_count", INVALID, 256, lambda ch, c: _create(ch, shard_count=257)),
    ("VectorFieldSpec.dimension", INVALID, 4096, lambda ch, c: _create(ch, dimension=4097)),
    (
        "IndexParams.nlist",
        INVALID,
        65536,
        lambda ch, c: _create(
            ch, index=rpb.IndexParams(kind=rpb.INDEX_KIND_IVF_PQ, nlist=65537, pq_m=4)
        ),
    ),
    (
        "MetadataFieldSpec.name",
        INVALID,
        64,
        lambda ch, c: _create(
            ch, metadata_fields=[rpb.MetadataFieldSpec(name="m" * 65, type=rpb.FIELD_TYPE_STRING)]
        ),
    ),
    (
        "PageRequest.page_size",
        INVALID,
        1000,
        lambda ch, c: RetrieverStub(ch["retriever"]).ListCollections(
            rpb.ListCollectionsRequest(page=cpb.PageRequest(page_size=1001)), timeout=10
        ),
    ),
    # retriever: writes
    ("Point.id", INVALID, 128, lambda ch, c: _upsert(ch, c, _point(LONG_ID))),
    (
        "Point.metadata keys",
        INVALID,
        64,
        lambda ch, c: _upsert(
            ch, c, _point(**{f"k{i}": cpb.MetadataValue(int_value=i) for i in range(65)})
        ),
    ),
    (
        "Point.metadata key bytes",
        INVALID,
        64,
        lambda ch, c: _upsert(ch, c, _point(**{"k" * 65: cpb.MetadataValue(int_value=1)})),
    ),
    (
        "Point.metadata bytes",
        INVALID,
        16384,
        lambda ch, c: _upsert(ch, c, _point(**{f"t{i}": _text(4000) for i in range(5)})),
    ),
    (
        "MetadataValue.string_value",
        INVALID,
        4096,
        lambda ch, c: _upsert(ch, c, _point(caption=_text(4097))),
    ),
    (
        "StringList.values",
        INVALID,
        4096,
        lambda ch, c: _upsert(
            ch,
            c,
            _point(tags=cpb.MetadataValue(string_list_value=cpb.StringList(values=["s" * 4097]))),
        ),
    ),
    (
        "IdList.ids",
        EXHAUSTED,
        10000,
        lambda ch, c: RetrieverStub(ch["retriever"]).Delete(
            rpb.DeleteRequest(collection=c, ids=rpb.IdList(ids=["x"] * 10001)), timeout=10
        ),
    ),
    (
        "IdList.ids bytes",
        INVALID,
        128,
        lambda ch, c: RetrieverStub(ch["retriever"]).Delete(
            rpb.DeleteRequest(collection=c, ids=rpb.IdList(ids=[LONG_ID])), timeout=10
        ),
    ),
    # retriever: reads
    (
        "GetRequest.ids",
        EXHAUSTED,
        1024,
        lambda ch, c: RetrieverStub(ch["retriever"]).Get(
            rpb.GetRequest(collection=c, ids=["x"] * 1025), timeout=10
        ),
    ),
    (
        "GetRequest.ids bytes",
        INVALID,
        128,
        lambda ch, c: RetrieverStub(ch["retriever"]).Get(
            rpb.GetRequest(collection=c, ids=[LONG_ID]), timeout=10
        ),
    ),
    (
        "Query.terms",
        INVALID,
        8,
        lambda ch, c: _search(ch, c, terms=[rpb.QueryTerm(vector=_vec(), model_id="m")] * 9),
    ),
    ("Query.exclude_ids", INVALID, 10000, lambda ch, c: _search(ch, c, exclude_ids=["x"] * 10001)),
    ("Query.exclude_ids bytes", INVALID, 128, lambda ch, c: _search(ch, c, exclude_ids=[LONG_ID])),
    (
        "QueryTerm.point_id",
        INVALID,
        128,
        lambda ch, c: _search(ch, c, terms=[rpb.QueryTerm(point_id=LONG_ID)]),
    ),
    (
        "SearchParams.rescore_top",
        INVALID,
        10000,
        lambda ch, c: _search(ch, c, params=rpb.SearchParams(rescore_top=10001)),
    ),
    (
        "MetadataValueList.values",
        INVALID,
        1024,
        lambda ch, c: _search(
            ch,
            c,
            filter=cpb.Filter(
                must=[
                    cpb.FieldCondition(
                        field="source",
                        in_set=cpb.MetadataValueList(
                            values=[cpb.MetadataValue(string_value=str(i)) for i in range(1025)]
                        ),
                    )
                ]
            ),
        ),
    ),
]


@pytest.fixture(scope="module")
def channels(services: dict[str, ServiceProcess]) -> dict[str, grpc.Channel]:
    return {name: svc.channel() for name, svc in services.items()}


@pytest.fixture(scope="module")
def collection(channels: dict[str, grpc.Channel]) -> str:
    reply = _create(channels)
    name = reply.collection.name  # type: ignore[attr-defined]
    _upsert(channels, name, _point())
    return name


@pytest.mark.parametrize(("what", "code", "limit", "call"), OVER, ids=[w for w, *_ in OVER])
def test_one_over_the_declared_limit_is_refused_quoting_it(
    channels: dict[str, grpc.Channel],
    collection: str,
    what: str,
    code: grpc.StatusCode,
    limit: int,
    call: Call,
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        call(channels, collection)
    assert err.value.code() == code, err.value.details()
    assert quotes(err.value.details(), limit), err.value.details()


# ---------------------------------------------------------------- no copies left behind

# The services' request checks, where a limit used to be copied as a number.
CHECK_FILES = [
    "services/runtime/validation.py",
    "services/retriever/validation.py",
    "services/retriever/servicer.py",
    "services/retriever/filters.py",
    "services/retriever/fusion.py",
    "services/retriever/collection.py",
    "services/embedder/servicer.py",
    "services/embedder/text_encoding.py",
    "services/personalizer/servicer.py",
    "services/personalizer/sessions.py",
    "facesearch/messages.py",
]
_NUMBER_IN_TEXT = re.compile(
    r"(?<![\w.])\d{1,3}(?:,\d{3})+(?!\d)(?!,\d)|(?<![\w.,])\d+(?!\w)(?!,\d)"
)


def _numbers(node: ast.AST) -> set[int]:
    """Integer literals in a statement, and the numbers written inside its string literals."""
    out: set[int] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and type(sub.value) is int:
            out.add(sub.value)
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            out.update(int(m.replace(",", "")) for m in _NUMBER_IN_TEXT.findall(sub.value))
    return out


def _names(node: ast.AST) -> set[str]:
    """Identifiers, attribute names and string words of a statement (field names show up as
    ``request.k``, ``"exclude_ids"`` or ``f"{path}.terms"``)."""
    out: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            out.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            out.add(sub.attr)
        elif isinstance(sub, ast.arg):
            out.add(sub.arg)
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            out.update(re.findall(r"[A-Za-z_]\w*", sub.value))
    return out


def _statements(tree: ast.AST) -> list[ast.stmt]:
    """Simple statements, and the test of each compound one (not its body: a whole function
    body would put every name beside every number)."""
    out: list[ast.stmt] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.If, ast.While)):
            out.append(ast.copy_location(ast.Expr(node.test), node.test))
        elif isinstance(node, ast.stmt) and not hasattr(node, "body"):
            out.append(node)
    return out


_LIMIT_NAME = re.compile(r"(^|_)(MAX|MIN|LIMIT|CEILING)(_|$)")


def _arithmetic(node: ast.expr) -> int | None:
    """The value of an integer literal or of literals multiplied or added (``16 * 1024``)."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Add, ast.Pow)):
        left, right = _arithmetic(node.left), _arithmetic(node.right)
        if left is not None and right is not None:
            return {ast.Mult: left * right, ast.Add: left + right}.get(
                type(node.op), left**right if right < 64 else None
            )
    return None


def _limit_constants(tree: ast.Module) -> list[tuple[int, str, int]]:
    """(line, name, value) of module-level ``MAX_X = <number>``: a limit given its value."""
    out = []
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = _arithmetic(node.value)
            for target in targets:
                if isinstance(target, ast.Name) and _LIMIT_NAME.search(target.id):
                    if value is not None and target.id not in NOT_CONTRACT_LIMITS:
                        out.append((node.lineno, target.id, value))
    return out


# Limits with a value of their own that only happens to equal a declared one.
NOT_CONTRACT_LIMITS = {
    # How many enrolled faces a person term aggregates: the service's choice, no caller sends it.
    "MAX_PERSON_FACES",
}


def test_check_files_exist() -> None:
    missing = [f for f in CHECK_FILES if not (REPO_ROOT / f).is_file()]
    assert not missing, f"moved? update CHECK_FILES: {missing}"


@pytest.mark.parametrize("path", CHECK_FILES)
def test_no_literal_copy_of_a_declared_limit_beside_its_field(path: str) -> None:
    by_value: dict[int, set[str]] = {}
    for message, field, kind, _ in DECLARED:
        value = declared(message, field, kind)
        if value > 1:  # 0 and 1 are everywhere and never a copied limit
            by_value.setdefault(value, set()).add(field)
    source = (REPO_ROOT / path).read_text()
    found = []
    for stmt in _statements(ast.parse(source)):
        names = _names(stmt)
        for value in _numbers(stmt) & by_value.keys():
            fields = sorted(by_value[value] & names)
            if fields:
                found.append(f"{path}:{stmt.lineno}: {value} beside {fields}")
    for line, name, value in _limit_constants(ast.parse(source)):
        if value in by_value:
            found.append(f"{path}:{line}: {name} = {value}, the limit of {sorted(by_value[value])}")
    assert not found, "read these from facesearch_contract.limits:\n" + "\n".join(found)
