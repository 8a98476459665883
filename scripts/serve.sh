#!/usr/bin/env bash
# `make serve`: make sure the local store holds a model, then serve the API
# (and the dashboard, when it is part of the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
STORE=${STORE:-.model-store}
PORT=${PORT:-8000}
DASHBOARD_PORT=${DASHBOARD_PORT:-8501}
# DASHBOARD=0 serves the API alone.
DASHBOARD=${DASHBOARD:-1}

# Is there a model to serve? `models --current` answers with its exit status alone (no pipe
# whose reader could exit early and make a broken pipe look like "no model"): 0 there is a
# current version; 1 the store holds no version at all, so publishing is safe; anything else
# (versions but none current, a damaged store) is for a person to decide: stop, never publish.
status=0
current=$("$PY" -m classifier models --store "$STORE" --current) || status=$?
if [ "$status" -eq 0 ]; then
  echo "Serving $current, the current version in $STORE"
elif [ "$status" -eq 1 ]; then
  echo "No model in $STORE: publishing torchvision's IMAGENET1K_V2 ResNet-50..."
  if ! "$PY" -m classifier publish --store "$STORE" --weights IMAGENET1K_V2; then
    cat >&2 <<'WARN'
################################################################################
#  WARNING: the pretrained weights could not be downloaded (no network?).      #
#  Publishing an UNTRAINED ResNet-50 instead: it answers, but its predictions   #
#  are MEANINGLESS. Every response carries a "warning" field saying so.         #
#  For real predictions: make publish WEIGHTS=/path/to/resnet50.pth             #
################################################################################
WARN
    "$PY" -m classifier publish --store "$STORE" --weights random
  fi
else
  echo "Not serving: the store needs a decision first (the error above says which)." >&2
  exit "$status"
fi

# numpy's OpenBLAS threads would spin beside ONNX Runtime's; the runtime calls no BLAS routine
# (docs/performance.md). The functions in AWS are configured the same way.
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM
"$PY" -m classifier serve --store "$STORE" --port "$PORT" &
pids+=($!)
if [ "$DASHBOARD" != 0 ] && [ -f streamlit-docker/streamlit_app.py ]; then
  # The rest of Streamlit's settings (the Deploy button hidden among them) are the image's
  # too: streamlit-docker/.streamlit/config.toml, read from beside the script.
  API_URL="http://127.0.0.1:$PORT" "$PY" -m streamlit run streamlit-docker/streamlit_app.py \
    --server.address 127.0.0.1 --server.port "$DASHBOARD_PORT" --server.headless true \
    --browser.gatherUsageStats false &
  pids+=($!)
  echo "Dashboard: http://127.0.0.1:$DASHBOARD_PORT"
fi
echo "API: http://127.0.0.1:$PORT  (docs at /docs)"
wait -n "${pids[@]}"
