"""Imported by a warm worker in a test: starts a thread, as a library with a pool would."""

import threading
import time

threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
