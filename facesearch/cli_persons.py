"""CLI commands for persons, identification and collections:

    facesearch identify IMAGE -c archive [--face N] [--json]
    facesearch persons enroll PERSON_ID PHOTO... -c archive [--name "Display Name"]
    facesearch persons list|show|rename|merge|split|forget ... -c archive [--json]
    facesearch clusters list|name|merge|split ... -c archive [--json]
    facesearch collections list|describe|drop ... [--json]

Every read command has --json for scripts; exit code 0 on success, 1 on a refused or failed
call (with the service's message), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from google.protobuf.json_format import MessageToDict

from facesearch import flows
from facesearch.cli_face_index import index_summary
from facesearch.client import FacesearchClient
from facesearch.errors import FacesearchError
from facesearch_contract.v1 import persons_pb2, retriever_pb2

Command = Callable[[argparse.Namespace, FacesearchClient, TextIO], int]


def add_parsers(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
    default_collection: str,
) -> dict[str, Command]:
    identify = sub.add_parser(
        "identify", parents=[common], help="who is in a photo: every face, with decisions"
    )
    identify.add_argument("image", type=Path, metavar="IMAGE")
    identify.add_argument("--collection", "-c", default=default_collection)
    identify.add_argument("--face", type=int, metavar="N", help="only face N (0 = largest)")
    identify.add_argument("--candidates", type=int, default=3, help="persons per face")
    identify.add_argument("--json", action="store_true", help="print JSON")

    # Options go with the verb (`persons list -c archive --json`), so each verb takes them all.
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON")
    in_collection = argparse.ArgumentParser(add_help=False)
    in_collection.add_argument("--collection", "-c", default=default_collection)
    verb_options = [common, output, in_collection]

    persons = sub.add_parser("persons", help="enrol, list, rename, merge, split, forget")
    verbs = persons.add_subparsers(dest="verb", required=True, metavar="VERB")
    enroll = verbs.add_parser(
        "enroll", parents=verb_options, help="a new person from photos showing only them"
    )
    enroll.add_argument("person_id")
    enroll.add_argument("photos", type=Path, nargs="+", metavar="PHOTO")
    enroll.add_argument("--name", default="", help="display name (default: the id)")
    verbs.add_parser("list", parents=verb_options, help="every person of the collection")
    show = verbs.add_parser(
        "show", parents=verb_options, help="one person: references, labelled faces"
    )
    show.add_argument("person_id")
    rename = verbs.add_parser("rename", parents=verb_options, help="change the display name")
    rename.add_argument("person_id")
    rename.add_argument("name")
    merge = verbs.add_parser(
        "merge", parents=verb_options, help="SOURCE's faces become TARGET's; SOURCE goes"
    )
    merge.add_argument("source")
    merge.add_argument("target")
    split = verbs.add_parser(
        "split",
        parents=verb_options,
        help="move some of a person's faces to a new person (one was two people)",
    )
    split.add_argument("person_id", help="the person whose faces are split off")
    split.add_argument("new_person_id", help="the new person's id (must not exist)")
    split.add_argument(
        "face_ids",
        nargs="+",
        metavar="FACE_ID",
        help="faces that move (`persons show` lists them); at least one reference among them",
    )
    split.add_argument("--name", default="", help="the new person's display name")
    forget = verbs.add_parser(
        "forget", parents=verb_options, help="hard-delete a person and their faces"
    )
    forget.add_argument("person_id")
    forget.add_argument(
        "--include-unlabelled-matches",
        action="store_true",
        help="also faces indexed without a label that identify as them (match point)",
    )
    forget.add_argument("--dry-run", action="store_true", help="list, delete nothing")

    clusters = sub.add_parser("clusters", help="unlabelled faces grouped into candidate persons")
    kverbs = clusters.add_subparsers(dest="verb", required=True, metavar="VERB")
    klist = kverbs.add_parser("list", parents=verb_options, help="largest group first")
    klist.add_argument(
        "--min-size", type=int, default=2, help="list clusters of at least this many faces (2)"
    )
    klist.add_argument(
        "--max", dest="max_clusters", type=int, default=50, help="list at most this many (50)"
    )
    klist.add_argument(
        "--recluster",
        action="store_true",
        help="group every unlabelled face again (new ids; earlier merges and splits undone)",
    )
    kmerge = kverbs.add_parser("merge", parents=verb_options, help="clusters that are one person")
    kmerge.add_argument("cluster_ids", nargs="+", metavar="CLUSTER_ID", help="the first id is kept")
    ksplit = kverbs.add_parser(
        "split", parents=verb_options, help="move faces out of a cluster into a new one"
    )
    ksplit.add_argument("cluster_id")
    ksplit.add_argument("face_ids", nargs="+", metavar="FACE_ID")
    kname = kverbs.add_parser(
        "name", parents=verb_options, help="a cluster's faces become a person's"
    )
    kname.add_argument("cluster_id")
    kname.add_argument("person_id", help="a new person is enrolled; an existing one grows")
    kname.add_argument("--name", default="", help="display name of a new person")

    colls = sub.add_parser("collections", help="list, describe, drop")
    cverbs = colls.add_subparsers(dest="verb", required=True, metavar="VERB")
    cverbs.add_parser("list", parents=[common, output], help="the collections of your tenant")
    describe = cverbs.add_parser(
        "describe", parents=[common, output], help="counts, fields, index state"
    )
    describe.add_argument("name")
    drop = cverbs.add_parser(
        "drop", parents=[common, output], help="delete a collection and everything in it"
    )
    drop.add_argument("name")
    drop.add_argument("--yes", action="store_true", help="required: dropping cannot be undone")
    drop.add_argument("--force", action="store_true", help="also delete aliases pointing at it")
    return {
        "identify": cmd_identify,
        "persons": cmd_persons,
        "clusters": cmd_clusters,
        "collections": cmd_collections,
    }


def _json(message: Any) -> dict[str, Any]:
    # Fields at their default (no clusters listed, 0 new faces) are printed too, so a script
    # reads every key of the reply whatever its values.
    return MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def cmd_identify(args: argparse.Namespace, client: FacesearchClient, out: TextIO) -> int:
    faces = flows.identify_image(
        client, args.collection, args.image, max_candidates=args.candidates
    )
    if args.face is not None:
        if not 0 <= args.face < len(faces):
            raise FacesearchError(f"--face {args.face}: the photo has faces 0..{len(faces) - 1}")
        faces = [faces[args.face]]
    if args.json:
        rows = [
            {
                "face": f.index,
                "box": list(f.box),
                "quality": round(f.quality, 3),
                "decision": f.decision,
                "person_id": f.person_id,
                "match_threshold": round(f.match_threshold, 4),
                "candidates": [_json(c) for c in f.candidates],
            }
            for f in faces
        ]
        print(json.dumps(rows, indent=2), file=out)
        return 0
    for f in faces:
        x, y, w, h = (round(v) for v in f.box)
        print(
            f"face {f.index} at ({x},{y}) {w}x{h}px, quality {f.quality:.2f}: {f.decision.upper()}"
            f"  (match needs {f.match_threshold:.3f}, possible {f.possible_threshold:.3f})",
            file=out,
        )
        for c in f.candidates:
            decision = flows.core.persons.DECISIONS.get(c.decision, "unknown")
            print(
                f"    {c.person_id:<28} {c.display_name:<24} score {c.score:.3f}  "
                f"{decision:<8} est. false-match rate {c.estimated_fpir:.1e}",
                file=out,
            )
        if not f.candidates:
            print("    (no persons enrolled in this collection)", file=out)
    return 0


def _person_line(p: persons_pb2.Person) -> str:
    return (
        f"{p.person_id:<28} {p.display_name:<28} references {len(p.reference_ids):>2}  "
        f"labelled faces {p.labelled_faces}"
    )


def cmd_persons(args: argparse.Namespace, client: FacesearchClient, out: TextIO) -> int:
    c = args.collection
    stub = client.persons
    if args.verb == "enroll":
        person = flows.enroll_person(client, c, args.person_id, args.photos, display_name=args.name)
        shown: Any = person
    elif args.verb == "list":
        people = flows.list_persons(client, c)
        if args.json:
            print(json.dumps([_json(p) for p in people], indent=2), file=out)
        else:
            for p in people:
                print(_person_line(p), file=out)
            print(f"{len(people)} person(s) in {c}", file=out)
        return 0
    elif args.verb == "show":
        shown = stub.GetPerson(
            persons_pb2.GetPersonRequest(collection=c, person_id=args.person_id)
        ).person
    elif args.verb == "rename":
        shown = stub.UpdatePerson(
            persons_pb2.UpdatePersonRequest(
                collection=c, person_id=args.person_id, display_name=args.name
            )
        ).person
    elif args.verb == "merge":
        reply = stub.MergePersons(
            persons_pb2.MergePersonsRequest(
                collection=c, source_person_id=args.source, target_person_id=args.target
            )
        )
        if not args.json:
            print(f"merged {args.source} into {args.target}: {reply.relabelled_faces} "
                  "face(s) relabelled", file=out)  # fmt: skip
        shown = reply.person
    elif args.verb == "split":
        reply = stub.SplitPerson(
            persons_pb2.SplitPersonRequest(
                collection=c,
                person_id=args.person_id,
                new_person=persons_pb2.Person(person_id=args.new_person_id, display_name=args.name),
                face_ids=args.face_ids,
            )
        )
        if args.json:
            print(json.dumps(_json(reply), indent=2), file=out)
            return 0
        print(f"moved {reply.moved_faces} face(s) of {args.person_id} to {args.new_person_id}",
              file=out)  # fmt: skip
        for p in (reply.person, reply.new_person):
            print(_person_line(p), file=out)
        return 0
    else:  # forget
        reply = flows.forget_person(
            client,
            c,
            args.person_id,
            include_unlabelled_matches=args.include_unlabelled_matches,
            dry_run=args.dry_run,
        )
        if args.json:
            print(json.dumps(_json(reply), indent=2), file=out)
            return 0
        verb = "would delete" if reply.dry_run else "deleted"
        print(
            f"{verb} {reply.labelled_faces} labelled face(s) and {reply.unlabelled_matches} "
            f"unlabelled matching face(s) of {args.person_id}"
            + (" (dry run: nothing changed)" if reply.dry_run else ""),
            file=out,
        )
        for face_id in reply.face_ids:
            print(f"  {face_id}", file=out)
        if reply.truncated:
            print("  ... (more than 10,000: the list is cut)", file=out)
        return 0
    if args.json:
        print(json.dumps(_json(shown), indent=2), file=out)
    else:
        print(_person_line(shown), file=out)
        for ref in shown.reference_ids:
            print(f"  reference {ref}", file=out)
    return 0


def cmd_clusters(args: argparse.Namespace, client: FacesearchClient, out: TextIO) -> int:
    if args.verb == "name":
        person = flows.name_cluster(
            client, args.collection, args.cluster_id, args.person_id, display_name=args.name
        )
        if args.json:
            print(json.dumps(_json(person), indent=2), file=out)
        else:
            print(_person_line(person), file=out)
        return 0
    if args.verb in ("merge", "split"):
        if args.verb == "merge":
            shown: Any = flows.merge_clusters(client, args.collection, list(args.cluster_ids))
            lines = [_cluster_line(shown)]
        else:
            shown = flows.split_cluster(
                client, args.collection, args.cluster_id, list(args.face_ids)
            )
            lines = [_cluster_line(shown.kept), _cluster_line(shown.split)]
        if args.json:
            print(json.dumps(_json(shown), indent=2), file=out)
        else:
            print("\n".join(lines), file=out)
        return 0
    reply = flows.list_clusters(
        client,
        args.collection,
        min_size=args.min_size,
        max_clusters=args.max_clusters,
        recluster=args.recluster,
    )
    if args.json:
        print(json.dumps(_json(reply), indent=2), file=out)
        return 0
    for c in reply.clusters:
        print(_cluster_line(c), file=out)
    cut = " (the first 100,000 only)" if reply.truncated else ""
    # Say why clusters are missing: a first listing of a small archive is mostly singletons.
    hidden = (
        f"; the others have fewer than --min-size {args.min_size} faces or are past "
        f"--max {args.max_clusters}"
        if len(reply.clusters) < reply.total_clusters
        else ""
    )
    print(
        f"{len(reply.clusters)} cluster(s) listed of {reply.total_clusters} "
        f"({reply.unlabelled_faces} unlabelled face(s){cut}; {reply.new_faces} new since the "
        f"last listing, {reply.departed_faces} gone{hidden})",
        file=out,
    )
    return 0


def _cluster_line(c: Any) -> str:
    return f"{c.cluster_id}  {len(c.face_ids):>4} faces  e.g. {c.representative_id}"


def cmd_collections(args: argparse.Namespace, client: FacesearchClient, out: TextIO) -> int:
    stub = client.retriever
    if args.verb == "list":
        infos = list(stub.ListCollections(retriever_pb2.ListCollectionsRequest()).collections)
        if args.json:
            print(json.dumps([_json(i) for i in infos], indent=2), file=out)
        else:
            for i in infos:
                aliases = f"  aliases {', '.join(i.aliases)}" if i.aliases else ""
                print(f"{i.name:<32} points {i.points:<10}{aliases}", file=out)
            print(f"{len(infos)} collection(s)", file=out)
        return 0
    if args.verb == "describe":
        info = stub.DescribeCollection(
            retriever_pb2.DescribeCollectionRequest(collection=args.name)
        ).collection
        if args.json:
            print(json.dumps(_json(info), indent=2), file=out)
        else:
            print(f"{info.name}: {info.points} points, {info.shard_count} shard(s)", file=out)
            lacking = {s.name: s.points_without for s in info.field_stats}
            stats = {s.name: s for s in info.field_stats}
            for f in info.vector_fields:
                line = f"  field {f.name}: {f.dimension}-d, model {f.model_id}"
                if lacking.get(f.name):
                    # Added after faces were stored, or optional (captions): not silent.
                    line += f"; {lacking[f.name]:,} point(s) without it"
                print(line, file=out)
                if f.name in stats:
                    print(f"    index: {index_summary(f, stats[f.name])}", file=out)
        return 0
    if not args.yes:
        raise FacesearchError(
            f"dropping {args.name!r} deletes every face in it for good: add --yes to confirm"
        )
    stub.DropCollection(retriever_pb2.DropCollectionRequest(collection=args.name, force=args.force))
    print(f"dropped {args.name}", file=out)
    return 0
