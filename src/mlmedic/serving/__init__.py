"""Stage 6: the prediction API (``app``), where its model comes from (``source``, ``model``),
its logs (``logstore``), its metrics (``metrics``) and the supervisor that keeps it up."""
