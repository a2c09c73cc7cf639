"""Conversations: the wire protocol (requests, answers, streamed events; docs/CONTRACT.md §1), one
warm Agent per conversation and one turn at a time, the history's checks and quarantine, and the
sliding window that trims it in steps."""
