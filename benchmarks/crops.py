"""Write square crops of built-in (or own) images as PNG files, a folder for `bench --images`.

    python benchmarks/crops.py --out outputs/crops8 --crop 64 \
        astronaut chelsea coffee hubble_deep_field immunohistochemistry rocket astronaut@256 chelsea@150

Each entry is an image name or path, `NAME@SIZE` first resizing its longer side to SIZE pixels (another view
of the same photo: a larger part of the scene at a lower resolution); the file is named `NAME` or
`NAME_SIZE`.png and holds the centre crop that `--data.crop` would take.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dip_lightning.artifacts import save_image
from dip_lightning.images import center_crop, load_image, resize_longer_side


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", help="NAME, PATH, NAME@SIZE or PATH@SIZE")
    parser.add_argument("--crop", type=int, default=64, help="side of the centre crop (pixels)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the PNG files to")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for entry in args.images:
        spec, _, size = entry.partition("@")
        image = load_image(spec)
        if size:
            image = resize_longer_side(image, int(size))
        path = args.out / f"{Path(spec).stem}{'_' + size if size else ''}.png"
        save_image(path, center_crop(image, args.crop))
        print(path)


if __name__ == "__main__":
    main()
