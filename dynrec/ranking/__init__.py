"""Ranking: retrieval, filters, diversity, the cold-start prior, the exploration bandit and reasons."""
