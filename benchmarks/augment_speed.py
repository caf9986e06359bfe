"""Training augmentation's CPU cost per batch: the project's per-image geometry + batched photometric step
(data/batch_augment.py) against the per-image torchvision pipeline it replaced, printed as JSON.

The reference is what a loader worker did per image before: resize, flip, pad + crop, ColorJitter on the PIL
image, ToTensor, Normalize (and RandomErasing when asked), then the batch stacked. The project's: resize, flip,
pad + crop, PILToTensor per image, then colour jitter, normalisation and erasing on the stacked uint8 batch.
Both draw the same kinds of random numbers and produce normalised float batches of the same shape. One thread,
as in a loader worker; images decoded once beforehand (decoding costs the same in both and is reported apart).
Variants run interleaved round by round; ``ratio`` is the reference's time over each variant's.

    python benchmarks/augment_speed.py                        # Market images at 128x64, colour jitter 0.2
    python benchmarks/augment_speed.py --random-erasing 0.5   # BoT's erasing too
    python benchmarks/augment_speed.py --record               # also append to docs/results/augment_speed.jsonl
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torchvision.transforms as T

from trytry_reid.data import BatchPhotometric, build_train_transform, read_image
from trytry_reid.imagenet import IMAGENET_MEAN, IMAGENET_STD

from common import interleaved_medians, print_and_record, result_header

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results" / "augment_speed.jsonl"
DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "market1501-devsplit" / "bounding_box_train"


def torchvision_per_image(args: argparse.Namespace) -> T.Compose:
    """The reference transform: everything per PIL image, as torchvision pipelines usually do it."""
    steps = [T.Resize((args.height, args.width), antialias=True), T.RandomHorizontalFlip(0.5), T.Pad(10),
             T.RandomCrop((args.height, args.width))]
    if args.color_jitter > 0:
        steps.append(T.ColorJitter(args.color_jitter, args.color_jitter, args.color_jitter))
    steps += [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if args.random_erasing > 0:
        steps.append(T.RandomErasing(p=args.random_erasing, value=0))
    return T.Compose(steps)


def batches_of(images: list, batch: int) -> Callable[[], list]:
    """A closure handing out the next ``batch`` images, cycling through the list."""
    position = [0]

    def next_batch() -> list:
        start = position[0] % (len(images) - batch + 1)
        position[0] += batch
        return images[start:start + batch]

    return next_batch


def variants(images: list, args: argparse.Namespace) -> dict[str, Callable[[], None]]:
    reference = torchvision_per_image(args)
    geometric = build_train_transform(args.height, args.width, flip_p=0.5, pad=10)
    photometric = BatchPhotometric(color_jitter=args.color_jitter, random_erasing_p=args.random_erasing)
    generator = torch.Generator().manual_seed(0)
    reference_batch, project_batch = batches_of(images, args.batch), batches_of(images, args.batch)
    return {
        "per image: torchvision on PIL, ToTensor, Normalize (reference)":
            lambda: torch.stack([reference(image) for image in reference_batch()]),
        "per image geometry + batched photometric (shipped)":
            lambda: photometric(torch.stack([geometric(image) for image in project_batch()]), generator),
    }


def load_images(folder: Path, count: int) -> tuple[list, float]:
    """The first ``count`` images of ``folder`` decoded, and the decoding time per image in seconds."""
    paths = sorted(folder.glob("*.jpg"))[:count]
    if not paths:
        sys.exit(f"augment_speed: no .jpg images in {folder}; pass --images with a folder of images")
    start = time.perf_counter()
    images = [read_image(path) for path in paths]
    return images, (time.perf_counter() - start) / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="a folder of .jpg images")
    parser.add_argument("--count", type=int, default=640, help="images decoded and cycled through")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--color-jitter", type=float, default=0.2)
    parser.add_argument("--random-erasing", type=float, default=0.0)
    parser.add_argument("--iters", type=int, default=30, help="timed rounds (each runs every variant once)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--record", action="store_true", help=f"append the result as one line to {RESULTS}")
    args = parser.parse_args()
    torch.set_num_threads(1)
    images, decode_s = load_images(args.images, args.count)
    if len(images) < args.batch:
        sys.exit(f"augment_speed: {len(images)} images in {args.images}, fewer than --batch {args.batch}")
    steps = variants(images, args)
    load_before = os.getloadavg()
    medians = interleaved_medians(steps, args.iters, args.warmup)
    reference_cpu = medians[next(iter(steps))][1]
    result = {**result_header({**vars(args), "images": str(args.images)}, load_before),
              "decode_ms_per_batch": round(decode_s * args.batch * 1000, 1),
              "wall_ms_per_batch": {name: round(wall * 1000, 1) for name, (wall, _) in medians.items()},
              "cpu_ms_per_batch": {name: round(cpu * 1000, 1) for name, (_, cpu) in medians.items()},
              "ratio": {name: round(reference_cpu / cpu, 2) for name, (_, cpu) in medians.items()}}
    print_and_record(result, RESULTS, args.record)


if __name__ == "__main__":
    main()
