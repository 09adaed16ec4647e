"""What digitlab needs from the machine: atomic files, locks, threads, the environment of a run."""
