"""Quality control's cost per image: the built-in checks and two small TorchScript classifiers on one
512 x 512 image, against the time the generation engine takes for that image (issue 17: QC must add at
most 10 % to generation time on a GPU worker).

Runs on whatever this machine has (QC_DEVICE / CUDA when available). The classifiers are small random
CNNs (two conv layers, 224 x 224 input), scripted with TorchScript as register_qc_model expects; their
weights do not change their speed. ``--generation-seconds`` is the per-image generation time to compare
with (default: 2.0 s, a 512 x 512, 50-step Stable Diffusion image on one recent data-centre GPU; measure
yours with bench/generation.py).

    .venv/bin/python bench/quality.py [--repeats 20] [--generation-seconds 2.0]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def small_classifier(outputs: int):
    import torch

    class Small(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 16, 5, stride=4)
            self.conv2 = torch.nn.Conv2d(16, 32, 3, stride=2)
            self.head = torch.nn.Linear(32, outputs)

        def forward(self, x):
            x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
            return self.head(x.mean(dim=(2, 3)))

    return torch.jit.script(Small().eval())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--generation-seconds", type=float, default=2.0)
    args = parser.parse_args()

    import torch

    from quality import checks
    from quality.classifiers import Declaration, prepare

    device = "cuda" if torch.cuda.is_available() else "cpu"
    rng = np.random.default_rng(0)
    # A smooth 512 x 512 image (like a radiograph: the checks' cost does not depend on content).
    base = np.cumsum(np.cumsum(rng.normal(size=(512, 512)), 0), 1)
    pixels = ((base - base.min()) / np.ptp(base) * 255).astype(np.uint8)
    earlier = np.stack([checks.fingerprint(pixels + i) for i in range(200)])  # 200 earlier images
    models = [(small_classifier(2).to(device), Declaration("sex", ("F", "M"), 224, 0.5, 0.5, 0.5)),
              (small_classifier(14).to(device), Declaration("findings", tuple(f"f{i}" for i in range(14)), 224,
                                                            0.5, 0.5, 0.5))]

    def once() -> tuple[float, float]:
        start = time.perf_counter()
        checks.builtin_checks(pixels, nonfinite_values=0, earlier=earlier)
        middle = time.perf_counter()
        with torch.inference_mode():
            for module, declaration in models:
                module(prepare([pixels], declaration, device)).cpu()
        if device == "cuda":
            torch.cuda.synchronize()
        return middle - start, time.perf_counter() - middle

    once()  # warm-up: TorchScript's first calls optimise the graph
    builtin, classifiers = zip(*(once() for _ in range(args.repeats)))
    total = statistics.median(builtin) + statistics.median(classifiers)
    print(f"device: {device}, torch threads: {torch.get_num_threads()}, repeats: {args.repeats}")
    print(f"built-in checks (512 x 512, 200 earlier fingerprints): median {statistics.median(builtin) * 1000:.1f} ms")
    print(f"two small TorchScript classifiers (224 x 224): median {statistics.median(classifiers) * 1000:.1f} ms")
    print(f"QC per image: {total * 1000:.1f} ms = {total / args.generation_seconds:.1%} of "
          f"{args.generation_seconds:g} s generation")


if __name__ == "__main__":
    main()
