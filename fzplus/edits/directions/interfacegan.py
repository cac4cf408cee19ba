"""InterFaceGAN directions (Shen et al.): the unit normal of a linear SVM separating latent codes by an attribute.

Fitting follows InterFaceGAN's `train_boundary` (genforce/interfacegan, utils/manipulator.py):
  1. drop codes whose score is invalid (here: NaN, e.g. a face the labeller could not find);
  2. rank by score; the top `chosen` codes are positives, the bottom `chosen` negatives, where `chosen`
     in (0, 1] is a fraction of the valid codes (default 0.02) and > 1 a count, capped at half the codes;
  3. each side is shuffled (seeded) and split `split_ratio` (0.7) train / rest validation;
  4. `sklearn.svm.SVC(kernel="linear")` (C = 1) on the training codes;
  5. accuracy on the validation codes and on the "remaining" middle codes (labelled by the midpoint of
     the highest and lowest score) is reported; the direction is coef / |coef|, pointing to higher scores.

Released boundaries (`load_released_boundaries`): InterFaceGAN's `boundary_<Attribute>.npy` files, unit
normals of shape (1, 512), e.g. InterFaceGAN++ for NVIDIA stylegan2-ffhq-1024 in Z (the paper profile).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from fzplus.edits.directions import DOMAINS, Directions, register_direction_finder


def find_interfacegan_directions(
    *,
    codes,
    scores,
    names: Sequence[str] | None = None,
    domain: str = "Z",
    chosen: float = 0.02,
    split_ratio: float = 0.7,
    svm_c: float = 1.0,
    seed: int = 0,
) -> Directions:
    """codes [N, D] (tensor or array, in `domain`); scores [N] or [N, A] (array, Series or DataFrame, whose
    column names become the direction names). Returns one unit direction per attribute, [A, D]."""
    if domain not in DOMAINS:
        raise ValueError(f"interfacegan: domain must be one of {DOMAINS}, got {domain!r}")
    codes = codes.detach().cpu().double().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes, np.float64)
    if isinstance(scores, (pd.Series, pd.DataFrame)):
        frame = scores.to_frame() if isinstance(scores, pd.Series) else scores
        names = [str(c) for c in frame.columns] if names is None else names
        scores = frame.to_numpy(np.float64)
    scores = np.asarray(scores, np.float64)
    scores = scores[:, None] if scores.ndim == 1 else scores
    if codes.ndim != 2 or scores.ndim != 2 or len(scores) != len(codes):
        raise ValueError(
            f"interfacegan: need codes [N, D] and scores [N] or [N, A], got {codes.shape} and {scores.shape}"
        )
    names = [f"attribute_{a}" for a in range(scores.shape[1])] if names is None else list(names)
    if len(names) != scores.shape[1]:
        raise ValueError(f"interfacegan: {len(names)} names for {scores.shape[1]} score columns")
    if not 0 < split_ratio < 1:
        raise ValueError(f"interfacegan: split_ratio must be in (0, 1), got {split_ratio}")
    fits = [
        _fit_boundary(
            codes, scores[:, a], name=names[a], chosen=chosen, split_ratio=split_ratio, svm_c=svm_c, seed=seed
        )
        for a in range(scores.shape[1])
    ]
    diagnostics = {key: [fit[key] for fit in fits] for key in fits[0] if key != "normal"}
    diagnostics.update(chosen=chosen, split_ratio=split_ratio, svm_c=svm_c, seed=seed)
    return Directions(
        vectors=torch.from_numpy(np.stack([fit["normal"] for fit in fits])),
        domain=domain,
        names=tuple(names),
        method="interfacegan",
        unit=True,
        diagnostics=diagnostics,
    )


def _fit_boundary(
    codes: np.ndarray, scores: np.ndarray, *, name: str, chosen: float, split_ratio: float, svm_c: float, seed: int
) -> dict:
    valid = np.isfinite(scores)
    codes, scores = codes[valid], scores[valid]
    order = np.argsort(-scores, kind="stable")  # highest score first
    codes, scores = codes[order], scores[order]
    n = len(scores)
    if not chosen > 0:
        raise ValueError(f"interfacegan: chosen must be > 0 (a fraction in (0, 1] or a count), got {chosen}")
    chosen_num = min(int(n * chosen) if chosen <= 1 else int(chosen), n // 2)
    train_num = int(chosen_num * split_ratio)
    if train_num < 1 or train_num == chosen_num:
        raise ValueError(
            f"interfacegan: attribute {name!r} has {n} valid codes; chosen={chosen} and "
            f"split_ratio={split_ratio} leave {chosen_num} per side, too few for a train/validation "
            f"split; sample more codes or raise `chosen`"
        )
    from sklearn import svm  # here, not at import: the registry imports every plugin

    rng = np.random.default_rng(seed)
    positive, negative = (
        codes[:chosen_num][rng.permutation(chosen_num)],
        codes[-chosen_num:][rng.permutation(chosen_num)],
    )
    labels = lambda k: np.r_[np.ones(k, int), np.zeros(k, int)]  # noqa: E731
    classifier = svm.SVC(kernel="linear", C=svm_c)
    classifier.fit(np.concatenate([positive[:train_num], negative[:train_num]]), labels(train_num))
    val_num = chosen_num - train_num
    val_pred = classifier.predict(np.concatenate([positive[train_num:], negative[train_num:]]))
    remaining, remaining_scores = codes[chosen_num : n - chosen_num], scores[chosen_num : n - chosen_num]
    remaining_acc = float("nan")
    if len(remaining):
        remaining_labels = (remaining_scores >= (scores[0] + scores[-1]) / 2).astype(int)
        remaining_acc = float((classifier.predict(remaining) == remaining_labels).mean())
    normal = classifier.coef_.reshape(-1)
    return dict(
        normal=normal / np.linalg.norm(normal),
        valid=int(n),
        invalid=int((~valid).sum()),
        train_per_side=train_num,
        validation_per_side=val_num,
        validation_accuracy=float((val_pred == labels(val_num)).mean()),
        remaining_accuracy=remaining_acc,
    )


def load_released_boundaries(
    folder: str | os.PathLike, names: Sequence[str] | None = None, *, domain: str = "Z"
) -> Directions:
    """InterFaceGAN boundary files `<folder>/boundary_<name>.npy`, each (1, D) or (D,); all of them (sorted)
    when `names` is None. Rows are renormalised to unit length; the stored norms are in the diagnostics."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"InterFaceGAN boundary folder {str(folder)!r} does not exist; set it in the config "
            f"(e.g. the asset mirror's 'interfacegan-stylegan2-ffhq-z')"
        )
    available = sorted(p.name[len("boundary_") : -len(".npy")] for p in folder.glob("boundary_*.npy"))
    names = available if names is None else list(names)
    if not names:
        raise FileNotFoundError(f"no boundary_<name>.npy files in {str(folder)!r}")
    vectors, norms = [], []
    for name in names:
        path = folder / f"boundary_{name}.npy"
        if not path.is_file():
            raise FileNotFoundError(f"InterFaceGAN boundary {str(path)!r} not found; available names: {available}")
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"{str(path)!r} is not a readable .npy boundary file ({e})") from e
        if (
            array.ndim not in (1, 2)
            or (array.ndim == 2 and array.shape[0] != 1)
            or not np.issubdtype(array.dtype, np.floating)
        ):
            raise ValueError(
                f"{str(path)!r}: expected a float boundary of shape (1, D) or (D,), got {array.dtype} {array.shape}"
            )
        vector = array.reshape(-1).astype(np.float64)
        if vectors and len(vector) != len(vectors[0]):
            raise ValueError(f"{str(path)!r} has dimension {len(vector)}, the other boundaries {len(vectors[0])}")
        norm = float(np.linalg.norm(vector))
        if not np.isfinite(norm) or norm == 0:
            raise ValueError(f"{str(path)!r}: boundary has norm {norm}; not a direction")
        vectors.append(vector / norm)
        norms.append(norm)
    return Directions(
        vectors=torch.from_numpy(np.stack(vectors)),
        domain=domain,
        names=tuple(names),
        method="interfacegan-released",
        unit=True,
        diagnostics=dict(folder=str(folder), files=[f"boundary_{n}.npy" for n in names], stored_norms=norms),
    )


def _find_released(*, folder: str | os.PathLike, names: Sequence[str] | None = None, domain: str = "Z") -> Directions:
    return load_released_boundaries(folder, names, domain=domain)


register_direction_finder(
    name="interfacegan",
    find=find_interfacegan_directions,
    description="InterFaceGAN: linear-SVM normal separating codes by an attribute score",
)
register_direction_finder(
    name="interfacegan-released",
    find=_find_released,
    description="InterFaceGAN: released boundary_<attribute>.npy unit normals",
)
