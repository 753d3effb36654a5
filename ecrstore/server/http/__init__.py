"""Protocol-neutral HTTP pieces shared by the front ends: bounded and streaming request bodies,
hashing a body while it arrives, byte ranges, zero-copy sending and header access.

Nothing here knows a protocol's error shapes: failures are the exceptions of :mod:`.body`,
which each front end answers in its own format. Imports only the standard library and the
native core.
"""
