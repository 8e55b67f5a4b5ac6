"""Pure ML: detection, attribute classification, colour, FashionTagger, training, evaluation."""
