"""Benchmarks: each prints the service beside the bare library or peer in the same run."""
