"""The running daemon: events to rows to WordPress, with health, metrics and systemd."""
