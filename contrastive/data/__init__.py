"""Data: image folders, decoding, caches, and the built-in data sets."""
