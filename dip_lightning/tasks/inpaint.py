"""Inpainting: y = M ⊙ x, M the known pixels (a seeded Bernoulli draw, a mask file and/or a box)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..artifacts import save_image
from ..errors import InputError
from ..images import crop_to_multiple, load_image
from ..strategies.base import Selection
from .masked import MaskedTask


class Inpaint(MaskedTask):
    """Fill in missing pixels of a grey or colour image; the loss sees the known pixels only.

    The known pixels are: those of `mask` (an image file, white = known) if given, else a Bernoulli draw
    keeping each pixel with probability 1 - `missing` (seeded by `observation_seed`); a `box` region is
    missing in either case. An observation given as the image (`data.is_observation`) needs `mask` or
    `box`. `metrics.json` adds `psnr_missing` (missing pixels only); its `psnr_observation_input` compares
    the observation, missing pixels 0 (black), with the ground truth. The run directory gets mask.png.

    Args:
        missing: fraction of pixels removed by the Bernoulli draw, in [0, 1).
        mask: path of a mask image (white = known, black = missing); overrides `missing`. Either of the
            image's size as fitted (after `data.size` and `data.crop`) or of the image file's, then resized
            and cropped like the image.
        box: [top, left, height, width] of a missing rectangle, in pixels of the (cropped) image.
        paste_known: copy the known pixels of the observation into the returned output.
        sigma: std of noise on the known pixels, 0-255 units (0: noise-free, as in the papers; null: unknown).
        **kwargs: the RestorationTask arguments (net, strategy, reg_noise_std, ...).
    """

    def __init__(self, missing: float = 0.5, mask: str | None = None, box: list[int] | None = None,
                 paste_known: bool = False, sigma: float | None = 0.0, **kwargs) -> None:
        if not 0.0 <= missing < 1.0:
            raise InputError(f"model.missing={missing} is not a fraction of missing pixels: choose 0 <= missing < 1")
        if box is not None and (len(box) != 4 or min(box[2:]) < 1 or min(box[:2]) < 0):
            raise InputError(f"model.box={box} is not [top, left, height, width] with height, width >= 1")
        super().__init__(sigma=sigma, **kwargs)
        self._region: torch.Tensor | None = None  # (H, W) bool: known before the Bernoulli draw

    def fit_to_network(self, image: torch.Tensor, multiple: int) -> torch.Tensor:
        """Crop the image and the known region (file and box) alike to the network's multiple."""
        region = self._given_region(tuple(image.shape[-2:]))
        cropped = crop_to_multiple(torch.cat([image, region[None].float()]), multiple)
        self._region = cropped[-1].bool()
        return cropped[:-1]

    def observe(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        known = self._region
        if self.hparams.mask is None:
            known = known & (torch.rand(known.shape, generator=generator) >= self.hparams.missing)
        self.set_mask(known)
        return self.add_noise(clean, generator) * known

    def complete_problem(self) -> None:
        if self.mask is None:  # the image is the observation itself: its missing pixels must be given
            if self.hparams.mask is None and self.hparams.box is None:
                raise InputError("inpainting an observation (data.is_observation=true) needs its missing pixels: "
                                 "give model.mask=PATH (white = known) or model.box=[top, left, height, width]")
            self.set_mask(self._region)
            self.observation.mul_(self.mask)

    def select(self, gather: bool = True) -> Selection:
        selection = super().select(gather)
        if not self.hparams.paste_known:
            return selection
        pasted = torch.where(self.mask[0].bool(), self.observation[0], selection.image)
        return replace(selection, image=pasted)

    def save_artifacts(self, run_dir: Path, selection: Selection) -> None:
        """mask.png: the known pixels (white), reusable as `model.mask`."""
        save_image(run_dir / "mask.png", self.mask[0])

    def _given_region(self, size: tuple[int, int]) -> torch.Tensor:
        """(H, W) bool, True where known according to the mask file and the box (all True without them)."""
        known = torch.ones(size, dtype=torch.bool) if self.hparams.mask is None else self._load_mask(size)
        if self.hparams.box is not None:
            top, left, height, width = self.hparams.box
            if top + height > size[0] or left + width > size[1]:
                raise InputError(f"model.box={list(self.hparams.box)} does not fit the {size[0]}x{size[1]} image: "
                                 f"keep top + height <= {size[0]} and left + width <= {size[1]}")
            known[top:top + height, left:left + width] = False
        if not bool(known.any()):
            raise InputError("the mask marks no pixel as known (white = known): nothing to fit")
        return known

    def _load_mask(self, size: tuple[int, int]) -> torch.Tensor:
        """The mask file as (H, W) bool (white = known): of the image's size as fitted, or of the image file's
        size (then resized and cropped like the image, `data.size` and `data.crop`)."""
        mask = load_image(self.hparams.mask).mean(0, keepdim=True)
        if tuple(mask.shape[-2:]) == size:
            return mask[0] > 0.5
        data = self.datamodule
        source = getattr(data, "source_size", None)
        if tuple(mask.shape[-2:]) != source:
            before = f" ({source[0]}x{source[1]} in its file)" if source and source != size else ""
            raise InputError(f"the mask {self.hparams.mask} is {mask.shape[-2]}x{mask.shape[-1]} but the image is "
                             f"{size[0]}x{size[1]}{before}: give a mask of either size (white = known)")
        return data.transform(mask)[0] > 0.5
