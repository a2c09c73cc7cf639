"""The model: MODEL_PROVIDER -> a Strands Model (providers), the offline scripted model (a test
double, not an LLM), and the turn's budget of time and model calls."""
