"""Sources of history (docs/import.md): files and exports turned into the canonical events the
webhooks produce, with their original times and the same event ids, so that an import and the live
path count each fact once. Pure: no AWS, no clock; :mod:`segmentation.service.history_import` runs them.
"""
