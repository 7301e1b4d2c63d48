"""Dense CNN features: the backbone registry (:mod:`.registry`, plain data), memory sizing
(:mod:`.memory`), the networks (:mod:`.backbones`), extraction (:mod:`.extract`) and the
per-category zarr feature stores (:mod:`.store`). Submodules are imported where they are used:
importing this package (or :mod:`.store`, :mod:`.registry`, :mod:`.memory`) loads no torch."""
