"""The library's one UI-helper unit, and the only part of mivis that imports streamlit. Pages use it as
`from mivis import ui` and call `ui.X`; each helper lives in the module a page's author would look in:

    session   paths (ROOT, ASSETS), the page router, the workspace, the shared job manager, the session id
    errors    one message instead of an exception box: guard, damaged, run_page
    words     plain words first, the symbol after: parameter / metric / defense labels, intervals, plain()
    knobs     widgets generated from Param declarations, values kept in the URL (Knobs, param_input)
    jobs      a page's job panel and the shared queue in the sidebar
    faces     faces and grids: real faces next to reconstructions framed by the verdict, paged grids
    charts    plotly figures, metric cards and tables, downloads
    diagram   the architecture's stage diagram
    demo      Home's precomputed demo
    ceiling   a prior's ceiling beside an attack's accuracy, and the Attack page's ceiling panel
    voter     a voter id that survives reloads and new tabs of the same browser (a cookie)

Pages stay thin: they declare knobs, call the library or submit a job, and render with these.
Nothing here computes results; torch is imported only by the helpers that draw tensors.
"""
from __future__ import annotations

from .ceiling import ceiling_note, ceiling_panel
from .charts import (METRIC_NAMES, MODEL_NAMES, attack_curves, download_json, fisher_bars, likelihood_histogram,
                     metric_row, metrics_table, plot)
from .demo import demo_result
from .diagram import stage_diagram, stage_dot
from .errors import damaged, error, guard, one_line, run_page, user_error_types
from .faces import crisp, face_pairs, overlay, png_crisp, png_row_pages, png_scaled, to_display
from .jobs import (JOB_KEY, POLL_SECONDS, QUEUE_IDLE_SECONDS, current_job, forget_job, job_banner, job_panel,
                   job_status, progress_text, queue_rows, sidebar_jobs, submit_job)
from .knobs import JOB_KEY_URL, Knobs, param_input, read_url_value, to_url, url_choice
from .session import (ASSETS, ORL_CREDIT, ROOT, ensure_router, job_manager, load_split_on_click, session_id,
                      shutdown_managers, workspace)
from .voter import remember_voter, voter_id
from .words import (ATTACK_WORDS, CHOICE_WORDS, DEFENSE_WORDS, FRACTION_METRICS, METRIC_WORDS, PARAM_WORDS,
                    attack_words, choice_words, clip, defense_words, metric_is_fraction, metric_text, metric_words,
                    name_and_id, paired_words, plain, run_label, run_short, settings_differ, skips_words,
                    study_defense_words)

__all__ = [
    "ASSETS", "ATTACK_WORDS", "CHOICE_WORDS", "DEFENSE_WORDS", "FRACTION_METRICS", "JOB_KEY", "JOB_KEY_URL",
    "METRIC_NAMES", "METRIC_WORDS", "MODEL_NAMES", "ORL_CREDIT", "PARAM_WORDS", "POLL_SECONDS",
    "QUEUE_IDLE_SECONDS", "ROOT", "attack_curves", "attack_words", "choice_words", "clip", "crisp", "current_job",
    "damaged", "defense_words", "demo_result", "download_json", "ensure_router", "error", "face_pairs",
    "fisher_bars", "forget_job", "guard", "job_banner", "job_manager", "job_panel", "job_status", "Knobs",
    "likelihood_histogram", "load_split_on_click", "metric_is_fraction", "metric_row", "metric_text",
    "metric_words", "metrics_table", "name_and_id", "one_line", "overlay", "paired_words", "param_input", "plain",
    "plot",
    "png_crisp", "png_row_pages", "png_scaled", "progress_text", "queue_rows", "read_url_value", "run_label",
    "run_page", "run_short", "session_id", "settings_differ", "shutdown_managers", "sidebar_jobs", "skips_words",
    "stage_diagram", "stage_dot", "study_defense_words", "submit_job", "to_display", "to_url", "url_choice",
    "user_error_types", "remember_voter", "voter_id", "workspace",
    "ceiling_note", "ceiling_panel",
]
