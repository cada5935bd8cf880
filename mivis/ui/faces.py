"""Faces and image grids: crisp upscaling of small faces, paged tall grids, real faces next to their
reconstructions framed by the judge's verdict, attribution overlays."""
from __future__ import annotations

import io

import streamlit as st


def crisp(img, size: int = 128):
    """Upscale a small uint8 image (H, W[, C]) with nearest neighbour so faces stay sharp."""
    import numpy as np
    from PIL import Image
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    im = Image.fromarray(arr)
    factor = max(1, size // max(im.size))
    return im.resize((im.size[0] * factor, im.size[1] * factor), Image.NEAREST) if factor > 1 else im


def png_scaled(path, max_width: int = 1000, factor: int = 2):
    """A PNG grid upscaled by a whole factor (nearest neighbour) when it stays under max_width."""
    from PIL import Image
    with Image.open(path) as im:
        im.load()
        w, h = im.size
        f = factor if w * factor <= max_width else 1
        return im.resize((w * f, h * f), Image.NEAREST) if f > 1 else im.copy()


def png_row_pages(path, row_height: int, *, per_page: int = 10, key: str, pad: int = 2, caption: str = "") -> None:
    """A tall grid PNG (one row per identity, e.g. an attack's reconstructions.png) shown `per_page`
    rows at a time with a page picker, instead of one image thousands of pixels high."""
    from PIL import Image
    with Image.open(path) as im:
        im.load()
        w, h = im.size
        n_rows = max(1, round((h - pad) / row_height))
        pages = max(1, -(-n_rows // per_page))
        page = st.number_input(f"Page (of {pages}, {per_page} rows each)", 1, pages, 1, key=key) \
            if pages > 1 else 1
        top = (page - 1) * per_page * row_height
        bottom = min(h, top + per_page * row_height + pad)
        crop = im.crop((0, top, w, bottom))
    f = 2 if w * 2 <= 1000 else 1
    # the caption goes below, not into st.image: a caption wider than a narrow grid (one reconstruction per
    # identity) widened the element, and the image was stretched with it (four times the width, in pixels)
    st.image(crop.resize((w * f, crop.size[1] * f), Image.NEAREST) if f > 1 else crop, width="content")
    text = caption + (f" Rows {(page - 1) * per_page + 1}-{min(n_rows, page * per_page)} of {n_rows}."
                      if pages > 1 else "")
    if text.strip():
        st.caption(text)


def png_crisp(path_or_bytes, size: int = 128):
    from PIL import Image
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else path_or_bytes
    with Image.open(src) as im:
        im.load()
        w, h = im.size
        factor = max(1, size // max(w, h))
        return im.resize((w * factor, h * factor), Image.NEAREST) if factor > 1 else im.copy()


def _face_image(src, size: int, correct: bool | None = None, frame: bool = False):
    """A face from a uint8 array or a PNG path/bytes, upscaled; framed in the verdict's colour."""
    import numpy as np
    from PIL import Image

    from ..figures import framed
    if hasattr(src, "shape"):
        arr = np.asarray(src)
    else:
        with Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src) as im:
            arr = np.asarray(im.convert("L") if im.mode in ("L", "I", "P", "1") else im.convert("RGB"))
    return framed(arr, correct, size) if frame else crisp(arr, size)


def face_pairs(pairs: list[dict], per_row: int = 5, size: int = 72, rows: list[tuple[str, str]] | None = None,
               judges: list[tuple[str, str]] | None = None) -> None:
    """One bordered card per identity, its faces side by side: the real private face, then its
    reconstruction under each model, labelled with the model's name, in a frame coloured by the (first)
    judge's verdict AND captioned with a symbol and words (✓ right / ✗ wrong: judged as s7), and under a
    wrong verdict the real face of the identity the judge picked ("this is s7"). The cards wrap to the
    page's width (two a row at 1024 px, three at 1400 px). Faces go out as PNG (a JPEG blurs the
    upscaled pixels).

    Each pair: {"identity", "real" (uint8 array or PNG path/bytes), "recon" (same), "correct" (bool or
    None), "likelihood" (float or None), "predicted" (label), "predicted_real" (image, optional),
    "votes" (words on the class's votes, optional), "<key>": {"recon", "correct", "likelihood",
    "predicted", "predicted_real", ...} for further models}.
    rows: [(key, model label)] of the models to show, "" for the pair itself (default: [("", "")]).
    judges: [(key, judge label)] when a face carries several judges' verdicts: "" = the verdict fields of
    the face itself, else a sub-dict {"correct", "predicted", "predicted_real"} under that key; the frame
    follows the first judge with a verdict, the caption gives every judge's verdict in words, in this
    order, each led by the judge's label ("dlib ✗ wrong: judged as s7"); a person named by a wrong verdict
    is shown once ("this is s7"; its alt text names the judges). Default: one unnamed judge, the face's own fields.
    per_row: unused (the cards wrap by themselves); kept for callers."""
    from ..figures import verdict_text
    models = rows or [("", "")]
    named = judges is not None
    judges = judges or [("", "")]
    # widths in px: two cards a row fit the main block at 1024 px (564 px inside its padding, 16 px between
    # cards; a bordered card adds 34 px of padding and border), three at 1400 px
    real_w, col_w = size - 4, size + 12
    card_w = real_w + len(models) * col_w + 34
    with st.container(horizontal=True, wrap=True, gap="small"):
        for pr in pairs:
            who = pr.get("identity", "")
            with st.container(border=True, width=card_w, gap="xsmall"):
                st.markdown(f"**Identity {who}**")
                with st.container(horizontal=True, wrap=False, gap=None):
                    with st.container(width=real_w, gap="xxsmall"):
                        st.markdown("**Real face**")
                        if pr.get("real") is not None:
                            st.image(_face_image(pr["real"], size - 8), width="content", output_format="PNG",
                                     alt=f"a real private training face of {who}")
                    for key, label in models:
                        v = pr.get(key) if key else pr
                        if not v or v.get("recon") is None:
                            continue
                        verdicts = [(jl, jv) for jl, jv in ((jl, v.get(jk) if jk else v) for jk, jl in judges)
                                    if isinstance(jv, dict) and jv.get("correct") is not None]
                        frame = verdicts[0][1]["correct"] if verdicts else None
                        with st.container(width=col_w, gap="xxsmall"):
                            st.markdown(f"**{label}**" if label else "Attack")
                            lines = [(f"{jl} " if jl else "") + verdict_text(jv["correct"], jv.get("predicted"))
                                     for jl, jv in verdicts]
                            alt = f"the attack's reconstruction of {who}" + (f" under {label}" if label else "") \
                                + (f": {'; '.join(lines)}" if lines else "")
                            st.image(_face_image(v["recon"], size, frame, frame=True), width="content",
                                     output_format="PNG", alt=alt)
                            lk = v.get("likelihood")
                            extra = ([f"confidence {lk:.1%}"] if lk is not None else []) + \
                                ([v["votes"]] if v.get("votes") else [])
                            st.caption("  \n".join(lines + extra))
                            faces: dict[str, list] = {}  # a named person -> [judges, their face]
                            for jl, jv in verdicts:
                                if jv["correct"] is False and jv.get("predicted_real") is not None:
                                    faces.setdefault(jv.get("predicted"), [[], jv["predicted_real"]])[0].append(jl)
                            for person, (by, img) in faces.items():  # short caption: a longer one stretches it
                                st.image(_face_image(img, size - 8), width="content", output_format="PNG",
                                         caption=f"this is {person}",
                                         alt=f"a real face of {person}, the identity the judge picked" +
                                         (f" ({', '.join(by)})" if named else ""))


def to_display(img) -> "np.ndarray":
    """A [-1, 1] float image (C, H, W) -> uint8 (H, W) or (H, W, 3) for display."""
    from ..figures import to_display as _to_display
    return _to_display(img)


def overlay(img, amap, size: int = 192, alpha: float = 0.65):
    """Grey image with a signed attribution map on top (red = raises the class score, blue = lowers
    it), saturating at the map's 99th percentile (mivis.figures.overlay)."""
    from ..figures import overlay as _overlay
    return _overlay(img, amap, size, alpha)
