"""mivis entry point: `streamlit run app.py`. Routes the pages; the pages and mivis do the rest."""
import streamlit as st

from mivis import ui

# the page icon is a local file (scripts/make_favicon.py): a ":material/..." icon is fetched from a font host,
# which fails offline, and nothing the page shows may come from outside the server
st.set_page_config(page_title="mivis: model-inversion explorer", page_icon=str(ui.ASSETS / "favicon.png"),
                   layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", url_path="home", default=True),
    st.Page("pages/architecture.py", title="Architecture", icon=":material/account_tree:", url_path="architecture"),
    st.Page("pages/attack.py", title="Attack", icon=":material/bolt:", url_path="attack"),
    st.Page("pages/results.py", title="Results", icon=":material/insights:", url_path="results"),
    st.Page("pages/judge.py", title="Be the judge", icon=":material/how_to_vote:", url_path="judge"),
    st.Page("pages/layers.py", title="Layers", icon=":material/stacked_bar_chart:", url_path="layers"),
    st.Page("pages/tradeoff.py", title="Trade-off", icon=":material/scatter_plot:", url_path="tradeoff"),
    st.Page("pages/runs.py", title="Runs", icon=":material/folder_open:", url_path="runs"),
]

page = st.navigation(PAGES)
ui.sidebar_jobs()
ui.run_page(page)  # a damaged run or registry is one message, not an exception box
