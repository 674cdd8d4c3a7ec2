"""Blocks used by two or more families: optical flow + warping, residual blocks, sub-pixel upsampling."""
from zoo.layers.blocks import PixelShufflePack, ResidualBlockNoBN, ResidualBlocksWithInputConv
from zoo.layers.flow import SPYNET_KEYS, SPyNet, flow_warp

__all__ = [
    "SPYNET_KEYS",
    "PixelShufflePack",
    "ResidualBlockNoBN",
    "ResidualBlocksWithInputConv",
    "SPyNet",
    "flow_warp",
]
