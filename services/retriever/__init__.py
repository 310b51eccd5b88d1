"""Retriever: sharded FAISS collections per tenant, durable, with hard deletes."""
