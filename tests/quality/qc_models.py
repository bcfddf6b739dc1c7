"""Tiny TorchScript QC models whose predictions the tests control, saved where a test asks."""

import hashlib

import torch


class MeanIntensitySex(torch.nn.Module):
    """Predicts "F" when the image's mean (of its normalised input) is above ``cut`` (or below, with
    ``brighter_is_female`` False); outputs the logits of ["F", "M"]."""

    def __init__(self, cut: float, brighter_is_female: bool = True):
        super().__init__()
        self.cut = cut
        self.sign = 1.0 if brighter_is_female else -1.0

    def forward(self, x):
        logit = (x.mean(dim=(1, 2, 3)) - self.cut) * self.sign * 200.0
        return torch.stack([logit, -logit], dim=1)


class ConstantAge(torch.nn.Module):
    def __init__(self, age: float):
        super().__init__()
        self.age = age

    def forward(self, x):
        return torch.full((x.shape[0], 1), self.age)


class WrongShape(torch.nn.Module):
    def forward(self, x):
        return torch.zeros(x.shape[0], 3)


class Raising(torch.nn.Module):
    def forward(self, x):
        if x.shape[0] > 0:
            raise RuntimeError("this QC model is broken")
        return torch.zeros(x.shape[0], 2)


def save(module, path) -> str:
    """Script and save ``module`` at ``path``; returns the file's SHA-256."""
    torch.jit.script(module).save(str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


class LayoutEncoder(torch.nn.Module):
    """An encoder for fidelity tests: the 3 x 3 layout of the image, its mean and its spread (11 values)."""

    def forward(self, x):
        layout = torch.nn.functional.adaptive_avg_pool2d(x, 3).flatten(1)
        return torch.cat([layout, x.mean(dim=(1, 2, 3)).unsqueeze(1), x.std(dim=(1, 2, 3)).unsqueeze(1)], dim=1)
