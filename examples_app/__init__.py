"""Runnable mirrors of every section of the WebSocket guide (``uvicorn examples_app.<name>:app``)."""
