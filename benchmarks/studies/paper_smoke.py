"""The `paper` profile end to end on this machine, at 1024 px, on stand-ins of its assets ("paper-smoke").

    python -m benchmarks.studies.paper_smoke [--cores 2] [--stand-ins-only] [--root resources/paper-smoke]

The paper's assets cannot be had on the development machines, so this writes stand-ins in their real file
formats, with seeded random weights, into <root>/mirror/:
  nvidia-stylegan2-ffhq-1024/stylegan2-ffhq-1024x1024.pkl   config-F 1024 generator as an NVIDIA pickle
  lpips-vgg16/vgg16-397923af.pth                            torchvision VGG16 state dict
  facenet-vggface2/20180402-114759-vggface2.pt              InceptionResnetV1 state dict, with the
                                                            release's VGGFace2 classifier ("logits.*")
  celebahq-user/                                            the 56 CelebA-HQ 1024 px faces of the mirror
  interfacegan-stylegan2-ffhq-z/                            the real released boundaries
and <root>/assets.yaml: config/assets.yaml with the stand-ins' checksums (VGG16's is pinned to the real
file's). Then it runs `snakemake --cores N --configfile config/overrides/paper-smoke.yaml --config
profile=paper`, which reads only these, and checks that every output of the profile's default target
was written. It prints the wall time and each job's seconds. The numbers of the run mean nothing (random
networks: no face in any generated image); the run shows that every code path of the paper profile works
at 1024 px.
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import shutil
import subprocess
import sys
import time

import torch
import yaml

import fzplus  # noqa: F401  (torchvision fallback before facenet_pytorch)
from fzplus.assets import REPO_ROOT, asset_mirror, file_sha256

OVERRIDES = REPO_ROOT / "config" / "overrides" / "paper-smoke.yaml"
GENERATOR_FILE = "nvidia-stylegan2-ffhq-1024/stylegan2-ffhq-1024x1024.pkl"
VGG16_FILE = "lpips-vgg16/vgg16-397923af.pth"
FACENET_FILE = "facenet-vggface2/20180402-114759-vggface2.pt"
VGGFACE2_CLASSES = 8631  # the release's classifier head


def write_generator(path: pathlib.Path, *, seed: int = 0) -> None:
    """NVIDIA's config-F 1024 architecture with seeded random weights, its w_avg the mean of mapped codes."""
    from fzplus.generator import Generator
    from fzplus.generator.checkpoints_nvidia import write_nvidia_pickle

    torch.manual_seed(seed)
    G = Generator(resolution=1024).eval().requires_grad_(False)
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(4096, G.z_dim)).mean(0))
    write_nvidia_pickle(G, path)


def write_vgg16(path: pathlib.Path, *, seed: int = 0) -> None:
    import torchvision

    torch.manual_seed(seed)
    torch.save(torchvision.models.vgg16(weights=None).state_dict(), path)


def write_facenet(path: pathlib.Path, *, seed: int = 0) -> None:
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(seed)
    torch.save(InceptionResnetV1(pretrained=None, classify=True, num_classes=VGGFACE2_CLASSES).state_dict(), path)


def write_stand_ins(root: pathlib.Path, *, mirror: pathlib.Path) -> pathlib.Path:
    """The stand-in mirror under root/mirror and its declarations root/assets.yaml (returned). Files already
    there are kept (they are seeded, so rewriting gives the same bytes)."""
    out = root / "mirror"
    writers = {GENERATOR_FILE: write_generator, VGG16_FILE: write_vgg16, FACENET_FILE: write_facenet}
    for rel, write in writers.items():
        path = out / rel
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            write(partial)
            partial.replace(path)
    faces, boundaries = mirror / "celebahq-stargan-v2", mirror / "interfacegan-stylegan2-ffhq-z"
    for needed in (faces, boundaries):
        if not needed.is_dir():
            raise FileNotFoundError(
                f"paper-smoke: the asset mirror {str(mirror)!r} lacks {needed.name}/ "
                "(set FZPLUS_ASSET_MIRROR or place ../shared/assets beside the checkout)"
            )
    (out / "celebahq-user").mkdir(parents=True, exist_ok=True)
    for jpg in sorted(faces.glob("*.jpg")):
        link = out / "celebahq-user" / jpg.name
        if not link.exists():
            link.symlink_to(jpg.resolve())
    if not (out / boundaries.name).exists():
        (out / boundaries.name).symlink_to(boundaries.resolve())

    with open(REPO_ROOT / "config" / "assets.yaml", encoding="utf-8") as f:
        declarations = yaml.safe_load(f)
    # Only the VGG16 file is checked by checksum (the others are declared verify: false, as NVIDIA and
    # facenet-pytorch publish none): pin the stand-in's, so that its verification runs too.
    declarations["assets"]["lpips-vgg16"]["sha256"] = file_sha256(out / VGG16_FILE)
    declarations["assets"]["lpips-vgg16"]["description"] = (
        "STAND-IN (random weights) for " + declarations["assets"]["lpips-vgg16"]["description"]
    )
    path = root / "assets.yaml"
    with open(path, "w", encoding="utf-8") as f:
        f.write(
            "# Written by benchmarks/studies/paper_smoke.py: "
            "config/assets.yaml with the paper-smoke stand-ins' checksums.\n"
        )
        yaml.safe_dump(declarations, f, sort_keys=False, width=120)
    return path


def expected_outputs(workdir: pathlib.Path) -> list[str]:
    """Every file the profile's default target needs, from Snakemake's own summary of the finished run."""
    result = subprocess.run(snakemake_command(workdir, "--summary", "--cores", "1"), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"snakemake --summary failed:\n{result.stderr[-3000:]}")
    rows = list(csv.reader(result.stdout.splitlines(), delimiter="\t"))
    return [row[0] for row in rows[1:] if row and row[0].startswith("results/")]


def snakemake_command(workdir: pathlib.Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO_ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
        "--configfile",
        str(OVERRIDES),
        "--config",
        "profile=paper",
    ]


def job_seconds(results: pathlib.Path) -> dict[str, float]:
    """Seconds per job from the run's Snakemake benchmark files (named by rule and wildcards)."""
    seconds = {}
    for tsv in sorted((results / "benchmarks").glob("*.tsv")):
        with open(tsv, encoding="utf-8") as f:
            seconds[tsv.stem] = float(next(csv.DictReader(f, delimiter="\t"))["s"])
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root",
        default=str(REPO_ROOT / "resources" / "paper-smoke"),
        help="stand-ins and the run's working directory (the override file reads resources/paper-smoke)",
    )
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--stand-ins-only", action="store_true", help="write the stand-ins and stop")
    args = parser.parse_args(argv)
    root = pathlib.Path(args.root).resolve()
    if root != (REPO_ROOT / "resources" / "paper-smoke").resolve():
        raise SystemExit(
            f"--root {root}: config/overrides/paper-smoke.yaml reads resources/paper-smoke/; edit it to match"
        )
    mirror = asset_mirror()
    if mirror is None:
        raise SystemExit(
            "paper-smoke: no asset mirror (set FZPLUS_ASSET_MIRROR or place ../shared/assets beside the checkout)"
        )
    t0 = time.perf_counter()
    write_stand_ins(root, mirror=mirror)
    print(f"stand-ins written in {time.perf_counter() - t0:.0f} s under {root}")
    if args.stand_ins_only:
        return 0

    workdir = root / "run"
    results = workdir / "results" / "paper-smoke"
    if results.exists():
        shutil.rmtree(results)  # a smoke run starts from nothing, or it would time only what changed
    t0 = time.perf_counter()
    run = subprocess.run(snakemake_command(workdir, "--cores", str(args.cores)))
    wall = time.perf_counter() - t0
    if run.returncode != 0:
        print(f"paper-smoke FAILED after {wall:.0f} s (log: {workdir}/.snakemake/log/)")
        return run.returncode
    outputs = expected_outputs(workdir)
    missing = [p for p in outputs if not (workdir / p).is_file()]
    print(
        f"\npaper-smoke: {wall:.0f} s wall on {args.cores} cores; "
        f"{len(outputs) - len(missing)} of {len(outputs)} outputs written"
    )
    for job, seconds in sorted(job_seconds(results).items(), key=lambda kv: -kv[1]):
        print(f"  {job:32s} {seconds:8.1f} s")
    for path in missing:
        print(f"  MISSING {path}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
