"""Personalizer: FaIRCoP interactive search with per-user heads kept in Redis."""
