"""segunify: label space unification for semantic segmentation by knowledge distillation."""

__version__ = "0.1.0"
