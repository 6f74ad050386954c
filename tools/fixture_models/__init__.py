"""Builders for the tiny fixture models committed under tests/fixtures/models.

Each module builds one model family in the real on-disk layout its runtime loads; the entry point is
tools/make_fixture_models.py. Needs the `fixtures` extra (torch==2.13.0, transformers, the ORT GenAI
model builder, optimum-intel); nothing in the edge package imports this.
"""
