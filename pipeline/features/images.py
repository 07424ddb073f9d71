"""Image loading for the only two stages that decode images: finetune and features."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)

def load_image(path: str, size: int) -> torch.Tensor:
    """RGB image resized to size x size, ImageNet-normalised: (3, size, size) float32."""
    with Image.open(path) as im:
        im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when the file is large
        im = im.convert("RGB").resize((size, size), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255)
    return (x - MEAN) / STD


class ImageDataset(Dataset):
    """Images (and optional multi-label targets); random horizontal flips when `train`."""

    def __init__(self, paths: list[str], size: int, targets: np.ndarray | None = None, train: bool = False):
        self.paths, self.size, self.targets, self.train = paths, size, targets, train

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        x = load_image(self.paths[i], self.size)
        if self.train and torch.rand(()) < 0.5:  # torch RNG: seeded per DataLoader worker
            x = x.flip(-1)
        if self.targets is None:
            return (x,)
        return (x,), torch.from_numpy(self.targets[i].astype(np.float32))


def image_loader(ds: ImageDataset, batch_size: int, shuffle: bool, num_workers: int, device: torch.device,
                 generator: torch.Generator | None = None, sampler: Sampler | None = None) -> DataLoader:
    """DataLoader with `num_workers` decoding processes and pinned memory on CUDA (for
    non-blocking copies); `sampler` (a DistributedSampler under DDP) replaces `shuffle`."""
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle if sampler is None else False, sampler=sampler,
                      num_workers=num_workers, generator=generator, pin_memory=device.type == "cuda",
                      persistent_workers=num_workers > 0, drop_last=False)
