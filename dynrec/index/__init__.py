"""Item index: inner-product top-k over item embeddings, updated one item at a time.

`ExactIndex` (matrix product + argpartition) for small catalogues and `HnswIndex` (usearch) for
large ones implement one `ItemIndex` protocol; `make_index` picks by catalogue size.
"""

from dynrec.index.base import IndexConfig, ItemIndex, fitted_index, load_index, make_index
from dynrec.index.exact import ExactIndex
from dynrec.index.hnsw import HnswIndex

__all__ = ["ExactIndex", "HnswIndex", "IndexConfig", "ItemIndex", "fitted_index", "load_index", "make_index"]
