"""Pictures: training curves (:mod:`.plotting`), comparison sheets (:mod:`.compare`) and the demo (:mod:`.demo`).

Importing this package imports none of them (matplotlib and the data pipeline load on use).
"""
