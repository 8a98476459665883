"""The dashboard script under Streamlit's AppTest, against the live local API (an untrained ResNet-50)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from classifier.lifecycle.publish import PublishRequest, publish_to_store
from classifier.store.layout import ModelStore

from helpers.dashboard import CHELSEA, COFFEE, api_classify, block, large_photo, texts, unescape
from helpers.fitted_model import PHOTO_LABELS
from helpers.onnx_models import tiny_classifier, write_labels, write_preprocessing
from helpers.photos import jpeg
from helpers.processes import LiveServer, free_port, live_server
from helpers.sigv4 import sigv4_gateway
from helpers.stores import copy_store

MakeApp = Callable[[str], AppTest]


def assert_no_exception(at: AppTest) -> None:
    assert not at.exception, f"the page shows a traceback: {[e.value for e in at.exception]}"


def upload(at: AppTest, *files: tuple[str, bytes, str]) -> AppTest:
    at.file_uploader(key="uploads").set_value(list(files)).run()
    assert_no_exception(at)
    return at


def chart_data(at: AppTest, index: int) -> list[dict[str, object]]:
    """The rows behind the bar chart of result ``index`` (Streamlit ships them as Arrow)."""
    charts = [e for e in block(at, f"result-{index}") if e.type == "vega_lite_chart"]
    assert len(charts) == 1
    rows: list[dict[str, object]] = pa.ipc.open_stream(charts[0].proto.data.data).read_all().to_pylist()
    return rows


def test_upload_shows_the_apis_predictions_scores_and_latency(server: LiveServer, app_test: MakeApp) -> None:
    # GIVEN a photo and the API's own answer for exactly these bytes
    data = CHELSEA.read_bytes()
    expected = api_classify(server, data)
    at = app_test(server.url).run()
    assert_no_exception(at)

    # WHEN the photo is uploaded
    upload(at, ("chelsea.jpg", data, "image/jpeg"))

    # THEN its card names the API's top label and charts its top-5 with their scores
    assert unescape(block(at, "top-label-0").subheader[0].value) == expected["predictions"][0]["label"]
    rows = chart_data(at, 0)
    assert [(r["label"], r["score"]) for r in rows] == [(p["label"], p["score"]) for p in expected["predictions"]]
    card = texts(block(at, "result-0"))
    assert " ms** total" in card and "ms inference" in card and "JPEG 451" in card
    assert not at.error
    # and the untrained model is called out above everything
    assert any("Untrained model" in w.value for w in at.warning)


def test_top_k_setting_sets_the_number_of_predictions(server: LiveServer, app_test: MakeApp) -> None:
    # GIVEN the dashboard asking for the top 3
    at = app_test(server.url).run()
    at.slider(key="top_k").set_value(3).run()

    # WHEN a sample photo is picked
    at.pills(key="sample").set_value("Coffee").run()
    assert_no_exception(at)

    # THEN its card shows three predictions, led by the API's top label for that photo
    expected = api_classify(server, COFFEE.read_bytes())
    assert len(chart_data(at, 0)) == 3
    assert unescape(block(at, "top-label-0").subheader[0].value) == expected["predictions"][0]["label"]


def test_history_shows_the_upload(server: LiveServer, app_test: MakeApp) -> None:
    # GIVEN the dashboard
    at = app_test(server.url).run()

    # WHEN a photo is uploaded
    upload(at, ("chelsea.jpg", CHELSEA.read_bytes(), "image/jpeg"))

    # THEN the history (newest first) lists its record, with the label shown on its card
    card = texts(block(at, "result-0"))
    record_id = card.split("record `", 1)[1].split("`", 1)[0]
    history = at.tabs[1].dataframe[0].value
    assert history["ID"].iloc[0] == record_id
    assert history["Top label"].iloc[0] == unescape(block(at, "top-label-0").subheader[0].value)
    # and a rerun (any click) does not classify the same upload again
    at.run()
    assert texts(block(at, "result-0")) == card
    assert at.tabs[1].dataframe[0].value["ID"].iloc[0] == record_id


def test_history_pages_follow_next_cursor(server: LiveServer, app_test: MakeApp) -> None:
    # GIVEN more than one page of records (11, at 10 a page)
    images = [("file", (f"{i}.jpg", jpeg("astronaut", quality=50 + i), "image/jpeg")) for i in range(11)]
    with server.client() as client:
        client.post("/classify", files=images).raise_for_status()
        first = client.get("/classifications", params={"limit": 10}).json()
        second = client.get("/classifications", params={"limit": 10, "cursor": first["next_cursor"]}).json()
    at = app_test(server.url).run()
    history = at.tabs[1]

    # WHEN 10 rows per page are chosen
    history.segmented_control(key="page_size").set_value(10).run()

    # THEN the first page is the API's first page, and "Older" leads to its second
    assert list(at.tabs[1].dataframe[0].value["ID"]) == [r["id"] for r in first["items"]]
    assert at.button(key="history_newer").disabled
    at.button(key="history_older").click().run()
    assert_no_exception(at)
    assert list(at.tabs[1].dataframe[0].value["ID"]) == [r["id"] for r in second["items"]]
    assert "Page 2" in texts(at.tabs[1])
    # and "Newer" comes back
    at.button(key="history_newer").click().run()
    assert list(at.tabs[1].dataframe[0].value["ID"]) == [r["id"] for r in first["items"]]


def test_history_filters_by_top_label(fitted_server: LiveServer, app_test: MakeApp) -> None:
    # GIVEN records of three photos, each with its own top-1 label (the fitted model tells them apart)
    with fitted_server.client() as client:
        labels = [client.post("/classify", content=jpeg(name), headers={"content-type": "image/jpeg"}
                              ).json()["predictions"][0]["label"] for name in ("chelsea", "coffee", "rocket")]
        assert labels == [PHOTO_LABELS[name] for name in ("chelsea", "coffee", "rocket")]
        label = labels[1]
        want = client.get("/classifications", params={"limit": 20, "label": label}).json()["items"]
    assert len(want) == 1  # one of the three records: a page that ignored the filter would show three
    at = app_test(fitted_server.url).run()

    # WHEN the History tab is filtered by one of those labels
    at.text_input(key="filter_label").set_value(label).run()
    assert_no_exception(at)

    # THEN it shows exactly the API's records with that top-1 label
    shown = at.tabs[1].dataframe[0].value
    assert list(shown["ID"]) == [r["id"] for r in want] and set(shown["Top label"]) == {label}


def test_models_tab_shows_versions_and_their_evaluation(published_store: Path, tmp_path: Path,
                                                        app_test: MakeApp) -> None:
    # GIVEN a store whose version was evaluated on a small ImageFolder (folders are ImageNet labels)
    store = copy_store(published_store, tmp_path / "store")
    data = tmp_path / "data"
    for label, name in (("tabby", "chelsea"), ("espresso", "coffee")):
        (data / label).mkdir(parents=True)
        (data / label / f"{name}.jpg").write_bytes(jpeg(name))
    done = subprocess.run([sys.executable, "-m", "classifier", "evaluate", "--store", str(store), "--data", str(data),
                           "--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    with live_server(store, tmp_path) as live:
        # WHEN the dashboard's Models tab opens
        at = app_test(live.url).run()
        assert_no_exception(at)
    # THEN it lists the version as current, with the evaluation's top-1, and shows that evaluation
    versions = at.tabs[3].dataframe[0].value
    assert list(versions["Version"]) == [report["version"]] and bool(versions["Current"].iloc[0])
    assert versions["Top-1"].iloc[0] == report["top1"] and versions["Images"].iloc[0] == 2
    assert versions["Architecture"].iloc[0] == "resnet50"
    metrics = {m.label: m.value for m in block(at, "evaluation-summary").metric}
    assert metrics["Top-1"] == f"{report['top1']:.1%}" and metrics["Images"] == "2"
    assert len([e for e in at.tabs[3] if e.type == "vega_lite_chart"]) == 2  # per class, confusion


def test_models_tab_shows_a_version_published_from_an_onnx_file(tmp_path: Path, app_test: MakeApp) -> None:
    # GIVEN a store holding only a model brought as an ONNX file (its own labels and preprocessing),
    # evaluated on an ImageFolder of two of its labels
    store = ModelStore(tmp_path / "store")
    publish_to_store(store, PublishRequest(
        onnx=tiny_classifier(tmp_path / "byo.onnx", labels=4, size=(160, 160)), name="byo",
        labels_file=write_labels(tmp_path / "labels.json", 4),
        preprocessing_file=write_preprocessing(tmp_path / "prep.json", resize=180, crop=160, mean=[0.5] * 3,
                                               std=[0.5] * 3, channel_order="BGR")))
    data = tmp_path / "data"
    for label, name in (("class 0", "chelsea"), ("class 3", "coffee")):
        (data / label).mkdir(parents=True)
        (data / label / f"{name}.jpg").write_bytes(jpeg(name))
    done = subprocess.run([sys.executable, "-m", "classifier", "evaluate", "--store", str(store.root), "--name",
                           "byo", "--data", str(data), "--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    with live_server(store.root, tmp_path, env={"MODEL_NAME": "byo"}) as live:
        # WHEN the dashboard's Models tab opens
        at = app_test(live.url).run()
        assert_no_exception(at)
    # THEN it lists the version with its origin, and shows its evaluation
    versions = at.tabs[3].dataframe[0].value
    assert list(versions["Version"]) == [report["version"]] and versions["Architecture"].iloc[0] == "onnx"
    assert versions["Labels"].iloc[0] == 4 and versions["Top-1"].iloc[0] == report["top1"]
    metrics = {m.label: m.value for m in block(at, "evaluation-summary").metric}
    assert metrics["Images"] == "2"


def test_the_dashboard_signs_its_calls_when_api_sigv4_is_set(server: LiveServer, app_test: MakeApp,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN API Gateway with api_auth=iam in front of the API, and the task role's credentials
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    credentials = {"AWS_ACCESS_KEY_ID": "AKIDDASHBOARDTASK", "AWS_SECRET_ACCESS_KEY": "task-secret",
                   "AWS_REGION": "eu-west-1", "AWS_EC2_METADATA_DISABLED": "true"}
    for key, value in credentials.items():
        monkeypatch.setenv(key, value)
    with sigv4_gateway(server.url, service="execute-api", region="eu-west-1", access_key="AKIDDASHBOARDTASK",
                       secret_key="task-secret") as gateway:
        # WHEN the dashboard opens without API_SIGV4, then with it
        monkeypatch.delenv("API_SIGV4", raising=False)
        refused = app_test(gateway.url).run()
        monkeypatch.setenv("API_SIGV4", "1")
        signed = app_test(gateway.url).run()
        assert_no_exception(signed)
        upload(signed, ("chelsea.jpg", CHELSEA.read_bytes(), "image/jpeg"))
    # THEN unsigned it is refused and says so; signed, every call verifies and the photo is classified
    assert any("Access denied" in e.value for e in refused.error)
    assert not any("Access denied" in e.value for e in signed.error)
    assert "GET /model" in gateway.verified and any(v.startswith("POST /classify") for v in gateway.verified)
    assert block(signed, "top-label-0").subheader[0].value


def test_model_view_shows_version_backend_and_untrained(server: LiveServer, app_test: MakeApp) -> None:
    # GIVEN what the API says about its model
    model = httpx.get(f"{server.url}/model", timeout=30).json()

    # WHEN the dashboard opens
    at = app_test(server.url).run()
    assert_no_exception(at)

    # THEN the model tab names that version and backend, and says it is untrained
    assert model["version"] in block(at, "model-version").subheader[0].value
    metrics = {m.label: m.value for m in at.tabs[2].metric}
    assert metrics["Backend"] == model["backend"]
    assert metrics["Trained"] == "no"
    assert any("Untrained model" in w.value for w in at.warning)


def test_api_down_shows_a_message_not_a_traceback(app_test: MakeApp) -> None:
    # GIVEN an API_URL where nothing listens
    url = f"http://127.0.0.1:{free_port()}"

    # WHEN the dashboard opens and a photo is uploaded
    at = app_test(url).run()
    assert_no_exception(at)
    upload(at, ("chelsea.jpg", CHELSEA.read_bytes(), "image/jpeg"))

    # THEN the page, the card and the history each say the API is unreachable, and where
    banner = at.error[0].value
    assert "The API is unreachable" in banner and url in unescape(banner)
    assert "The API is unreachable" in texts(block(at, "result-0"))
    assert "The API is unreachable" in texts(at.tabs[1])


def test_non_image_upload_shows_415_and_spares_the_rest_of_the_batch(server: LiveServer,
                                                                    app_test: MakeApp) -> None:
    # GIVEN a file named like an image that is not one, uploaded with a real photo
    at = app_test(server.url).run()
    expected = api_classify(server, CHELSEA.read_bytes())

    # WHEN both are uploaded (one batch)
    upload(at, ("notes.png", b"these are meeting notes, not pixels", "image/png"),
           ("chelsea.jpg", CHELSEA.read_bytes(), "image/jpeg"))

    # THEN the bad file gets the API's 415 as a message, and the photo still gets its predictions
    bad = texts(block(at, "result-0"))
    assert "Not a supported image" in bad and "415" in bad and "notes.png" in bad
    assert unescape(block(at, "top-label-1").subheader[0].value) == expected["predictions"][0]["label"]
    assert len(at.error) == 1


def upload_limit(at: AppTest) -> tuple[int, str]:
    """What the uploader enforces (MB, as Streamlit states it in the dropzone) and the sentence under it."""
    return at.file_uploader(key="uploads").proto.max_upload_size_mb, texts(block(at, "upload-limit"))


def test_without_an_uploads_bucket_an_image_over_4_mib_says_what_it_needs(server: LiveServer,
                                                                         app_test: MakeApp) -> None:
    # GIVEN the API without an uploads bucket
    at = app_test(server.url).run()
    assert_no_exception(at)

    # THEN the uploader takes what the API takes, 4 MiB, and says why no more
    limit, sentence = upload_limit(at)
    assert limit == 4
    assert "Up to 4 MiB per image" in sentence and "no uploads bucket" in sentence and "20 MiB" in sentence

    # WHEN a larger image is uploaded all the same (a browser refuses it; a stale session may not)
    upload(at, ("large.png", large_photo(), "image/png"))

    # THEN its card says the inline limit, and that a larger image needs the uploads bucket
    card = unescape(texts(block(at, "result-0")))
    assert "Too large" in card and "the API takes up to 4 MiB in a request" in card
    assert "uploads bucket" in card and "HTTP 404 · not_found" in card


def test_with_an_uploads_bucket_an_image_over_4_mib_goes_through_s3(uploads_server: LiveServer,
                                                                   app_test: MakeApp) -> None:
    # GIVEN the API with an uploads bucket (moto's S3), and a real photo over the 4 MiB inline limit
    data = large_photo()
    at = app_test(uploads_server.url).run()
    assert_no_exception(at)

    # THEN the uploader takes the S3 limit, 20 MiB, and says so
    limit, sentence = upload_limit(at)
    assert limit == 20
    assert "Up to 20 MiB per image" in sentence and "over 4 MiB, through the API's uploads bucket" in sentence

    # WHEN the photo is uploaded
    upload(at, ("large.png", data, "image/png"))

    # THEN it was classified from the bucket: its record names the uploaded key and these very bytes,
    # and the card shows that record's top label
    assert not at.error
    card = texts(block(at, "result-0"))
    record_id = card.split("record `", 1)[1].split("`", 1)[0]
    record = httpx.get(f"{uploads_server.url}/classifications/{record_id}", timeout=30).json()
    assert record["s3_key"].startswith("uploads/")
    assert record["image"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert unescape(block(at, "top-label-0").subheader[0].value) == record["predictions"][0]["label"]


def test_no_model_shows_503(tmp_path: Path, app_test: MakeApp) -> None:
    # GIVEN an API whose store holds no model
    empty = tmp_path / "store"
    empty.mkdir()
    with live_server(empty, tmp_path, wait_for_model=False) as api:
        # WHEN the dashboard opens and a photo is uploaded
        at = app_test(api.url).run()
        assert_no_exception(at)
        upload(at, ("chelsea.jpg", CHELSEA.read_bytes(), "image/jpeg"))

    # THEN it says no model is loaded, and the upload shows the API's 503
    assert "No model is loaded" in at.error[0].value
    card = texts(block(at, "result-0"))
    assert "No model available" in card and "503" in card


def test_the_model_picker_sends_images_to_the_picked_model(two_models_server: LiveServer,
                                                           app_test: MakeApp) -> None:
    # GIVEN an API serving two models, resnet50 the default
    at = app_test(two_models_server.url).run()
    assert_no_exception(at)
    picker = at.sidebar.selectbox(key="model")
    assert picker.options == ["resnet50 (1000 labels, default)", "products (1000 labels)"]
    assert picker.value == "resnet50"

    # WHEN products is picked and a photo uploaded
    picker.set_value("products").run()
    upload(at, ("chelsea.jpg", CHELSEA.read_bytes(), "image/jpeg"))

    # THEN products classified it (its own labels), and the Model tab describes products
    top = unescape(block(at, "top-label-0").subheader[0].value)
    assert top.startswith("products "), top
    assert all(str(r["label"]).startswith("products ") for r in chart_data(at, 0))
    assert "products" in block(at, "model-version").subheader[0].value
    # AND picking the default again classifies the same photo with resnet50's labels
    at.sidebar.selectbox(key="model").set_value("resnet50").run()
    assert_no_exception(at)
    assert not unescape(block(at, "top-label-0").subheader[0].value).startswith("products ")


def test_without_several_models_there_is_no_picker(server: LiveServer, app_test: MakeApp) -> None:
    at = app_test(server.url).run()
    assert_no_exception(at)
    assert not [s for s in at.sidebar.selectbox if s.key == "model"]


def test_rollout_tab_shows_current_against_candidate_and_the_verdict(rollout_server: LiveServer,
                                                                     app_test: MakeApp) -> None:
    # GIVEN what the API says of its running rollout
    rollout = httpx.get(f"{rollout_server.url}/model", timeout=30).json()["rollout"]
    # WHEN the dashboard opens
    at = app_test(rollout_server.url).run()
    assert_no_exception(at)
    # THEN its Rollout tab names the candidate, puts both versions side by side with their evidence, and
    # shows the verdict and the agreement
    assert rollout["candidate"] in block(at, "rollout-header").subheader[0].value
    table = at.tabs[4].dataframe[0].value
    assert list(table["Version"]) == [rollout["current"], rollout["candidate"]]
    assert list(table["Role"]) == ["current", "shadow"]
    assert list(table["Requests"]) == [rollout["evidence"]["current"]["requests"],
                                       rollout["evidence"]["candidate"]["requests"]] == [4, 4]
    assert list(table["Errors"]) == [0, 0]
    verdict = block(at, "rollout-verdict")
    assert rollout["verdict"] == "ready" and "Verdict: ready" in verdict.success[0].value
    assert {m.label: m.value for m in block(at, "rollout-agreement").metric} == {"Top-1 agreement": "100.0%"}


def test_rollout_tab_without_a_rollout_says_how_to_start_one(server: LiveServer, app_test: MakeApp) -> None:
    at = app_test(server.url).run()
    assert_no_exception(at)
    assert any("No rollout is running" in i.value for i in at.tabs[4].info)
