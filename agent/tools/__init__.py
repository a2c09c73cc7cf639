"""The agent's hands: race-free path resolution inside WORKSPACE_DIR and the turn's snapshot of it
(workspace), the shell and file_editor tools (toolset), and the cap on what a tool returns."""
