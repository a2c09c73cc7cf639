"""Supporting code of coding_agent.py, one module per concern.

settings      the environment, read once
workspace     the sandbox that confines file tools and the shell to WORKSPACE_DIR
providers     MODEL_PROVIDER -> a Strands Model
scripted      the offline scripted model (a test double, not an LLM)
history       corrupt-history quarantine and interrupted-turn repair
conversations one Agent per conversation, kept warm, one turn at a time
protocol      request validation, answers and streamed events (docs/CONTRACT.md §1)
"""
