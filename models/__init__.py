"""What a trained defence is: the networks, the purifier and the bundle format.

The shipped bundles live beside this package in ``models/<name>/``.
"""
from apudae.models.bundle import Bundle, BundleError, load_bundle

__all__ = ["Bundle", "BundleError", "load_bundle"]
