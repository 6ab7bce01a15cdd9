#!/usr/bin/env bash
# Serves the chat demo (examples_app.chat_app) on http://127.0.0.1:8000 — single node, no Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh server
echo "demo: open http://127.0.0.1:${PORT:-8000} in two browser tabs (Ctrl+C stops)"
exec .venv/bin/uvicorn examples_app.chat_app:app --host 127.0.0.1 --port "${PORT:-8000}" --ws websockets-sansio
