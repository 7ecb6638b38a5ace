"""One module per resource, each exposing ``router`` (mounted under /api/v1 by api.app)."""
