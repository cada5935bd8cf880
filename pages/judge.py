"""Be the judge: "who is this?" A teacher opens a round (teacher key, README); each voter sees one reconstruction
and the round's k real private faces (the attacked identity's and k-1 others', the same faces for everyone, in
an order shuffled per voter) and picks one or "none of them". One vote per item per voter (a browser id in a
cookie, ui/voter.py); nobody sees an answer until the teacher reveals the round. Then the class's top-1 stands
beside E's and dlib's on the same line-up (chance 1/k), with their 1-of-N figures apart. Works on the shipped
demo with no models."""
import hashlib

import streamlit as st

from mivis import ui

ui.ensure_router()

from mivis import votes as V  # noqa: E402
from mivis.params import Param  # noqa: E402

PAGE = "judge"
LABELS = [str(i) for i in range(1, 11)]  # numbers, not letters: "face E" read as the evaluation model E
TEACHER = f"{PAGE}:teacher"  # session state: this session typed the right key
st.title("Be the judge")
knobs = ui.Knobs(PAGE)
ws = ui.workspace()
vid = ui.voter_id()
sources = V.sources(ws)


def source_label(key: str) -> str:
    if key == V.DEMO:
        return "The demo: GMI against a ResNet-18 on ORL (no models needed)"
    return ui.run_label(ws.get(key)) if ws.exists(key) else f"{key} (deleted)"


was = st.session_state.get(knobs.key("run"))  # the run this session was judging, if it has been deleted since
if was not in (None, *sources) and not ws.exists(str(was)):
    st.warning(f"Run {ui.plain(str(was)[:80])} was deleted: its reconstructions can no longer be judged; the demo "
               "is shown instead.", icon=":material/delete:")
key = knobs.widget(Param("run", str, V.DEMO, "the reconstructions to judge", choices=tuple(sources)),
                   label="Reconstructions", sticky=True, format_func=source_label)


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
info = V.round_info(ws, key)
rnd, k, state = info["round"], info["k"], info["state"]
is_teacher = st.session_state.get(TEACHER) is True
mine = V.my_votes(ws, key, vid)
# a stable order per voter: the class does not all look at the same face at once
todo = sorted((i for i in range(len(b)) if i not in mine),
              key=lambda i: hashlib.sha256(f"{vid}:{key}:{rnd}:{i}".encode()).hexdigest())

ask = st.container()
with ask:
    if state == V.WAITING:
        st.info("Waiting for the teacher to open a round. The page updates by itself.", icon=":material/hourglass:")
    elif state == V.OPEN and todo:
        item = todo[0]
        shown = b.candidates(item, k, rnd, voter=vid)
        st.markdown(f"**Round {rnd} · who is this? ({len(mine) + 1} of {len(b)})** Pick the real person the "
                    "reconstruction shows, or *none of them*.")

        def vote(choice: int) -> None:
            now = V.round_info(ws, key)
            if (now["round"], now["state"]) != (rnd, V.OPEN):
                st.session_state[f"{PAGE}:error"] = ("The teacher started a new round: here is its first question."
                                                     if now["round"] != rnd else "This round's voting has ended.")
                return
            try:
                V.cast_vote(ws, b, item, vid, k, choice)
            except Exception as e:  # e.g. a second click on the same item from another tab
                st.session_state[f"{PAGE}:error"] = ui.one_line(e)

        cols = st.columns([1.3] + [1] * k, gap="small")
        cols[0].image(ui.crisp(b.recon[item], 128), caption="reconstruction", width="stretch")
        for i, (col, c) in enumerate(zip(cols[1:], shown)):
            col.image(ui.crisp(b.gallery[c], 96), width="stretch")
            col.button(LABELS[i], key=f"{PAGE}:v:{key}:{rnd}:{item}:{i}", on_click=vote, args=(c,),
                       width="stretch", help=f"face {LABELS[i]} is the person in the reconstruction")
        st.button("None of them", key=f"{PAGE}:v:{key}:{rnd}:{item}:none", on_click=vote, args=(V.NONE,),
                  icon=":material/block:")
    elif state == V.OPEN:
        st.info(f"You have judged all {len(b)} reconstructions of round {rnd}. The answers come when the teacher "
                "reveals the round.", icon=":material/how_to_vote:")
    elif state == V.CLOSED:
        st.info(f"Round {rnd} is closed. The answers come when the teacher reveals them.", icon=":material/lock:")
    err = st.session_state.pop(f"{PAGE}:error", None)
    if err:
        st.error(err)

def pair_image(recon, real, size: int = 64):
    """The reconstruction and the real face side by side, each fitted into size x size (one image per card)."""
    from PIL import Image
    out = Image.new("L" if recon.shape[-1] == 1 and real.shape[-1] == 1 else "RGB", (2 * size + 4, size), "white")
    for j, face in enumerate((recon, real)):
        im = ui.crisp(face, size)
        im.thumbnail((size, size), Image.NEAREST)
        out.paste(im.convert(out.mode), (j * (size + 4) + (size - im.size[0]) // 2, (size - im.size[1]) // 2))
    return out


if state == V.REVEALED:
    right = sum(c == b.identity[i] for i, c in mine.items())
    st.success(f"Round {rnd} revealed: " + (f"you named the right person in {right} of your {len(mine)} votes."
                                            if mine else "you did not vote in it."), icon=":material/visibility:")
    st.caption("Each card: the reconstruction (left) and the person it was (right), with your vote.")
    per_row = 5  # one card of two faces each, five a row: fits 1024 px with the sidebar open
    for start in range(0, len(b), per_row):
        cols = st.columns(per_row)
        for col, i in zip(cols, range(start, min(start + per_row, len(b)))):
            mark = ("✓ right" if mine[i] == b.identity[i] else "none of them" if mine[i] == V.NONE
                    else "✗ wrong") if i in mine else "no vote"
            col.image(pair_image(b.recon[i], b.gallery[b.identity[i]]), caption=f"#{i + 1} · you: {mark}",
                      width="stretch")
if key == V.DEMO:
    st.caption(ui.ORL_CREDIT + ". Each reconstruction is the restart the target found most likely.")


def missing_words(missing: dict) -> str:
    why = set(missing.values())
    if len(why) == 1:
        return f" {' and '.join(missing)}: {why.pop()}."
    return "".join(f" {j}: {w}." for j, w in missing.items())


def comparison() -> None:
    """The class, E and dlib on the same line-up (chance 1/k), then E and dlib on all N identities, apart."""
    line = V.lineup(ws, b, n_boot=1000)
    names = {"humans": "the class (per vote)", "E": "E, the evaluation model", "dlib": "dlib face embedding"}

    def judged(r: dict) -> str:
        on = f"{r['items']} reconstruction{'s' if r['items'] != 1 else ''}"
        if r["judge"] == "humans":
            return f"{r['votes']} vote{'s' if r['votes'] != 1 else ''} on {on}"
        return on + (" (those the class voted on)" if r["subset"] == "voted" else " (all)")
    rows = [{"judge": names.get(r["judge"], r["judge"]), f"top-1 of {line['k']}": ui.metric_text(
        r if r["n"] >= V.MIN_IDENTITIES_FOR_INTERVAL else r | {"lo": None, "hi": None}),
        "judged": judged(r), "chance": f"{100 * line['chance']:.0f}%"} for r in line["rows"]]
    st.markdown(f"**Same line-up: {line['k']} faces, chance {100 * line['chance']:.0f}%**")
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")
    st.caption("Every judge picks among the same k faces for the same reconstructions: E the candidate it rates "
               "likeliest, dlib the face nearest in its embedding (neither may say 'none of them'). The class is "
               "scored on the reconstructions it voted on; when that is not all of them, E and dlib are also "
               "scored on those alone, the rows to set beside the class. A machine far above the class there "
               "recognises the person where people do not." + missing_words(line["missing"]))
    if key != V.DEMO and b.n_classes:
        try:
            j = V.judges(ws, key, n_boot=1000)
        except Exception as e:
            st.caption(f"No 1-of-{b.n_classes} figures: {ui.one_line(e)}")
            return
        one_of_n = [{"judge": names.get(n, n), f"top-1 of all {b.n_classes}": ui.metric_text(m),
                     "chance": f"{100 / b.n_classes:.1f}%"} for n, m in j["accuracy"].items() if n != "humans"]
        if one_of_n:
            st.markdown(f"**Another question: which of all {b.n_classes} private identities? (chance "
                        f"{100 / b.n_classes:.1f}%)** E and dlib on every reconstruction; not comparable with the "
                        "line-up above.")
            st.dataframe(one_of_n, hide_index=True, width="stretch")


@st.fragment(run_every=2)
def live_tally() -> None:
    """Re-reads the registry every 2 s: votes from other sessions appear without a click; a round the teacher
    opened, revealed or closed meanwhile reruns the page."""
    if key != V.DEMO and not ws.exists(key):
        st.warning("This attack run was deleted (with its votes): pick other reconstructions above.",
                   icon=":material/delete:")
        return
    now = V.round_info(ws, key)
    if (now["round"], now["state"]) != (rnd, state):
        st.rerun()
    t = V.tally(ws, key, n_boot=1000)
    st.markdown(f"**Class tally · round {t['round']}** · votes: **{t['votes']}** · voters: **{t['voters']}** · "
                f"reconstructions judged: {t['items']} of {len(b)}")
    if state == V.REVEALED or st.session_state.get(TEACHER) is True:
        if t["votes"]:
            acc = t["accuracy"]
            n_id = acc["n"]
            st.markdown(f"Class top-1: **{ui.metric_text(acc)}** (chance {100 * t['chance']:.0f}%; 'none of them' "
                        f"{100 * t['none_share']:.0f}%)" + ("" if acc.get("lo") is not None else
                        f" · the 95% interval shows from votes on {V.MIN_IDENTITIES_FOR_INTERVAL} different people "
                        f"on (now {n_id})"))
        comparison()
    elif state == V.OPEN:
        st.caption("The class's score and the machine judges' come when the teacher reveals the round.")


def unlock_early() -> None:
    """A click on "Unlock" or "Create the teacher key" takes effect here, before the tally fragment draws,
    in this same run: no st.rerun() from inside the Teacher expander (a rerun requested there while the 2 s
    tally fragment refreshed lost the expander's content in the browser test under load)."""
    if st.session_state.get(TEACHER):
        return
    try:
        if st.session_state.get(f"{PAGE}:newkey") and V.teacher_key_source(ws) is None:
            st.session_state[f"{PAGE}:shown_key"] = V.new_teacher_key(ws)
            st.session_state[TEACHER] = True
        elif st.session_state.get(f"{PAGE}:unlock"):
            V.check_teacher(ws, st.session_state.get(f"{PAGE}:key") or "")
            st.session_state[TEACHER] = True
    except Exception as e:
        st.session_state[f"{PAGE}:login_error"] = ui.one_line(e)


unlock_early()
live_tally()


def teacher_panel() -> None:
    if not st.session_state.get(TEACHER):
        if V.teacher_key_source(ws) is None:
            st.markdown("No teacher key yet. Create it here (it is shown once; keep it), or start the server with "
                        f"`{V.TEACHER_ENV}` set, or run `python -m mivis judge key --new`.")
            st.button("Create the teacher key", key=f"{PAGE}:newkey", icon=":material/key:")
        else:
            with st.form(f"{PAGE}:login", border=False):
                st.text_input("Teacher key", type="password", key=f"{PAGE}:key")
                st.form_submit_button("Unlock the teacher's controls", key=f"{PAGE}:unlock",
                                      icon=":material/lock_open:")
        if f"{PAGE}:login_error" in st.session_state:
            st.error(st.session_state.pop(f"{PAGE}:login_error"))
        return
    shown = st.session_state.pop(f"{PAGE}:shown_key", None)
    if shown:
        st.success(f"Your teacher key: **{shown}** (shown only now; type it in on any browser to teach).",
                   icon=":material/key:")
    t = V.Teacher("key")
    kk = st.slider("Faces to choose from in the next round (chance 1/k)", V.K_MIN, b.k_max,
                   min(k or V.K_DEFAULT, b.k_max), key=f"{PAGE}:k")
    c1, c2, c3 = st.columns(3)
    msg = f"{PAGE}:teacher_msg"

    def act(what: str) -> None:
        try:
            if what == "open":
                V.open_round(ws, b, kk, t)
                if key != V.DEMO:
                    V.lineup(ws, b, n_boot=10, compute=True)  # E and dlib on this run's line-ups (a few seconds)
                st.session_state[msg] = f"Round {V.current_round(ws, key)} is open with {kk} faces."
            elif what == "reveal":
                V.reveal_round(ws, key, t)
                st.session_state[msg] = "Answers revealed; voting in this round has ended."
            else:
                V.close_round(ws, key, t)
                st.session_state[msg] = "Round closed."
        except Exception as e:
            st.session_state[msg] = "Refused: " + ui.one_line(e)

    c1.button("Open a new round" if state != V.WAITING else "Open the round", key=f"{PAGE}:open",
              icon=":material/play_arrow:", on_click=act, args=("open",), width="stretch")
    c2.button("Reveal the answers", key=f"{PAGE}:reveal", icon=":material/visibility:", on_click=act,
              args=("reveal",), disabled=state not in (V.OPEN, V.CLOSED), width="stretch")
    c3.button("Close without revealing", key=f"{PAGE}:close", icon=":material/lock:", on_click=act,
              args=("close",), disabled=state != V.OPEN, width="stretch")
    if st.session_state.get(msg):
        st.caption(st.session_state.pop(msg))
    st.caption("A new round counts from zero and draws new line-ups; earlier votes stay stored. From the server: "
               "`python -m mivis judge open|reveal|close|tally RUN`.")


with st.expander("Teacher", icon=":material/school:", key=f"{PAGE}:teacher_box"):  # one identity: unlocking reruns inside it
    teacher_panel()
with st.expander("What is this?", icon=":material/help:"):
    st.markdown("An evaluation model **E** decides whether an attack worked, but E learned from the same private "
                "photos as the attacked model, so a reconstruction can fool both without looking like the person. "
                "**You** never trained on anything: look at the reconstruction and pick the real person it shows, "
                "or *none of them*. Every vote in this classroom counts towards one tally; each browser votes "
                "once per reconstruction and round.")
ui.remember_voter(vid)
knobs.finish()
