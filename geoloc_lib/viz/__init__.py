"""Figures. Each function returns a matplotlib Figure and, given ``path``, saves it.

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot state), so
nothing depends on the environment's matplotlib backend; notebooks display the
returned figure explicitly.
"""
