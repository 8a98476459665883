"""ResNet-50 image classification: model store, runtime and HTTP API."""

__version__ = "0.1.0"
