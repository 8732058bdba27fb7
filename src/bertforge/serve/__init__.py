"""Serving a model over HTTP: ``bertforge serve`` (FastAPI + uvicorn), dynamic batching, metrics, a web page.

``settings`` imports nothing heavy (the command line checks flags with it); ``app.create_app`` needs the
``serve`` extra (fastapi, uvicorn, prometheus-client). Serving imports models, tasks and inference, never
training code.
"""
