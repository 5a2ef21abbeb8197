"""Small helpers every layer may use: errors, the registry, atomic files, run folders."""
