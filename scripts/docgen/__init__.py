"""The generators behind scripts/write_docs.py, one module per part of the docs."""
