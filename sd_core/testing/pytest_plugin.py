"""pytest fixtures that start real backend servers."""
