"""Home: what model inversion is, and a finished demo result at once (rendered from assets/demo/)."""
import os
from pathlib import Path

import streamlit as st

from mivis import ui

ui.ensure_router()

st.title("mivis: a model-inversion explorer")
st.markdown(
    "A **model-inversion attack** takes a trained face classifier and asks it, class by class, *what does "
    "this person look like?* The attacker holds the model (white-box) and photos of **other** people. It "
    "trains an image prior on those public photos, then searches the prior for images the classifier "
    "labels as the target identity. If a judge recognises the reconstruction as that person, private training "
    "data has leaked. mivis asks three: **dlib**, an independent face recogniser that never learned from these "
    "people; an **evaluation model E**, trained on the same private photos (so a reconstruction can fool it "
    "along with the attacked model); and **you**, on *Be the judge*.\n\n"
    "Recent papers argue the **architecture** decides how much leaks: skip connections carry the attack's "
    "gradient (RoLSS / SSF / TTS remove or scale them), training fewer parameters on private data helps "
    "(TL-DMI), and so does a low-rank head with moderated confidence (CALoR). Here you can change those "
    "knobs, train, attack, and see the result.")

ui.demo_result(Path(os.environ.get("MIVIS_DEMO") or ui.ASSETS / "demo"))
