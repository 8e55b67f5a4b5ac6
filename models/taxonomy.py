"""The detector's categories: the vocabulary shared by the detector, the attribute classifier's
`category` head, the database and the reports. Label mappings from each data source live with
that source's loader and are written down in weights/README.md."""

from __future__ import annotations

PERSON = "person"

# Garment categories, in class-id order after the background (0) and person (1).
GARMENT_CATEGORIES: tuple[str, ...] = (
    "top",
    "outerwear",
    "dress",
    "skirt",
    "shorts",
    "trousers",
    "footwear",
    "bag",
    "hat",
)

# What the detector predicts: index 0 is Mask R-CNN's background class.
DETECTOR_CLASSES: tuple[str, ...] = ("__background__", PERSON, *GARMENT_CATEGORIES)
