"""Watching runs: ``status.json`` (heartbeat, progress, ETA), the stop-request file, TensorBoard event
files, the status table and the web dashboard. Everything here reads or writes run folders; none of it
trains."""
