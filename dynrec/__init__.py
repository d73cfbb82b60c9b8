"""dynrec: real-time multimodal recommendations. The library never imports Ray."""

__version__ = "0.1.0"
