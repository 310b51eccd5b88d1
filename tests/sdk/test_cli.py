"""The ``facesearch`` command line: parsing and output without servers, then the commands
against the real services, against services that are down, and ``serve`` itself."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from facesearch import cli, messages
from facesearch_contract.v1 import common_pb2, personalizer_pb2
from harness.service_process import REPO_ROOT, ServiceProcess, free_port

from .conftest import GALLERY


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main(list(argv), out=out)
    return code, out.getvalue()


def addresses(services: dict[str, ServiceProcess]) -> list[str]:
    return [arg for name, svc in services.items() for arg in (f"--{name}", svc.address)]


# ---------------------------------------------------------------- without servers


def test_flags_beat_env_for_connection_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACESEARCH_RETRIEVER_ADDRESS", "env-host:1")
    monkeypatch.setenv("FACESEARCH_EMBEDDER_ADDRESS", "env-host:2")
    monkeypatch.setenv("FACESEARCH_API_KEY", "env-key")
    args = cli.build_parser().parse_args(
        ["search", "x.jpg", "--retriever", "flag-host:3", "--api-key", "flag-key", "-k", "3"]
    )
    settings = cli.client_settings(args)
    assert settings.retriever_address == "flag-host:3"
    assert settings.embedder_address == "env-host:2"
    assert settings.api_key == "flag-key"
    assert args.k == 3 and args.image == Path("x.jpg") and args.collection == "faces"


def test_serve_and_index_arguments() -> None:
    args = cli.build_parser().parse_args(["serve", "--data-dir", "/tmp/d", "--port-base", "6000"])
    assert (args.data_dir, args.port_base, args.no_metrics) == (Path("/tmp/d"), 6000, False)
    args = cli.build_parser().parse_args(["index", "photos", "-c", "news", "--person-from-dir"])
    assert (args.directory, args.collection, args.person_from_dir) == (Path("photos"), "news", True)


@pytest.mark.parametrize(
    "argv",
    [
        ["search"],
        ["search", "x.jpg", "--text", "t"],
        ["search", "--description", "d", "--text", "t"],
    ],
    ids=["nothing", "image-and-text", "description-and-text"],
)
def test_search_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    assert run(*argv)[0] == 2
    assert "facesearch search:" in capsys.readouterr().err


def test_bad_filter_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    assert run("search", "x.jpg", "--where", "nonsense")[0] == 2
    assert "key=value" in capsys.readouterr().err


def test_format_hits() -> None:
    hit = messages.Hit("a#0", 0.91234, (0.91234,), {"person_id": "Ann", "media_id": "a.jpg"})
    text = cli.format_hits([hit])
    assert "0.9123" in text and "a#0" in text and "Ann / a.jpg" in text
    assert cli.format_hits([]) == "no matches"


def candidate_state() -> personalizer_pb2.SessionState:
    state = personalizer_pb2.SessionState(session_id="s", round=2)
    for i in range(3):
        c = state.candidates.add(id=f"c{i}", score=0.5 - i / 10)
        c.metadata["person_id"].CopyFrom(common_pb2.MetadataValue(string_value=f"p{i}"))
    return state


def test_terminal_feedback_reprompts_until_labels_are_valid() -> None:
    answers = iter(["7s", "2s 3f"])
    out = io.StringIO()
    labels = cli.terminal_feedback(lambda _prompt: next(answers), out)(candidate_state())
    assert [(f.id, f.label) for f in labels or []] == [
        ("c0", personalizer_pb2.FEEDBACK_LABEL_DISSIMILAR),
        ("c1", personalizer_pb2.FEEDBACK_LABEL_SIMILAR),
        ("c2", personalizer_pb2.FEEDBACK_LABEL_FOUND),
    ]
    shown = out.getvalue()
    assert "round 2: 3 faces" in shown and "c1" in shown and "p2" in shown
    assert "candidates 1 to 3" in shown  # the complaint about "7s"


def test_terminal_feedback_quits_on_q_or_end_of_input() -> None:
    on_round = cli.terminal_feedback(lambda _p: "q", io.StringIO())
    assert on_round(candidate_state()) is None

    def eof(_prompt: str) -> str:
        raise EOFError

    assert cli.terminal_feedback(eof, io.StringIO())(candidate_state()) is None


def test_a_missing_or_folder_path_is_said_plainly() -> None:
    missing = cli._file_problem(FileNotFoundError(2, "No such file or directory", "x.jpg"))
    assert missing.startswith("x.jpg: no such file") and "Errno" not in missing
    folder = cli._file_problem(IsADirectoryError(21, "Is a directory", "photos"))
    assert "photos is a folder" in folder and "facesearch index DIR" in folder


def test_an_unknown_collection_points_at_collections_list() -> None:
    class NotFound(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.NOT_FOUND

        def details(self) -> str:
            return "collection: no collection or alias named 'faces'"

    hint = cli._not_found_hint(NotFound())
    assert "facesearch collections list" in hint and "-c NAME" in hint


def test_misspelt_client_variables_are_named() -> None:
    from facesearch.settings import misspelt_env

    env = {
        "FACESEARCH_RETRIEVER_ADRESS": "x:1",
        "FACESEARCH_API_KEY": "k",
        "FACESEARCH_TLS_CERT_FILE": "a service's own key",
        "FACESEARCH_PERSONALIZER_K": "8",
    }
    assert misspelt_env(env) == [
        "FACESEARCH_RETRIEVER_ADRESS is not read (did you mean FACESEARCH_RETRIEVER_ADDRESS?)"
    ]


def test_session_json_goes_with_describe(capsys: pytest.CaptureFixture) -> None:
    down = f"127.0.0.1:{free_port()}"
    assert run("session", "--json", "--personalizer", down, "--retriever", down)[0] == 2
    assert "--json goes with --describe" in capsys.readouterr().err


def test_cluster_json_keeps_keys_at_their_default() -> None:
    from facesearch import cli_persons
    from facesearch_contract.v1 import persons_pb2

    listed = cli_persons._json(persons_pb2.ListClustersResponse())
    assert listed["clusters"] == [] and "new_faces" in listed


# ---------------------------------------------------------------- services down


def test_status_with_services_down_says_so_and_exits_1() -> None:
    down = [a for s in ("embedder", "retriever", "personalizer")
            for a in (f"--{s}", f"127.0.0.1:{free_port()}")]  # fmt: skip
    code, out = run("status", *down, "--timeout", "2")
    assert code == 1
    assert out.count("DOWN") == 3
    assert "facesearch serve" in out  # the hint


def test_search_against_a_down_service_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    photo = tmp_path / "x.jpg"
    photo.write_bytes(b"not used")
    code, _ = run("search", str(photo), "--retriever", f"127.0.0.1:{free_port()}", "--timeout", "2")
    assert code == 1
    err = capsys.readouterr().err
    assert "UNAVAILABLE" in err and "is the service running" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------- real services


def test_status_of_three_running_services(suite: dict[str, ServiceProcess]) -> None:
    code, out = run("status", *addresses(suite))
    assert code == 0, out
    assert out.count("SERVING") == 3
    assert "models" in out and "ready" in out
    assert "collections" in out and "points" in out
    code, out = run("status", "--json", *addresses(suite))
    report = json.loads(out)
    assert {e["health"] for e in report.values()} == {"SERVING"}
    assert any(m["kind"] == "MODEL_KIND_FACE_ENCODER" for m in report["embedder"]["models"])
    assert isinstance(report["retriever"]["points"], int)


def test_index_search_and_session_commands(suite: dict[str, ServiceProcess], gallery: Path) -> None:
    conn = addresses(suite)
    code, out = run("index", str(gallery), "-c", "cli-gallery", "--person-from-dir",
                    "--no-progress", "--batch-size", "5", *conn)  # fmt: skip
    images = sum(n for n, _ in GALLERY.values())
    assert code == 0, out
    assert "created collection cli-gallery" in out
    assert f"indexed {images} images" in out and "0 errors" in out

    photo = sorted((gallery / "Andre_Agassi").glob("*.jpg"))[0]
    # Folder names gave labels only where the evidence was: the summary says what was left.
    assert "person labels from the folders:" in out and "4 new person(s) enrolled" in out

    photo = sorted((gallery / "Andre_Agassi").glob("*.jpg"))[0]
    code, out = run("search", str(photo), "-c", "cli-gallery", "-k", "3", "--json", *conn)
    assert code == 0, out
    faces = json.loads(out)  # one result list per face of the photo, largest face first
    hits = faces[0]["hits"]
    assert len(hits) == 3 and hits[0]["metadata"]["media_id"] == f"Andre_Agassi/{photo.name}"
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    code, out = run("search", str(photo), "-c", "cli-gallery", "--face", "0", "--by-person",
                    "-k", "4", "--json", *conn)  # fmt: skip
    (only,) = json.loads(out)
    people = [h["metadata"].get("person_id") for h in only["hits"]]
    labelled = [p for p in people if p]
    assert code == 0 and len(labelled) == len(set(labelled)), people
    code, out = run("search", str(photo), "-c", "cli-gallery", "--face", "9", *conn)
    assert code == 1  # there is no face 9: refused, not an empty answer

    code, out = run("identify", str(photo), "-c", "cli-gallery", "--json", *conn)
    assert code == 0, out
    first = json.loads(out)[0]
    assert first["decision"] == "match" and first["person_id"] == "Andre_Agassi"
    code, out = run("persons", "list", "-c", "cli-gallery", "--json", *conn)
    assert code == 0 and sorted(p["person_id"] for p in json.loads(out)) == sorted(GALLERY)
    # Split one of a person's reference faces off into a new person, then merge it back.
    code, out = run("persons", "show", "Andre_Agassi", "-c", "cli-gallery", "--json", *conn)
    agassi = json.loads(out)
    before, moving = int(agassi["labelled_faces"]), agassi["reference_ids"][-1]
    code, out = run("persons", "split", "Andre_Agassi", "agassi-2", moving, "--name", "Agassi B",
                    "-c", "cli-gallery", *conn)  # fmt: skip
    assert code == 0 and "moved 1 face(s) of Andre_Agassi to agassi-2" in out, out
    assert "Agassi B" in out
    code, out = run("persons", "show", "agassi-2", "-c", "cli-gallery", "--json", *conn)
    new = json.loads(out)
    assert new["reference_ids"] == [moving] and int(new["labelled_faces"]) == 1
    code, out = run("persons", "split", "Andre_Agassi", "agassi-2", moving, "-c", "cli-gallery",
                    *conn)  # fmt: skip
    assert code == 1  # the new id exists now: refused, nothing moved
    code, out = run("persons", "merge", "agassi-2", "Andre_Agassi", "-c", "cli-gallery", *conn)
    assert code == 0 and "1 face(s) relabelled" in out, out
    code, out = run("persons", "show", "Andre_Agassi", "-c", "cli-gallery", "--json", *conn)
    assert int(json.loads(out)["labelled_faces"]) == before
    code, out = run("clusters", "list", "-c", "cli-gallery", *conn)
    assert code == 0 and "unlabelled face(s)" in out.splitlines()[-1], out
    code, out = run("clusters", "list", "-c", "cli-gallery", "--recluster", "--json", *conn)
    listed = json.loads(out)
    assert code == 0 and int(listed.get("new_faces", 0)) == int(listed.get("unlabelled_faces", 0))
    code, out = run("clusters", "merge", "c-none", "c-nothing", "-c", "cli-gallery", *conn)
    assert code == 1  # clusters that are not current: refused, nothing merged
    code, out = run("collections", "list", *conn)
    assert code == 0 and "cli-gallery" in out
    code, out = run("collections", "drop", "cli-gallery", *conn)
    assert code == 1  # without --yes nothing is dropped
    code, out = run("collections", "describe", "cli-gallery", *conn)
    assert code == 0 and "field face" in out

    code, out = run("search", "--text", "a swimmer at the pool", "-c", "cli-gallery", *conn)
    assert code == 0 and out.splitlines()[1].rstrip().endswith(".jpg")
    assert "Aaron_Peirsol" in out.splitlines()[1]

    code, out = run("search", str(photo), "-c", "no-such-collection", *conn)
    assert code == 1

    answers = iter(["1f"])
    out_io = io.StringIO()
    args = cli.build_parser().parse_args(["session", "-c", "cli-gallery", "-k", "3", *conn])
    with cli.FacesearchClient(cli.client_settings(args)) as client:
        code = cli.cmd_session(args, client, out_io, read=lambda _p: next(answers))
    shown = out_io.getvalue()
    assert code == 0, shown
    assert "round 0: 3 faces" in shown
    first = shown.splitlines()[1].split()[1]  # "1. <id> score ..."
    assert f"found {first} after 1 rounds" in shown


def test_index_shows_a_progress_bar(
    suite: dict[str, ServiceProcess], gallery: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = gallery / "Angela_Merkel"
    code, out = run("index", str(folder), "-c", "cli-progress", *addresses(suite))
    count = GALLERY["Angela_Merkel"][0]
    assert code == 0, out
    err = capsys.readouterr().err
    assert "indexing" in err and f"{count}/{count}" in err
    assert f"indexed {count} images" in out


def test_simulated_session_command(
    suite: dict[str, ServiceProcess], gallery: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = addresses(suite)
    code, out = run("index", str(gallery), "-c", "cli-sim", "--person-from-dir",
                    "--no-progress", *conn)  # fmt: skip
    assert code == 0, out
    target = messages.point_id("Abdullah_Gul/" + sorted(
        p.name for p in (gallery / "Abdullah_Gul").glob("*.jpg"))[2], 0)  # fmt: skip
    code, out = run("session", "-c", "cli-sim", "-k", "4", "--simulate", "Abdullah_Gul",
                    "--target", target, "--user", "sim", *conn)  # fmt: skip
    assert code == 0, out
    assert "round 0: 4 faces" in out
    assert f"found {target} after" in out
    assert run("session", "--target", "x", *conn)[0] == 2
    # A person with no face in the collection is refused before any round, not simulated
    # as 50 rounds of "dissimilar".
    code, out = run("session", "-c", "cli-sim", "--simulate", "Nobody_Here", "--user", "sim",
                    *conn)  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, (out, err)
    assert "--simulate Nobody_Here" in err and "no face in collection 'cli-sim'" in err
    assert "round 0" not in out


def test_ctrl_c_at_the_session_prompt_exits_130_and_ends_the_session(
    suite: dict[str, ServiceProcess], gallery: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    conn = addresses(suite)
    code, out = run("index", str(gallery / "Andre_Agassi"), "-c", "cli-ctrl-c", "--no-progress",
                    *conn)  # fmt: skip
    assert code == 0, out
    sessions: list[str] = []
    real_format_round = cli.format_round

    def remember(state: personalizer_pb2.SessionState) -> str:
        sessions.append(state.session_id)
        return real_format_round(state)

    def ctrl_c(_prompt: str) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "format_round", remember)
    real_cmd_session = cli.cmd_session
    monkeypatch.setitem(
        cli.COMMANDS, "session", lambda a, c, o: real_cmd_session(a, c, o, read=ctrl_c)
    )
    code, out = run("session", "-c", "cli-ctrl-c", "-k", "2", *conn)
    assert code == 130, out
    assert "interrupted" in capsys.readouterr().err
    assert "round 0: 2 faces" in out
    # The flow ended the session on its way out, as before the interrupt reached the CLI.
    args = cli.build_parser().parse_args(["status", *conn])
    with cli.FacesearchClient(cli.client_settings(args)) as client:
        with pytest.raises(grpc.RpcError) as err:
            client.personalizer.GetSession(
                personalizer_pb2.GetSessionRequest(session_id=sessions[0])
            )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_console_script_runs(suite: dict[str, ServiceProcess]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACESEARCH_")}
    for name, svc in suite.items():
        env[f"FACESEARCH_{name.upper()}_ADDRESS"] = svc.address
    result = subprocess.run(
        [sys.executable, "-m", "facesearch.cli", "status"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("SERVING") == 3


# ---------------------------------------------------------------- serve


def free_port_block(n: int = 3) -> int:
    for _ in range(50):
        base = free_port()
        if base + n >= 65535:
            continue
        try:
            for port in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no block of free ports")


def test_serve_refuses_a_taken_port(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _ = run(
            "serve", "--port-base", str(port), "--data-dir", str(tmp_path), "--no-metrics"
        )
    assert code == 1
    assert "in use" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_starts_all_three_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    base = free_port_block()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACESEARCH_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "facesearch.cli", "serve", "--data-dir", str(tmp_path),
         "--port-base", str(base), "--no-metrics"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops them" in line:
                break
        assert any("Ctrl-C" in line for line in lines), "".join(lines)
        conn = [a for i, s in enumerate(("embedder", "retriever", "personalizer"))
                for a in (f"--{s}", f"127.0.0.1:{base + i}")]  # fmt: skip
        code, out = run("status", *conn)
        assert code == 0, out
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(lines) + rest
    assert "stopped: embedder exit 0, retriever exit 0, personalizer exit 0" in rest
    assert (tmp_path / "logs" / "retriever.log").is_file()
