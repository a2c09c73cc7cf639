"""Supporting code of coding_agent.py, one module per concern.

settings      the environment, read once
workspace     race-free path resolution inside WORKSPACE_DIR, and the turn's snapshot of it
tools         the agent's shell and file_editor tools
providers     MODEL_PROVIDER -> a Strands Model
scripted      the offline scripted model (a test double, not an LLM)
history       poisoned-history checks and quarantine, interrupted-turn repair
conversations one Agent per conversation, kept warm, one turn at a time
conversation_manager  the sliding window that trims in steps
health        what /ping reports when a turn could not be answered
protocol      request validation, answers and streamed events (docs/CONTRACT.md §1)
"""
