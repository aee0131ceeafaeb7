"""Bytes and ids on the wire: SSE framing, event ids (Kafka cursors), record events, formats, filters.

Pure functions and values: nothing here imports the other wings.
"""
