"""The demo: three services under ``sd run`` on the local backend, a balancing client, and a
live view while one service stops (``python -m sd_core.demo``)."""
