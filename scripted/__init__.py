"""The offline scripted model's plan player: a TEST DOUBLE that replays a plan file instead of an LLM.

Pure logic on Converse-shaped messages (the shape Strands and bedrock-runtime share), with no
project or Strands imports, so the agent's Strands Model (agent/model/scripted.py) and the local
bedrock-runtime (agentcore_local/bedrock_runtime.py) play plans the same way.
"""
