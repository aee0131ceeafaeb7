"""The HTTP side: one stream per connection, limits, CORS, auth, the HTTP protocol, drain.

May use every other wing; none of them uses this one.
"""
