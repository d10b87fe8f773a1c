"""Measuring a run: a session set up once (model, probes, options, metadata), then every checkpoint loaded,
measured and written in turn. `grokmon.analyze` drives it; `live.py` sets up the same session over a training
loop's live module (the callbacks of grokmon.integrations), and `follow.py` analyses a running job's folder
again and again (`grokmon watch`)."""
