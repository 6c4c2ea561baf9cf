"""Moved to :mod:`cutedl.data.augment`; this name stays so existing imports keep working."""
from cutedl.data.augment import Compose, RandomCrop, RandomFlip, Transform, random_crop, random_flip

__all__ = ["Compose", "RandomCrop", "RandomFlip", "Transform", "random_crop", "random_flip"]
