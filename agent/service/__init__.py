"""The service behind coding_agent.py: the settings read once from the environment, the Service
object that owns what every conversation shares, the turn and its TurnScope, the actions (undo,
checkpoints, status), the non-stream answers and refusals, /ping health, the warm-up, the request
guard, and the uvicorn server with its prompt stop."""
