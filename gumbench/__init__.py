"""gumbench: measure gradient estimators through discrete choices.

Heavy modules (torch) are imported by the subpackages, not here, so that
``import gumbench`` and ``gumbench --help`` stay fast.
"""

__version__ = "0.1.0"

from gumbench.errors import GumbenchError

__all__ = ["GumbenchError", "__version__"]
