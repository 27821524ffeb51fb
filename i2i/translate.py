"""``i2i translate``: apply a model to files and folders, keeping sizes and names."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import UserError

SAVE_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "tif": "TIFF"}


@dataclass
class TranslateReport:
    written: int = 0
    skipped: int = 0
    outputs: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "network": 0.0, "write": 0.0})


def output_paths(inputs: list[tuple[Path, Path]], out_dir: Path, fmt: str) -> list[Path]:
    """``out_dir/<path relative to the given folder>/<stem>.<fmt>`` for each (root, file)."""
    paths = []
    for root, file in inputs:
        rel = file.relative_to(root).parent if root != file else Path()
        paths.append(out_dir / rel / f"{file.stem}.{fmt}")
    return paths


def translate_files(model, inputs: list[Path], out_dir: Path, *, batch_size: int = 4, fmt: str = "png",
                    overwrite: bool = False, progress: bool = True, tile: int | str = "auto") -> TranslateReport:
    """Translate every image found in ``inputs``; never replaces a file unless ``overwrite``."""
    from .data import decode_image, find_images, to_pil

    pairs: list[tuple[Path, Path]] = []
    for item in inputs:
        if not item.exists():
            raise UserError(f"{item}: no such file or folder")
        if item.is_dir():
            pairs.extend((item, f) for f in find_images(item))
        else:
            pairs.append((item, item))
    if not pairs:
        raise UserError(f"no images found in {', '.join(str(i) for i in inputs)} (jpg, png, webp, bmp, tif)")
    targets = output_paths(pairs, out_dir, fmt)
    if not overwrite:
        existing = [t for t in targets if t.exists()]
        if existing:
            raise UserError(f"{existing[0]}: already exists ({len(existing)} output file(s) would be replaced); use --overwrite or another --out")
    seen: dict[Path, Path] = {}
    for (root, file), target in zip(pairs, targets):
        if target in seen:
            raise UserError(f"{file} and {seen[target]} would both be written to {target}; translate them into different --out folders")
        seen[target] = file

    report = TranslateReport()
    bar = None
    if progress and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(pairs), unit="img", file=sys.stderr)
    unreadable: list[str] = []
    pending: list[tuple[torch.Tensor, Path]] = []

    def flush() -> None:
        if not pending:
            return
        start = time.perf_counter()
        batch = torch.stack([t for t, _ in pending]).to(model.device, non_blocking=True).float() / 255
        outputs = model(batch, tile=tile)
        outputs = outputs.cpu()  # waits for the device: the network's time ends here
        middle = time.perf_counter()
        for out, (_, target) in zip(outputs, pending):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            to_pil(out).save(tmp, format=SAVE_FORMATS[fmt])
            tmp.replace(target)
            report.outputs.append(target)
        report.seconds["network"] += middle - start
        report.seconds["write"] += time.perf_counter() - middle
        report.written += len(pending)
        if bar is not None:
            bar.update(len(pending))
        pending.clear()

    for (root, file), target in zip(pairs, targets):
        start = time.perf_counter()
        try:
            image = decode_image(file, 3)
        except UserError:
            unreadable.append(str(file))
            report.skipped += 1
            continue
        finally:
            report.seconds["decode"] += time.perf_counter() - start
        if pending and (image.shape != pending[0][0].shape or len(pending) >= batch_size):
            flush()
        pending.append((image, target))
    flush()
    if bar is not None:
        bar.close()
    if unreadable:
        print(f"i2i: warning: skipped {len(unreadable)} unreadable file(s): {', '.join(unreadable[:3])}", file=sys.stderr)
    return report
