"""The attribute classifier: one multi-head EfficientNet-Lite0 network over garment crops
(category, clothing-small class, gender, masterCategory, subCategory, articleType, baseColour,
season and usage/style). `AttributeClassifier` is what the tagger uses."""

from models.attributes.classifier import AttributeClassifier, probabilities_from_logits
from models.attributes.network import ARCHITECTURE, AttributeNet, build_attribute_net

__all__ = [
    "ARCHITECTURE",
    "AttributeClassifier",
    "AttributeNet",
    "build_attribute_net",
    "probabilities_from_logits",
]
