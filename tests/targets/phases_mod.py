"""Imported by phases.py while tracked: allocates at import time, so that
its stack runs through the import system (importlib's frames)."""
DATA = [bytearray(2000) for _ in range(100)]  # MARK: import_alloc
