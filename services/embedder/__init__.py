"""Embedder: face detection, alignment and encoding; text encoding."""
