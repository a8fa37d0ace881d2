"""The teacher's mIoU at several input sizes on held-out training frames (the table in README.md).

IDD Lite: 60 frames evenly spaced over every 10th train sequence folder (folder names sorted as text);
CamVid: 25 frames evenly spaced over train sequence 0006R0. Scored through the shipped mappings.

    .venv/bin/python reports/forgetting/sizes.py
"""

from __future__ import annotations

import time

from segunify.datasets import create_dataset, evenly
from segunify.evaluation import Evaluator
from segunify.mapping import load_mapping
from segunify.models.inference import Predictor
from segunify.models.pretrained import get_pretrained, import_weights
from segunify.paths import data_path

SIZES = {
    "idd-lite": [
        (724, 1024),
        (512, 1024),
        (512, 720),
        (448, 640),
        (384, 544),
        (320, 448),
        (288, 408),
        (256, 362),
        (227, 320),
    ],
    "camvid": [(512, 1024), (384, 512), (512, 683)],
}


def held_out(name: str) -> tuple:
    if name == "idd-lite":
        ds = create_dataset("idd-lite", data_path("IDD_Lite"))
        samples = ds.samples("train")
        seqs = sorted({s.id.split("/")[1] for s in samples})[::10]
        return ds, evenly([s for s in samples if s.id.split("/")[1] in seqs], 60)
    ds = create_dataset("camvid", data_path("CamVid"))
    return ds, evenly([s for s in ds.samples("train") if s.id.startswith("train/0006R0")], 25)


def main() -> None:
    import tempfile

    entry = get_pretrained("espnetv2_s2.0.cityscapes")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, _, _ = import_weights(entry.locate(), f"{tmp}/teacher", entry)
        for name, sizes in SIZES.items():
            ds, samples = held_out(name)
            mapping = load_mapping(f"{name}__cityscapes")
            pairs = [ds.sample(s) for s in samples]
            for size in sizes:
                predictor, ev, t0 = (
                    Predictor.from_checkpoint(ckpt, size=size),
                    Evaluator(mapping=mapping),
                    time.perf_counter(),
                )
                for image, label in pairs:
                    ev.update(label, predictor.predict(image)[0])
                print(
                    name,
                    f"{size[0]}x{size[1]}",
                    f"{100 * ev.result().miou:.2f}",
                    f"{time.perf_counter() - t0:.1f} s",
                    flush=True,
                )


if __name__ == "__main__":
    main()
