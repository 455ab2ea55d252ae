"""Batch scoring of a Ray dataset of images on a Ray cluster (or one machine).

Ray does the scheduling, the streaming of images through the workers, the retries when a worker
dies, and the spilling; this module only says what a worker does with a batch::

    import ray, bpgg, bpgg.ray
    ray.init()                                  # or ray.init(address="auto") on a cluster
    paths = ray.data.from_items([{"path": p} for p in my_paths])
    results = bpgg.ray.predict_dataset(paths, bpgg.Model.load("part.bpgg"),
                                       concurrency=8, output_dir="/shared/maps")
    results.write_parquet("/shared/results")    # or results.take_all()

Each worker is a Ray actor that loads the model once (from the model file's bytes, shipped
through Ray's object store) and keeps it for every batch it scores.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ._bpgg import DEFAULT_MAX_PIXELS, Model, read_image, write_map

if TYPE_CHECKING:  # pragma: no cover
    import ray.data

__all__ = ["predict_dataset", "map_file_name"]

#: The columns of the rows `predict_dataset` returns (plus `map_path` with an output folder and
#: `error` with ``on_error="record"``).
RESULT_COLUMNS = ("path", "image_score", "defective", "defect_area_px")


def map_file_name(path: str) -> str:
    """The file name of the map of the image at `path` in an output folder: the image's stem and
    the first 12 hex digits of the SHA-256 of its full path (images of the same name in
    different folders get different maps), e.g. ``003-1f0a9c2d4b7e.tiff``."""
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:12]
    return f"{Path(path).stem}-{digest}.tiff"


class _Scorer:
    """The callable class Ray Data runs as an actor: one model per worker, loaded in
    ``__init__`` and kept for every batch."""

    def __init__(
        self,
        model_bytes: Any,
        output_dir: Optional[str],
        threshold: Optional[float],
        threads: int,
        on_error: str,
        max_pixels: int,
    ) -> None:
        # The Rust thread pool is sized on first use: one thread per CPU given to this worker,
        # so that workers on one machine do not oversubscribe its cores.
        os.environ["RAYON_NUM_THREADS"] = str(threads)
        import ray

        if isinstance(model_bytes, ray.ObjectRef):  # shipped once through the object store
            model_bytes = ray.get(model_bytes)
        model = Model.from_bytes(model_bytes)
        self.model = model if threshold is None else model.with_threshold(threshold)
        self.output_dir = output_dir
        self.on_error = on_error
        self.max_pixels = max_pixels
        if output_dir is not None:
            os.makedirs(output_dir, exist_ok=True)

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        paths: Optional[List[Any]] = list(batch["path"]) if "path" in batch else None
        if "image" in batch:
            count = len(batch["image"])
        elif paths is not None:
            count = len(paths)
        else:
            raise ValueError(
                "bpgg.ray.predict_dataset: rows need an `image` column (decoded images) or a "
                f"`path` column (image files); got columns {sorted(batch)}"
            )
        if self.output_dir is not None and paths is None:
            raise ValueError(
                "bpgg.ray.predict_dataset: an output_dir needs a `path` column to name the maps "
                "(ray.data.read_images(..., include_paths=True))"
            )
        errors: List[Optional[str]] = [None] * count
        images: List[Optional[np.ndarray]] = [None] * count
        for i in range(count):
            try:
                if "image" in batch:
                    images[i] = batch["image"][i]
                else:
                    images[i] = read_image(str(paths[i]), max_pixels=self.max_pixels)
            except (OSError, ValueError) as e:
                if self.on_error == "raise":
                    raise
                errors[i] = str(e)
        scores = np.full(count, np.nan, dtype=np.float32)
        defective = np.zeros(count, dtype=bool)
        area = np.zeros(count, dtype=np.int64)
        map_paths: List[Optional[str]] = [None] * count
        good = [i for i in range(count) if errors[i] is None]
        for i, prediction in self._predict([images[i] for i in good], good, errors):
            scores[i] = prediction.image_score
            defective[i] = prediction.defective
            area[i] = prediction.defect_area_px
            if self.output_dir is not None:
                target = os.path.join(self.output_dir, map_file_name(str(paths[i])))
                write_map(target, prediction.map)  # temp file + rename
                map_paths[i] = target
        out: Dict[str, np.ndarray] = {
            "path": np.array(
                [None if p is None else str(p) for p in (paths or [None] * count)], dtype=object
            ),
            "image_score": scores,
            "defective": defective,
            "defect_area_px": area,
        }
        if self.output_dir is not None:
            out["map_path"] = np.array(map_paths, dtype=object)
        if self.on_error == "record":
            out["error"] = np.array(errors, dtype=object)
        return out

    def _predict(
        self, images: List[Any], index: List[int], errors: List[Optional[str]]
    ) -> List[Tuple[int, Any]]:
        """Predictions of the batch at once; with ``on_error="record"``, a batch that fails is
        retried image by image so that only the bad image is recorded as failed."""
        try:
            return list(zip(index, self.model.predictions(images)))
        except ValueError:
            if self.on_error == "raise":
                raise
        done = []
        for i, image in zip(index, images):
            try:
                done.append((i, self.model.predictions([image])[0]))
            except ValueError as e:
                errors[i] = str(e)
        return done


def predict_dataset(
    ds: "ray.data.Dataset",
    model: Union[Model, str, "os.PathLike[str]"],
    *,
    batch_size: int = 8,
    concurrency: Union[int, Tuple[int, int], None] = None,
    num_cpus: float = 1,
    output_dir: Union[str, "os.PathLike[str]", None] = None,
    threshold: Optional[float] = None,
    on_error: str = "raise",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> "ray.data.Dataset":
    """Scores every image of a Ray dataset with a fitted model, on Ray actors.

    Arguments:
      ds: rows with a ``path`` column (image files, decoded by each worker exactly as
        ``bpgg predict`` decodes them) and/or an ``image`` column (decoded uint8 (H, W) or
        (H, W, 3) arrays, e.g. ``ray.data.read_images(..., mode="RGB", include_paths=True)``;
        PIL's JPEG decoder is not bpgg's, so for maps identical to the CLI's pass paths).
      model: a `bpgg.Model` or the path of a model file (read here, on the driver). It is sent
        to the workers once, through the object store, as the model file's bytes.
      batch_size: images per call of a worker.
      concurrency: workers (actors): a number, or ``(min, max)`` for an autoscaling pool;
        default: as many as the cluster's CPUs allow at ``num_cpus`` each.
      num_cpus: CPUs reserved by each worker, and the threads it computes with.
      output_dir: when given, each image's anomaly map is written there as a float32 TIFF named
        by `map_file_name`, atomically (a temp file ``.<name>.tmp-<pid>-<n>`` renamed into
        place; a worker killed mid-write leaves at most such a hidden temp file, and Ray's retry
        writes the map again). The folder must be reachable by every worker (a shared file
        system on a cluster).
      threshold: the pixel threshold of the verdict and the defect area (default: the model's).
      on_error: ``"raise"`` stops the run at the first unreadable or invalid image (Ray reports
        it); ``"record"`` keeps going and gives that row an ``error`` message and a NaN score.
      max_pixels: largest image decoded from a path (``--max-pixels``).

    Returns a lazy `ray.data.Dataset` (nothing runs until it is consumed, e.g. by ``take_all``,
    ``iter_rows`` or ``write_parquet``) with one row per input row: ``path`` (None without a
    path column), ``image_score`` (float32), ``defective`` (bool), ``defect_area_px`` (int64),
    ``map_path`` with an output folder, and ``error`` with ``on_error="record"``.

    A worker that dies (a killed process, a lost node) is restarted by Ray and its batch run
    again, so every row still comes out exactly once.
    """
    import ray
    import ray.data

    if isinstance(model, (str, os.PathLike)):
        model_bytes = Path(model).read_bytes()
        Model.from_bytes(model_bytes)  # fail here, not on every worker, if it is not a model
    elif isinstance(model, Model):
        model_bytes = model.to_bytes()
    else:
        raise TypeError(f"model: expected a bpgg.Model or a path, got {type(model).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not num_cpus > 0:
        raise ValueError(f"num_cpus must be positive, got {num_cpus}")
    if on_error not in ("raise", "record"):
        raise ValueError(f'on_error must be "raise" or "record", got {on_error!r}')
    if threshold is not None and not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    if not ray.is_initialized():
        ray.init()
    if concurrency is None:
        cpus = ray.cluster_resources().get("CPU", 1)
        concurrency = max(1, int(cpus // num_cpus))
    if isinstance(concurrency, int):
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        compute = ray.data.ActorPoolStrategy(size=concurrency)
    else:
        low, high = concurrency
        compute = ray.data.ActorPoolStrategy(min_size=low, max_size=high)
    threads = max(1, int(num_cpus))
    return ds.map_batches(
        _Scorer,
        batch_size=batch_size,
        batch_format="numpy",
        compute=compute,
        num_cpus=num_cpus,
        fn_constructor_args=(
            ray.put(model_bytes),
            None if output_dir is None else os.fspath(output_dir),
            threshold,
            threads,
            on_error,
            max_pixels,
        ),
    )
