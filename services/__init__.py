"""The facesearch services and the runtime they share.

- ``runtime``: start-up, config, logs, metrics, auth, error mapping (used by every service).
- ``embedder``, ``retriever``, ``personalizer``: one process each, one gRPC service each.
"""
