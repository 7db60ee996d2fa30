"""``facesr serve``: the web app (needs the ``web`` extra: ``pip install -e ".[web]"``).

* :mod:`facesr.web.app` - :func:`~facesr.web.app.create_app`: the FastAPI app (its API is described at ``/docs``).
* :mod:`facesr.web.routes` - the routes, on three ``APIRouter``\\ s: the page, server information, jobs.
* :mod:`facesr.web.service` - what the routes share (model, job queue, limits), reached through ``Depends``.
* :mod:`facesr.web.models` - the JSON answers as Pydantic models (job states, ``/healthz``, ``/api/info``).
* :mod:`facesr.web.uploads` - reading an upload: byte cap, time limits, multipart form or raw body.
* :mod:`facesr.web.responses` - plain-text errors, file names, security headers, the /docs page.
* :mod:`facesr.web.jobs` - the job queue (one job at a time per model, cancellable, honest state).
* :mod:`facesr.web.images` - decoding uploads with limits checked first, messages in plain words.
* :mod:`facesr.web.photo` - whole-photo mode's jobs (shared face detector, progress per face).
* ``static/`` - the page (HTML, JavaScript, CSS), shipped as package data.

Importing this package does not import FastAPI; :mod:`facesr.web.app` does.
"""
