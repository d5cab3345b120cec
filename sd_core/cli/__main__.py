"""``python -m sd_core.cli``: the ``sd`` command."""

from . import main

if __name__ == "__main__":
    main()
