"""Serving a model: the model manager (load once, hot swap), backends, image preprocessing, the
classify use case, a folder batch and the CPU plan.

May import records, store, observability, config and errors.
"""
