"""Tooling for LQ-KBERT-Base: data checks, fine-tuning, evaluation, inference, export and publishing.

The model itself lives in the Hub files at the repository root (`configuration_lqkbert.py`, `modeling_lqkbert.py`,
`pipeline_lqkbert.py`); `lqkbert.remote_code` imports those exact files.
"""

__version__ = "0.1.0"
