"""The dashboard: classify images through the API, browse stored classifications, inspect the model.

When the API serves several models (``GET /models``), the sidebar's model picker chooses the one
images go to (``POST /models/{name}/classify``) and the one the Model tab describes.

Run with ``streamlit run streamlit_app.py``. Configured by the environment:

- ``API_URL``: the API's base URL (default ``http://127.0.0.1:8000``, what ``make serve`` starts);
  for API Gateway, the stage URL (``https://....execute-api....amazonaws.com/prod``).
- ``API_KEY``: sent as ``x-api-key`` when the API requires a key.
- ``API_SIGV4``: ``1`` to sign every call with SigV4 (``api_auth=iam``): with the task role's
  credentials on Fargate, the environment's or profile's locally; ``AWS_REGION`` as the SDKs read it.

Every API call goes through the package's client (:mod:`classifier.client.api`, copied into the image
without the rest of the package); its errors become messages on the page (:mod:`api_errors`), never
a traceback. Streamlit's own settings for every way of running it are in ``.streamlit/config.toml``.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import altair as alt

# Imported here, whole, before anything can look for it: altair and Streamlit use pandas when
# sys.modules has it, and with Streamlit's fast reruns an abandoned run may still be importing it
# (a page then failed with "partially initialized module 'pandas' has no attribute 'Timestamp'").
import pandas  # noqa: F401
import streamlit as st
from PIL import Image, ImageOps

from classifier.client.api import (
    DEFAULT_S3_MAX_BYTES,
    ClassifierClient,
    ClientClassification,
    ClientPrediction,
    ImageFile,
    ModelList,
    ModelState,
    Outcome,
)
from classifier.client.transport import RequestFailed, RetryPolicy
from classifier.config import MiB

from api_errors import headline, image_problem, mib, problem, transient
from formatting import TIMES, md, percent, show_error, when
from history_view import history_tab
from models_view import models_tab

log = logging.getLogger("dashboard")

HERE = Path(__file__).resolve().parent
DEFAULT_API_URL = "http://127.0.0.1:8000"
# A Lambda cold start (model load from EFS) can take several seconds; API
# Gateway itself gives up after 29 s, so waiting longer gains nothing.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
# A person is waiting: one quick second try of a throttled, failed or unreachable
# call (a cold start's 503, a dropped connection), then the page says what happened
# and the next rerun asks again.
RETRY = RetryPolicy(attempts=2, base=0.5, cap=2.0)
# CC0 photographs from scikit-image's data set (see samples/README.md).
SAMPLES = {
    "Chelsea the cat": HERE / "samples" / "chelsea.jpg",
    "Coffee": HERE / "samples" / "coffee.jpg",
}
IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"]
PREVIEW_PIXELS = 640
ACCENT = "#FF4B4B"  # Streamlit's own primary colour: the top prediction
MUTED = "#9AA5B1"


@dataclass(frozen=True)
class ImageItem:
    """An image on screen: ``key`` names it across reruns (an upload's file id, or the sample)."""

    key: str
    image: ImageFile


# -- state ----------------------------------------------------------------------


def client() -> ClassifierClient:
    """One client per browser session, so its HTTP connections are reused between reruns."""
    if "api" not in st.session_state:
        st.session_state.api = ClassifierClient(
            os.environ.get("API_URL") or DEFAULT_API_URL,
            api_key=os.environ.get("API_KEY") or None,
            sigv4=os.environ.get("API_SIGV4", "").strip().lower() in ("1", "true", "yes"),
            timeout=READ_TIMEOUT,
            connect_timeout=CONNECT_TIMEOUT,
            retry=RETRY,
        )
    api: ClassifierClient = st.session_state.api
    return api


def fetch_model(api: ClassifierClient, name: str | None = None) -> tuple[ModelState | None, RequestFailed | None]:
    """``GET /model`` (the API's default model), or ``GET /models/{name}``; or why it failed."""
    try:
        return api.model(name), None
    except RequestFailed as exc:
        return None, exc


def fetch_models(api: ClassifierClient) -> ModelList | None:
    """``GET /models``: the models the API serves (None: it did not say; the banner says why)."""
    try:
        return api.models()
    except RequestFailed:
        return None


def uploads_enabled(api: ClassifierClient) -> bool | None:
    """Whether the API has an uploads bucket (None: it did not say); asked once per session."""
    if "uploads_enabled" not in st.session_state:
        try:
            st.session_state.uploads_enabled = api.uploads_enabled()
        except RequestFailed:
            return None  # the banner already says why the API does not answer; ask again next run
    enabled: bool = st.session_state.uploads_enabled
    return enabled


def classify_once(api: ClassifierClient, items: Sequence[ImageItem], top_k: int,
                  model: str | None = None) -> list[Outcome]:
    """Each image's outcome, asking the API only about images it has not answered yet.

    Streamlit reruns the whole script on every interaction; without this, paging
    through the history would classify (and store) every upload again. Transient
    failures (API down, throttled) are not remembered, so the next rerun retries.
    ``model``: the picked model (None: the API's default).
    """
    done: dict[str, Outcome] = st.session_state.setdefault("outcomes", {})
    keys = [f"{item.key}?top_k={top_k}&model={model or ''}" for item in items]
    answers = {key: done[key] for key in keys if key in done}
    todo = [(key, item) for key, item in zip(keys, items, strict=True) if key not in done]
    if todo:
        label = "Classifying the image…" if len(todo) == 1 else f"Classifying {len(todo)} images…"
        with st.spinner(label):
            outcomes = api.classify_each([item.image for _, item in todo], top_k=top_k, model=model)
        for (key, _), outcome in zip(todo, outcomes, strict=True):
            answers[key] = outcome
            if outcome.error is None or not transient(outcome.error):
                done[key] = outcome
    for stale in set(done) - set(keys):  # images removed from the uploader
        del done[stale]
    return [answers[key] for key in keys]


def upload_limit(inline_max_bytes: int, uploads: bool | None) -> tuple[int, str]:
    """The uploader's per-file limit in MB (Streamlit's MB are MiB) and the sentence that states it.

    The API takes ``inline_max_bytes`` in a request, and up to the S3 limit
    through its uploads bucket when it has one (``uploads``; None: unknown).
    """
    inline, s3 = mib(inline_max_bytes), mib(DEFAULT_S3_MAX_BYTES)
    if uploads:
        return DEFAULT_S3_MAX_BYTES // MiB, f"Up to {s3} per image: over {inline}, through the API's uploads bucket."
    if uploads is None:
        return inline_max_bytes // MiB, f"Up to {inline} per image ({s3} when the API has an uploads bucket)."
    return inline_max_bytes // MiB, (f"Up to {inline} per image: this API has no uploads bucket, which a larger "
                                      f"image (up to {s3}) needs.")


# -- formatting -----------------------------------------------------------------


@st.cache_data(max_entries=256, show_spinner=False)
def preview(key: str, _data: bytes) -> bytes | None:
    """A small, browser-friendly JPEG of an image (TIFF and BMP do not display everywhere), or None."""
    try:
        with Image.open(io.BytesIO(_data)) as image:
            image.thumbnail((PREVIEW_PIXELS * 2, PREVIEW_PIXELS * 2))  # cheap: JPEG draft mode
            shown = ImageOps.exif_transpose(image).convert("RGB")
            shown.thumbnail((PREVIEW_PIXELS, PREVIEW_PIXELS))
            out = io.BytesIO()
            shown.save(out, "JPEG", quality=85)
            return out.getvalue()
    except Exception:  # any undecodable upload: the API's own answer explains why
        return None


def score_chart(predictions: Sequence[ClientPrediction]) -> alt.LayerChart:
    """Horizontal bars, best first, each labelled with its score."""
    rows = [{"label": p["label"], "score": p["score"], "text": percent(p["score"]), "rank": i}
            for i, p in enumerate(predictions)]
    top = max((p["score"] for p in predictions), default=1.0)
    data = alt.Data(values=rows)  # type: ignore[no-untyped-call,unused-ignore]  # inline values: no DataFrame needed
    base = alt.Chart(data).encode(
        y=alt.Y("label:N", sort=alt.EncodingSortField("rank"), title=None,
                axis=alt.Axis(labelLimit=220, ticks=False, domain=False, labelFontSize=13)),
        x=alt.X("score:Q", title=None, axis=None,
                scale=alt.Scale(domain=[0, min(1.0, top * 1.25) or 1.0])),
        tooltip=[alt.Tooltip("label:N", title="label"), alt.Tooltip("score:Q", title="score", format=".4f")],
    )
    bars = base.mark_bar(cornerRadiusEnd=4, size=18).encode(
        color=alt.when(alt.datum.rank == 0).then(alt.value(ACCENT)).otherwise(alt.value(MUTED)),
    )
    labels = base.mark_text(align="left", dx=6, fontSize=12).encode(text="text:N")
    chart: alt.LayerChart = (bars + labels).properties(height=30 * len(rows) + 10)
    return chart


# -- views ----------------------------------------------------------------------


def model_picker(listing: ModelList | None) -> str | None:
    """The sidebar's choice among the served models, when there is more than one; None: the API's default."""
    if listing is None or len(listing["models"]) < 2:
        return None
    default = listing["default"]
    entries = {m["name"]: m for m in listing["models"]}

    def label(name: str) -> str:
        entry = entries[name]
        facts = [f"{entry['labels']} labels" if entry.get("labels") is not None else "no version",
                 *(["default"] if name == default else [])]
        return f"{name} ({', '.join(facts)})"

    names = list(entries)
    picked = st.selectbox("Model", names, index=names.index(default) if default in names else 0, key="model",
                          format_func=label, help="The API serves these models (GET /models); images go to the "
                                                  "one picked, and the Model tab describes it.")
    return None if picked == default else str(picked)


def sidebar(api: ClassifierClient, listing: ModelList | None) -> tuple[int, str | None]:
    """The settings: top-k, and the model picked (None: the API's default)."""
    with st.sidebar:
        st.header("Settings", anchor=False)
        top_k = st.slider("Predictions per image (top-k)", min_value=1, max_value=20, value=5, key="top_k")
        picked = model_picker(listing)
        st.divider()
        st.subheader("API", anchor=False)
        st.code(api.base_url, language=None, wrap_lines=True)
    return int(top_k), picked


def api_status(api: ClassifierClient, model: ModelState | None, model_error: RequestFailed | None) -> None:
    """The sidebar's word on the API and the picked model."""
    with st.sidebar:
        if model_error is not None:
            st.badge(headline(model_error), icon=":material/cloud_off:", color="red")
        elif model is not None and model.get("state") == "loaded":
            st.badge("Model loaded", icon=":material/check_circle:", color="green")
        else:
            st.badge("No model loaded", icon=":material/error:", color="red")
        key_note = "sent as `x-api-key`" if api.api_key else "none (set `API_KEY`)"
        st.caption(f"API key: {key_note}")


def banners(model: ModelState | None, model_error: RequestFailed | None, warnings: Sequence[str]) -> None:
    """What a user must know before reading any prediction."""
    if model_error is not None:
        show_error(problem(model_error))
        return
    if model is not None and model.get("state") != "loaded":
        st.error("**No model is loaded**: the API cannot classify yet.  \n"
                 f"{md(model.get('last_error') or 'publish one with `python -m classifier publish`')}",
                 icon=":material/error:")
    untrained = model is not None and model.get("trained") is False
    if untrained or warnings:
        st.warning(
            "**Untrained model**: the API is serving a ResNet-50 with random weights, so its predictions are "
            "meaningless. Publish trained weights to fix this: "
            "`python -m classifier publish --weights IMAGENET1K_V2` (or a `.pth` file).",
            icon=":material/warning:",
        )


def classify_tab(api: ClassifierClient, top_k: int, model: str | None = None) -> list[ClientClassification]:
    # Streamlit states the limit in the uploader itself ("4MB per file"); it must be what the API takes.
    limit_mb, limit_text = upload_limit(api.inline_max_bytes, uploads_enabled(api))
    uploads = st.file_uploader(
        "Upload images", type=IMAGE_TYPES, accept_multiple_files=True, key="uploads",
        max_upload_size=limit_mb,
        help=f"JPEG, PNG, WebP, GIF, BMP or TIFF. {limit_text} Several files are sent as one batch.",
    )
    with st.container(key="upload-limit"):
        st.caption(limit_text)
    sample = st.pills("Or try a sample photo", list(SAMPLES), key="sample")
    items = [ImageItem(f"upload/{f.file_id}", ImageFile(f.name, f.getvalue(), f.type or None)) for f in uploads or []]
    if sample:
        path = SAMPLES[sample]
        items.append(ImageItem(f"sample/{path.name}", ImageFile(path.name, path.read_bytes(), "image/jpeg")))
    if not items:
        st.info("Upload one or more photos, or pick a sample, to see what ResNet-50 makes of them.",
                icon=":material/photo_library:")
        return []

    outcomes = classify_once(api, items, top_k, model)
    results = [outcome.result for outcome in outcomes if outcome.result is not None]
    if len(outcomes) > 1:
        failed = len(outcomes) - len(results)
        note = f" · **{failed} failed**" if failed else ""
        st.caption(f"{len(results)} of {len(outcomes)} images classified{note}")
    for index, (item, outcome) in enumerate(zip(items, outcomes, strict=True)):
        result_card(index, item, outcome, api.inline_max_bytes)
    return results


def result_card(index: int, item: ImageItem, outcome: Outcome, inline_max_bytes: int) -> None:
    with st.container(border=True, key=f"result-{index}"):
        image_col, info_col = st.columns([2, 3], gap="large")
        with image_col:
            thumbnail = preview(item.key, item.image.data)
            if thumbnail is not None:
                st.image(thumbnail, caption=item.image.name, width="stretch")
            else:
                st.caption(f":material/hide_image: {md(item.image.name)}: no preview")
        with info_col:
            result = outcome.result
            if result is None:
                error = outcome.error or RequestFailed(None, "no_answer", "the API gave no result")
                shown = image_problem(error, via=outcome.via, size=len(item.image.data),
                                      inline_max_bytes=inline_max_bytes)
                show_error(shown, context=f" ({item.image.name})")
                return
            predictions = result["predictions"]
            top = predictions[0]
            with st.container(key=f"top-label-{index}"):
                st.subheader(md(top["label"]), anchor=False)
            st.caption(f"Top prediction, score **{percent(top['score'])}** · top {len(predictions)} below")
            st.altair_chart(score_chart(predictions), width="stretch")
            timing, image = result["timing_ms"], result["image"]
            st.caption(
                f":material/timer: **{timing['total']:.0f} ms** total · {timing['inference']:.0f} ms inference · "
                f"{timing['decode']:.0f} ms decode  \n"
                f":material/image: {md(image['format'])} {image['width']}{TIMES}{image['height']} · "
                f"record `{result['id']}`"
            )


def model_tab(model: ModelState | None, model_error: RequestFailed | None) -> None:
    if model is None:
        show_error(problem(model_error or RequestFailed(None, "no_answer", "the API gave no answer")),
                   context=" (model)")
        return
    if model.get("state") != "loaded":
        st.error(f"**No model is loaded** (backend {md(model.get('backend', '?'))}).  \n"
                 f"{md(model.get('last_error') or 'no details')}", icon=":material/error:")
        return
    with st.container(key="model-version"):
        st.subheader(f"{md(model.get('name', 'model'))} · version `{model.get('version', '?')}`", anchor=False)
    backend_col, trained_col, load_col, threads_col = st.columns(4)
    backend_col.metric("Backend", str(model.get("backend", "?")), border=True)
    trained_col.metric("Trained", "yes" if model.get("trained") else "no", border=True)
    load_col.metric("Load time", f"{model.get('load_ms', 0):.0f} ms", border=True)
    threads_col.metric("Inference threads", str(model.get("threads", "?")), border=True)
    manifest = model.get("manifest") or {}
    prep = manifest.get("preprocessing") or {}
    labels = manifest.get("labels") or {}
    st.markdown(
        f"- **Source**: `{manifest.get('source', '?')}` · **architecture** `{manifest.get('architecture', '?')}`\n"
        f"- **Published** {when(str(manifest.get('created_at', '?')))} · "
        f"**loaded** {when(str(model.get('loaded_at', '?')))}\n"
        f"- **Preprocessing**: resize {prep.get('resize', '?')}, centre crop {prep.get('crop', '?')}, "
        f"{md(prep.get('interpolation', '?'))} · **labels** {labels.get('count', '?')}\n"
        f"- The API re-reads the current version every {model.get('refresh_seconds', '?')} s"
    )
    with st.expander("Manifest"):
        st.json(manifest, expanded=2)


# -- page -----------------------------------------------------------------------


def main() -> None:
    st.set_page_config(page_title="ResNet-50 classifier", page_icon=":material/image_search:", layout="wide")
    try:
        api = client()
    except ValueError as exc:  # API_URL is not an http(s) URL: nothing on this page can work
        st.error(f"**API_URL is not usable**: {md(exc)}", icon=":material/link_off:")
        return
    top_k, picked = sidebar(api, fetch_models(api))
    model, model_error = fetch_model(api, picked)
    api_status(api, model, model_error)
    st.title("ResNet-50 image classifier", anchor=False)
    st.caption("Photos go to the classification API; ResNet-50 answers with its best guesses.")
    banner = st.container()  # filled last: classifications can reveal an untrained model too
    classify, history, model_state, versions = st.tabs(
        [":material/image_search: Classify", ":material/history: History", ":material/memory: Model",
         ":material/inventory_2: Models"])
    with classify:
        results = classify_tab(api, top_k, picked)
    with history:
        history_tab(api)
    with model_state:
        model_tab(model, model_error)
    with versions:
        models_tab(api)
    with banner:
        banners(model, model_error, [r["warning"] for r in results if r.get("warning")])


try:
    main()
except Exception as exc:  # a bug here must still read as a message, not a stack trace
    log.exception("dashboard error")
    st.error(f"**The dashboard hit an unexpected error**: {md(type(exc).__name__)}: {md(exc)}",
             icon=":material/bug_report:")
