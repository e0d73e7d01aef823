"""Serverless email segmentation: the domain core, adapters and use cases shipped as a Lambda layer."""
