"""The field daemon: discovery, the processing loop, systemd integration, metrics."""
