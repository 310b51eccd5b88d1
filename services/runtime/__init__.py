"""Shared runtime of the facesearch services: everything that is not one service's own job."""
