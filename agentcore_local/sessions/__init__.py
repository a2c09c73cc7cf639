"""The data plane: lifecycle, session records, reaper and version changes, pool, agent proxy."""
