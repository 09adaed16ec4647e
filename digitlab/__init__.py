"""digitlab: neural-network experiments on handwritten digits, with a from-scratch numpy engine."""

__version__ = "0.1.0"
