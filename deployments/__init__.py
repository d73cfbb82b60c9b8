"""Thin Ray Serve deployments around dynrec library objects (the serving graph lands here)."""
