"""A version's life cycle: build and publish (to a store or the S3 inbox), evaluate, quantize.

Heavy (torch, onnx) and never on the serving path. May import serving, store, config and errors.
"""
