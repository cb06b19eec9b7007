"""One error family: the CLI maps every EdgeqError to a one-line message and exit code 2."""


class EdgeqError(Exception):
    """A problem the user can fix: bad input, bad usage, a missing file."""

    exit_code = 2


class UsageError(EdgeqError):
    """Options that contradict each other or the model."""


class ModelError(EdgeqError):
    """A model that is missing, unreadable, or not what was expected."""


class DataError(EdgeqError):
    """Samples that are missing, undecodable or do not fit the model."""


class ConversionError(EdgeqError):
    """The converter could not produce the model that was asked for."""


class OutputExistsError(EdgeqError):
    """Refusing to overwrite a file without --force."""


class AnalysisError(EdgeqError):
    """TensorFlow's QuantizationDebugger (per-layer analysis, the accuracy search's ranking) failed."""


class InternalError(EdgeqError):
    """edgeq (or a tool it drives) produced something wrong from good input: exit 3."""

    exit_code = 3
