"""run.py's command line: its flags, each mode declared once, and the checks made
before JAX loads.

Owns flags.py (every flag), modes.py (each mode's flags, path checks and
function) and checks.py (the messages for a flag or config that does not
fit). May import every wing; nothing in the library imports it.
"""
