"""Non-sequential baselines: most-popular, item-kNN (cosine) and EASE (closed form).

They use a user's history as a set; the sequence models plug into the same interface.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from dynrec.data.interactions import Interactions


class MostPopular:
    """Scores every item by its interaction count in training."""

    name = "pop"

    def fit(self, train: Interactions) -> "MostPopular":
        self.counts_ = train.item_counts().astype(np.float32)
        return self

    def score(self, histories: Interactions, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.counts_, (len(users), len(self.counts_))).copy()


class ItemKNN:
    """Cosine item-item similarity, keeping each item's `neighbours` most similar items."""

    name = "itemknn"

    def __init__(self, neighbours: int = 100):
        self.neighbours = int(neighbours)

    def fit(self, train: Interactions) -> "ItemKNN":
        matrix = train.to_csr()
        co = (matrix.T @ matrix).toarray().astype(np.float32)
        norms = np.sqrt(np.diag(co))
        norms[norms == 0] = 1.0
        similarity = co / norms[:, None] / norms[None, :]
        np.fill_diagonal(similarity, 0.0)
        n = similarity.shape[0]
        k = min(self.neighbours, n - 1)
        # for each target item (column) keep its k most similar source items (rows)
        keep_rows = np.argpartition(-similarity, k - 1, axis=0)[:k]
        cols = np.broadcast_to(np.arange(n), keep_rows.shape)
        values = similarity[keep_rows, cols]
        self.similarity_ = sp.csr_matrix((values.ravel(), (keep_rows.ravel(), cols.ravel())), shape=(n, n))
        return self

    def score(self, histories: Interactions, users: np.ndarray) -> np.ndarray:
        return np.asarray((histories.to_csr(users) @ self.similarity_).todense(), dtype=np.float32)


class EASE:
    """Embarrassingly Shallow Autoencoder (Steck, WWW 2019): B = I - P / diag(P), P = (X'X + λI)^-1."""

    name = "ease"

    def __init__(self, l2: float = 200.0):
        self.l2 = float(l2)

    def fit(self, train: Interactions) -> "EASE":
        matrix = train.to_csr()
        gram = (matrix.T @ matrix).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.l2
        inverse = np.linalg.inv(gram)
        weights = inverse / (-np.diag(inverse))
        np.fill_diagonal(weights, 0.0)
        self.weights_ = weights.astype(np.float32)
        return self

    def score(self, histories: Interactions, users: np.ndarray) -> np.ndarray:
        return np.asarray(histories.to_csr(users) @ self.weights_, dtype=np.float32)
