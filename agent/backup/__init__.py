"""Backups: the checkpoint store copied to S3 after a turn and restored from it into an empty or
damaged workspace (s3 holds S3Backup; files, manifests, placement, transfer, reports serve it)."""
