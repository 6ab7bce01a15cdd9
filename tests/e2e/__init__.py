"""End-to-end tests: examples_app under real uvicorn processes, real clients, a real browser."""
