"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 1."""


class GrokmonError(Exception):
    """Base class: something about the inputs or the environment that the user can fix."""


class CheckpointError(GrokmonError):
    """A checkpoint directory or file that cannot be found, parsed, ordered or trusted."""


class ModelError(GrokmonError):
    """The network cannot be built, or the weights do not fit it."""


class ProbeError(GrokmonError):
    """Probe data that is missing, malformed, or does not fit the model."""


class ConfigError(GrokmonError):
    """Options, manifest entries or a results file whose configuration does not fit."""


class ResultsError(GrokmonError):
    """A results Parquet file that cannot be read, written, or is not grokmon's."""
