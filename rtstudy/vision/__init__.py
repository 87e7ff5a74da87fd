"""The image-classification track: data, models, attacks, the training loop, channel slimming."""

import torchvision.models.resnet as _tv

from rtstudy.core.patterns import register_residual_block
from rtstudy.vision.models import BasicBlock

register_residual_block(BasicBlock, _tv.BasicBlock, _tv.Bottleneck)
