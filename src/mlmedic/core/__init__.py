"""The foundation: what every layer stands on and that imports nothing of mlmedic above it —
time (``clock``), the errors, the evidence behind every automatic action (``evidence``), labels
as the model knows them, the two configuration files (``config``), the project lock, JSON values
and files written whole (``jsonvalues``), column-wise threads (``parallel``) and the look every
page shares (``htmlstyle``).

The layers, bottom up, each importing only those below it (``tests/test_layers.py``):
``core`` → ``store`` → ``data`` → ``model`` → ``heal`` → ``views`` → ``serving`` → ``cli``.
"""
