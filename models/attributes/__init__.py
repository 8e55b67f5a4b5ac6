"""The attribute classifier: one multi-head EfficientNet-Lite0 network over garment crops
(category, clothing-small class, gender, masterCategory, subCategory, articleType, baseColour,
season and usage/style). `classifier.AttributeClassifier` is what the tagger uses.

Nothing is imported here: the label tables (`labels`) and the calibrated thresholds
(`calibration`) are read by the tracker, which must not pull torch in with them."""
