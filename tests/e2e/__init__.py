"""Helpers for the end-to-end tests: a live uvicorn server and a scripted episode."""
