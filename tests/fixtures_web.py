"""Fixtures around the database and the HTTP server (owned by the web side)."""
