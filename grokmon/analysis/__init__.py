"""Measuring a run: a session set up once (model, probes, options, metadata), then every checkpoint loaded,
measured and written in turn. `grokmon.analyze` drives it; executors.py chooses where the checkpoints are
measured: in this process (local.py), one worker per local device (devices.py) or on Ray (on_ray.py), the
workers fed by one driver (dispatch.py) and writing through the same ResultsStore (store.py); `live.py` sets up
the same session over a training loop's live module (the callbacks of grokmon.integrations), and `follow.py`
analyses a running job's folder again and again (`grokmon watch`)."""
