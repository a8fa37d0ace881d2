"""What the training and inference code may ask of every model family (class attributes, no logic).

Every family's ``nn.Module`` wrapper derives from :class:`SegmentationModel` and declares what differs:

* ``classifier_keys`` - prefixes of the state-dict keys of the classifier: the tensors a new class
  count re-initialises (``model.reinit_head``), and the only ones a load may leave out.
* ``input_mean`` / ``input_std`` - the normalisation (0-1 units, RGB) the family's published weights
  were trained with: a new model's default; a checkpoint records its own in ``meta.json``.
* ``has_own_loss`` - ``model(x, labels=labels)`` returns the training loss (the family's own, e.g.
  Mask2Former's matched loss); cross-entropy on the logits would be wrong for it.
* ``onnx_unsupported`` - why the family cannot run in ONNX Runtime (``export --onnx`` and
  ``--backend onnx`` refuse it in one line), or ``None``.
* ``find_unused_parameters`` - the training forward leaves some parameters without a gradient
  (e.g. a module kept only so that the published weights load strictly), so DistributedDataParallel
  must look for them; ``False`` spares that search every step.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SegmentationModel(nn.Module):
    classifier_keys: ClassVar[tuple[str, ...]]
    input_mean: ClassVar[tuple[float, float, float]]
    input_std: ClassVar[tuple[float, float, float]]
    has_own_loss: ClassVar[bool] = False
    find_unused_parameters: ClassVar[bool] = False
    onnx_unsupported: ClassVar[str | None] = None
    cpu_channels_last: ClassVar[bool] = False  # inference on the CPU in channels_last (where measured faster)

    @classmethod
    def is_classifier(cls, key: str) -> bool:
        """Whether a state-dict key belongs to the classifier (``classifier_keys``)."""
        return key.startswith(cls.classifier_keys)


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "SegmentationModel"]
