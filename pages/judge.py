"""Be the judge: "who is this?" Each voter sees one reconstruction and k real private faces (the attacked
identity's and k-1 others', the same for every voter of a round) and picks one or "none of them". Votes from
every browser session go to the workspace registry (mivis/votes.py); the tally (human top-1 with its
interval, chance 1/k) and the agreement with E and dlib update live. Works on the shipped demo with no models."""
import hashlib

import streamlit as st

from mivis import ui

ui.ensure_router()

from mivis import votes as V  # noqa: E402
from mivis.evaluation.agreement import E, HUMANS, e_false_positive  # noqa: E402
from mivis.params import Param  # noqa: E402

PAGE = "judge"
LABELS = [str(i) for i in range(1, 11)]  # numbers, not letters: "face E" read as the evaluation model E
st.title("Be the judge")
st.markdown("An evaluation model **E** decides whether an attack worked, but E learned from the same private "
            "photos as the attacked model, so a reconstruction can fool both without looking like the person. "
            "**You** never trained on anything: look at the reconstruction and pick the real person it shows, "
            "or *none of them*. Every vote in this classroom counts towards one tally.")
knobs = ui.Knobs(PAGE)
ws = ui.workspace()
sid = ui.session_id()
sources = V.sources(ws)


def source_label(key: str) -> str:
    if key == V.DEMO:
        return "The demo: GMI against a ResNet-18 on ORL (no models needed)"
    return ui.run_label(ws.get(key))


was = st.session_state.get(knobs.key("run"))  # the run this session was judging, if it has been deleted since
if was not in (None, *sources) and not ws.exists(str(was)):
    st.warning(f"Run {ui.plain(str(was)[:80])} was deleted: its reconstructions can no longer be judged; the demo "
               "is shown instead.", icon=":material/delete:")
c1, c2 = st.columns([3, 1])
key = knobs.widget(Param("run", str, V.DEMO, "the reconstructions to judge", choices=tuple(sources)),
                   label="Reconstructions", container=c1, sticky=True, format_func=source_label)


@st.cache_resource(show_spinner="Loading the reconstructions and real faces", max_entries=8)
def ballot(key: str, ws_path: str) -> V.Ballot:
    """A finished attack's ballot never changes: loaded once per server, shared by every session."""
    return V.load_ballot(ui.workspace(), key)


try:
    b = ballot(key, str(ws.path))
except Exception as e:
    ui.error(e)
    knobs.finish()
    st.stop()
if st.session_state.get(f"{PAGE}:k", V.K_MIN) > b.k_max:  # a ballot with fewer real faces than the last one
    st.session_state[f"{PAGE}:k"] = b.k_max
k = knobs.widget(Param("k", int, min(V.K_DEFAULT, b.k_max), "how many real faces to choose from (chance is 1/k)",
                       min=V.K_MIN, max=b.k_max), label="Faces to choose from", container=c2)
rnd = V.current_round(ws, key)

# this session's own order of the items (the class does not all look at the same face at once)
order = sorted(range(len(b)), key=lambda i: hashlib.sha256(f"{sid}:{key}:{rnd}:{i}".encode()).hexdigest())
done = V.voted_items(ws, key, sid)
todo = [i for i in order if i not in done]

ask, tally_box = st.columns([3, 2], gap="large")
with ask:
    last = st.session_state.get(f"{PAGE}:last")
    if last and last["key"] == key and last["round"] == rnd:
        if last["correct"]:
            st.success(f"Right: it was face {last['face']}.", icon=":material/check_circle:")
        elif last["face"]:
            st.warning(f"Not quite: it was face {last['face']}.", icon=":material/cancel:")
    if not todo:
        st.info(f"You have judged all {len(b)} reconstructions of round {rnd}. The tally on the right keeps "
                "updating while others vote.", icon=":material/how_to_vote:")
    else:
        item = todo[0]
        shown = b.candidates(item, k, rnd)
        st.subheader(f"Who is this? ({len(done) + 1} of {len(b)})")
        st.image(ui.crisp(b.recon[item], 192), caption="the attack's reconstruction")
        st.markdown("**Real private faces:**")
        cols = st.columns(k)

        def vote(choice: int) -> None:
            if V.current_round(ws, key) != rnd:  # reset by the teacher since this question was drawn
                st.session_state[f"{PAGE}:error"] = "The teacher started a new round: here is its first question."
                return
            try:
                r = V.cast_vote(ws, b, item, sid, k, choice)
            except Exception as e:  # e.g. a second click on the same item, or a reset meanwhile
                st.session_state[f"{PAGE}:error"] = ui.one_line(e)
                return
            st.session_state[f"{PAGE}:last"] = {"key": key, "round": r["round"], "correct": r["correct"],
                                                "face": LABELS[shown.index(r["truth"])]}

        for i, (col, c) in enumerate(zip(cols, shown)):
            col.image(ui.crisp(b.gallery[c], 96), caption=f"face {LABELS[i]}")
            col.button(LABELS[i], key=f"{PAGE}:v:{key}:{rnd}:{item}:{i}", on_click=vote, args=(c,),
                       width="stretch")
        st.button("None of them", key=f"{PAGE}:v:{key}:{rnd}:{item}:none", on_click=vote, args=(V.NONE,),
                  icon=":material/block:")
        err = st.session_state.pop(f"{PAGE}:error", None)
        if err:
            st.error(err)
    if key == V.DEMO:
        st.caption(ui.ORL_CREDIT + ". Each reconstruction is the restart the target found most likely.")


@st.fragment(run_every=2)
def live_tally() -> None:
    """Re-reads the registry every 2 s: votes from other sessions appear without a click."""
    if key != V.DEMO and not ws.exists(key):  # deleted while this page is open: one line, not an exception box
        st.warning(f"Run `{key}` was deleted: its tally is gone with it; choose other reconstructions.",
                   icon=":material/delete:")
        return
    t = V.tally(ws, key, n_boot=1000)
    st.subheader(f"Class tally · round {t['round']}")
    ui.metric_row([
        {"label": "Human top-1", "value": t["accuracy"] or {"value": None},
         "help": "share of votes naming the attacked person; 95% bootstrap over identities"},
        {"label": "Chance", "value": t["chance"] if t["votes"] else 1 / k,
         "help": "a blind guess among the k faces: mean 1/k over the votes (before any vote: 1/k of this page)"}],
        per_row=1)  # a narrow column: two cards side by side read "Human t…" and "20.…" at 1024 px
    st.markdown(f"votes: **{t['votes']}** · voters: **{t['voters']}** · reconstructions judged: {t['items']} of "
                f"{len(b)}" + (f" · 'none of them': {100 * t['none_share']:.0f}%" if t["votes"] else ""))
    try:
        j = V.judges(ws, key, n_boot=1000)
    except Exception as e:
        st.caption(f"No comparison with the machine judges: {ui.one_line(e)}")
        return
    acc = [{"judge": {E: "E (evaluation model)", HUMANS: "humans (this round)"}.get(n, n),
            "top-1 [95% CI]": ui.metric_text(m), "per": m["unit"]}
           for n, m in j["accuracy"].items()]
    if acc:
        st.dataframe(acc, hide_index=True)
    fp = e_false_positive(j)
    for other, m in fp.items():
        if m.get("value") is not None:
            st.markdown(f"Of E's *correct* verdicts, **{ui.metric_text(m)}** are called wrong by {other} "
                        f"(per {m['unit']}): E's false-positive share.")
    if key == V.DEMO:
        st.caption("On the demo the machine judges' verdicts are known for the shown reconstructions only" +
                   ("." if "dlib" in b.machine else "; dlib was not run on it (this demo predates the independent "
                    "judge)."))


with tally_box:
    live_tally()

with st.expander("Teacher: reset this round", icon=":material/restart_alt:"):
    st.markdown("A new round starts counting from zero and draws new candidate faces; the votes so far stay "
                "stored (`python -m mivis judge tally RUN` shows the current round, `judge reset RUN` resets).")
    sure = st.checkbox("Yes, start a new round for everyone", key=f"{PAGE}:sure")

    def reset() -> None:
        V.reset_round(ws, key)
        st.session_state.pop(f"{PAGE}:last", None)
        st.session_state[f"{PAGE}:sure"] = False

    st.button("Reset round", disabled=not sure, key=f"{PAGE}:reset", icon=":material/restart_alt:", on_click=reset)
knobs.finish()
