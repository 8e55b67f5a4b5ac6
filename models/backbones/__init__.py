"""Backbone networks shared by the detector and the attribute classifier."""
