"""mivis/ui/ is the library's one UI-helper unit: the only part of mivis that imports streamlit, and the
whole surface the pages call as `ui.X`."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "mivis"


def _imports_streamlit(path: Path) -> list[int]:
    """Line numbers of every `import streamlit...` / `from streamlit... import` in a file (also inside functions)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "streamlit" for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "streamlit" and not node.level:
            lines.append(node.lineno)
    return lines


def test_only_the_ui_package_imports_streamlit():
    ui_dir = PKG / "ui"
    assert ui_dir.is_dir() and not (PKG / "ui.py").exists()
    offenders = {str(p.relative_to(ROOT)): _imports_streamlit(p) for p in sorted(PKG.rglob("*.py"))
                 if ui_dir not in p.parents}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"streamlit imported outside mivis/ui/: {offenders}"
    assert _imports_streamlit(ui_dir / "knobs.py")  # the scan does see an import where there is one
    assert not _imports_streamlit(ui_dir / "words.py")  # the words are plain functions


def test_the_library_and_cli_load_without_streamlit():
    code = ("import sys, mivis, mivis.cli, mivis.jobs, mivis.figures, mivis.train, mivis.attacks, mivis.evaluation, "
            "mivis.classroom, mivis.votes; print('streamlit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_every_ui_name_the_pages_use_exists():
    from mivis import ui
    used = set()
    for f in [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]:
        used |= set(re.findall(r"\bui\.([A-Za-z_][A-Za-z0-9_]*)", f.read_text()))
    assert len(used) > 30
    missing = sorted(n for n in used if not hasattr(ui, n))
    assert not missing, f"pages call ui.{missing} which mivis.ui does not export"
    assert set(ui.__all__) >= used
