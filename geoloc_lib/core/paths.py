"""Where the repository's own files are (the package is installed editable from the checkout)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
REPORTS_DIR = REPO_ROOT / "reports"
PROFILES_FILE = REPO_ROOT / "configs" / "profiles.yaml"
MANIFEST_FILE = REPO_ROOT / "data_manifest.yaml"
