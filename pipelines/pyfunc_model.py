"""Alias of :mod:`pipelines.model.pyfunc`, kept only so that models pickled by earlier versions
still load.

Models logged before the package split pickled their pyfunc wrapper as
``pipelines.pyfunc_model.RaypipeModel`` (``python_model.pkl``); unpickling imports this module
and finds the class here. New code imports :mod:`pipelines.model.pyfunc`.
"""

from pipelines.model.pyfunc import RaypipeModel

__all__ = ["RaypipeModel"]
