"""Artefacts: preparing what the service needs (model, embeddings) and publishing or fetching runs."""
