"""The model layer: a registered version as files on this machine — its local copy (the serving
cache, an export, a backup), the sha256 that proves a copy whole, loading it with exactly the
skops types recorded for it (``local``), and where a version is loaded from: cache, then backup,
then the registry (``source``). It sits below serving, monitoring and the registry; the registry's
exports and backups are written by ``mlmedic.model.registry.backups``.
"""
