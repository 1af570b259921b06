"""WER/CER scoring via kaldialign and icefall-compatible result files.

``score`` (stats.py) aligns (id, ref tokens, hyp tokens) triples; ``write_scoring_files``
(files.py) also writes recogs-/errs-/wer-summary-<set>-<key>.txt, which the ``read_*``
functions parse back.
"""

from asr_recipes.scoring.files import (ErrsHeader, format_errs, read_errs_header, read_recogs,
                                       read_wer_summary, scoring_paths, write_scoring_files)
from asr_recipes.scoring.stats import ErrorStats, UttAlignment, score

__all__ = [
    "ErrorStats", "ErrsHeader", "UttAlignment", "format_errs", "read_errs_header",
    "read_recogs", "read_wer_summary", "score", "scoring_paths", "write_scoring_files",
]
