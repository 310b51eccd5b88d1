"""Training SFace's end on cached activations (training/cached_features.py): the cached path
computes what the network computes, trains the network's own weights, and caches views and
degradations that do not depend on the run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.training.augment import archival_degrade
from facesearch_server.embedder.training.cached_features import (
    CachedTail,
    CachedTrainConfig,
    cache_activations,
    embed_cached,
    front_runner,
    split_index,
    train_on_cached,
)
from facesearch_server.embedder.training.sface_torch import from_onnx
from facesearch_server.embedder.training.train import _freeze


def test_split_follows_the_layers_train_py_freezes() -> None:
    for train_convs in (0, 1, 3):
        net = from_onnx(mf.sface_source())
        _freeze(net, train_convs)
        trained = [
            i for i, m in enumerate(net.features) if any(p.requires_grad for p in m.parameters())
        ]
        split = split_index(net, train_convs)
        assert all(i >= split for i in trained)
        # Everything from the split on that has weights is trained by train.py too.
        with_weights = [i for i, m in enumerate(net.features) if list(m.parameters())]
        assert trained == [i for i in with_weights if i >= split]
    with pytest.raises(ValueError, match="frozen front"):
        split_index(net, -1)


def test_cache_passes_each_batch_start_and_view_and_stores_float16() -> None:
    seen: list[tuple[int, int, int]] = []

    def transform(x: torch.Tensor, start: int, view: int) -> torch.Tensor:
        seen.append((start, view, len(x)))
        return x + view

    crops = np.arange(5 * 3 * 2 * 2, dtype=np.uint8).reshape(5, 3, 2, 2)
    out = cache_activations(lambda a: a[:, :1] * 2, crops, views=2, transform=transform, batch=2)
    assert out.shape == (5, 2, 1, 2, 2) and out.dtype == np.float16
    assert seen == [(0, 0, 2), (0, 1, 2), (2, 0, 2), (2, 1, 2), (4, 0, 1), (4, 1, 1)]
    np.testing.assert_array_equal(out[:, 1], out[:, 0] + 2)


@pytest.mark.slow
def test_cached_tail_equals_the_network_and_trains_its_weights() -> None:
    net = from_onnx(mf.sface_source())
    images = np.random.default_rng(0).uniform(0, 255, (16, 3, 112, 112)).astype(np.float32)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(net(torch.from_numpy(images)), dim=1).numpy()
    split = split_index(net, 0)
    acts = cache_activations(front_runner(net, split), images)  # onnxruntime, float16
    tail = CachedTail(net, split)
    assert (embed_cached(tail, acts[:, 0]) * expected).sum(1).min() >= 0.9999
    torch_front = cache_activations(front_runner(net, split, onnxruntime=False), images)
    np.testing.assert_allclose(
        torch_front.astype(np.float32), acts.astype(np.float32), rtol=1e-2, atol=1e-2
    )

    labels = np.repeat(np.arange(4), 4)
    bn = net.head[2]
    running_mean = bn.running_mean.clone()
    result = train_on_cached(
        tail, acts, labels, CachedTrainConfig(steps=12, batch_size=8, lr=1e-3, seed=1)
    )
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 12 and "contrastive" in result.history[0]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    # The network itself was trained (the tail shares its modules), in eval mode throughout.
    with torch.no_grad():
        after = torch.nn.functional.normalize(net(torch.from_numpy(images)), dim=1).numpy()
    assert (after * expected).sum(1).min() < 0.9999
    assert (embed_cached(tail, acts[:, 0]) * after).sum(1).min() >= 0.9999
    assert not bn.training and torch.equal(bn.running_mean, running_mean)


def test_archival_degradation_is_fixed_per_image_whatever_the_batch() -> None:
    images = torch.from_numpy(
        np.random.default_rng(1).uniform(0, 255, (3, 3, 112, 112)).astype(np.float32)
    )
    both = archival_degrade(images, [11, 12, 13])
    alone = archival_degrade(images[1:2], [12])
    torch.testing.assert_close(both[1:2], alone)
    torch.testing.assert_close(both, archival_degrade(images, [11, 12, 13]))
    assert not torch.allclose(both[0], archival_degrade(images[:1], [99])[0])
    assert float(both.min()) >= 0 and float(both.max()) <= 255
    # Grey under the grain: the channels differ by the noise alone (sd 0.04 * 255 ~ 10).
    channel_gap = (both[:, 0] - both[:, 1]).std()
    assert 5 < float(channel_gap) < 20
    with pytest.raises(ValueError, match="seeds"):
        archival_degrade(images, [1])
