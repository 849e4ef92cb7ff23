"""Reporters render memwarden's plain data (verdicts, snapshots, recorded runs); they compute nothing."""
