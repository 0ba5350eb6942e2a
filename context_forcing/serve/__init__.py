"""`context-forcing serve`: live streaming sessions in a browser (docs/SERVE.md).

messages (what the page may send, validated), live_session (one person's session: the PanWorld camera, prompt
switches, frames and the memory panel), manager (the concurrency limit), app (aiohttp: the page, the
WebSocket, status), command (the CLI), page/ (HTML, JS and CSS, package data).
"""
