"""The webhook receiver behind `ghdeploy serve`.

`auth` and `payload` use only the standard library: `ghdeploy notify` (the CI side) signs and
builds the same payload with them, without the `server` extra. Everything else here (app,
store, queue) needs Starlette, uvicorn and SQLAlchemy and is imported only by `serve`.
"""
