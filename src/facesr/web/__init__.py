"""``facesr serve``: the web app (needs the ``web`` extra: ``pip install -e ".[web]"``).

* :mod:`facesr.web.app` - :func:`~facesr.web.app.create_app`, the FastAPI routes and the HTTP API.
* :mod:`facesr.web.jobs` - the job queue (one job at a time per model, cancellable, honest state).
* :mod:`facesr.web.images` - decoding uploads with limits checked first, messages in plain words.
* ``static/`` - the page (HTML, JavaScript, CSS), shipped as package data.

Importing this package does not import FastAPI; :mod:`facesr.web.app` does.
"""
