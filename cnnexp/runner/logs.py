"""Hydra's log lines in cnnexp's console width (conf/hydra/hydra_logging/cnnexp.yaml)."""

import logging

from cnnexp.utils.text import fold


class FoldedFormatter(logging.Formatter):
    """Hydra's format, its tabs as two spaces and each line folded to 80 columns."""

    def format(self, record: logging.LogRecord) -> str:
        return fold(super().format(record).replace("\t", "  "))
