"""Persons of a collection and open-set identification (the ``Persons`` gRPC service).

- ``person_store``: persons, their reference faces (with vectors) and the collection's
  identification settings, durable in one SQLite file per collection.
- ``reference_index``: every reference vector of a collection in memory, searched exactly, and
  turned into per-person candidates with calibrated decisions (runtime.open_set).
- ``servicer``: the RPCs, validating input and keeping face labels in the collection in step.
"""
