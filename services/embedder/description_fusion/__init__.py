"""Learned description fusion after TGFR (issue #14): one fused probe embedding from a face
embedding, its quality and a description, searched against the stored face embeddings.

``names`` (ids, tensors; no torch), ``serving`` (FuseDescription), ``model`` (the PyTorch
module, its pytorch-metric-learning losses, export), ``train`` (training on the attribute
model's training identities, the shipped ONNX file and its card), ``descriptions``
(descriptions written from CelebA labels, the training text)."""
