"""bpgg: few-shot anomaly localization on numpy arrays.

Fit a model on a few defect images with masks and a few normal images, then get an anomaly map
(float32, at each image's size) for every new image::

    import bpgg
    model = bpgg.Model.fit(defects, masks, normals, scoring="auto")
    maps = model.predict(images)          # list of float32 (H, W) arrays
    scores = model.score(images)          # float32 image scores
    model.save("part.bpgg")               # the same file as `bpgg fit` writes

The work is done by the Rust library behind the `bpgg` command, with the GIL released, so maps
equal those of `bpgg predict` for the same model and image. `bpgg.ray.predict_dataset` scores a
Ray dataset of images on a cluster; `bpgg.metrics.evaluate` computes the localization metrics.
"""

from . import metrics
from ._bpgg import (
    DEFAULT_MAX_PIXELS,
    MODEL_FORMAT_VERSION,
    Model,
    Prediction,
    __version__,
    default_config,
    read_image,
    read_map,
    write_map,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MODEL_FORMAT_VERSION",
    "Model",
    "Prediction",
    "__version__",
    "default_config",
    "metrics",
    "read_image",
    "read_map",
    "write_map",
]
