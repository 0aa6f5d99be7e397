import sys
from pathlib import Path

# tests/layouts.py holds the fixture-tree writers; make it importable as `layouts`.
sys.path.insert(0, str(Path(__file__).parent))
