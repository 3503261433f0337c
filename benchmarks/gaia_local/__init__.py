"""A bundled GAIA-style task set: a seeded generator and an independent oracle.

    python -m benchmarks.gaia_local.generate --out /tmp/gaia_local --seed 0
    python -m benchmarks.gaia_local.oracle --data-dir /tmp/gaia_local
    agentflow bench gaia --data-dir /tmp/gaia_local --out runs/gaia_local
"""
