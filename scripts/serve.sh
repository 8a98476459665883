#!/usr/bin/env bash
# `make serve`: make sure the local store holds a model, then serve the API
# (and the dashboard, when it is part of the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
STORE=${STORE:-.model-store}
PORT=${PORT:-8000}

if ! "$PY" -m classifier models --store "$STORE" | grep -q '^\* '; then
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
fi

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM
"$PY" -m classifier serve --store "$STORE" --port "$PORT" &
pids+=($!)
if [ -f streamlit-docker/streamlit_app.py ]; then
  # The rest of Streamlit's settings (the Deploy button hidden among them) are the image's
  # too: streamlit-docker/.streamlit/config.toml, read from beside the script.
  API_URL="http://127.0.0.1:$PORT" "$PY" -m streamlit run streamlit-docker/streamlit_app.py \
    --server.address 127.0.0.1 --server.port 8501 --server.headless true \
    --browser.gatherUsageStats false &
  pids+=($!)
  echo "Dashboard: http://127.0.0.1:8501"
fi
echo "API: http://127.0.0.1:$PORT  (docs at /docs)"
wait -n "${pids[@]}"
