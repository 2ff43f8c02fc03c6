"""Dynamic (elastic) layers of the supernet and their static twins."""
from .dynamic import (DynamicBatchNorm2d, DynamicConv2d, DynamicConvBnAct, DynamicMBConv, DynamicSE,
                      DynamicShortcut)
from .layers import Conv2dPad, build_act, make_divisible, same_pad_amounts
from .static import ConvBnAct, MBConv, Shortcut, SqueezeExcite

__all__ = [
    "DynamicConv2d", "DynamicBatchNorm2d", "DynamicConvBnAct", "DynamicSE", "DynamicShortcut", "DynamicMBConv",
    "ConvBnAct", "SqueezeExcite", "Shortcut", "MBConv", "Conv2dPad", "build_act", "make_divisible",
    "same_pad_amounts",
]
