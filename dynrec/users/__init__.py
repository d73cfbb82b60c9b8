"""The user flow: sessions (histories, embeddings, snapshots) and the view a request carries."""
