"""Checkpoints: the content-addressed store of every turn's workspace (store, objects), the walk
and the inotify watch that find what changed, the recorder that brackets a turn, and undo."""
