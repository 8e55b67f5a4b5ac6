"""Garment and person detection with instance masks: data sources (Clothing Co-Parsing,
DeepFashion2), augmentation, the Mask R-CNN builders, training, evaluation and inference runners."""
