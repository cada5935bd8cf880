"""No file in the repository carries a git conflict marker (one slipped into DEVELOPERS.md once)."""
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^(<{7}|>{7})( |$)|^={7}$", re.M)


def tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode:  # an exported tree without git: every text file under the root
        return [p for p in ROOT.rglob("*") if p.suffix in {".py", ".md", ".toml", ".txt", ".sh", ".cfg"}]
    return [ROOT / f for f in out.stdout.splitlines() if Path(f).suffix in {".py", ".md", ".toml", ".txt", ".sh", ".cfg"}]


def test_no_conflict_markers():
    found = []
    for p in tracked_text_files():
        if p.is_file():
            for m in MARKER.finditer(p.read_text(errors="replace")):
                line = p.read_text(errors="replace")[:m.start()].count("\n") + 1
                found.append(f"{p.relative_to(ROOT)}:{line}")
    assert not found, f"git conflict markers in: {', '.join(found[:10])}"


def test_marker_pattern_finds_a_conflict():
    text = "a\n<<<<<<< HEAD\nb\n=======\nc\n>>>>>>> issue-23\n"
    assert len(MARKER.findall(text)) == 3
