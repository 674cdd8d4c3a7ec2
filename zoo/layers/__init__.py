"""Blocks used by two or more families: optical flow + warping, residual blocks, sub-pixel upsampling."""
from zoo.layers.blocks import PixelShufflePack, ResidualBlockNoBN, ResidualBlocksWithInputConv
from zoo.layers.flow import SPyNet, flow_warp, spynet_official_key_map

__all__ = [
    "PixelShufflePack",
    "ResidualBlockNoBN",
    "ResidualBlocksWithInputConv",
    "SPyNet",
    "flow_warp",
    "spynet_official_key_map",
]
