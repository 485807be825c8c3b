"""Models served by worker processes over the Channels layer (``WORKER``).

Web processes (``client.py``, reached through ``handle.py`` from the registry) send
requests for a worker-served model over the channel layer; ``manage.py tfbatch_worker
<name>`` processes (``server.py``) batch the requests of every web process together and
answer each; a coroutine caller's event loop gets a connection of its own (``lane.py``),
and ``calls.py`` keeps a web process's requests in flight and their answers.
``protocol.py`` is what travels; ``liveness.py`` what web processes know of the workers
from their heartbeats.
"""
