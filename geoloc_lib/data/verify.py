"""``geoloc data verify``: check a dataset on disk against ``data_manifest.yaml``.

A missing or damaged dataset gets one message listing every problem found and
how to obtain the dataset, never a bare traceback.

Besides counting, verification opens what it checks: every image matched by a layout ``glob``
gets its header parsed and its end checked (a JPEG's end-of-image marker, a PNG's IEND chunk, a
WebP's RIFF length), which finds empty, truncated and not-an-image files at a few thousand files
per second; ``--full`` decodes every image instead. The split files are parsed with the dataset's
loader (CVUSA split CSVs, CVACT's ``ACT_data.mat``, the University160k-WX query list).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from geoloc_lib.core.errors import ConfigError, DatasetError, choices_message
from geoloc_lib.core.paths import MANIFEST_FILE, REPO_ROOT
from geoloc_lib.data.images import IMAGE_SUFFIXES, not_a_file

# Bad files named one by one in a report, before "... and N more".
MAX_NAMED = 50
_TAIL = 32


def load_manifest(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Read ``data_manifest.yaml`` (the repository's by default)."""
    path = Path(path) if path is not None else MANIFEST_FILE
    if not path.is_file():
        raise ConfigError(f"manifest {path} not found")
    try:
        with path.open() as fh:
            manifest = yaml.safe_load(fh)
    except yaml.YAMLError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "invalid YAML"
        raise ConfigError(f"manifest {path} is not valid YAML ({first}); fix the file") from None
    if not isinstance(manifest, dict) or not manifest:
        raise ConfigError(f"manifest {path} holds no dataset entries")
    for name, entry in manifest.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"manifest {path}: entry {name!r} must be a mapping of fields")
        layout = entry.get("layout", [])
        if not isinstance(layout, list):
            raise ConfigError(f"manifest {path}: entry {name!r}: layout must be a list of items")
        for i, item in enumerate(layout, start=1):
            if not isinstance(item, dict) or not isinstance(item.get("path"), str):
                raise ConfigError(
                    f"manifest {path}: entry {name!r}, layout item {i} ({item!r}) has no "
                    "'path'; give each item the file or folder it checks under the dataset root, "
                    "e.g. {path: train/drone, kind: dir}"
                )
    return manifest


@dataclass
class VerifyReport:
    name: str
    root: Path
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    images: int = 0  # image files opened
    bad_images: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


def check_image(path: Path, full: bool = False) -> str | None:
    """Why the image file ``path`` is unusable, or None when it is fine.

    Default: the header is parsed (format and size) and the file's end is checked (JPEG end
    marker, PNG IEND chunk, WebP RIFF length), which finds empty, truncated and not-an-image
    files without decoding. ``full`` decodes all pixels instead.
    """
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty file (0 bytes)"
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            return f"not an image file (suffix {path.suffix!r}; images are {IMAGE_SUFFIXES})"
        with Image.open(path) as im:
            fmt, (w, h) = im.format, im.size
            if w < 1 or h < 1:
                return f"{fmt} image of size {w}x{h}"
            if full:
                im.load()
                return None
        with path.open("rb") as fh:
            head = fh.read(12)
            fh.seek(max(size - _TAIL, 0))
            tail = fh.read()
    except Exception as err:  # noqa: BLE001 - PIL raises many types for damaged files
        text = str(err).strip().splitlines()[0][:120] if str(err).strip() else ""
        return f"cannot be read as an image ({type(err).__name__}: {text})"
    if fmt == "JPEG" and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if fmt == "PNG" and b"IEND" not in tail:
        return "truncated PNG (no IEND chunk)"
    if fmt == "WEBP" and head[:4] == b"RIFF":
        riff = int.from_bytes(head[4:8], "little") + 8
        if size < riff:
            return f"truncated WebP ({size} of {riff} bytes)"
    return None


def _check_images(paths: list[Path], report: VerifyReport, full: bool) -> None:
    for path in paths:
        report.images += 1
        problem = check_image(path, full)
        if problem is None:
            continue
        report.bad_images += 1
        if report.bad_images <= MAX_NAMED:
            report.problems.append(f"{path}: {problem}")


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def _check_item(root: Path, item: dict[str, Any], report: VerifyReport, full: bool = False) -> None:
    path = root / item["path"]
    kind = item.get("kind", "dir")
    if kind == "file":
        if not path.is_file():
            report.problems.append(f"missing file {path}")
            return
        if "lines" in item:
            n = _count_lines(path)
            if n != item["lines"]:
                report.problems.append(f"{path}: {n} lines, expected {item['lines']}")
        report.checked.append(str(item["path"]))
        return
    if not path.is_dir():
        report.problems.append(f"missing folder {path}")
        return
    if "dirs" in item:
        n = sum(1 for p in path.iterdir() if p.is_dir())
        if n != item["dirs"]:
            report.problems.append(f"{path}: {n} location folders, expected {item['dirs']}")
    if "glob" in item:
        matches = sorted(path.glob(item["glob"]))
        files = [p for p in matches if p.is_file()]
        for p in matches:
            problem = not_a_file(p)
            if problem and (p.is_symlink() or p.suffix.lower() in IMAGE_SUFFIXES):
                report.problems.append(f"{p}: {problem}; the loader would read it as an image")
        n = len(files)
        _check_images(files, report, full)
        expected = item.get("files")
        if n == 0:
            report.problems.append(f"{path}: no files matching {item['glob']}")
        elif expected is not None and n != expected:
            report.problems.append(
                f"{path}: {n} files matching {item['glob']}, expected {expected}"
            )
    report.checked.append(str(item["path"]))


def _check_registry(root: Path, registry: Path, report: VerifyReport) -> None:
    import pooch

    for line in registry.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        rel, expected = line.split()[:2]
        path = root / rel
        if not path.is_file():
            report.problems.append(f"missing file {path} (listed in {registry.name})")
        elif pooch.file_hash(str(path)) != expected:
            report.problems.append(f"{path}: sha256 differs from {registry.name} (damaged copy?)")


def _parse_with_loader(root: Path, entry: dict[str, Any], report: VerifyReport) -> None:
    """Parse the dataset's split files with its loader (CSV rows, .mat variables, lists)."""
    loader = str(entry.get("loader", "")).rsplit(".", 1)[-1]
    if entry.get("verify"):
        return  # a dataset with its own content check (GeoSynth's hashes)
    from geoloc_lib.data import street, university

    calls: list[tuple[str, Any]] = []
    if loader == "load_cvusa":
        calls = [(f"CVUSA {s} split", lambda s=s: street.load_cvusa(root, s)) for s in street.CVUSA_SPLITS]  # fmt: skip
    elif loader == "load_cvact":
        calls = [(f"CVACT {s} split", lambda s=s: street.load_cvact(root, s)) for s in street.CVACT_SPLITS]  # fmt: skip
    elif loader == "load_university160k_wx":
        calls = [("query list", lambda: university.load_university160k_wx(root))]
    elif loader == "load_university1652":
        calls = [("University-1652 tree", lambda: university.load_university1652(root))]
    for label, call in calls:
        try:
            call()
            report.checked.append(f"{label} parsed")
        except DatasetError as err:
            problem = str(err)
            if problem not in report.problems:
                report.problems.append(problem)


def verify_dataset(
    name: str,
    root: str | Path,
    manifest: dict[str, dict[str, Any]] | None = None,
    full: bool = False,
) -> VerifyReport:
    """Check ``root`` against manifest entry ``name``; returns a report (does not raise).

    ``full``: decode every image (default: header and end of file only)."""
    manifest = manifest if manifest is not None else load_manifest()
    if name not in manifest:
        raise ConfigError(choices_message("dataset", name, manifest))
    entry = manifest[name]
    root = Path(root)
    report = VerifyReport(name=name, root=root)
    if not root.is_dir():
        report.problems.append(f"dataset root {root} does not exist")
        return report
    start = time.perf_counter()
    for item in entry.get("layout", []):
        _check_item(root, item, report, full)
    if report.bad_images > MAX_NAMED:
        report.problems.append(
            f"... and {report.bad_images - MAX_NAMED} more unreadable images "
            f"({report.bad_images} of {report.images})"
        )
    if report.images:
        how = "decoded" if full else "header and end checked"
        report.checked.append(f"{report.images} images opened ({how})")
    _parse_with_loader(root, entry, report)
    if entry.get("registry"):
        registry = REPO_ROOT / entry["registry"]
        if registry.is_file():
            _check_registry(root, registry, report)
        else:
            report.problems.append(f"hash registry {registry} named by the manifest is missing")
    if entry.get("verify"):  # a dataset-specific check, e.g. GeoSynth's content hash
        module_name, func_name = entry["verify"].rsplit(".", 1)
        import importlib

        check = getattr(importlib.import_module(module_name), func_name)
        try:
            summary = check(root)
            extra = summary.get("extra") if isinstance(summary, dict) else None
            note = f" ({len(extra)} other files kept, not part of the dataset)" if extra else ""
            report.checked.append(f"{func_name}(){note}")
        except DatasetError as err:
            report.problems.append(str(err))
    report.seconds = time.perf_counter() - start
    return report


def format_failure(report: VerifyReport, entry: dict[str, Any]) -> str:
    lines = [f"dataset '{report.name}' at {report.root} failed verification:"]
    lines += [f"  - {p}" for p in report.problems]
    lines.append(
        f"How to obtain {entry.get('title', report.name)}: {entry.get('obtain', '').strip()}"
    )
    if entry.get("terms"):
        lines.append(f"Terms: {entry['terms']}")
    return "\n".join(lines)


def require_dataset(name: str, root: str | Path, full: bool = False) -> VerifyReport:
    """Verify and raise :class:`DatasetError` with the obtain-instructions if anything is wrong."""
    manifest = load_manifest()
    report = verify_dataset(name, root, manifest, full=full)
    if not report.ok:
        raise DatasetError(format_failure(report, manifest[name]))
    return report


def main(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.manifest)
    report = verify_dataset(args.name, args.root, manifest, full=args.full)
    if not report.ok:
        raise DatasetError(format_failure(report, manifest[args.name]))
    rate = f", {report.images / report.seconds:.0f} images/s" if report.seconds > 0 else ""
    print(
        f"{args.name} at {args.root}: OK ({len(report.checked)} checks: "
        f"{', '.join(report.checked)}; {report.seconds:.1f} s{rate})"
    )
    return 0
