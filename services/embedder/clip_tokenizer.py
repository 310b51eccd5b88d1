"""CLIP's byte-level BPE (open_clip's SimpleTokenizer) run by the ``tokenizers`` library, so the
embedder tokenizes CLIP text without torch or open_clip.

The import command (clip_import) writes the vocabulary and merges of the checkpoint's tokenizer
into a ``tokenizers`` file and checks that it gives SimpleTokenizer's ids on a set of texts
(TOKENIZER_CHECK_TEXTS) before anything is written. SimpleTokenizer cleans a text before it
splits it (ftfy, HTML entities, whitespace, lower case): ``clean`` does the same here, with the
same libraries. One thing differs on purpose: a text over the model's context length is refused
by name, never cut (open_clip truncates it silently).
"""

from __future__ import annotations

import html
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import ftfy
import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

from facesearch_server.embedder.text_encoding import MAX_TEXT_BYTES
from facesearch_server.runtime.errors import InvalidArgument

# SimpleTokenizer's special tokens and its split pattern (open_clip/tokenizer.py).
START, END = "<start_of_text>", "<end_of_text>"
SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
# open_clip's cleaning modes this tokenizer reproduces ("canonicalize" also strips punctuation
# with a table of its own; no CLIP-architecture model in open_clip uses it).
CLEANING = ("lower", "whitespace")

# Texts the import checks the tokenizer on: ordinary captions, punctuation, contractions,
# digits, HTML entities, accents, non-Latin scripts, an emoji, mojibake and the special tokens.
TOKENIZER_CHECK_TEXTS = (
    "a photo of a man shaking hands at a summit",
    "Two women, smiling; one with RED hair!",
    "it's the minister's car, isn't it?",
    "1999 press conference in room 42b",
    "Tom &amp; Jerry &lt;3",
    "Café Zürich, São Paulo — naïve façade",
    "東京の記者会見",
    "Москва, пресс-конференция",
    "celebration 🎉 with confetti",
    "mojibake: cafÃ©",
    "   lots   of\twhite\nspace   ",
    "<start_of_text> literal special tokens <end_of_text>",
)


def clean(text: str, mode: str = "lower") -> str:
    """SimpleTokenizer's cleaning: ftfy, HTML entities (twice), whitespace, then lower case."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    text = " ".join(text.split())
    return text.lower() if mode == "lower" else text


def build(encoder: Mapping[str, int], merges: Sequence[tuple[str, str]]) -> Tokenizer:
    """A ``tokenizers`` pipeline equal to SimpleTokenizer on cleaned text: its split pattern,
    byte-level alphabet, BPE with the ``</w>`` word suffix, and start/end tokens around."""
    tok = Tokenizer(
        models.BPE(
            vocab=dict(encoder),
            merges=list(merges),
            end_of_word_suffix="</w>",
            continuing_subword_prefix="",
            fuse_unk=False,
        )
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    # A literal "<start_of_text>" in a text is that token, as SimpleTokenizer's pattern makes it.
    tok.add_special_tokens([START, END])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{START} $A {END}",
        special_tokens=[(START, encoder[START]), (END, encoder[END])],
    )
    return tok


class ClipTokenizer:
    """Texts -> (n, context_length) int64 token ids, zero-padded, as the text tower reads them."""

    def __init__(self, path: Path, context_length: int, cleaning: str = "lower") -> None:
        if cleaning not in CLEANING:
            raise ValueError(f"cleaning {cleaning!r} is not supported; one of {CLEANING}")
        self.context_length = context_length
        self.cleaning = cleaning
        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_truncation()
        self._tok.no_padding()
        self._lock = threading.Lock()  # the Rust tokenizer is shared; keep calls serial

    def piece(self, token_id: int) -> str:
        """The vocabulary entry of one id (byte-level, ``</w>`` ending a word)."""
        return self._tok.id_to_token(token_id) or f"<{token_id}>"

    def tokens(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's ids with the start and end tokens, unpadded and never cut."""
        cleaned = [clean(t, self.cleaning) for t in texts]
        with self._lock:
            return [e.ids for e in self._tok.encode_batch(cleaned)]

    def encode(self, texts: Sequence[str], field: str = "texts") -> np.ndarray:
        for i, text in enumerate(texts):
            if not text.strip():
                raise InvalidArgument(f"{field}[{i}]", "is empty: send some words")
            # Refused before cleaning and tokenizing, whose cost grows with the text.
            size = len(text.encode())
            if size > MAX_TEXT_BYTES:
                raise InvalidArgument(
                    f"{field}[{i}]",
                    f"is {size:,} bytes of UTF-8; the limit is {MAX_TEXT_BYTES:,} bytes (and "
                    f"{self.context_length} tokens): shorten the text",
                )
        ids = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for row, tokens in enumerate(self.tokens(texts)):
            if len(tokens) > self.context_length:
                raise InvalidArgument(
                    f"{field}[{row}]",
                    f"is {len(tokens)} tokens with the start and end tokens; this image-text "
                    f"model reads at most {self.context_length} (it is never truncated): "
                    "shorten the text",
                )
            ids[row, : len(tokens)] = tokens
        return ids
