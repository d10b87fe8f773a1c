"""grokmon inside the training loop: `lightning.GrokmonCallback` and `huggingface.GrokmonCallback`.

Both are thin adapters over `monitor.LiveMonitor`, which imports neither framework; each adapter imports its
framework (the `grokmon[integrations]` extra) and nothing else does.
"""
