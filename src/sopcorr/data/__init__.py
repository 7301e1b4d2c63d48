"""Datasets: the instance model, the generic format, the synthetic benchmark and real readers."""
from .model import CategorySpec, Dataset, Instance

__all__ = ["CategorySpec", "Dataset", "Instance"]
