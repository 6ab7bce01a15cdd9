#!/usr/bin/env bash
# Serves the demo chat (examples_app.demo_app) -- single node, no Redis -- on http://127.0.0.1:8000.
#   PORT=8080 ./scripts/demo.sh                # another port (the page connects back to it)
#   HOST=0.0.0.0 PORT=8080 ./scripts/demo.sh   # reachable from other machines (your phone)
# The guide's HTML client, verbatim, is at /guide-client (it talks to ws://localhost:8000/ws).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh demo
host=${HOST:-127.0.0.1}
port=${PORT:-8000}
echo "demo: open http://$host:$port in two browser tabs (Ctrl+C stops)"
exec .venv/bin/uvicorn examples_app.demo_app:app --host "$host" --port "$port" \
    --http qakeapi.core.websockets.uvicorn_protocol:DeadlineH11Protocol --ws qakeapi.core.websockets.uvicorn_protocol:AbortableWebSocketProtocol \
    --ws-max-size 1048576 --timeout-keep-alive 5
