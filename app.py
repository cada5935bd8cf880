"""mivis entry point: `streamlit run app.py`."""
import streamlit as st

st.set_page_config(page_title="mivis: model-inversion explorer", layout="wide")
st.title("mivis")
st.write("An interactive explorer of model-inversion attacks and architecture-level defenses.")
