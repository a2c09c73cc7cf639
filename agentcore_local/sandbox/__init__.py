"""Compute launchers (process, bwrap, docker), compute, private network, slots, sandbox_init."""
