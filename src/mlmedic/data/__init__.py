"""Stage 1: the data contract, the checks, the repairs, and the check → fix → re-check flow.

Import from the submodules (``mlmedic.data.contract``, ``.checks``, ``.repair``, ``.stage``);
the top-level ``mlmedic`` package re-exports the public names.
"""
