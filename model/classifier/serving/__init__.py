"""Serving a model: the model manager (load once, hot swap), backends, image preprocessing, the
classify use case, a folder batch, the CPU plan, and the cold start's session preload.

May import records, store, observability, config and errors.
"""
