"""Id-CLIP's identity token on the tiny random-weight CLIP (tiny_clip.py): `facesearch train
idclip` learns a synthetic task whose answer is known (eight made-up identities, each a random
face code bound to one photo: "a photo of sks" with code k must find photo k), lowering its
loss; the exported text tower takes the face as a second input and matches PyTorch with the
token (the translator's token placed at the placeholder, checked against a hand-built
reference) and without it (the tower before training); the embedder serves it (EmbedText
``identities``). Bad input: a placeholder the tokenizer splits (the text tower has no such
token), a caption without the placeholder, identities a model without a translator cannot take.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from facesearch_contract.v1 import common_pb2
from facesearch_contract.v1 import embedder_pb2 as pb
from facesearch_contract.v1 import embedder_service_pb2_grpc as pb_grpc
from facesearch_server.embedder import image_text
from facesearch_server.embedder.clip_tokenizer import ClipTokenizer
from harness.service_process import start_service
from tests.embedder import tiny_clip
from tests.embedder.conftest import embedder_env, package_photos

# Subprocesses that import open_clip (~30-50 s each here) and services that start: slow.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
MODEL_ID = tiny_clip.MODEL_ID
IDENTITIES = tiny_clip.IDENTITIES
CAPTIONS = tiny_clip.CAPTIONS
codes, write_triples, train = tiny_clip.codes, tiny_clip.write_triples, tiny_clip.train_idclip


@pytest.fixture(scope="module")
def prepared(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tiny_clip.prepared(tiny_clip.shared_base(tmp_path_factory), model_dir)


@pytest.fixture(scope="module")
def trained(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A copy of the tiny model's dir, its translator trained on the synthetic triples."""
    return tiny_clip.identity_trained(tiny_clip.shared_base(tmp_path_factory), model_dir)


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_training_lowers_the_loss_and_learns_the_synthetic_task(trained) -> None:
    _, model_dir, stdout = trained
    card = image_text.load_card(model_dir, MODEL_ID)
    assert card.identity is not None
    assert (card.identity.placeholder, card.identity.face_dim) == ("sks", 128)
    run = card.raw["identity_training"]
    assert run["triples"] == IDENTITIES * len(CAPTIONS)
    assert run["loss_last_epoch"] < 0.5 * run["loss_first_epoch"], run
    assert "trained tiny-clip-v1's identity translator" in stdout
    # The answer is known: identity k's caption must find photo k among the eight.
    pixels = np.stack(
        [
            image_text.preprocess(Image.open(p).convert("RGB"), card)
            for p in package_photos()[:IDENTITIES]
        ]
    )
    images = session(model_dir / image_text.image_file(MODEL_ID)).run(
        None, {"pixel_values": pixels}
    )[0]
    tokenizer = ClipTokenizer(model_dir / image_text.tokenizer_file(MODEL_ID), card.context_length)
    ids = tokenizer.encode(["a photo of sks"] * IDENTITIES)
    texts = session(model_dir / image_text.text_file(MODEL_ID)).run(
        None, {"input_ids": ids, "identity": codes()}
    )[0]
    found = (texts @ images.T).argmax(axis=1)
    assert (found == np.arange(IDENTITIES)).mean() >= 7 / 8, found
    # Codes it never saw do not find their way there: the translator learnt the codes.
    strangers = np.random.default_rng(99).standard_normal((IDENTITIES, 128)).astype(np.float32)
    strangers /= np.linalg.norm(strangers, axis=1, keepdims=True)
    other = session(model_dir / image_text.text_file(MODEL_ID)).run(
        None, {"input_ids": ids, "identity": strangers}
    )[0]
    assert ((other @ images.T).argmax(axis=1) == np.arange(IDENTITIES)).mean() <= 3 / 8


REFERENCE = """
import json, sys
import numpy as np, torch
import torch.nn.functional as F
from pathlib import Path
from facesearch_server.embedder import image_text
from facesearch_server.embedder.clip_import import load_model, register_config_dict
from facesearch_server.embedder.clip_tokenizer import ClipTokenizer
from facesearch_server.embedder.idclip_translator import Translator
from facesearch_server.embedder.open_clip_env import import_open_clip
import onnxruntime as ort

tiny, model_dir, model_id = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
card = image_text.load_card(model_dir, model_id)
src = card.raw["source"]
open_clip = import_open_clip()
register_config_dict(open_clip, src["arch"], src["model_config"])
clip = load_model(open_clip, tiny / "tiny-clip.pt", src["arch"])
translator = Translator(128, clip.token_embedding.weight.shape[1])
translator.load_state_dict(torch.load(model_dir / f"{model_id}.identity-translator.pt"))
tok = ClipTokenizer(model_dir / image_text.tokenizer_file(model_id), card.context_length)
texts = ["sks shaking hands", "a photo of sks at a summit", "two people talking"]
ids = torch.from_numpy(tok.encode(texts))
faces = torch.from_numpy(np.random.default_rng(3).standard_normal((3, 128)).astype(np.float32))
faces = F.normalize(faces, dim=-1)
with torch.no_grad():
    # By hand: CLIP.encode_text's token embeddings, the placeholder's row replaced.
    x = clip.token_embedding(ids)
    for row, col in zip(*torch.nonzero(ids == card.identity.placeholder_id, as_tuple=True)):
        x[row, col] = translator(faces[row])
    x = clip.transformer(x + clip.positional_embedding, attn_mask=clip.attn_mask)
    x = clip.ln_final(x)[torch.arange(3), ids.argmax(dim=-1)] @ clip.text_projection
    by_hand = F.normalize(x, dim=-1).numpy()
    plain = F.normalize(clip.encode_text(ids), dim=-1).numpy()
sess = ort.InferenceSession(str(model_dir / image_text.text_file(model_id)))
got = sess.run(None, {"input_ids": ids.numpy(), "identity": faces.numpy()})[0]
print(json.dumps({
    "onnx_vs_hand": [float(v) for v in (got * by_hand).sum(1)],
    "token_moves": [float(v) for v in (by_hand * plain).sum(1)],
}))
"""


def test_the_injected_token_changes_the_text_as_pytorch_does(trained) -> None:
    tiny, model_dir, _ = trained
    done = tiny_clip.run("-c", REFERENCE, str(tiny), str(model_dir), MODEL_ID)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert min(found["onnx_vs_hand"]) >= 0.9999
    # With the placeholder the token changes the vector; the third text has none: unchanged.
    moved = found["token_moves"]
    assert moved[0] < 0.9999 and moved[1] < 0.9999 and moved[2] >= 0.9999
    card = image_text.load_card(model_dir, MODEL_ID)
    check = card.raw["identity_training"]["verification"]
    assert min(check.values()) >= 0.9999


@pytest.fixture(scope="module")
def idclip_stub(trained) -> Iterator[pb_grpc.EmbedderStub]:
    _, model_dir, _ = trained
    env = embedder_env(image_text_model=MODEL_ID)
    env["FACESEARCH_EMBEDDER_MODEL_DIR"] = str(model_dir)
    svc = start_service("embedder", env, timeout=180)
    yield pb_grpc.EmbedderStub(svc.channel())
    svc.stop()


def vec(values: np.ndarray) -> common_pb2.Vector:
    return common_pb2.Vector(values=values.tolist())


def test_the_embedder_serves_identity_queries(idclip_stub, trained) -> None:
    _, model_dir, _ = trained
    code = codes()[2]
    reply = idclip_stub.EmbedText(
        pb.EmbedTextRequest(texts=["a photo of sks"], model_id=MODEL_ID, identities=[vec(code)]),
        timeout=60,
    )
    tokenizer = ClipTokenizer(model_dir / image_text.tokenizer_file(MODEL_ID), 16)
    direct = session(model_dir / image_text.text_file(MODEL_ID)).run(
        None, {"input_ids": tokenizer.encode(["a photo of sks"]), "identity": code[None]}
    )[0]
    assert float(np.dot(reply.embeddings[0].values, direct[0])) >= 0.9999
    # Plain texts still work without identities (the tower ignores the zero input).
    plain = idclip_stub.EmbedText(
        pb.EmbedTextRequest(texts=["two people talking"], model_id=MODEL_ID), timeout=60
    )
    assert len(plain.embeddings[0].values) == 32
    bad = [
        (["a photo of sks"], [], "contains the placeholder 'sks'"),
        (["two people talking"], [vec(code)], "has no placeholder 'sks'"),
        (["a photo of sks"], [vec(code[:64])], "one 128-value sface-2021dec embedding"),
        (["a photo of sks", "sks again"], [vec(code)], "holds 1 embedding"),
    ]
    for texts, identities, words in bad:
        with pytest.raises(grpc.RpcError) as err:
            idclip_stub.EmbedText(
                pb.EmbedTextRequest(texts=texts, model_id=MODEL_ID, identities=identities),
                timeout=30,
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert words in err.value.details()
    # The text model (MiniLM) takes no faces.
    with pytest.raises(grpc.RpcError) as err:
        idclip_stub.EmbedText(pb.EmbedTextRequest(texts=["x"], identities=[vec(code)]), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_bad_placeholders_and_captions_are_refused(prepared, tmp_path: Path) -> None:
    tiny, clip_dir = prepared
    data = write_triples(tmp_path / "data")
    done = train(clip_dir, tiny, data, "--placeholder", "xqzzyplonk", "--max-steps", "1")
    assert done.returncode == 2
    assert "'xqzzyplonk' is" in done.stderr and "tokens in this model's tokenizer" in done.stderr
    assert "the text tower has no such token" in done.stderr
    no_word = write_triples(tmp_path / "no-word", captions=("a photo of a person",))
    done = train(clip_dir, tiny, no_word, "--max-steps", "1")
    assert done.returncode == 2
    assert "line 1: the caption 'a photo of a person' lacks the placeholder 'sks'" in done.stderr
    # Nothing was written: the shared model has no translator.
    assert image_text.load_card(clip_dir, MODEL_ID).identity is None


def test_triton_entry_of_the_identity_text_tower(trained, tmp_path: Path) -> None:
    from facesearch_server.embedder.triton_repository import write_repository

    _, model_dir, _ = trained
    write_repository(
        tmp_path, model_dir, kind="KIND_CPU", copy_weights=False, image_text_dir=model_dir
    )
    config = (tmp_path / f"{MODEL_ID}-text" / "config.pbtxt").read_text()
    assert 'name: "input_ids" data_type: TYPE_INT64 dims: [ 16 ]' in config
    assert 'name: "identity" data_type: TYPE_FP32 dims: [ 128 ]' in config
