"""Dense CNN features: the backbone registry (:mod:`.backbones`), extraction (:mod:`.extract`)
and the per-category zarr feature stores (:mod:`.store`)."""
from .backbones import BACKBONES, BackboneNet, BackboneSpec, LayerSpec, build_backbone, get_spec, resolve_device
from .extract import dense_maps, extract_category, extract_images, global_descriptor, preprocess
from .store import FeatureStore, FeatureStoreWriter, write_feature_store

__all__ = [
    "BACKBONES", "BackboneNet", "BackboneSpec", "LayerSpec", "build_backbone", "get_spec",
    "resolve_device", "dense_maps", "extract_category", "extract_images", "global_descriptor",
    "preprocess", "FeatureStore", "FeatureStoreWriter", "write_feature_store",
]
