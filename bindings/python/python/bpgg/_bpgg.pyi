"""Type stubs of the native module `bpgg._bpgg` (see the docstrings on the objects themselves)."""

import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str
MODEL_FORMAT_VERSION: int
DEFAULT_FPR_LIMIT: float
DEFAULT_MAX_PIXELS: int

_Path = Union[str, "os.PathLike[str]"]
#: uint8 (H, W), (H, W, 1) or (H, W, 3).
_Image = npt.NDArray[np.uint8]
#: A list of images, or an (N, H, W, 3) uint8 array.
_Images = Union[Sequence[_Image], npt.NDArray[np.uint8], npt.NDArray[np.object_]]
#: float32 or float64 (H, W), or (N, H, W) for several.
_Maps = Union[npt.NDArray[np.float32], npt.NDArray[np.float64]]
#: bool or uint8 (H, W), or (N, H, W) for several; uint8 is defect where > 127.
_Mask = Union[npt.NDArray[np.bool_], npt.NDArray[np.uint8]]

class Prediction:
    """What a model says about one image (the fields of a `bpgg predict` result line)."""

    @property
    def map(self) -> npt.NDArray[np.float32]: ...
    @property
    def mask(self) -> npt.NDArray[np.bool_]: ...
    @property
    def image_score(self) -> float: ...
    @property
    def threshold(self) -> float: ...
    @property
    def image_threshold(self) -> float: ...
    @property
    def defective(self) -> bool: ...
    @property
    def defect_area_px(self) -> int: ...
    @property
    def defect_area_fraction(self) -> float: ...
    @property
    def regions(self) -> List[Dict[str, Union[int, float]]]: ...

class Model:
    """A fitted few-shot model with its backbone loaded; thread-safe and picklable."""

    @staticmethod
    def fit(
        defects: Optional[_Images] = None,
        masks: Optional[Union[Sequence[_Mask], _Mask]] = None,
        normals: Optional[_Images] = None,
        *,
        checkpoint: Optional[_Path] = None,
        scoring: str = ...,
        size: Union[int, str, Dict[str, float]] = ...,
        tile: Optional[Dict[str, int]] = ...,
        tau: float = ...,
        backbone: Dict[str, Any] = ...,
        prototype: Dict[str, Any] = ...,
        reverse: Dict[str, Any] = ...,
        knn: Dict[str, Any] = ...,
        hybrid: Dict[str, Any] = ...,
        map: Dict[str, Any] = ...,
        support_cells: Dict[str, Any] = ...,
        flip_supports: bool = ...,
        self_exclusion_radius: int = ...,
        image_score: Dict[str, Any] = ...,
    ) -> "Model": ...
    @staticmethod
    def load(path: _Path) -> "Model": ...
    @staticmethod
    def from_bytes(data: bytes) -> "Model": ...
    def to_bytes(self) -> bytes: ...
    def save(self, path: _Path) -> None: ...
    def predict(self, images: _Images) -> List[npt.NDArray[np.float32]]: ...
    def score(self, images: _Images) -> npt.NDArray[np.float32]: ...
    def predictions(
        self, images: _Images, *, threshold: Optional[float] = None
    ) -> List[Prediction]: ...
    @property
    def threshold(self) -> float: ...
    @property
    def image_threshold(self) -> float: ...
    @property
    def threshold_rule(self) -> str: ...
    @property
    def scoring(self) -> str: ...
    @property
    def config(self) -> Dict[str, Any]: ...
    def with_threshold(self, threshold: float) -> "Model": ...
    def __reduce__(self) -> Any: ...

def default_config() -> Dict[str, Any]: ...
def evaluate(
    maps: Union[_Maps, Sequence[_Maps]],
    masks: Union[Sequence[_Mask], _Mask],
    fpr_limit: float = 0.3,
    image_labels: Optional[Sequence[bool]] = None,
) -> Dict[str, Optional[float]]: ...
def read_image(path: _Path, *, max_pixels: int = ...) -> npt.NDArray[np.uint8]: ...
def read_map(path: _Path) -> npt.NDArray[np.float32]: ...
def write_map(path: _Path, map: npt.NDArray[Union[np.float32, np.float64]]) -> None: ...
