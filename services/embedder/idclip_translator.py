"""Id-CLIP's identity token (Messina et al., ECIR 2025): a small MLP maps a face embedding to
one token embedding, which replaces a placeholder token ("sks") inside CLIP's frozen text
tower, so "sks shaking hands at a summit" with Anna Berg's face embedding becomes a text vector
of Anna Berg shaking hands, in the image tower's space.

The text tower here is open_clip's own (the CLIP class: token embedding, positional embedding,
transformer, final norm, pooling, projection), run as CLIP.encode_text runs it with the one
change; a text without the placeholder gives exactly CLIP.encode_text's vector. Exported to
ONNX it is the image-text model's text tower with a second input, ``identity``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Id-CLIP's translator: face embedding -> hidden -> token width, ReLU between.
TEXT_PARTS = ("token_embedding", "positional_embedding", "transformer", "ln_final", "attn_mask")


class IdentityTokenError(ValueError):
    """The text tower or tokenizer cannot take an identity token; the message says why."""


class Translator(nn.Module):
    """A face embedding (``face_dim``) -> one token embedding of the text tower (``width``)."""

    def __init__(self, face_dim: int, width: int, hidden: int | None = None) -> None:
        super().__init__()
        self.face_dim, self.width = face_dim, width
        self.net = nn.Sequential(
            nn.Linear(face_dim, hidden or width), nn.ReLU(), nn.Linear(hidden or width, width)
        )

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        return self.net(face)


def text_width(clip: Any) -> int:
    """The token width of an open_clip CLIP text tower; IdentityTokenError for other towers."""
    missing = [p for p in TEXT_PARTS if not hasattr(clip, p)]
    if missing:
        raise IdentityTokenError(
            f"this model's text tower ({type(clip).__name__}) is not open_clip's built-in CLIP "
            f"text transformer (it lacks {', '.join(missing)}): the identity token is placed "
            "into that tower only"
        )
    return int(clip.token_embedding.weight.shape[1])


class IdentityTextTower(nn.Module):
    """CLIP's text tower with the translator's token at every ``placeholder_id`` position;
    returns unit vectors. The CLIP model stays frozen."""

    def __init__(self, clip: Any, translator: Translator, placeholder_id: int) -> None:
        super().__init__()
        if translator.width != text_width(clip):
            raise IdentityTokenError(
                f"the translator makes {translator.width}-wide tokens; the text tower's are "
                f"{text_width(clip)} wide"
            )
        self.clip = clip
        self.translator = translator
        self.placeholder_id = placeholder_id

    def forward(self, input_ids: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        from open_clip.transformer import text_global_pool

        clip = self.clip
        cast = clip.transformer.get_cast_dtype()
        x = clip.token_embedding(input_ids).to(cast)
        token = self.translator(identity).to(cast)
        here = (input_ids == self.placeholder_id).unsqueeze(-1)
        x = torch.where(here, token.unsqueeze(1).expand_as(x), x)
        x = x + clip.positional_embedding.to(cast)
        x = clip.transformer(x, attn_mask=clip.attn_mask)
        x = clip.ln_final(x)
        x = text_global_pool(
            x, input_ids, clip.text_pool_type, eos_token_id=getattr(clip, "text_eos_id", None)
        )
        if clip.text_projection is not None:
            if isinstance(clip.text_projection, nn.Linear):
                x = clip.text_projection(x)
            else:
                x = x @ clip.text_projection
        return F.normalize(x, dim=-1)
