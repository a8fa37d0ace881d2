"""What the training and inference code may ask of every model family (class attributes, no logic).

Every family's ``nn.Module`` wrapper derives from :class:`SegmentationModel` and overrides what differs:

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


class SegmentationModel(nn.Module):
    has_own_loss: ClassVar[bool] = False
    find_unused_parameters: ClassVar[bool] = False
    onnx_unsupported: ClassVar[str | None] = None
    cpu_channels_last: ClassVar[bool] = False  # inference on the CPU in channels_last (where measured faster)


__all__ = ["SegmentationModel"]
