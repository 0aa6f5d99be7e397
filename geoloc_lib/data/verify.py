"""``geoloc data verify``: check a dataset on disk against ``data_manifest.yaml``.

A missing or damaged dataset gets one message listing every problem found and
how to obtain the dataset, never a bare traceback.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from geoloc_lib.errors import ConfigError, DatasetError, choices_message
from geoloc_lib.paths import MANIFEST_FILE, REPO_ROOT


def load_manifest(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Read ``data_manifest.yaml`` (the repository's by default)."""
    path = Path(path) if path is not None else MANIFEST_FILE
    if not path.is_file():
        raise ConfigError(f"manifest {path} not found")
    with path.open() as fh:
        manifest = yaml.safe_load(fh)
    if not isinstance(manifest, dict) or not manifest:
        raise ConfigError(f"manifest {path} holds no dataset entries")
    return manifest


@dataclass
class VerifyReport:
    name: str
    root: Path
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def _check_item(root: Path, item: dict[str, Any], report: VerifyReport) -> None:
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
        n = sum(1 for p in path.glob(item["glob"]) if p.is_file())
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


def verify_dataset(
    name: str, root: str | Path, manifest: dict[str, dict[str, Any]] | None = None
) -> VerifyReport:
    """Check ``root`` against manifest entry ``name``; returns a report (does not raise)."""
    manifest = manifest if manifest is not None else load_manifest()
    if name not in manifest:
        raise ConfigError(choices_message("dataset", name, manifest))
    entry = manifest[name]
    root = Path(root)
    report = VerifyReport(name=name, root=root)
    if not root.is_dir():
        report.problems.append(f"dataset root {root} does not exist")
        return report
    for item in entry.get("layout", []):
        _check_item(root, item, report)
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


def require_dataset(name: str, root: str | Path) -> VerifyReport:
    """Verify and raise :class:`DatasetError` with the obtain-instructions if anything is wrong."""
    manifest = load_manifest()
    report = verify_dataset(name, root, manifest)
    if not report.ok:
        raise DatasetError(format_failure(report, manifest[name]))
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="manifest entry, e.g. university1652, cvusa, cvact, geosynth")
    parser.add_argument("--root", required=True, help="folder holding the dataset")
    parser.add_argument(
        "--manifest", default=None, help="manifest file (default: the repository's)"
    )


def main(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.manifest)
    report = verify_dataset(args.name, args.root, manifest)
    if not report.ok:
        raise DatasetError(format_failure(report, manifest[args.name]))
    print(
        f"{args.name} at {args.root}: OK ({len(report.checked)} checks: {', '.join(report.checked)})"
    )
    return 0
