"""``python -m mlmedic``: the same as the ``mlmedic`` command."""

from mlmedic.cli import main

if __name__ == "__main__":
    main()
