"""Measuring a run: a session set up once (model, probes, options, metadata), then every checkpoint loaded,
measured and written in turn. `grokmon.analyze` drives it."""
