"""Localization metrics of a test set: pixel AUROC, AUPRO, pixel AP, F1-max and image AUROC,
computed by the same Rust code as `bpgg eval`."""

from ._bpgg import DEFAULT_FPR_LIMIT, evaluate

__all__ = ["DEFAULT_FPR_LIMIT", "evaluate"]
