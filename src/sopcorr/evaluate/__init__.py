"""Evaluation: PCK, keypoint transfer, retrieval, classification, dense metrics, tables."""
