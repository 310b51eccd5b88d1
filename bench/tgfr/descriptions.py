"""Descriptions written from CelebA labels: moved into the embedder package with the fusion
model that trains on them (facesearch_server.embedder.description_fusion.descriptions)."""

from facesearch_server.embedder.description_fusion.descriptions import describe

__all__ = ["describe"]
