"""Supporting code of coding_agent.py, in packages whose names are the architecture.
Lower layers never import upper ones (tests/unit/agent/test_layers.py):

session_files  FileSessionManager's files on disk: the one module that knows the layout; a leaf
rehearsal      a boto3 request answered in process (the warm-up's rehearsals); a leaf
model/         MODEL_PROVIDER -> a Strands Model, the scripted test double, the turn's budget
tools/         the workspace (race-free paths, the turn's snapshot), the shell and file_editor tools
conversation/  the wire protocol, one Agent per conversation, its history and its sliding window
checkpoints/   the per-turn checkpoint store, the workspace walk and watch, the recorder, undo
backup/        checkpoints copied to S3 and restored from it
service/       the settings, the Service, the turn, actions, server, /ping health, warm-up, guard
"""
