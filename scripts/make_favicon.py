"""Draw assets/favicon.png, the app's page icon (a face crossed out: model inversion), with PIL.

The icon is served by the app itself: a Material icon name as page_icon makes the browser fetch it
from a font host, which fails offline. Re-running this script rebuilds the same file.

    python scripts/make_favicon.py
"""
from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "assets" / "favicon.png"


def draw(size: int = 64):
    from PIL import Image, ImageDraw
    s = 4  # draw large, then shrink: smooth edges without anti-aliasing support in ImageDraw
    n = size * s
    im = Image.new("RGBA", (n, n), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    blue, red = (43, 108, 176, 255), (198, 40, 40, 255)
    d.ellipse([n * 0.14, n * 0.08, n * 0.86, n * 0.92], outline=blue, width=int(n * 0.07))
    for cx in (0.38, 0.62):
        d.ellipse([n * (cx - 0.055), n * 0.36, n * (cx + 0.055), n * 0.47], fill=blue)
    d.arc([n * 0.34, n * 0.50, n * 0.66, n * 0.74], start=20, end=160, fill=blue, width=int(n * 0.05))
    d.line([n * 0.12, n * 0.88, n * 0.88, n * 0.12], fill=red, width=int(n * 0.08))
    return im.resize((size, size), Image.LANCZOS)


def main() -> int:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    draw().save(OUT, format="PNG", optimize=False)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
