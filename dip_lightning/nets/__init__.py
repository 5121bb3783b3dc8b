"""DIP networks f_θ(z): each maps a fixed code (B, C_in, *S) to an output (B, C_out, *S).

Every network exposes `body` (code -> last hidden activations), `head` (1x1 output conv),
`output_activation` and `size_multiple` (each side of S must be a multiple of it), and may expose
`check_size(size)`, which refuses (InputError) a size S it cannot process, naming one that works.
"""

from .conv import ConvNet
from .skip import AutoEncoder, SkipNet

__all__ = ["AutoEncoder", "ConvNet", "SkipNet"]
