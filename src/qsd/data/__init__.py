"""Real data sets, offline and verified: ``fetch`` / ``load`` / ``info`` and on-device batch iterators."""
from .batches import ImageBatches, LMBatches, TextBatches
from .errors import DataError
from .sources import SPECS
from .store import data_root, fetch, info, is_ready, load, meta, missing

__all__ = ["DataError", "ImageBatches", "LMBatches", "SPECS", "TextBatches", "data_root", "fetch", "info",
           "is_ready", "load", "meta", "missing"]
