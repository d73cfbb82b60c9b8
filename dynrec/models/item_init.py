"""Item ID vectors to start training from: the spectral factors of which items follow each other.

A randomly initialised item table gives the sequence model nothing to aggregate, and its first
hundreds of steps sit near ln(N) loss while the table organises itself. Items that occur near each
other in users' sequences (within `window` events, weighted by 1 / distance) form a symmetric
co-occurrence graph; the top eigenvectors of its degree-normalised matrix place such items close
together. At step 0 the model then already scores items by their likeness to the user's recent
ones, and training refines that instead of discovering it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh

from dynrec.data.interactions import Interactions


def sequence_cooccurrence(train: Interactions, window: int) -> sp.csr_matrix:
    """(N, N) symmetric: pairs of items at most `window` events apart in a user's sequence, 1 / distance each."""
    user = train.user_of_event()
    rows, cols, weights = [], [], []
    for distance in range(1, window + 1):
        same = user[distance:] == user[:-distance]
        rows.append(train.items[:-distance][same])
        cols.append(train.items[distance:][same])
        weights.append(np.full(int(same.sum()), 1.0 / distance, dtype=np.float32))
    rows, cols, weights = np.concatenate(rows), np.concatenate(cols), np.concatenate(weights)
    n = train.n_items
    matrix = sp.coo_matrix((weights, (rows, cols)), shape=(n, n)).tocsr()
    return (matrix + matrix.T).tocsr()


def cooccurrence_factors(train: Interactions, dim: int, window: int = 5, seed: int = 0) -> np.ndarray:
    """(N, dim) unit rows: the top-`dim` eigenvectors of D^-1/2 C D^-1/2 (C: `sequence_cooccurrence`),
    each scaled by the square root of its eigenvalue. An item with no co-occurrence gets a random
    row, as the default initialisation would (so do all when nothing co-occurs)."""
    rng = np.random.default_rng(seed)
    matrix = sequence_cooccurrence(train, window)
    k = min(dim, train.n_items - 2)
    if matrix.nnz == 0 or k < 1:
        return random_rows(rng, train.n_items, dim)
    degree = np.asarray(matrix.sum(axis=1)).ravel()
    scale = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-12)), 0.0)
    normalised = sp.diags(scale) @ matrix @ sp.diags(scale)
    values, vectors = eigsh(normalised.astype(np.float64), k=k, which="LA", v0=rng.standard_normal(train.n_items))
    factors = vectors * np.sqrt(np.maximum(values, 0.0))[None, :]
    if k < dim:
        factors = np.hstack([factors, np.zeros((len(factors), dim - k))])
    norms = np.linalg.norm(factors, axis=1, keepdims=True)
    empty = norms[:, 0] < 1e-9
    factors = factors / np.where(empty[:, None], 1.0, norms)
    factors[empty] = random_rows(rng, int(empty.sum()), dim)
    return factors.astype(np.float32)


def random_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """The default initialisation's rows (std dim^-1/2, about unit norm)."""
    return (rng.standard_normal((n, dim)) * dim**-0.5).astype(np.float32)
