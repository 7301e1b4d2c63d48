"""Dense CNN features: the backbone registry (:mod:`.backbones`), extraction (:mod:`.extract`)
and the per-category zarr feature stores (:mod:`.store`)."""
from .backbones import (BACKBONES, BackboneNet, BackboneSpec, LayerSpec, build_backbone, conv_row_layers,
                        default_feature_layers, get_spec, job_memory_mb, resolve_device, siamese_encoder_layers)
from .extract import dense_maps, extract_category, extract_images, global_descriptor, preprocess
from .store import FeatureStore, FeatureStoreWriter, write_feature_store

__all__ = [
    "BACKBONES", "BackboneNet", "BackboneSpec", "LayerSpec", "build_backbone", "get_spec",
    "default_feature_layers", "siamese_encoder_layers", "conv_row_layers", "job_memory_mb",
    "resolve_device", "dense_maps", "extract_category", "extract_images", "global_descriptor",
    "preprocess", "FeatureStore", "FeatureStoreWriter", "write_feature_store",
]
