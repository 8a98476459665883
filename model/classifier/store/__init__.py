"""The model store: layout, manifests, crash-safe file writes, the S3 inbox's keys and the
installer Lambda that is its one writer in AWS.

Standard library (and boto3 in the installer) only: the installer's zip holds this folder. May import
observability, config and errors.
"""
