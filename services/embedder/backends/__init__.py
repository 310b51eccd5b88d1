"""Encoder runtimes: where the encoder models run (in-process onnxruntime or a Triton server)."""
