"""Run in a subprocess by test_tf_setup.py: TensorFlow imported for the first time.

TensorFlow is imported and configured once per process, so each case needs a process of
its own. Two modes, each printing one JSON line on stdout:

* ``stderr``: another thread writes numbered lines to standard error while TensorFlow
  imports quietly; the test checks that none of them is lost.
* ``settings``: Django configured with ``TFBATCH`` from the JSON in argv[2]; a real
  SavedModel served through the registry; what TensorFlow was configured with.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time


def stderr_mode() -> None:
    from tfbatch_django.runners.config import FrameworkOptions
    from tfbatch_django.runners.tf_setup import import_tensorflow

    importing = threading.Event()
    stop = threading.Event()
    during: list[int] = []

    def chatter() -> None:
        for i in range(100_000):  # bounded: ~0.5 ms apart, so ~50 s at most
            if stop.is_set():
                return
            if importing.is_set():
                during.append(i)
            # One write per line, as loggers write: print() writes the text and its newline
            # separately, and another thread's line (TensorFlow's) may land in between.
            sys.stderr.write(f"other thread line {i}\n")
            sys.stderr.flush()
            time.sleep(0.0005)

    thread = threading.Thread(target=chatter)
    thread.start()
    importing.set()
    import_tensorflow(FrameworkOptions(quiet=True))
    importing.clear()
    stop.set()
    thread.join(60)
    print(json.dumps({"written_during_import": during}))


def settings_mode(tfbatch: dict[str, object]) -> None:
    import django
    from django.conf import settings

    settings.configure(INSTALLED_APPS=["tfbatch_django"], TFBATCH=tfbatch)
    django.setup()
    from tfbatch_django import predict_sync
    from tfbatch_django.runners.tf_setup import tensorflow_info

    [name] = tfbatch["MODELS"]  # type: ignore[misc]
    answer = predict_sync(name, [[1.0]])
    info = tensorflow_info()
    info["answer"] = answer.tolist()
    info["TF_CPP_MIN_LOG_LEVEL"] = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    print(json.dumps(info))


if __name__ == "__main__":
    if sys.argv[1] == "stderr":
        stderr_mode()
    else:
        settings_mode(json.loads(sys.argv[2]))
