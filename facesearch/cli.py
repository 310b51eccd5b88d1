"""``facesearch``: the command line over the SDK.

    facesearch serve [--data-dir DIR]            the three services on this machine
    facesearch index DIR --collection NAME       embed and store every face under DIR (again:
                                                 resumes, sending only what is not stored)
    facesearch search IMAGE --collection NAME    the closest faces, with scores
    facesearch session --collection NAME         interactive search with your feedback
    facesearch backfill COLLECTION               fill the attributes of faces stored before
                                                 they existed (again: resumes)
    facesearch reembed COLLECTION --model NEW    rebuild with another face model, move the
                                                 aliases to it (again: resumes)
    facesearch status                            health and counts of every service
    facesearch quickstart [--keep-running]       the main job on the embedded default

Addresses and the API key come from flags or FACESEARCH_EMBEDDER_ADDRESS,
FACESEARCH_RETRIEVER_ADDRESS, FACESEARCH_PERSONALIZER_ADDRESS, FACESEARCH_API_KEY (see
facesearch.settings). Exit codes: 0 done, 1 a call or a service failed (the message says
which and what to do), 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import grpc
from google.protobuf.json_format import MessageToDict

from facesearch import (
    cli_attributes,
    cli_backfill,
    cli_persons,
    cli_reembed,
    flows,
    index_resume,
    messages,
)
from facesearch.cli_face_index import face_index_arguments, face_index_of
from facesearch.client import FacesearchClient
from facesearch.core.search import ContextHits, DescriptionHits
from facesearch.errors import FacesearchError, explain
from facesearch.local_stack import DEFAULT_METRICS_PORTS, DEFAULT_PORTS, SERVICES, LocalStack
from facesearch.progress_bar import ProgressBar
from facesearch.settings import ClientSettings, misspelt_env
from facesearch_contract.v1 import embedder_pb2, personalizer_pb2, retriever_pb2

DEFAULT_COLLECTION = "faces"


# ---------------------------------------------------------------- arguments


def _connection_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection (flags win over FACESEARCH_* variables)")
    for service in SERVICES:
        group.add_argument(
            f"--{service}",
            dest=f"{service}_address",
            metavar="HOST:PORT",
            help=f"{service} address (FACESEARCH_{service.upper()}_ADDRESS, "
            f"default 127.0.0.1:{DEFAULT_PORTS[service]})",
        )
    group.add_argument("--api-key", help="API key (FACESEARCH_API_KEY)")
    group.add_argument("--tls", action="store_true", default=None, help="use TLS (system roots)")
    group.add_argument("--tls-ca", dest="tls_ca_file", metavar="PEM", help="CA to trust; TLS")
    group.add_argument("--tls-cert", dest="tls_cert_file", metavar="PEM", help="mTLS client cert")
    group.add_argument("--tls-key", dest="tls_key_file", metavar="PEM", help="its private key")
    group.add_argument("--tls-server-name", dest="tls_server_name", metavar="NAME")
    group.add_argument(
        "--timeout", dest="timeout_s", type=float, metavar="S", help="deadline per call, seconds"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _connection_options()
    parser = argparse.ArgumentParser(
        prog="facesearch", description="Search large collections of facial images."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run embedder, retriever and personalizer locally")
    serve.add_argument("--data-dir", type=Path, default=Path("data"), help="default ./data")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument(
        "--port-base",
        type=int,
        default=DEFAULT_PORTS["embedder"],
        help="embedder port; retriever and personalizer take the next two (default 50051)",
    )
    serve.add_argument(
        "--metrics-port-base",
        type=int,
        default=DEFAULT_METRICS_PORTS["embedder"],
        help="Prometheus port of the embedder; the others take the next two (default 9101)",
    )
    serve.add_argument("--no-metrics", action="store_true", help="no Prometheus ports")
    serve.add_argument("--ready-timeout", type=float, default=180.0, metavar="S")

    index = sub.add_parser("index", parents=[common], help="index every image under DIR")
    index.add_argument("directory", type=Path, metavar="DIR")
    index.add_argument("--collection", "-c", default=DEFAULT_COLLECTION)
    index.add_argument("--shards", type=int, default=1, help="when creating the collection")
    face_index_arguments(index)
    index.add_argument("--batch-size", type=int, default=64, help="faces per upsert")
    index.add_argument("--in-flight", type=int, default=4, help="upserts awaiting their ack")
    index.add_argument(
        "--person-from-dir",
        action="store_true",
        help="a folder per person (LFW): the face recurring across its photos gets the label",
    )
    index.add_argument(
        "--no-captions",
        action="store_true",
        help="ignore the photos' context text (IPTC/XMP/EXIF captions, sidecar .txt/.json, "
        ".srt/.vtt subtitles)",
    )
    index.add_argument("--source", help="stored as metadata 'source' on every face")
    index.add_argument("--no-progress", action="store_true")
    index.add_argument(
        "--retry-for",
        type=float,
        default=60.0,
        metavar="S",
        help="keep retrying a service that is unavailable or overloaded for S seconds, with "
        "backoff, before giving up (default 60; 0: give up at once)",
    )
    index.add_argument(
        "--journal",
        type=Path,
        metavar="FILE",
        help="where the run records the files stored, so running it again resumes (default: "
        "one file per retriever, collection and DIR under ~/.cache/facesearch/index)",
    )
    index.add_argument(
        "--no-resume", action="store_true", help="send every file again, ignoring the journal"
    )

    search = sub.add_parser("search", parents=[common], help="faces most like a photo or text")
    search.add_argument("image", nargs="?", type=Path, metavar="IMAGE")
    search.add_argument("--collection", "-c", default=DEFAULT_COLLECTION)
    search.add_argument("-k", type=int, default=10, help="matches to show (default 10)")
    search.add_argument("--text", help="search the collection's captions with this text")
    search.add_argument(
        "--person",
        help="a person_id; with --text: only that person's faces, ranked by the context",
    )
    search.add_argument(
        "--unlabelled",
        action="store_true",
        help="with --person and --text: also unlabelled faces that identify as the person "
        "(match operating point)",
    )
    search.add_argument(
        "--identity-token",
        action="store_true",
        help="with --person and --text: name the person inside the scene query by the "
        "image-text model's Id-CLIP translator (facesearch train idclip)",
    )
    search.add_argument(
        "--description",
        help="a description of the face (TGFR: 'an older man with glasses and no beard'), "
        "with IMAGE or alone",
    )
    search.add_argument(
        "--fusion",
        choices=("attributes", "learned"),
        default="attributes",
        help="with IMAGE and --description: `attributes` (default) scores the description "
        "against the stored attributes or captions beside the face; `learned` fuses face and "
        "description into one probe with the embedder's learned fusion model (TGFR; measured "
        "no better than the face alone) and shows the description's weight",
    )
    search.add_argument(
        "--where", action="append", default=[], metavar="KEY=VALUE", help="filter; repeatable"
    )
    search.add_argument(
        "--face", type=int, metavar="N", help="with IMAGE: only face N (0 = largest)"
    )
    search.add_argument(
        "--by-person", action="store_true", help="with IMAGE: a person's best face once"
    )
    search.add_argument("--json", action="store_true", help="print JSON")
    search.add_argument(
        "--show-attributes",
        action="store_true",
        help="per hit, the attributes stored with the face (sex, age, beard, glasses, ...) "
        "with their probabilities",
    )

    session = sub.add_parser("session", parents=[common], help="interactive feedback search")
    session.add_argument("--collection", "-c", default=DEFAULT_COLLECTION)
    session.add_argument("--user", default="cli-user", help="whose head learns (user_id)")
    session.add_argument("-k", type=int, default=0, help="faces per round (server default 8)")
    session.add_argument("--seed-image", type=Path)
    session.add_argument("--seed-text")
    session.add_argument("--seed-person")
    session.add_argument("--max-rounds", type=int, default=50)
    session.add_argument("--ephemeral", action="store_true", help="do not update the user head")
    session.add_argument(
        "--simulate",
        metavar="PERSON_ID",
        help="no questions: a simulated user looking for this person answers each round",
    )
    session.add_argument("--target", metavar="ID", help="with --simulate: the face to find")
    session.add_argument(
        "--describe",
        action="store_true",
        help="no session: show what --user's past sessions taught (their lasting head)",
    )
    session.add_argument(
        "--reset",
        action="store_true",
        help="no session: forget --user's lasting head (the next session starts untrained)",
    )
    session.add_argument("--json", action="store_true", help="with --describe: print JSON")

    quick = sub.add_parser(
        "quickstart", help="start the services, index sample photos, search, run a session"
    )
    quick.add_argument("--data-dir", type=Path, default=Path("data/quickstart"))
    quick.add_argument("--keep-running", action="store_true", help="leave the services up")
    quick.add_argument("--seed", type=int, default=7, help="picks the query and the target")
    quick.add_argument(
        "--port-base",
        type=int,
        default=DEFAULT_PORTS["embedder"],
        metavar="P",
        help="embedder on P, retriever P+1, personalizer P+2",
    )

    # Offline: trains in this process (needs facesearch-server[train]); its own options are
    # parsed by the training module, so `facesearch train face-encoder --help` lists them.
    train = sub.add_parser(
        "train",
        help="fine-tune a model: train face-encoder DIR (labelled faces), or train idclip "
        "(Id-CLIP's identity translator; `facesearch train idclip --help`)",
    )
    train.add_argument(
        "train_args", nargs=argparse.REMAINDER, metavar="face-encoder ... | idclip ..."
    )

    status = sub.add_parser("status", parents=[common], help="health and counts of services")
    status.add_argument("--json", action="store_true", help="print JSON")
    COMMANDS.update(cli_persons.add_parsers(sub, common, DEFAULT_COLLECTION))
    COMMANDS.update(cli_reembed.add_parsers(sub, common))
    COMMANDS.update(cli_backfill.add_parsers(sub, common))
    return parser


def client_settings(args: argparse.Namespace) -> ClientSettings:
    keys = [
        "api_key",
        "tls",
        "tls_ca_file",
        "tls_cert_file",
        "tls_key_file",
        "tls_server_name",
        "timeout_s",
        *(f"{s}_address" for s in SERVICES),
    ]
    for note in misspelt_env():
        print(f"facesearch: warning: {note}", file=sys.stderr)
    return ClientSettings.from_env(**{k: getattr(args, k, None) for k in keys})


# ---------------------------------------------------------------- serve


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    ports = {s: args.port_base + i for i, s in enumerate(SERVICES)}
    stack = LocalStack(
        data_dir=args.data_dir,
        host=args.host,
        ports=ports,
        metrics_ports={
            s: 0 if args.no_metrics else args.metrics_port_base + i for i, s in enumerate(SERVICES)
        },
        ready_timeout_s=args.ready_timeout,
    )
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in STOP_SIGNALS}
    try:
        return _serve_until_stopped(stack, stop, args.data_dir, out)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _serve_until_stopped(
    stack: LocalStack, stop: threading.Event, data_dir: Path, out: TextIO
) -> int:
    print(f"starting embedder, retriever, personalizer (logs in {data_dir / 'logs'})", file=out)
    try:
        stack.start()
    except FacesearchError as exc:
        print(f"facesearch serve: {exc}", file=sys.stderr)
        return 1
    for service in SERVICES:
        print(f"  {service:<13} {stack.address(service)}  SERVING", file=out)
    print("Ctrl-C stops them.", file=out, flush=True)
    died = None
    while not stop.wait(0.5):
        if (died := stack.first_exited()) is not None:
            break
    if died is not None:
        print(f"facesearch serve: {died} exited unexpectedly; stopping the others", file=sys.stderr)
        print(stack.log_tail(died), file=sys.stderr)
    codes = stack.stop()
    print("stopped: " + ", ".join(f"{s} exit {c}" for s, c in codes.items()), file=out, flush=True)
    return 1 if died is not None or any(codes.values()) else 0


# ---------------------------------------------------------------- index


def cmd_index(args: argparse.Namespace, client: FacesearchClient, out: TextIO) -> int:
    files = flows.image_files(args.directory)
    if not files:
        print(f"no images under {args.directory}", file=sys.stderr)
        return 1
    face_index = face_index_of(args)  # a wrong choice fails before any call
    # A retriever restarting as the run starts is waited for as one restarting mid-run is.
    info, created = index_resume.call_with_retries(
        lambda: flows.ensure_collection(
            client, args.collection, shards=args.shards, face_index=face_index
        ),
        args.retry_for,
        client.settings.initial_backoff_s,
        client.settings.max_backoff_s,
    )
    fields = ", ".join(f"{f.name}:{f.model_id}/{f.dimension}" for f in info.vector_fields)
    print(f"{'created' if created else 'using'} collection {info.name} ({fields})", file=out)
    journal = args.journal or index_resume.default_journal_path(
        client.settings.retriever_address, info.name, args.directory
    )
    if args.no_resume:
        journal.unlink(missing_ok=True)

    bar = ProgressBar(not args.no_progress, unit="img", desc="indexing", total=len(files))

    def progress(p: flows.IndexProgress) -> None:
        bar.show(p.done, p.total, faces=p.faces, errors=p.errors)

    stopped = None
    try:
        summary = flows.index_folder(
            client,
            args.directory,
            args.collection,
            files=files,
            batch_size=args.batch_size,
            max_in_flight=args.in_flight,
            progress=progress,
            person_from_dir=args.person_from_dir,
            captions=not args.no_captions,
            source=args.source,
            journal=journal,
            retry_for_s=args.retry_for,
        )
    except index_resume.IndexIncomplete as exc:
        stopped, summary = exc, exc.summary
    finally:
        bar.close()
    print_index_summary(summary, len(files), journal, out)
    if stopped is not None:
        print(
            f"indexing stopped after retrying for {args.retry_for:g}s: {stopped.reason}\n"
            f"run the same command again to index the {len(summary.errors)} file(s) above "
            "(files already stored are skipped)",
            file=out,
        )
    return 1 if summary.errors else 0


# The failed files a summary lists before it only counts the rest.
SHOW_FAILED = 50


def print_index_summary(
    summary: flows.IndexSummary, files: int, journal: Path, out: TextIO
) -> None:
    if summary.skipped:
        print(
            f"resumed: {summary.skipped} of {files} images already stored by an earlier run "
            f"(journal {journal}; --no-resume sends them again)",
            file=out,
        )
    retried = f", {summary.retries} transient failure(s) retried" if summary.retries else ""
    print(
        f"indexed {summary.images} images in {summary.seconds:.1f}s "
        f"({summary.images_per_second:.1f} img/s): {summary.faces} faces in "
        f"{summary.images_with_faces} images, {summary.upserted} stored, "
        f"{len(summary.errors)} errors{retried}",
        file=out,
    )
    if summary.person_labels or summary.persons_enrolled:
        labels = summary.person_labels
        left = sum(n for k, n in labels.items() if k != "labelled")
        why = ", ".join(f"{k} {n}" for k, n in sorted(labels.items()) if k != "labelled")
        print(
            f"person labels from the folders: {labels.get('labelled', 0)} face(s) labelled, "
            f"{left} left unlabelled ({why or 'none'}); {summary.persons_enrolled} new "
            "person(s) enrolled",
            file=out,
        )
    if summary.caption_sources or summary.without_caption:
        found = ", ".join(f"{n} {src}" for src, n in sorted(summary.caption_sources.items()))
        print(
            f"captions: {found or 'none'}; {summary.without_caption} image(s) with faces had "
            "no context text (IPTC/XMP/EXIF, sidecar .txt/.json/.srt/.vtt)",
            file=out,
        )
    if summary.without_attributes:
        print(
            f"attributes: {summary.without_attributes} face(s) stored without them "
            f"({summary.attributes_note}), so a --description search cannot score them; fill "
            "them with `facesearch backfill COLLECTION --field attributes` (through an embedder "
            "serving the collection's attribute model)",
            file=out,
        )
    if summary.without_scene:
        print(
            f"scene: {summary.without_scene} face(s) stored without their photo's scene vector "
            f"({summary.scene_note}), so context queries match only their captions; fill them "
            "with `facesearch backfill COLLECTION --field scene` (through an embedder serving "
            "the collection's image-text model)",
            file=out,
        )
    for media_id, why in summary.context_problems[:SHOW_FAILED]:
        print(f"  context not read for {media_id}: {why}", file=out)
    if summary.errors:
        print(f"not indexed ({len(summary.errors)}):", file=out)
    for media_id, why in summary.errors[:SHOW_FAILED]:
        print(f"  {media_id}: {why}", file=out)
    if len(summary.errors) > SHOW_FAILED:
        print(f"  ... and {len(summary.errors) - SHOW_FAILED} more", file=out)


# ---------------------------------------------------------------- search


def run_search(args: argparse.Namespace, client: FacesearchClient) -> list[messages.Hit]:
    try:
        where = messages.parse_where(args.where) or None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    common = {"k": args.k, "where": where}
    if args.image is not None:
        if args.text or args.person:
            raise UsageError("give IMAGE (optionally with --description) or --text/--person")
        if args.description is not None:
            return flows.search_face_with_description(
                client,
                args.collection,
                args.image,
                args.description,
                fusion=args.fusion,
                **common,
            )
        if args.fusion != "attributes":
            raise UsageError("--fusion goes with --description")
        return flows.search_by_image(client, args.collection, args.image, **common)
    if args.fusion == "learned":
        raise UsageError("--fusion learned fuses a face with its description: give an IMAGE")
    if args.description is not None:
        if args.text or args.person:
            raise UsageError("give --description alone or with an IMAGE, not with --text/--person")
        return flows.search_face_with_description(
            client, args.collection, None, args.description, **common
        )
    if args.unlabelled and not (args.person and args.text):
        raise UsageError("--unlabelled goes with --person and --text")
    if args.identity_token and not (args.person and args.text):
        raise UsageError("--identity-token goes with --person and --text")
    if args.person and args.text:
        return flows.search_person_in_context(
            client,
            args.collection,
            args.person,
            args.text,
            include_unlabelled=args.unlabelled,
            identity_token=args.identity_token,
            **common,
        )
    if args.text:
        return flows.search_by_text(client, args.collection, args.text, **common)
    if args.person:
        return flows.search_by_person(client, args.collection, args.person, **common)
    raise UsageError("give an IMAGE, --text or --person")


def format_hits(hits: Sequence[messages.Hit]) -> str:
    if not hits:
        return "no matches"
    rows = [f"{'#':>3}  {'score':>7}  {'id':<40} person / media"]
    for rank, hit in enumerate(hits, 1):
        who = hit.metadata.get("person_id") or ""
        media = hit.metadata.get("media_id") or ""
        label = " / ".join(str(x) for x in (who, media) if x)
        rows.append(f"{rank:>3}  {hit.score:7.4f}  {hit.id:<40} {label}")
    return "\n".join(rows)


def _hits_json(hits: Sequence[messages.Hit]) -> list[dict[str, object]]:
    return [
        {"id": h.id, "score": h.score, "term_scores": list(h.term_scores), "metadata": h.metadata}
        for h in hits
    ]


def cmd_search_image_faces(args: argparse.Namespace, client: FacesearchClient, out: TextIO) -> int:
    """A photo's every face, each with its own matches (a group photo is several searches)."""
    try:
        where = messages.parse_where(args.where) or None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    faces = flows.search_image_faces(
        client,
        args.collection,
        args.image,
        k=args.k,
        where=where,
        face=args.face,
        by_person=args.by_person,
    )
    every = [h for f in faces for h in f.hits]
    attrs = cli_attributes.stored(client, args.collection, every) if args.show_attributes else None
    if args.json:
        payload = [
            {"face": f.index, "box": list(f.box), "quality": f.quality, "hits": _hits_json(f.hits)}
            for f in faces
        ]
        text = json.dumps(payload, default=str, indent=2)
        print(text if attrs is None else cli_attributes.add_to_json(text, attrs), file=out)
        return 0
    for f in faces:
        x, y, w, h = (round(v) for v in f.box)
        print(f"face {f.index} at ({x},{y}) {w}x{h}px, quality {f.quality:.2f}:", file=out)
        print(format_hits(f.hits), file=out)
        if attrs is not None:
            print(cli_attributes.format_block(f.hits, attrs), file=out)
    return 0


def cmd_search(args: argparse.Namespace, client: FacesearchClient, out: TextIO) -> int:
    if args.image is not None and not (args.text or args.person or args.description):
        return cmd_search_image_faces(args, client, out)
    if args.face is not None or args.by_person:
        raise UsageError("--face and --by-person go with IMAGE alone")
    hits = run_search(args, client)
    if isinstance(hits, DescriptionHits):
        text = _described_json(hits) if args.json else format_described(hits)
    elif isinstance(hits, ContextHits):
        text = _in_context_json(hits) if args.json else format_in_context(hits)
    elif args.json:
        text = json.dumps(_hits_json(hits), default=str, indent=2)
    else:
        text = format_hits(hits)
    if args.show_attributes:
        attrs = cli_attributes.stored(client, args.collection, hits)
        text = (
            cli_attributes.add_to_json(text, attrs)
            if args.json
            else f"{text}\n{cli_attributes.format_block(hits, attrs)}"
        )
    print(text, file=out)
    return 0


def format_in_context(found: ContextHits) -> str:
    """Person-in-context hits (score: the weighted sum of the context's cosines with the
    caption and the photo's scene vector, as ``found.used`` says), unlabelled faces that
    identify as the person marked, then the notes."""
    lines = format_hits(found).splitlines()
    for i, hit in enumerate(found, 1):
        if hit.id in found.identified:
            lines[i] += "  (unlabelled: identified)"
    matched = [f"context matched by: {' + '.join(found.used)}"] if found.used else []
    return "\n".join(matched + lines + [f"note: {n}" for n in found.notes])


def _in_context_json(found: ContextHits) -> str:
    hits = [dict(h, identified=h["id"] in found.identified) for h in _hits_json(found)]
    return json.dumps({"hits": hits, "notes": found.notes}, default=str, indent=2)


def format_described(found: DescriptionHits) -> str:
    """What the description was read as (its parsed attributes) and how it was used, then
    per hit the fused score, the face score and the description score."""
    read = ", ".join(str(e) for e in found.evidence) or "no attribute"
    lines = [f"description read as: {read}"]  # the description's parsed attributes
    if found.fusion == "learned":
        lines.append(
            f"fusion: learned ({found.fusion_model}), face quality {found.face_quality:.2f} "
            f"-> description weight {found.description_weight:.3f}"
        )
    if found.face_weight is not None:
        lines.append(
            f"face quality {found.face_quality:.2f} -> face weight {found.face_weight:.2f}"
        )
    lines.append(f"scored by: {' + '.join(found.used)}")
    lines.extend(f"note: {n}" for n in found.notes)
    if not found:
        return "\n".join([*lines, "no matches"])
    lines.append(f"{'#':>3}  {'score':>7}  {'face':>6}  {'descr':>6}  {'id':<34} person / media")
    for rank, hit in enumerate(found, 1):
        face, descr = found.face_score(hit), found.description_score(hit)
        who = hit.metadata.get("person_id") or ""
        media = hit.metadata.get("media_id") or ""
        label = " / ".join(str(x) for x in (who, media) if x)
        lines.append(
            f"{rank:>3}  {hit.score:7.4f}  {_score(face)}  {_score(descr)}  {hit.id:<34} {label}"
        )
    return "\n".join(lines)


def _score(value: float | None) -> str:
    return f"{value:6.3f}" if value is not None else f"{'-':>6}"


def _described_json(found: DescriptionHits) -> str:
    payload = {
        "evidence": [
            {"name": e.name, "present": e.present, "confidence": e.confidence, "phrase": e.phrase}
            for e in found.evidence
        ],
        "used": found.used,
        "fusion": found.fusion,
        "fusion_model": found.fusion_model,
        "description_weight": found.description_weight,
        "face_quality": found.face_quality,
        "face_weight": found.face_weight,
        "notes": found.notes,
        "hits": [
            {
                **h,
                "face_score": found.face_score(hit),
                "description_score": found.description_score(hit),
            }
            for h, hit in zip(_hits_json(found), found, strict=True)
        ],
    }
    return json.dumps(payload, default=str, indent=2)


# ---------------------------------------------------------------- session


def format_round(state: personalizer_pb2.SessionState) -> str:
    lines = [f"round {state.round}: {len(state.candidates)} faces"]
    for i, c in enumerate(state.candidates, 1):
        meta = messages.python_metadata(c.metadata)
        shown = {k: meta[k] for k in ("person_id", "media_id", "caption") if k in meta}
        extra = " (exploring)" if c.exploratory else ""
        lines.append(f"  {i:>2}. {c.id}  score {c.score:.3f}{extra}  {shown or ''}".rstrip())
    return "\n".join(lines)


def terminal_feedback(
    read: Callable[[str], str], out: TextIO
) -> Callable[[personalizer_pb2.SessionState], list[personalizer_pb2.Feedback] | str | None]:
    """An on_round callback for flows.run_session that asks at the terminal: per face s
    (similar), d (dissimilar), f (found), n (not them, but similar), o (not them, nothing like
    them); u takes back the last answered round, q stops."""

    def on_round(
        state: personalizer_pb2.SessionState,
    ) -> list[personalizer_pb2.Feedback] | str | None:
        print(format_round(state), file=out)
        ids = [c.id for c in state.candidates]
        while True:
            try:
                line = read(
                    "labels (e.g. '1s 3s 2d'; 4f = found, 5n = not them but similar, "
                    "6o = nothing like them; u = undo last round, q = quit)> "
                ).strip()
            except EOFError:
                return None
            if line.lower() in {"q", "quit", "exit"}:
                return None
            if line.lower() in {"u", "undo"}:
                if state.undoable_rounds:
                    return flows.UNDO
                print("  nothing to undo: no answered round is kept", file=out)
                continue
            try:
                return messages.parse_labels(line, ids)
            except ValueError as exc:
                print(f"  {exc}", file=out)

    return on_round


def format_user(desc: personalizer_pb2.DescribeUserResponse) -> str:
    """A user's lasting heads, one line per face model."""
    lines = [f"user {desc.user_id}: {desc.active_sessions} live session(s)"]
    if not desc.heads:
        lines.append("  no lasting head: sessions start from the plain embedding")
    for h in desc.heads:
        when = h.updated.ToDatetime().strftime("%Y-%m-%d %H:%M:%S UTC")
        lines.append(
            f"  {h.model_id}: distance from identity {h.distance_from_identity:.4f}, "
            f"mean cosine change {h.probe_cosine_change:.4f}; trained on "
            f"{h.sessions_trained} session(s), {h.rounds_trained} round(s); version "
            f"{h.version}, updated {when}"
        )
    return "\n".join(lines)


def cmd_user_head(args: argparse.Namespace, client: FacesearchClient, out: TextIO) -> int:
    """``session --describe`` / ``--reset``: the user's lasting head, no session."""
    if args.reset:
        n = flows.reset_user(client, args.user)
        print(f"forgot {n} lasting head(s) of user {args.user}", file=out)
    if args.describe:
        desc = flows.describe_user(client, args.user)
        if args.json:
            payload = MessageToDict(
                desc, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
            print(json.dumps(payload, indent=2), file=out)
        else:
            print(format_user(desc), file=out)
    return 0


def require_person_faces(client: FacesearchClient, collection: str, person_id: str) -> None:
    """Refuse a simulated session for a person with no face in the collection: the simulated
    user would answer "dissimilar" to every face until the round limit, and say nothing."""
    face = flows.collection_fields(client, collection).face
    query = retriever_pb2.Query(
        k=1, terms=[retriever_pb2.QueryTerm(field=face, person_id=person_id)]
    )
    try:
        client.retriever.Search(
            retriever_pb2.SearchRequest(collection=collection, queries=[query], with_metadata=False)
        )
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
            raise
        raise UsageError(
            f"--simulate {person_id}: no face in collection {collection!r} is labelled with "
            "that person, so the simulated user could only ever answer 'dissimilar'; name a "
            "person of the collection (facesearch persons list) or enrol this one first "
            "(facesearch persons enroll)"
        ) from None


def cmd_session(
    args: argparse.Namespace,
    client: FacesearchClient,
    out: TextIO,
    read: Callable[[str], str] = input,
) -> int:
    if args.target and not args.simulate:
        raise UsageError("--target goes with --simulate PERSON_ID")
    if args.json and not args.describe:
        raise UsageError("--json goes with --describe (a session itself prints rounds as text)")
    if args.describe or args.reset:
        return cmd_user_head(args, client, out)
    seed = messages.seed_from(
        image=args.seed_image, text=args.seed_text, person_id=args.seed_person
    )
    if args.simulate:
        require_person_faces(client, args.collection, args.simulate)
        on_round = flows.simulated_user(
            args.simulate, args.target, show=lambda state: print(format_round(state), file=out)
        )
    else:
        on_round = terminal_feedback(read, out)
    outcome = flows.run_session(
        client,
        args.collection,
        args.user,
        on_round,
        k=args.k,
        seed=seed,
        ephemeral=args.ephemeral,
        max_rounds=args.max_rounds,
    )
    if outcome.found_id:
        print(f"found {outcome.found_id} after {outcome.rounds} rounds", file=out)
    elif outcome.finished:
        print(f"no unseen faces left after {outcome.rounds} rounds", file=out)
    else:
        print(f"stopped after {outcome.rounds} rounds", file=out)
    return 0


# ---------------------------------------------------------------- status


def service_status(client: FacesearchClient, service: str) -> dict[str, Any]:
    """Health and what the service holds; never raises for a down service."""
    entry: dict[str, Any] = {"address": client.settings.address(service)}
    try:
        entry["health"] = client.health(service, timeout=min(5.0, client.settings.timeout_s))
    except grpc.RpcError as err:
        entry["health"] = "DOWN"
        entry["error"] = explain(err)
        return entry
    try:
        if service == "embedder":
            models = client.embedder.ListModels(embedder_pb2.ListModelsRequest()).models
            entry["models"] = [
                {
                    "model_id": m.model_id,
                    "kind": embedder_pb2.ModelKind.Name(m.kind),
                    "dimension": m.dimension,
                    "backend": m.backend,
                    "ready": m.ready,
                }
                for m in models
            ]
        elif service == "retriever":
            stats = client.retriever.Stats(retriever_pb2.StatsRequest())
            entry["collections"] = stats.collections
            entry["points"] = stats.points
            entry["memory_bytes"] = stats.memory_bytes
            entry["disk_bytes"] = stats.disk_bytes
    except grpc.RpcError as err:
        entry["error"] = explain(err)
    return entry


def format_status(report: dict[str, dict[str, Any]]) -> str:
    lines = []
    for service, entry in report.items():
        line = f"{service:<13} {entry['address']:<22} {entry['health']}"
        if "models" in entry:
            ready = sum(1 for m in entry["models"] if m["ready"])
            names = ", ".join(f"{m['model_id']}({m['dimension']})" for m in entry["models"])
            line += f"  models {ready}/{len(entry['models'])} ready" + (
                f": {names}" if names else ""
            )
        if "collections" in entry:
            line += f"  collections {entry['collections']}, points {entry['points']}"
        if "error" in entry:
            line += f"\n{'':<14}{entry['error']}"
        lines.append(line)
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace, client: FacesearchClient, out: TextIO) -> int:
    report = {service: service_status(client, service) for service in SERVICES}
    if args.json:
        print(json.dumps(report, indent=2), file=out)
    else:
        print(format_status(report), file=out)
    healthy = all(e["health"] == "SERVING" and "error" not in e for e in report.values())
    return 0 if healthy else 1


# ---------------------------------------------------------------- entry point


class UsageError(Exception):
    pass


COMMANDS: dict[str, cli_persons.Command] = {
    "index": cmd_index,
    "search": cmd_search,
    "session": cmd_session,
    "status": cmd_status,
}


def run_training(train_args: list[str]) -> int:
    """Training is server-side code (torch, the embedder's models): run it as that package's
    own command in a child process, so the SDK never imports the server."""
    import importlib.util
    import subprocess

    module = "facesearch_server.embedder.training"
    if train_args[:1] == ["idclip"]:  # Id-CLIP's translator has its own command
        module, train_args = "facesearch_server.embedder.idclip_train", train_args[1:]
    if importlib.util.find_spec("facesearch_server") is None:
        print(
            "facesearch train: the server package is not installed here; install "
            "facesearch-server[train] (scripts/install.sh does)",
            file=sys.stderr,
        )
        return 1
    return subprocess.call([sys.executable, "-m", module, *train_args])


def _not_found_hint(err: grpc.RpcError) -> str:
    """Where to look when a collection is unknown: often -c was left out (default 'faces')."""
    code = getattr(err, "code", lambda: None)()
    details = getattr(err, "details", lambda: "")() or ""
    if code == grpc.StatusCode.NOT_FOUND and "no collection or alias named" in details:
        return (
            f" (`facesearch collections list` shows them; -c NAME picks one, default "
            f"{DEFAULT_COLLECTION!r}; `facesearch index DIR -c NAME` creates one)"
        )
    return ""


def _file_problem(exc: OSError) -> str:
    """A local file the user named, said plainly rather than as Python's [Errno N]."""
    if exc.filename is None:
        return str(exc)
    name = exc.filename
    if isinstance(exc, FileNotFoundError):
        return f"{name}: no such file (check the path; it is read from this machine)"
    if isinstance(exc, IsADirectoryError):
        return f"{name} is a folder: give one photo (`facesearch index DIR` indexes a folder)"
    if isinstance(exc, PermissionError):
        return f"{name}: permission denied (the file must be readable by this user)"
    return f"{name}: {exc.strerror or exc}"


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return cmd_serve(args, out)
    if args.command == "train":
        return run_training(args.train_args)
    if args.command == "quickstart":
        from facesearch import quickstart

        try:
            return quickstart.run(
                args.data_dir,
                keep_running=args.keep_running,
                seed=args.seed,
                port_base=args.port_base,
                out=out,
            )
        except (FacesearchError, grpc.RpcError) as exc:
            why = explain(exc) if isinstance(exc, grpc.RpcError) else str(exc)
            print(f"facesearch quickstart: {why}", file=sys.stderr)
            return 1
    try:
        settings = client_settings(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        with FacesearchClient(settings) as client:
            return COMMANDS[args.command](args, client, out)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"facesearch {args.command}: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as err:
        print(f"facesearch {args.command}: {explain(err)}{_not_found_hint(err)}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"facesearch {args.command}: {_file_problem(exc)}", file=sys.stderr)
        return 1
    except (FacesearchError, ValueError) as exc:
        print(f"facesearch {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
